"""The messages actors send each other: small frozen dataclasses, the whole protocol in one place.

Who sends what:

- change feed -> sync-step and policy actors: :class:`Changed`
- supervisor -> change feed: :class:`Route`, :class:`Unroute`
- supervisor or timer -> any worker actor: :class:`Resync`, :class:`Wake`, :class:`Tick`
- worker actor -> itself: :class:`Drain` (process the next queued object)
- anyone -> worker actor: :class:`IsIdle` (reply: ``bool``)
- worker actor (dying) -> supervisor: :class:`ChildDied`
- timers -> supervisor: :class:`CheckDeadlines`, :class:`RestartChild`
- anyone -> supervisor: :class:`GetStatus` (reply: ``dict[str, ChildStatus]``),
  :class:`IsIdle` (reply: ``bool``), :class:`Shutdown`
- event-step actor -> itself: :class:`Connect` (build the consumer; again after a backoff
  while no broker answers), :class:`Poll` (poll once, handle a slice of events);
  its timers: :class:`RetryDue` (a failed event's wait is over); its dead-letter
  producer: :class:`DeadLettered` (a dead-letter write ended); its watchdog timer:
  :class:`CheckProgress` (look for owned partitions that stopped moving)
- sync-step actor -> one of its workers (``runtime.step_concurrency`` > 1): :class:`Work`
  (handle this object); the worker -> the sync-step actor: :class:`WorkDone` (how it ended);
  a timer -> the sync-step actor: :class:`RateReady` (its rate limit has a token again),
  :class:`Withdraw` (take back the objects queued too long behind a busy worker)
- worker actor -> supervisor: :class:`PhaseChanged` (it runs, is degraded or stalled: the
  supervisor owns every child's :class:`Phase`)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pykka

from actors.store import ChangeNotice

__all__ = [
    "Changed",
    "CheckDeadlines",
    "CheckProgress",
    "ChildDied",
    "ChildStatus",
    "Connect",
    "DeadLettered",
    "Drain",
    "GetStatus",
    "IsIdle",
    "Phase",
    "PhaseChanged",
    "Poll",
    "RateReady",
    "RestartChild",
    "Resync",
    "RetryDue",
    "Route",
    "Shutdown",
    "Tick",
    "Unroute",
    "Wake",
    "Withdraw",
    "Work",
    "WorkDone",
]


@dataclass(frozen=True)
class Changed:
    """A committed write that concerns the receiver (a model it observes or depends on)."""

    notice: ChangeNotice


@dataclass(frozen=True)
class Route:
    """Send notices of these models (and models derived from them) to ``target``."""

    name: str
    target: pykka.ActorRef[Any]
    models: frozenset[str]


@dataclass(frozen=True)
class Unroute:
    name: str


@dataclass(frozen=True)
class Resync:
    """Re-read the dirty set from the store (on start, after a restart, periodically)."""

    reason: str = "period"


@dataclass(frozen=True)
class Drain:
    """Process the next queued object (an actor sends this to itself, one at a time)."""


@dataclass(frozen=True)
class Wake:
    """A timer fired: objects whose backoff or wait ended are due again."""


@dataclass(frozen=True)
class Tick:
    """Time for a pull step to run."""


@dataclass(frozen=True)
class IsIdle:
    """Reply ``True`` when nothing is queued or running."""


@dataclass(frozen=True)
class ChildDied:
    """A child's actor stopped on an error (sent by the child as it dies)."""

    name: str
    generation: int
    error: str


@dataclass(frozen=True)
class CheckDeadlines:
    """Look for a child whose handler runs past its deadline."""


@dataclass(frozen=True)
class RestartChild:
    name: str
    generation: int


@dataclass(frozen=True)
class GetStatus:
    pass


@dataclass(frozen=True)
class Shutdown:
    """Stop every child: no new work, in-flight handlers get ``timeout`` seconds."""

    timeout: float = 10.0


