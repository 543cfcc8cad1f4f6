"""The supervisor: starts every child actor, replaces a failed one alone, reports status.

A child is replaced when its actor dies (an exception escaped a handler, or step
code exited) or when one handler runs past its deadline. Restarts wait a short,
growing backoff; after ``max_restarts`` inside ``restart_window`` seconds the
child stays down, reported ``failed``, while every other child keeps working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors._backoff import Backoff
from actors.logs import get_logger
from actors.observe import NULL_METRICS, NullMetrics
from actors.orm import ModelAccessor

from ._changefeed import ChangeFeedActor
from ._child import ChildActor, ChildContext, ChildState, ObjectLocks, tell_quietly
from ._isolation import StepIsolation
from ._settings import RuntimeSettings
from .clock import Clock, Timer
from .messages import (
    CheckDeadlines,
    ChildDied,
    ChildStatus,
    GetStatus,
    IsIdle,
    Phase,
    PhaseChanged,
    RestartChild,
    Resync,
    Route,
    Shutdown,
    Unroute,
)

__all__ = ["CHANGEFEED", "ChildSpec", "Supervisor"]

log = get_logger("actors.runtime")

CHANGEFEED = "changefeed"
#: The longest wait between two restarts of one child.
MAX_RESTART_DELAY = 30.0
#: Phases in which a child's actor is up (it answers IsIdle; the deadline watchdog looks at it).
_UP = frozenset({Phase.STARTING, Phase.RUNNING, Phase.DEGRADED, Phase.STALLED})
#: Phases a child reports itself (PhaseChanged); the supervisor sets the others.
_REPORTED = frozenset({Phase.RUNNING, Phase.DEGRADED, Phase.STALLED})
#: Phases whose changes are logged at DEBUG only (they last an instant).
_TRANSIENT = frozenset({Phase.STARTING, Phase.STOPPING})


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child: ``actor_class.start(ctx, *args)``."""

    name: str
    actor_class: type[ChildActor]
    args: tuple[Any, ...] = ()
    #: Models whose change notices the child receives.
    interests: frozenset[str] = frozenset()
    deadline: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Child:
    """The supervisor's record of one child: it alone writes it, in the supervisor's thread."""

    spec: ChildSpec
    #: The live counters of the current generation (written by that generation's actor only).
    state: ChildState
    ref: pykka.ActorRef[Any] | None = None
    ctx: ChildContext | None = None
    phase: Phase = Phase.STARTING
    generation: int = 0
    restarts: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    last_error: str | None = None

    def move(self, phase: Phase) -> None:
        """Enter ``phase`` (logged when it changes)."""
        if phase != self.phase:
            level = logging.DEBUG if phase in _TRANSIENT else logging.INFO
            log.log(level, "state changed", step=self.spec.name, state=phase.value, previous=self.phase.value)
            self.phase = phase

    def status(self, now: float) -> ChildStatus:
        state = self.state
        busy = state.busy_since
        return ChildStatus(
            name=self.spec.name,
            kind=state.kind,
            state=self.phase.value,
            restarts=self.restarts,
            last_error=self.last_error,
            done=state.done,
            failed=state.failed,
            queue_depth=state.queue_depth,
            queued=state.queued,
            busy_for=None if busy is None else max(0.0, now - busy),
            detail=dict(state.detail),
        )


