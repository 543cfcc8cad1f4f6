"""The actor runtime: a supervisor and its children, one actor per step.

Module names follow one rule: a public module (no leading underscore) is one users import by
its path: the step actors (``sync``, ``policy``, ``pull``, ``events``), the message protocol
(``messages``), the injectable ``clock`` and the event producer (``produce``). Every other
module is private; what it offers to users is exported here.
"""

from . import messages, produce  # produce registers the xoskafka.XOSKafkaProducer seam
from ._child import ChildContext, ChildState
from ._inspect import StatusTree, Why, status_tree, why
from ._settings import RuntimeSettings
from ._supervisor import ChildSpec, Supervisor
from ._synchronizer import Synchronizer
from .clock import Clock, FakeClock, RealClock
from .messages import ChildStatus

__all__ = [
    "ChildContext",
    "ChildSpec",
    "ChildState",
    "ChildStatus",
    "Clock",
    "FakeClock",
    "RealClock",
    "RuntimeSettings",
    "StatusTree",
    "Supervisor",
    "Synchronizer",
    "Why",
    "messages",
    "produce",
    "status_tree",
    "why",
]
