"""actors: an actor-model synchronizer framework, drop-in for code written for XOS synchronizers.

The public API in one place; see ``docs/`` for the guides.
"""

from actors.config import Config, ConfigError, load_config
from actors.models import Schema, load_schema
from actors.orm import DoesNotExist, ModelAccessor, ORMWrapper, acting_as, register_convenience_wrapper
from actors.runtime import ChildStatus, FakeClock, RealClock, Supervisor, Synchronizer
from actors.steps import DeferredException, EventStep, InnocuousException, Policy, PullStep, SyncStep
from actors.store import Caller, Store

__all__ = [
    "Caller",
    "ChildStatus",
    "Config",
    "ConfigError",
    "DeferredException",
    "DoesNotExist",
    "EventStep",
    "FakeClock",
    "InnocuousException",
    "ModelAccessor",
    "ORMWrapper",
    "Policy",
    "PullStep",
    "RealClock",
    "Schema",
    "Store",
    "Supervisor",
    "SyncStep",
    "Synchronizer",
    "acting_as",
    "load_config",
    "load_schema",
    "produce",
    "register_convenience_wrapper",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``produce`` imports kafka-python: only when asked for.
    if name == "produce":
        from actors.runtime.produce import produce

        return produce
    raise AttributeError(f"module 'actors' has no attribute {name!r}")
