from xossynchronizer.model_policies.policy import Policy
from xossynchronizer.modelaccessor import ServiceInstanceLink, model_accessor


class HomeSubscriberPolicy(Policy):
    """The subscriber side of the chain, shaped like rcord's RCORDSubscriberPolicy."""

    model_name = "HomeSubscriber"

    def handle_create(self, si):
        return self.handle_update(si)

    def handle_update(self, si):
        for link in si.owner.subscribed_dependencies.all():
            si_class = link.provider_service.get_service_instance_class_name()
            self.logger.info("MODEL_POLICY: HomeSubscriber %s creating %s" % (si, si_class))

            provider_service = link.provider_service.leaf_model
            valid_provider_service_instance = provider_service.validate_links(si)
            if not valid_provider_service_instance:
                provider_service.acquire_service_instance(si)
            else:
                for provider_si in valid_provider_service_instance:
                    provider_si.save(always_update_timestamp=True)

    def handle_delete(self, si):
        pass
