import json

from helpers import OnboardingHelpers
from xossynchronizer.event_steps.eventstep import EventStep


class ONUEventStep(EventStep):
    topics = ["onboarding.onu.events"]
    technology = "kafka"

    max_onu_retry = 50

    def __init__(self, *args, **kwargs):
        super(ONUEventStep, self).__init__(*args, **kwargs)

    def process_event(self, event):
        value = json.loads(event.value)
        self.log.info("onu.events: received event", value=value)

        si = OnboardingHelpers.find_or_create_si(self.model_accessor, self.log, value)
        if value["status"] == "activated":
            si.no_sync = False
            si.uni_port_id = int(value["portNumber"])
            si.of_dpid = value["deviceId"]
            si.oper_onu_status = "ENABLED"
            si.save_changed_fields(always_update_timestamp=True)
        elif value["status"] == "disabled":
            si.oper_onu_status = "DISABLED"
            si.save_changed_fields(always_update_timestamp=True)
        else:
            self.log.warn("onu.events: Unknown status value: %s" % value["status"], value=value)
