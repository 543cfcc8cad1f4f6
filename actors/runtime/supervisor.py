"""The supervisor: starts every child actor, replaces a failed one alone, reports status.

A child is replaced when its actor dies (an exception escaped a handler, or step
code exited) or when one handler runs past its deadline. Restarts wait a short,
growing backoff; after ``max_restarts`` inside ``restart_window`` seconds the
child stays down, reported ``failed``, while every other child keeps working.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

import pykka

from actors.logs import get_logger
from actors.observe import NULL_METRICS, NullMetrics
from actors.orm import ModelAccessor

from ._child import ChildActor, ChildContext, ChildState, ObjectLocks, tell_quietly
from ._isolation import StepIsolation
from .changefeed import ChangeFeedActor
from .clock import Clock, Timer
from .messages import (
    CheckDeadlines,
    ChildDied,
    ChildStatus,
    GetStatus,
    IsIdle,
    RestartChild,
    Resync,
    Route,
    Shutdown,
    Unroute,
)
from .settings import RuntimeSettings

__all__ = ["CHANGEFEED", "ChildSpec", "Supervisor"]

log = get_logger("actors.runtime")

CHANGEFEED = "changefeed"
#: The longest wait between two restarts of one child.
MAX_RESTART_DELAY = 30.0


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
    spec: ChildSpec
    state: ChildState
    ref: pykka.ActorRef[Any] | None = None


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
        self.children: dict[str, _Child] = {}
        for spec in [ChildSpec(CHANGEFEED, ChangeFeedActor), *specs]:
            if spec.name in self.children:
                raise ValueError(f"two children named {spec.name!r}")
            state = ChildState(spec.name, spec.actor_class.kind, detail=dict(spec.detail))
            self.children[spec.name] = _Child(spec, state)
        self.watchdog: Timer | None = None
        self.stopping = False

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
        if isinstance(message, ChildDied):
            return self._on_child_died(message)
        if isinstance(message, RestartChild):
            return self._on_restart(message)
        if isinstance(message, CheckDeadlines):
            return self._on_check_deadlines()
        if isinstance(message, GetStatus):
            return self.status()
        if isinstance(message, IsIdle):
            return self._is_idle()
        if isinstance(message, Shutdown):
            return self._stop_children(message.timeout)
        log.warning("supervisor got an unknown message", message=repr(message))
        return None

    # -- children -------------------------------------------------------------
    def _start_child(self, name: str) -> None:
        child = self.children[name]
        state = child.state
        state.generation += 1
        state.state = "starting"
        state.busy_since = None
        ctx = ChildContext(
            name=name,
            state=state,
            accessor=self.accessor,
            clock=self.clock,
            settings=self.settings,
            supervisor=self.actor_ref,
            generation=state.generation,
            locks=self.locks,
            user_context=self.user_context,
            deadline=child.spec.deadline,
            isolation=self.isolation,
            metrics=self.metrics,
        )
        child.ref = child.spec.actor_class.start(ctx, *child.spec.args)
        feed = self.children[CHANGEFEED].ref
        if name == CHANGEFEED:
            # Notices sent while the feed was down are lost: routes come back, then everyone re-reads.
            for other in self.children.values():
                if other.ref is not None and other.spec.interests and other is not child:
                    child.ref.tell(Route(other.spec.name, other.ref, other.spec.interests))
                    other.ref.tell(Resync("changefeed restarted"))
        elif child.spec.interests and feed is not None:
            feed.tell(Route(name, child.ref, child.spec.interests))

    def _on_child_died(self, message: ChildDied) -> None:
        child = self.children.get(message.name)
        if child is None or message.generation != child.state.generation or self.stopping:
            return
        self._restart_later(child, message.error)

    def _restart_later(self, child: _Child, error: str, reason: str = "crash") -> None:
        state = child.state
        now = self.clock.now()
        state.last_error = error
        feed = self.children[CHANGEFEED].ref
        if feed is not None and child.spec.name != CHANGEFEED and child.spec.interests:
            feed.tell(Unroute(child.spec.name))
        window = self.settings.restart_window
        while state.restart_times and state.restart_times[0] < now - window:
            state.restart_times.popleft()
        if len(state.restart_times) >= self.settings.max_restarts:
            state.state = "failed"
            state.busy_since = None
            log.error(
                "child failed for good",
                step=child.spec.name,
                restarts=len(state.restart_times),
                window=window,
                error=error,
            )
            return
        state.restart_times.append(now)
        state.restarts += 1
        state.state = "restarting"
        self.metrics.restarted(child.spec.name, reason)
        delay = min(self.settings.restart_backoff * 2 ** (len(state.restart_times) - 1), MAX_RESTART_DELAY)
        log.warning(
            "restarting child", step=child.spec.name, error=error, delay=delay, restarts=state.restarts
        )
        self._tell_later(delay, RestartChild(child.spec.name, state.generation))

    def _on_restart(self, message: RestartChild) -> None:
        child = self.children.get(message.name)
        if child is None or self.stopping:
            return
        if child.state.generation == message.generation and child.state.state == "restarting":
            self._start_child(message.name)

    def _arm_watchdog(self) -> None:
        deadlines = [c.spec.deadline for c in self.children.values() if c.spec.deadline]
        shortest = min([self.settings.step_deadline, *deadlines])
        interval = max(0.01, min(1.0, shortest / 4))
        self.watchdog = self._tell_later(interval, CheckDeadlines())

    def _tell_later(self, delay: float, message: Any) -> Timer:
        ref = self.actor_ref
        return self.clock.call_later(delay, lambda: tell_quietly(ref, message))

    def _on_check_deadlines(self) -> None:
        if self.stopping:
            return
        now = self.clock.now()
        for child in self.children.values():
            state = child.state
            busy, deadline = state.busy_since, state.busy_deadline
            if (
                state.state in ("running", "degraded", "stalled")
                and busy is not None
                and deadline
                and now - busy > deadline
            ):
                # The hung actor cannot be interrupted: it is abandoned (its later messages are
                # ignored, its object lock held until its call returns) and replaced.
                old = child.ref
                state.generation += 1
                state.busy_since = None
                if old is not None:
                    old.stop(block=False)
                self._restart_later(child, f"handler ran past its deadline of {deadline:g} s", "deadline")
        self._arm_watchdog()

    # -- queries --------------------------------------------------------------
    def status(self) -> dict[str, ChildStatus]:
        now = self.clock.now()
        return {name: child.state.snapshot(now) for name, child in self.children.items()}

    def _is_idle(self) -> bool:
        futures = [
            c.ref.ask(IsIdle(), block=False)
            for c in self.children.values()
            if c.ref is not None and c.state.state in ("running", "degraded", "stalled", "starting")
        ]
        try:
            return all(pykka.get_all(futures, timeout=1.0))
        except (pykka.Timeout, pykka.ActorDeadError):
            return False

    # -- shutdown -------------------------------------------------------------
    @staticmethod
    def clock_free_deadline(timeout: float) -> float:
        """Shutdown waits in real time whatever the clock: a fake clock must not hang it."""
        return time.monotonic() + timeout

    def _stop_children(self, timeout: float) -> None:
        if self.stopping:
            return
        self.stopping = True
        for child in self.children.values():
            if child.state.state != "failed":
                child.state.state = "stopping"
        # The feed first, so no new work arrives; then every worker finishes its handler.
        order = [self.children[CHANGEFEED], *(c for n, c in self.children.items() if n != CHANGEFEED)]
        futures = []
        for child in order:
            if child.ref is not None:
                with suppress(pykka.ActorDeadError):
                    futures.append(child.ref.stop(block=False))
        deadline = self.clock_free_deadline(timeout)
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                log.warning("a handler did not finish in time", timeout=timeout)
            except pykka.ActorDeadError:
                pass
        for child in self.children.values():
            if child.state.state == "stopping":
                child.state.state = "stopped"
