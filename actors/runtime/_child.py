"""What every supervised actor shares: its context, its own live state, user-code calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pykka

from actors.logs import get_logger, traceback_if_debug
from actors.observe import NULL_METRICS, NullMetrics
from actors.orm import ModelAccessor, acting_as
from actors.steps import DeferredException
from actors.store import Caller, WriteContext

from ._settings import RuntimeSettings
from ._status import error_text
from .clock import Clock, Timer
from .messages import ChildDied, IsIdle, Phase

if TYPE_CHECKING:
    from ._isolation import IsolatedStep, StepIsolation

__all__ = [
    "ChildActor",
    "ChildContext",
    "ChildState",
    "ObjectLocks",
    "StepExit",
    "exits_as_step_exit",
    "tell_quietly",
]

T = TypeVar("T")


def tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    """``ref.tell(message)``, ignoring an actor that has stopped (for timers and client callbacks)."""
    with suppress(pykka.ActorDeadError):
        ref.tell(message)


class StepExit(Exception):
    """Step code raised ``SystemExit`` or ``KeyboardInterrupt``: the actor is replaced, nothing else stops."""


class _ExitsAsStepExit(AbstractContextManager["_ExitsAsStepExit"]):
    """``with exits_as_step_exit:``: a ``BaseException`` not an ``Exception`` leaves as :class:`StepExit`.

    pykka stops every actor of the process on ``SystemExit`` or ``KeyboardInterrupt``;
    raised by step code (or anywhere in a handler) they must stop one actor only.
    """

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        if exc is not None and not isinstance(exc, Exception):
            raise StepExit(f"{type(exc).__name__}: {exc}") from exc


#: The one place ``SystemExit`` / ``KeyboardInterrupt`` become :class:`StepExit` (stateless, reentrant).
exits_as_step_exit = _ExitsAsStepExit()


@dataclass
class ChildState:
    """One child generation's live counters and its own view of its phase.

    Written only by the child's actor (and its workers), in their threads; the
    supervisor reads it (status, the deadline watchdog) and builds a fresh one for
    each generation, carrying the counts over. The supervisor owns the phase it
    reports: a change of ``state`` here is passed to ``on_phase``, which the
    supervisor sets to send itself a :class:`~actors.runtime.messages.PhaseChanged`.
    """

    name: str
    kind: str
    #: The phase as the child sees it: a :class:`Phase` (a plain string is converted).
    state: str = Phase.STARTING
    last_error: str | None = None
    done: int = 0
    failed: int = 0
    queue_depth: int = 0
    #: Of ``queue_depth``, the objects ready to run now (not waiting for a retry or a dependency).
    queued: int = 0
    #: When each running handler call started, by slot (0: the actor itself; 1..K: its workers).
    busy: dict[int, float] = field(default_factory=dict)
    busy_deadline: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: Told each change of ``state`` (None: no supervisor listens).
    on_phase: Callable[[Phase], None] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "state":
            object.__setattr__(self, name, value)
            return
        phase = Phase(value)
        previous = self.__dict__.get("state")
        object.__setattr__(self, name, phase)
        report = self.__dict__.get("on_phase")
        if previous is not None and previous != phase and report is not None:
            report(phase)

    @property
    def busy_since(self) -> float | None:
        """When the oldest running handler call started (None: none runs)."""
        return min(list(self.busy.values()), default=None)


class ObjectLocks:
    """Objects being synced right now, across all sync-step actors of one supervisor.

    Keys are ``(root model, id)``. A replaced (hung) actor keeps its lock until its
    call returns, so its replacement never syncs the same object at the same time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[str, int]] = set()

    def try_acquire(self, key: tuple[str, int]) -> bool:
        with self._lock:
            if key in self._held:
                return False
            self._held.add(key)
            return True

    def release(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._held.discard(key)


@dataclass
class ChildContext:
    """Everything a child actor (one generation of it) is given by its supervisor.

    The supervisor signals the child through two events, the only state it shares
    with the child's thread besides messages (a message waits behind the mailbox;
    these must reach a busy or hung actor): ``retired`` (this generation has been
    replaced: its later messages are ignored) and ``stopping`` (shutdown: no new work).
    """

    name: str
    state: ChildState
    accessor: ModelAccessor
    clock: Clock
    settings: RuntimeSettings
    supervisor: pykka.ActorRef[Any] | None = None
    generation: int = 0
    locks: ObjectLocks = field(default_factory=ObjectLocks)
    #: Entered around every call into user code (the compat import paths, current config).
    user_context: Callable[[], AbstractContextManager[Any]] = nullcontext
    deadline: float | None = None
    #: Process isolation of steps and the crash records of calls (None: neither).
    isolation: StepIsolation | None = None
    #: The synchronizer's metrics (recording nothing unless its HTTP endpoint is served).
    metrics: NullMetrics = NULL_METRICS
    #: Set by the supervisor when it replaces this generation (a handler ran past its deadline).
    retired: threading.Event = field(default_factory=threading.Event)
    #: Set by the supervisor at shutdown, for every child at once.
    stopping: threading.Event = field(default_factory=threading.Event)


class ChildActor(pykka.ThreadingActor):
    """Base of the supervised actors.

    Subclasses map message types to methods in ``handlers``. A handler that raises
    stops the actor and tells the supervisor (:class:`ChildDied`); user code is
    called through :meth:`call_user`, which turns ``SystemExit`` and
    ``KeyboardInterrupt`` into :class:`StepExit` so that pykka never stops every
    actor of the process, and marks the actor busy for the deadline watchdog.
    """

    kind: ClassVar[str] = "child"
    # A hung step must not keep the process alive at exit.
    use_daemon_thread = True
    #: This actor's slot in ``ChildState.busy`` (a sync step's workers have 1..K).
    slot: int = 0

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__()
        self.ctx = ctx
        # actors.runtime.sync, .policy, .pull, .event, .changefeed: levels settable per kind
        self.log = get_logger(f"actors.runtime.{self.kind}").bind(step=ctx.name)
        self.handlers: dict[type, Callable[[Any], Any]] = {IsIdle: lambda _m: self.is_idle()}
        self._timers: dict[str, Timer] = {}
        #: Child processes of this actor's isolated steps (ended with the actor).
        self._processes: list[IsolatedStep] = []

    @property
    def record_name(self) -> str:
        """The name of this actor's slot in the crash records (a worker's adds ``#slot``)."""
        return self.ctx.name if not self.slot else f"{self.ctx.name}#{self.slot}"

    @property
    def stale(self) -> bool:
        """True once the supervisor has replaced this actor (its messages are then ignored)."""
        return self.ctx.retired.is_set()

    @property
    def stopping(self) -> bool:
        """True once the supervisor is shutting down: no new work is taken."""
        return self.ctx.stopping.is_set()

    def on_start(self) -> None:
        if not self.stale:
            self.ctx.state.state = Phase.RUNNING

    def on_receive(self, message: Any) -> Any:
        if self.stale:
            self.actor_ref.stop(block=False)
            return None
        if self.stopping and type(message) is not IsIdle:
            return None  # shutting down: no new work
        handler = self.handlers.get(type(message))
        if handler is None:
            self.log.warning("unknown message", message=repr(message))
            return None
        with exits_as_step_exit:  # never let pykka stop every actor
            return handler(message)

    def schedule(self, slot: str, delay: float, message: Any) -> None:
        """Send ``message`` to this actor after ``delay`` seconds; replaces the slot's earlier timer."""
        self.cancel(slot)
        ref = self.actor_ref
        self._timers[slot] = self.ctx.clock.call_later(delay, lambda: tell_quietly(ref, message))

    def cancel(self, slot: str) -> None:
        """Drop the slot's timer, if it has one (fired or not)."""
        timer = self._timers.pop(slot, None)
        if timer is not None:
            timer.cancel()

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def on_stop(self) -> None:
        self.cancel_timers()
        self._end_processes()

    def _end_processes(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            process.close()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.cancel_timers()
        self._end_processes()
        self.ctx.state.busy.clear()
        if self.stale:
            return
        error = f"{type(exc_value).__name__}: {exc_value}"
        self.ctx.state.last_error = error
        self.log.error("actor crashed", error=error, exc_info=traceback_if_debug(self.log, exc_value))
        if self.ctx.supervisor is not None:
            self.ctx.supervisor.tell(ChildDied(self.ctx.name, self.ctx.generation, error))

    def is_idle(self) -> bool:
        return True

    def report_failure(self, what: str, model: str, id: int, exc: BaseException) -> bool:
        """Log that a handler raised (``"<what> deferred"`` at info, ``"<what> failed"`` at warning).

        Returns whether it was a ``DeferredException`` (not an error, as in the original).
        """
        deferred = isinstance(exc, DeferredException)
        report = self.log.info if deferred else self.log.warning
        report(
            f"{what} deferred" if deferred else f"{what} failed",
            model=model,
            id=id,
            error=error_text(exc),
            exc_info=traceback_if_debug(self.log, exc),
        )
        return deferred

    def write_status(self, model: str, id: int, fields: dict[str, Any], *, durable: bool = False) -> None:
        """Write bookkeeping ``fields`` as the synchronizer; the notice of the write names this actor.

        Committed before it returns (``durable`` asks for that where writes are batched).
        """
        ctx = WriteContext(Caller.SYNCHRONIZER, update_fields=tuple(fields), origin=self.ctx.name)
        self.ctx.accessor.backend.update(model, id, fields, ctx)

    def make_step(self, factory: Any) -> Any:
        """A fresh instance of a step class, constructed in the user context, with the accessor set.

        For a step isolated in a process, an :class:`~actors.runtime._isolation.IsolatedStep`
        standing for the instance in its new child process.
        """
        isolation = self.ctx.isolation
        if isolation is not None and isolation.mode(factory.cls) == "process":
            step = self.call_user(isolation.start, factory, self.ctx.accessor, lambda: self.stale)
            self._processes.append(step)
            return step
        step = self.call_user(factory.make)
        if getattr(step, "model_accessor", None) is None:
            step.model_accessor = self.ctx.accessor
        return step

    def call_user(
        self, fn: Callable[..., T], *args: Any, caller: Caller | None = None, deadline: float | None = None
    ) -> T:
        """Run user code in the user context, as ``caller``, under the deadline watchdog.

        The call is in the crash records while it runs (see ``actors.runtime._isolation``).
        """
        ctx, state = self.ctx, self.ctx.state
        records = ctx.isolation.records if ctx.isolation is not None else None
        state.busy_deadline = deadline or ctx.deadline or ctx.settings.step_deadline
        state.busy[self.slot] = ctx.clock.now()
        try:
            with ctx.user_context(), acting_as(caller) if caller else nullcontext():
                if records is not None:
                    records.enter(self.record_name, getattr(fn, "__name__", "call"), args)
                try:
                    with exits_as_step_exit:
                        return fn(*args)
                finally:
                    if records is not None and not self.stale:
                        records.leave(self.record_name)
        finally:
            if not self.stale:
                state.busy.pop(self.slot, None)
