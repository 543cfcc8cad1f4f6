"""The actor runtime: a supervisor and its children, one actor per step."""

from . import messages, produce  # produce registers the xoskafka.XOSKafkaProducer seam
from ._child import ChildActor, ChildContext, ChildState, ObjectLocks, StepExit
from ._inspect import StatusTree, Why, status_tree, why
from ._synchronizer import Synchronizer
from .clock import Clock, FakeClock, RealClock
from .messages import ChildStatus
from .settings import RuntimeSettings
from .supervisor import ChildSpec, Supervisor

__all__ = [
    "ChildActor",
    "ChildContext",
    "ChildSpec",
    "ChildState",
    "ChildStatus",
    "Clock",
    "FakeClock",
    "ObjectLocks",
    "RealClock",
    "RuntimeSettings",
    "StatusTree",
    "StepExit",
    "Supervisor",
    "Synchronizer",
    "Why",
    "messages",
    "produce",
    "status_tree",
    "why",
]
