import json

from helpers import OnboardingHelpers
from xossynchronizer.event_steps.eventstep import EventStep


class SubscriberAuthEventStep(EventStep):
    topics = ["onboarding.authentication.events"]
    technology = "kafka"

    def __init__(self, *args, **kwargs):
        super(SubscriberAuthEventStep, self).__init__(*args, **kwargs)

    def process_event(self, event):
        value = json.loads(event.value)
        self.log.info("authentication.events: Got event for subscriber", event_value=value)

        si = OnboardingHelpers.find_or_create_si(self.model_accessor, self.log, value)
        si.authentication_state = value["authenticationState"]
        si.save_changed_fields(always_update_timestamp=True)
