import os
import sys

from helpers import OnboardingHelpers
from xossynchronizer.model_policies.policy import Policy

sync_path = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
sys.path.append(sync_path)


class OnboardingServiceInstancePolicy(Policy):
    model_name = "OnboardingServiceInstance"

    def handle_create(self, si):
        self.logger.debug("MODEL_POLICY: handle_create for OnboardingServiceInstance %s " % si.id)
        self.handle_update(si)

    def handle_update(self, si):
        self.logger.debug(
            "MODEL_POLICY: handle_update for OnboardingServiceInstance %s " % (si.id),
            onu_state=si.admin_onu_state,
            authentication_state=si.authentication_state,
        )
        self.process_onu_state(si)
        self.process_auth_state(si)
        si.save_changed_fields()

    def process_onu_state(self, si):
        [valid, message] = OnboardingHelpers.validate_onu(self.model_accessor, self.logger, si)
        si.status_message = message
        if valid:
            si.admin_onu_state = "ENABLED"
        else:
            si.admin_onu_state = "DISABLED"

    def process_auth_state(self, si):
        auth_msgs = {
            "AWAITING": " - Awaiting Authentication",
            "REQUESTED": " - Authentication requested",
            "STARTED": " - Authentication started",
            "APPROVED": " - Authentication succeeded",
            "DENIED": " - Authentication denied",
        }
        if si.admin_onu_state == "DISABLED" or si.oper_onu_status == "DISABLED":
            si.authentication_state = "AWAITING"
        else:
            si.status_message += auth_msgs[si.authentication_state]

    def handle_delete(self, si):
        pass
