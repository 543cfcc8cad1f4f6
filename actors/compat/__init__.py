"""The import paths of code written for the original XOS synchronizer framework.

Existing synchronizers import ``xosconfig``, ``multistructlog``, ``xosapi.orm``,
``synchronizers.new_base.*`` or ``xossynchronizer.*``. Inside
:func:`activated` those names resolve to this framework's classes (through an
import hook that answers only there, so the original packages can still be
installed and used beside ours); :func:`load_synchronizer` imports a
synchronizer's convenience modules and discovers its steps that way. See
``docs/porting.md``.
"""

from ._activate import activated
from ._aliases import SyncInstanceUsingAnsible
from ._finder import FINDER, CompatFinder
from ._loading import Loaded, load_synchronizer
from ._modelaccessor import ModelLink, NoAccessorError, UnknownModelError, UnknownModelImportError
from ._modules import MODULES
from ._state import current_accessor, is_active
from ._xosconfig import XOSConfig, create_logger

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
    "activated",
    "create_logger",
    "current_accessor",
    "is_active",
    "load_synchronizer",
]
