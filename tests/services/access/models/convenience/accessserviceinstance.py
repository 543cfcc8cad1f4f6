import logging as log

from xosapi.convenience.serviceinstance import ORMWrapperServiceInstance
from xosapi.orm import ORMWrapper, register_convenience_wrapper


class ORMWrapperAccessServiceInstance(ORMWrapperServiceInstance):
    def get_olt_unit_by_subscriber(self):
        return self.get_pon_port_by_subscriber().olt_unit

    def get_pon_port_by_subscriber(self):
        si = self.stub.ServiceInstance.objects.get(id=self.id)
        onu_sn = si.get_westbound_service_instance_properties("onu_device")
        onu = self.stub.OnuUnit.objects.get(serial_number=onu_sn)
        return onu.pon_port

    @property
    def switch_datapath_id(self):
        try:
            olt = self.get_olt_unit_by_subscriber()
            if olt:
                return olt.switch_datapath_id
            return None
        except Exception as e:
            log.exception("Error while reading switch_datapath_id: %s" % e)
            return None


register_convenience_wrapper("AccessServiceInstance", ORMWrapperAccessServiceInstance)
