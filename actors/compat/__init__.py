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
from ._custom_python import load_models_py
from ._loading import Loaded, load_synchronizer
from ._modelaccessor import UnknownModelImportError
from ._xoskafka import set_event_producer

__all__ = [
    "Loaded",
    "UnknownModelImportError",
    "activated",
    "load_models_py",
    "load_synchronizer",
    "set_event_producer",
]