@dataclass(frozen=True)
class ChildStatus:
    """What the supervisor reports about one child."""

    name: str
    kind: str
    state: str
    restarts: int = 0
    last_error: str | None = None
    done: int = 0
    failed: int = 0
    queue_depth: int = 0
    busy_for: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: Of ``queue_depth``, the objects ready to run now (the API's backpressure counts these).
    queued: int = 0


@dataclass(frozen=True)
class Connect:
    """Event-step actor: build the Kafka consumer (sent again by a timer while no broker answers)."""


@dataclass(frozen=True)
class Poll:
    """Event-step actor: poll the consumer once and handle a slice of the buffered events."""


@dataclass(frozen=True)
class RetryDue:
    """Event-step actor: the event at ``offset`` of ``topic``/``partition`` may be tried again."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLettered:
    """Event-step actor: the dead-letter write of that event ended (``error`` is ``None`` if stored)."""

    topic: str
    partition: int
    offset: int
    error: str | None = None


# -- event-step progress watchdog --------------------------------------------------------
@dataclass(frozen=True)
class CheckProgress:
    """Event-step actor: look for owned partitions with events left that made no progress lately."""


# -- sync-step workers (concurrency per step) -------------------------------------
@dataclass(frozen=True)
class Work:
    """Sync-step actor -> an idle worker: take the object's locks, run its handler, write its status.

    ``row`` is the row the actor checked (pending, not in backoff, dependencies enacted).
    ``ticket`` is set on a Work queued behind the one the worker runs: the first to take it
    (``ticket.acquire(blocking=False)``) has the object, the worker when it gets to it or
    the actor withdrawing it to give it to another worker (see :class:`Withdraw`); a worker
    that finds it taken answers ``"withdrawn"`` and does nothing else.

    ``claim`` is set on a shared backend (PostgreSQL): the object's cross-process claim,
    taken by the actor (a ``_workers.HeldClaim``), and ``row`` was read under it. The
    worker neither claims nor reads again; the claim is let go once the object's
    status is stored (see ``HeldClaim`` for who lets it go).
    """

    key: tuple[str, int]
    model: str
    row: Mapping[str, Any]
    reply_to: pykka.ActorRef[Any]
    ticket: Any = None
    claim: Any = None


@dataclass(frozen=True)
class WorkDone:
    """Worker ``slot`` -> its sync-step actor: how the :class:`Work` for ``key`` ended.

    ``outcome`` is ``"done"`` (handler returned, status written), ``"failed"`` (handler
    raised, failure status written; due again at ``retry_at`` unless it is ``None``),
    ``"refused"`` (another actor or replica holds the object), ``"skipped"`` (no longer
    pending, or purged), ``"withdrawn"`` (the actor took the queued Work back: only the
    worker's slot is freed), ``"exit"`` (step code exited: the step is replaced) or
    ``"error"`` (the framework failed: the step is replaced); ``error`` says what.

    ``writes`` are the object's status writes, ``(model, id, fields)`` in order, that the
    worker left to the sync-step actor: it commits them with the other writes of its
    next drain (one transaction for many objects) and applies the outcome after that
    commit, and lets the object's claim go after it (a shared backend). Empty when the
    worker wrote them itself (its actor stopping, replaced or gone; or ``durable``).
    """

    key: tuple[str, int]
    slot: int
    outcome: str
    retry_at: float | None = None
    error: str | None = None
    writes: tuple[tuple[str, int, Mapping[str, Any]], ...] = ()


@dataclass(frozen=True)
class RateReady:
    """Sync-step actor's timer: its rate limit has a token again, draining may go on."""


# -- child phases (the supervisor owns each child's phase; children report theirs) ----
class Phase(StrEnum):
    """A child's lifecycle phase, as :class:`ChildStatus` ``state`` reports it (a ``str``)."""

    STARTING = "starting"
    RUNNING = "running"
    #: Working, with a dependency down (an event step's broker).
    DEGRADED = "degraded"
    #: Working, with some of its work not moving (an event step's partitions).
    STALLED = "stalled"
    RESTARTING = "restarting"
    #: Down for good: too many restarts inside the restart window.
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PhaseChanged:
    """Worker actor -> supervisor: generation ``generation`` of child ``name`` is now in ``phase``.

    A child reports :attr:`Phase.RUNNING`, :attr:`Phase.DEGRADED` or :attr:`Phase.STALLED`;
    the supervisor sets the others itself.
    """

    name: str
    generation: int
    phase: Phase


# -- the change feed, a commit at a time ----------------------------------------
@dataclass(frozen=True)
class ChangedMany:
    """Store -> change-feed actor: the notices of one commit (a drain batch's status writes), in order."""

    notices: tuple[ChangeNotice, ...]


# -- sync-step workers: objects queued behind a busy worker ----------------------------
@dataclass(frozen=True)
class Withdraw:
    """Sync-step actor's (real-time) timer: objects queued behind a busy worker may have waited too long.

    Each one queued longer than ``AHEAD_WINDOW`` whose worker has not started it (the
    actor wins its :class:`Work` ``ticket``) goes back to the front of the queue, for
    another worker: a handler that hangs delays no object but its own.
    """
