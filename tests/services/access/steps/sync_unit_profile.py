from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.modelaccessor import UnitProfile, model_accessor
from xossynchronizer.steps.syncstep import SyncStep

log = create_logger(Config().get("logging"))


class SyncUnitProfile(SyncStep):
    provides = [UnitProfile]
    observes = UnitProfile

    def sync_record(self, model):
        log.info("Synching UnitProfile", object=str(model), **model.tologdict())

    def delete_record(self, model):
        log.info("Deleting UnitProfile", object=str(model), **model.tologdict())
