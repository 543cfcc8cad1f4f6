from __future__ import absolute_import

import os
import sys

from xossynchronizer.model_policies.policy import Policy

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import put_signal, wait_for_signal

DUP_FIELD_NAMES = [
    "name",
    "some_integer",
    "some_other_integer",
    "optional_string",
    "optional_float_with_default",
]


class ProbeServiceInstancePolicy(Policy):
    model_name = "ProbeServiceInstance"

    def handle_create(self, model):
        self.logger.debug("MODEL_POLICY: enter handle_create for ProbeServiceInstance %s" % model.id)
        self.handle_update(model)

    def handle_update(self, model):
        self.logger.info("TEST:POLICY_UPDATE_START", model_class=model.model_name, id=model.id)
        put_signal(self.logger, model, "policy_start")

        if model.policy_after_sync:
            wait_for_signal(self.logger, model, "sync_done")

        if model.update_during_policy:
            model.some_other_integer = model.some_other_integer + 1
            model.save(update_fields=["some_other_integer"])

        if model.create_duplicate:
            dups = self.model_accessor.ProbeDuplicate.objects.filter(serviceinstance_id=model.id)
            if dups:
                dup = dups[0]
            else:
                dup = self.model_accessor.ProbeDuplicate(serviceinstance=model)
            for fieldname in DUP_FIELD_NAMES:
                value = getattr(model, fieldname)
                if value is not None:
                    setattr(dup, fieldname, value)
            dup.save()
        else:
            for dup in self.model_accessor.ProbeDuplicate.objects.filter(serviceinstance_id=model.id):
                dup.delete()

    def after_policy_save(self, model):
        put_signal(self.logger, model, "policy_done")
        self.logger.info("TEST:POLICY_DONE", model_class=model.model_name, id=model.id)

    def handle_delete(self, model):
        self.logger.debug("MODEL_POLICY: enter handle_delete for ProbeServiceInstance %s" % model.id)
