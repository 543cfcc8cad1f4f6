# The reference's model policy: the header is verbatim, the handler bodies only log.
from synchronizers.new_base.modelaccessor import MyServiceInstance, ServiceInstanceLink, model_accessor
from synchronizers.new_base.policy import Policy

class MyServiceInstancePolicy(Policy):
    model_name = "MyServiceInstance"

    def handle_create(self, model):
        self.logger.info("MyServiceInstance created", greeting=model.greeting, **model.tologdict())

    def handle_update(self, model):
        self.logger.info("MyServiceInstance updated", greeting=model.greeting, **model.tologdict())

    def handle_delete(self, model):
        self.logger.info("MyServiceInstance deleted", **model.tologdict())
