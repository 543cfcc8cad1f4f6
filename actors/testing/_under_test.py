"""The production synchronizer as the kit runs it: a stepping fake clock, recorded steps, a fake bus."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from actors.config import Config
from actors.orm import ModelAccessor, ORMWrapper
from actors.runtime import Synchronizer
from actors.runtime._child import tell_quietly
from actors.runtime._supervisor import ChildSpec
from actors.runtime.clock import FakeClock, RealClock
from actors.runtime.events import EventStepActor
from actors.runtime.messages import Connect

from ._bus import InProcessBus
from ._record import HANDLERS

if TYPE_CHECKING:
    from ._driving import Driver

#: The ``event_bus.endpoint`` an in-process bus stands for when the config names none.
IN_PROCESS_ENDPOINT = "in-process:9092"


class SteppingClock(FakeClock):
    """A :class:`~actors.runtime.clock.FakeClock` that fires its timers one due time at a time."""

    def fire_next(self, target: float) -> list[Any] | None:
        """Move to the earliest timer due by ``target`` and fire every timer due then.

        Returns the messages the fired timers sent (``None`` for a callback that is
        not a runtime timer), or ``None`` when no timer is due by ``target``.
        """
        with self._lock:
            due = self._heap.next_due()
            if due is None or due > target:
                return None
            self._now = max(self._now, due)
            fired: list[Any] = []
            while (entry := self._heap.pop_due(self._now)) is not None:
                fired.append(_message_of(entry.callback))
                entry.callback()
            return fired


def _message_of(callback: Any) -> Any:
    """The message a runtime timer sends (``lambda: tell_quietly(ref, message)``), or ``None``."""
    code = getattr(callback, "__code__", None)
    cells = getattr(callback, "__closure__", None) or ()
    if code is None or "message" not in code.co_freevars:
        return None
    return cells[code.co_freevars.index("message")].cell_contents


class _Synchronizer(Synchronizer):
    """The production :class:`~actors.runtime.Synchronizer`, its step classes watched by a recorder."""

    def __init__(self, config: Config, harness: Driver, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.harness = harness
        bus = harness.bus
        if bus is not None:
            event_bus = self.settings.event_bus
            if event_bus.endpoint is None:
                event_bus = event_bus.model_copy(update={"endpoint": IN_PROCESS_ENDPOINT})
            self.settings = self.settings.model_copy(update={"event_bus": event_bus})

    def child_specs(self) -> list[ChildSpec]:
        specs = super().child_specs()
        loaded = self._loaded
        assert loaded is not None
        recorder = self.harness.recorder
        # After the step modules were imported (their create_logger may have reset the root logger).
        root = logging.getLogger()
        root.addHandler(recorder)
        level = self.harness._log_level
        if root.getEffectiveLevel() > level:
            root.setLevel(level)
        for kind, factories in (
            ("sync", loaded.sync_steps),
            ("policy", loaded.policies),
            ("pull", loaded.pull_steps),
            ("event", loaded.event_steps),
        ):
            for factory in factories:
                # Policies share one child ("policies"): their calls are named by class.
                child = "policies" if kind == "policy" else factory.name
                recorder.wrap(factory.cls, factory.name, HANDLERS[kind], child)
        actor_class = _event_actor(self.harness.bus)
        return [
            dataclasses.replace(spec, actor_class=actor_class) if spec.actor_class is EventStepActor else spec
            for spec in specs
        ]


#: The wall clock of the attempts to reach a real broker again (see :func:`_event_actor`).
_WALL_CLOCK = RealClock()


def _event_actor(bus: InProcessBus | None) -> type[EventStepActor]:
    """The production event-step actor, with ``bus`` behind its consumer seam (if given).

    It only reports itself idle also while every failed event waits for its retry
    timer: on the fake clock that timer fires when the test advances time. On a real
    broker (no ``bus``) an attempt to reach it again after one that failed (a broker
    slow to answer on a loaded machine) waits on the wall clock, as the broker does:
    on the fake clock it would wait for an ``advance()`` the test has no reason to make.
    """
    factories: dict[str, Any] = (
        {} if bus is None else {"consumer_factory": bus.consumer, "sink_factory": bus.sink}
    )

    class TestEventStepActor(EventStepActor):
        def __init__(self, ctx: Any, factory: Any) -> None:
            super().__init__(ctx, factory, **factories)

        def schedule(self, slot: str, delay: float, message: Any) -> None:
            if bus is not None or not isinstance(message, Connect):
                super().schedule(slot, delay, message)
                return
            self.cancel(slot)
            ref = self.actor_ref
            self._timers[slot] = _WALL_CLOCK.call_later(delay, lambda: tell_quietly(ref, message))

        def is_idle(self) -> bool:
            if super().is_idle():
                return True
            consumer = self.consumer
            failures = self.failures.values()
            if consumer is None or not failures or any(not f.waiting or f.sending for f in failures):
                return False
            caught_up = getattr(consumer, "caught_up", None)
            return (
                self.polled_empty
                and not self._ready()
                and not self.tracker.uncommitted()
                and (caught_up is None or bool(caught_up()))
            )

    return TestEventStepActor


class _ClientModel:
    """``sync.objects.MyModel``: the model class as a client application sees it, plus ``create``."""

    def __init__(self, cls: type[ORMWrapper]) -> None:
        self._cls = cls

    def create(self, **fields: Any) -> Any:
        """Build, save (as a client: the steps see it) and return a new object."""
        obj = self._cls(**fields)
        obj.save()
        return obj

    def __call__(self, **fields: Any) -> Any:
        return self._cls(**fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cls, name)


class _Objects:
    """``sync.objects``: the models through a client accessor (``Caller.CLIENT``)."""

    def __init__(self, accessor: ModelAccessor) -> None:
        self._accessor = accessor

    def __getattr__(self, name: str) -> _ClientModel:
        if name.startswith("_"):
            raise AttributeError(name)
        return _ClientModel(getattr(self._accessor, name))
