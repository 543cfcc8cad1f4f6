# The reference's event step, verbatim except for one fix: the reference calls
# `super(MyEventStep, self)`, a class that does not exist (a typo, NameError at
# construction); it is `super(MyModelEventStep, self)` here.

import json
from synchronizers.new_base.eventstep import EventStep
from synchronizers.new_base.modelaccessor import MyModel
from xosconfig import Config
from multistructlog import create_logger

log = create_logger(Config().get('logging'))

class MyModelEventStep(EventStep):
    technology = "kafka"
    topics = ["MyTopic"]

    def __init__(self, *args, **kwargs):
        super(MyModelEventStep, self).__init__(*args, **kwargs)

    def process_event(self, event):
        value = json.loads(event.value)
        first_name = value["first_name"]
        last_name = value["last_name"]

        # See if the object already exists
        objs = MyModel.filter(first_name=first_name, last_name=last_name)
        if objs:
            return

        # Create a new object
        obj = MyModel()
        obj.first_name = first_name
        obj.last_name = last_name
        obj.save(always_update_timestamp = True)
