"""The import paths of code written for the original XOS synchronizer framework.

Existing synchronizers import ``xosconfig``, ``multistructlog``, ``xosapi.orm``,
``synchronizers.new_base.*``, ``xossynchronizer.*``, ``xosapi.convenience.*`` or
``xoskafka``; a service's ``models.py`` imports ``models_decl`` and ``xos.exceptions``. Inside
:func:`activated` those names resolve to this framework's classes (through an
import hook that answers only there, so the original packages can still be
installed and used beside ours); :func:`load_synchronizer` imports a
synchronizer's convenience modules and discovers its steps that way. See
``docs/porting.md``.
"""

from ._activate import activated
from ._aliases import SyncInstanceUsingAnsible
from ._custom_python import load_models_py
from ._finder import FINDER, CompatFinder
from ._loading import Loaded, load_synchronizer
from ._modelaccessor import ModelLink, NoAccessorError, UnknownModelError, UnknownModelImportError
from ._modules import MODULES
from ._state import current_accessor, is_active
from ._xosconfig import XOSConfig, create_logger
from ._xoskafka import XOSKafkaProducer, set_event_producer

__all__ = [
    "FINDER",
    "MODULES",
    "CompatFinder",
    "Loaded",
    "ModelLink",
    "NoAccessorError",
    "SyncInstanceUsingAnsible",
    "UnknownModelError",
    "UnknownModelImportError",
    "XOSConfig",
    "XOSKafkaProducer",
    "activated",
    "create_logger",
    "current_accessor",
    "is_active",
    "load_models_py",
    "load_synchronizer",
    "set_event_producer",
]
