"""The step API: the base classes synchronizer code subclasses."""

from ._base import model_names
from ._discovery import (
    LoadError,
    StepFactory,
    abstract_step,
    describe,
    discover,
    discover_factories,
    import_file,
    import_folder,
    import_session,
    instantiate,
    is_abstract_step,
    unload_namespace,
)
from ._eventstep import EventStep, validate_event_step
from ._exceptions import DeferredException, InnocuousException
from ._policy import Policy
from ._pullstep import PullStep
from ._syncstep import SyncStep, limit_problems

__all__ = [
    "DeferredException",
    "EventStep",
    "InnocuousException",
    "LoadError",
    "Policy",
    "PullStep",
    "StepFactory",
    "SyncStep",
    "abstract_step",
    "describe",
    "discover",
    "discover_factories",
    "import_file",
    "import_folder",
    "import_session",
    "instantiate",
    "is_abstract_step",
    "limit_problems",
    "model_names",
    "unload_namespace",
    "validate_event_step",
]
