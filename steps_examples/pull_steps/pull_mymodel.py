# The reference's pull step, verbatim. It creates a new John Doe on every run, so
# config.yaml runs it once a minute (runtime.pull_period: 60).
from synchronizers.new_base.pullstep import PullStep
from synchronizers.new_base.modelaccessor import OLTDevice

from xosconfig import Config
from multistructlog import create_logger

log = create_logger(Config().get('logging'))

from synchronizers.new_base.modelaccessor import MyModel

class MyModelPullStep(PullStep):
    def __init__(self):
        super(MyModelPullStep, self).__init__(observed_model=OLTDevice)

    def pull_records(self):
        log.info("pulling MyModels")
        # create an empty model
        o = MyModel()
        # code to fetch information
        # populate the model
        o.first_name = "John"
        o.last_name = "Doe"
        o.no_sync = True # this is required to prevent the synchronizer to be invoked and start a loop
        o.save()
