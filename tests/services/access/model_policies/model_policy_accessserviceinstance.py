from xossynchronizer.model_policies.policy import Policy
from xossynchronizer.modelaccessor import (
    AccessServiceInstance,
    OnuUnit,
    ServiceInstance,
    ServiceInstanceLink,
    model_accessor,
)


class AccessServiceInstancePolicy(Policy):
    model_name = "AccessServiceInstance"

    def handle_create(self, si):
        return self.handle_update(si)

    def handle_update(self, si):
        if (si.link_deleted_count > 0) and (not si.provided_links.exists()):
            # If this instance has no links pointing to it, delete
            self.handle_delete(si)
            if AccessServiceInstance.objects.filter(id=si.id).exists():
                si.delete()
            return

        self.create_eastbound_instance(si)
        self.associate_onu_device(si)

    def handle_delete(self, si):
        pass

    def create_eastbound_instance(self, si):
        for link in si.owner.subscribed_dependencies.all():
            if "onos" in link.provider_service.name.lower():
                continue
            provider_service = link.provider_service.leaf_model
            valid_provider_service_instance = provider_service.validate_links(si)
            if not valid_provider_service_instance:
                provider_service.acquire_service_instance(si)

    def associate_onu_device(self, si):
        self.logger.debug("MODEL_POLICY: attaching OnuUnit to AccessServiceInstance %s" % si.id)

        base_si = ServiceInstance.objects.get(id=si.id)
        try:
            onu_serial_number = base_si.get_westbound_service_instance_properties("onu_device")
        except Exception:
            raise Exception(
                "AccessServiceInstance %s has no westbound ServiceInstance specifying the onu_device" % si.id
            )

        try:
            onu = OnuUnit.objects.get(serial_number=onu_serial_number)
        except IndexError:
            raise Exception("OnuUnit with serial number %s can't be found" % onu_serial_number)

        si.onu_unit_id = onu.id
        si.save_changed_fields()
