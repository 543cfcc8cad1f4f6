import json

from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.event_steps.eventstep import EventStep

log = create_logger(Config().get("logging"))


class WebPageEventStep(EventStep):
    topics = ["WebPageEvent"]
    technology = "kafka"

    def __init__(self, *args, **kwargs):
        super(WebPageEventStep, self).__init__(*args, **kwargs)

    def process_event(self, event):
        value = json.loads(event.value)
        service_instance_name = value["service_instance"]
        tenant_message = value["tenant_message"]

        objs = self.model_accessor.WebPageServiceInstance.objects.filter(name=service_instance_name)
        if not objs:
            raise Exception("failed to find %s" % service_instance_name)

        for obj in objs:
            obj.tenant_message = tenant_message
            obj.save(always_update_timestamp=True)
