# The reference's sync step, verbatim (the class and its two methods).

from synchronizers.new_base.SyncInstanceUsingAnsible import SyncStep
from synchronizers.new_base.modelaccessor import MyModel

from xosconfig import Config
from multistructlog import create_logger

log = create_logger(Config().get('logging'))

class SyncMyModel(SyncStep):
    provides = [MyModel]

    observes = MyModel

    def sync_record(self, o):
        log.info("sync'ing object", object=str(o), **o.tologdict())

    def delete_record(self, o):
        log.info("deleting object", object=str(o), **o.tologdict())
