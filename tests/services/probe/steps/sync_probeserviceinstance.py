from __future__ import absolute_import

import os
import sys

from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.modelaccessor import ProbeServiceInstance
from xossynchronizer.steps.syncstep import SyncStep

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import put_signal, wait_for_signal

log = create_logger(Config().get("logging"))


class SyncProbeServiceInstance(SyncStep):
    provides = [ProbeServiceInstance]
    observes = [ProbeServiceInstance]
    requested_interval = 0

    def sync_record(self, model):
        log.info(
            "TEST:SYNC_START",
            model_class=model.model_name,
            model_name=model.name,
            id=model.id,
            some_integer=model.some_integer,
            some_other_integer=model.some_other_integer,
        )
        put_signal(log, model, "sync_start")

        if model.sync_after_policy:
            wait_for_signal(log, model, "policy_done")

        if model.update_during_sync:
            model.some_integer = model.some_integer + 1
            model.save(update_fields=["some_integer"])

    def after_sync_save(self, model):
        put_signal(log, model, "sync_done")
        log.info("TEST:SYNC_DONE", model_class=model.model_name, model_name=model.name, id=model.id)

    def delete_record(self, model):
        log.info("Deleting ProbeServiceInstance", object=str(model))
        put_signal(log, model, "deleted")
