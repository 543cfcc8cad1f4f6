import os
import sys

from helpers import OnboardingHelpers
from xossynchronizer.model_policies.policy import Policy

sync_path = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
sys.path.append(sync_path)


class OnboardingWhiteListEntryPolicy(Policy):
    model_name = "OnboardingWhiteListEntry"

    def handle_create(self, whitelist):
        self.handle_update(whitelist)

    def validate_onu_state(self, si):
        [valid, message] = OnboardingHelpers.validate_onu(self.model_accessor, self.logger, si)
        if valid:
            si.admin_onu_state = "ENABLED"
        else:
            si.admin_onu_state = "DISABLED"
        si.status_message = message
        si.save_changed_fields(always_update_timestamp=True)

    def handle_update(self, whitelist):
        self.logger.debug("MODEL_POLICY: handle_update for OnboardingWhiteListEntry", whitelist=whitelist)
        for si in self.model_accessor.OnboardingServiceInstance.objects.all():
            if si.serial_number.lower() != whitelist.serial_number.lower():
                continue
            self.validate_onu_state(si)

        whitelist.backend_need_delete_policy = True
        whitelist.save_changed_fields()

    def handle_delete(self, whitelist):
        self.logger.debug(
            "MODEL_POLICY: handle_delete for OnboardingWhiteListEntry", serial_number=whitelist.serial_number
        )
        assert whitelist.owner

        sis = self.model_accessor.OnboardingServiceInstance.objects.all()
        sis = [si for si in sis if si.serial_number.lower() == whitelist.serial_number.lower()]
        for si in sis:
            self.validate_onu_state(si)

        whitelist.backend_need_reap = True
        whitelist.save_changed_fields()