class Supervisor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        specs: list[ChildSpec],
        *,
        accessor: ModelAccessor,
        clock: Clock,
        settings: RuntimeSettings,
        user_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
        isolation: StepIsolation | None = None,
        metrics: NullMetrics = NULL_METRICS,
    ) -> None:
        super().__init__()
        self.isolation = isolation
        self.metrics = metrics
        self.accessor = accessor
        self.clock = clock
        self.settings = settings
        self.user_context = user_context
        self.locks = ObjectLocks()
        self.restart_backoff = Backoff(settings.restart_backoff, MAX_RESTART_DELAY)
        #: Set at shutdown: every child sees it at once (see ``ChildContext.stopping``).
        self.shutting_down = threading.Event()
        self.children: dict[str, _Child] = {}
        for spec in [ChildSpec(CHANGEFEED, ChangeFeedActor), *specs]:
            if spec.name in self.children:
                raise ValueError(f"two children named {spec.name!r}")
            state = ChildState(spec.name, spec.actor_class.kind, detail=dict(spec.detail))
            self.children[spec.name] = _Child(spec, state)
        self.watchdog: Timer | None = None
        self.stopping = False
        self.handlers: dict[type, Callable[[Any], Any]] = {
            ChildDied: self._on_child_died,
            PhaseChanged: self._on_phase_changed,
            RestartChild: self._on_restart,
            CheckDeadlines: self._on_check_deadlines,
            GetStatus: lambda _m: self.status(),
            IsIdle: lambda _m: self._is_idle(),
            Shutdown: lambda m: self._stop_children(m.timeout),
        }

    # -- life -----------------------------------------------------------------
    def on_start(self) -> None:
        for name in self.children:
            self._start_child(name)
        self._arm_watchdog()

    def on_stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        self._stop_children(self.settings.shutdown_timeout)

    def on_receive(self, message: Any) -> Any:
        handler = self.handlers.get(type(message))
        if handler is None:
            log.warning("supervisor got an unknown message", message=repr(message))
            return None
        return handler(message)

    # -- children -------------------------------------------------------------
    def _start_child(self, name: str) -> None:
        child = self.children[name]
        child.generation += 1
        child.move(Phase.STARTING)
        old = child.state
        # A fresh record for the new generation: an abandoned actor's late writes go to the old one.
        child.state = ChildState(
            name,
            old.kind,
            done=old.done,
            failed=old.failed,
            detail=dict(old.detail),
            on_phase=self._phase_reporter(child),
        )
        child.ctx = ChildContext(
            name=name,
            state=child.state,
            accessor=self.accessor,
            clock=self.clock,
            settings=self.settings,
            supervisor=self.actor_ref,
            generation=child.generation,
            locks=self.locks,
            user_context=self.user_context,
            deadline=child.spec.deadline,
            isolation=self.isolation,
            metrics=self.metrics,
            stopping=self.shutting_down,
        )
        child.ref = child.spec.actor_class.start(child.ctx, *child.spec.args)
        # pykka runs the actor's on_start before any message: started is running (a failing
        # on_start reports ChildDied). Later changes (degraded, stalled) come as PhaseChanged.
        child.move(Phase.RUNNING)
        feed = self.children[CHANGEFEED].ref
        if name == CHANGEFEED:
            # Notices sent while the feed was down are lost: routes come back, then everyone re-reads.
            for other in self.children.values():
                if other.ref is not None and other.spec.interests and other is not child:
                    child.ref.tell(Route(other.spec.name, other.ref, other.spec.interests))
                    other.ref.tell(Resync("changefeed restarted"))
        elif child.spec.interests and feed is not None:
            feed.tell(Route(name, child.ref, child.spec.interests))

    def _phase_reporter(self, child: _Child) -> Callable[[Phase], None]:
        """What the child's state calls on a phase change (in the child's thread): a message to us."""
        ref, name, generation = self.actor_ref, child.spec.name, child.generation
        return lambda phase: tell_quietly(ref, PhaseChanged(name, generation, phase))

    def _on_phase_changed(self, message: PhaseChanged) -> None:
        child = self.children.get(message.name)
        if child is None or message.generation != child.generation or child.phase not in _UP:
            return
        if message.phase in _REPORTED:
            child.move(message.phase)

    def _on_child_died(self, message: ChildDied) -> None:
        child = self.children.get(message.name)
        if child is None or message.generation != child.generation or self.stopping:
            return
        self._restart_later(child, message.error)

    def _restart_later(self, child: _Child, error: str, reason: str = "crash") -> None:
        now = self.clock.now()
        child.last_error = error
        feed = self.children[CHANGEFEED].ref
        if feed is not None and child.spec.name != CHANGEFEED and child.spec.interests:
            feed.tell(Unroute(child.spec.name))
        window = self.settings.restart_window
        times = child.restart_times
        while times and times[0] < now - window:
            times.popleft()
        if len(times) >= self.settings.max_restarts:
            child.move(Phase.FAILED)
            log.error(
                "child failed for good",
                step=child.spec.name,
                restarts=len(times),
                window=window,
                error=error,
            )
            return
        times.append(now)
        child.restarts += 1
        child.move(Phase.RESTARTING)
        self.metrics.restarted(child.spec.name, reason)
        delay = self.restart_backoff.delay(len(times))
        log.warning(
            "restarting child", step=child.spec.name, error=error, delay=delay, restarts=child.restarts
        )
        self._tell_later(delay, RestartChild(child.spec.name, child.generation))

    def _on_restart(self, message: RestartChild) -> None:
        child = self.children.get(message.name)
        if child is None or self.stopping:
            return
        if child.generation == message.generation and child.phase == Phase.RESTARTING:
            self._start_child(message.name)

    def _arm_watchdog(self) -> None:
        deadlines = [c.spec.deadline for c in self.children.values() if c.spec.deadline]
        shortest = min([self.settings.step_deadline, *deadlines])
        interval = max(0.01, min(1.0, shortest / 4))
        self.watchdog = self._tell_later(interval, CheckDeadlines())

    def _tell_later(self, delay: float, message: Any) -> Timer:
        ref = self.actor_ref
        return self.clock.call_later(delay, lambda: tell_quietly(ref, message))

    def _on_check_deadlines(self, _message: CheckDeadlines) -> None:
        if self.stopping:
            return
        now = self.clock.now()
        for child in self.children.values():
            state = child.state
            busy, deadline = state.busy_since, state.busy_deadline
            if (
                child.phase in _UP
                and child.phase != Phase.STARTING
                and busy is not None
                and deadline
                and now - busy > deadline
            ):
                # The hung actor cannot be interrupted: it is abandoned (its later messages are
                # ignored, its object lock held until its call returns) and replaced.
                if child.ctx is not None:
                    child.ctx.retired.set()
                child.generation += 1
                if child.ref is not None:
                    child.ref.stop(block=False)
                self._restart_later(child, f"handler ran past its deadline of {deadline:g} s", "deadline")
        self._arm_watchdog()

    # -- queries --------------------------------------------------------------
    def status(self) -> dict[str, ChildStatus]:
        now = self.clock.now()
        return {name: child.status(now) for name, child in self.children.items()}

    def _is_idle(self) -> bool:
        futures = [
            c.ref.ask(IsIdle(), block=False)
            for c in self.children.values()
            if c.ref is not None and c.phase in _UP
        ]
        try:
            return all(pykka.get_all(futures, timeout=1.0))
        except (pykka.Timeout, pykka.ActorDeadError):
            return False

    # -- shutdown -------------------------------------------------------------
    def _stop_children(self, timeout: float) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.shutting_down.set()
        for child in self.children.values():
            if child.phase != Phase.FAILED:
                child.move(Phase.STOPPING)
        # The feed first, so no new work arrives; then every worker finishes its handler.
        order = [self.children[CHANGEFEED], *(c for n, c in self.children.items() if n != CHANGEFEED)]
        futures = []
        for child in order:
            if child.ref is not None:
                with suppress(pykka.ActorDeadError):
                    futures.append(child.ref.stop(block=False))
        deadline = time.monotonic() + timeout  # real time whatever the clock: a fake one must not hang it
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                log.warning("a handler did not finish in time", timeout=timeout)
            except pykka.ActorDeadError:
                pass
        for child in self.children.values():
            if child.phase == Phase.STOPPING:
                child.move(Phase.STOPPED)
