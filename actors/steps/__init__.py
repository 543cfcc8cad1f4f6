"""The step API: the base classes synchronizer code subclasses."""

from ._base import (
    DeferredException,
    InnocuousException,
    Policy,
    PullStep,
    SyncStep,
    limit_problems,
    model_names,
)
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
