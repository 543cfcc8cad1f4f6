# The reference's convenience method, verbatim: every MyModel object gets `full_name`.
from xosapi.orm import ORMWrapper, register_convenience_wrapper

from xosconfig import Config
from multistructlog import create_logger

log = create_logger(Config().get('logging'))

class ORMWrapperMyModel(ORMWrapper):

    @property
    def full_name(self):
        return "%s %s" % (self.first_name, self.last_name)  # noqa: UP031 (verbatim from the reference)

register_convenience_wrapper("MyModel", ORMWrapperMyModel)
