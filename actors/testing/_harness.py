"""The synchronizer under test: a user's config on a temporary store, a fake clock, an in-process bus."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pykka

from actors.config import Config, load_config
from actors.orm import ModelAccessor, ORMWrapper
from actors.runtime import Synchronizer
from actors.runtime._supervisor import CHANGEFEED, ChildSpec
from actors.runtime.clock import FakeClock
from actors.runtime.events import EventStepActor
from actors.runtime.messages import CheckDeadlines, ChildStatus, GetStatus, IsIdle
from actors.store import Caller

from ._bus import BusRecord, DeadLetter, InProcessBus, dead_letter_of, encode_value
from ._record import HANDLERS, Call, Fault, Gate, LogLine, Recorder

__all__ = ["IN_PROCESS_ENDPOINT", "SteppingClock", "SyncHarness", "SynchronizerTestError"]

#: The ``event_bus.endpoint`` an in-process bus stands for when the config names none.
IN_PROCESS_ENDPOINT = "in-process:9092"
_ACTIVE = ("starting", "running", "degraded")


class SynchronizerTestError(AssertionError):
    """An assertion of the kit failed, or the synchronizer did not settle (message says why)."""


class SteppingClock(FakeClock):
    """A :class:`~actors.runtime.clock.FakeClock` that tells when its next timer is due."""

    def next_due(self) -> float | None:
        """When the earliest pending timer fires (``None`` without timers)."""
        with self._lock:
            return self._heap.next_due()

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

    def __init__(self, config: Config, harness: SyncHarness, **kwargs: Any) -> None:
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


def _event_actor(bus: InProcessBus | None) -> type[EventStepActor]:
    """The production event-step actor, with ``bus`` behind its consumer seam (if given).

    It only reports itself idle also while every failed event waits for its retry
    timer: on the fake clock that timer fires when the test advances time.
    """
    factories: dict[str, Any] = (
        {} if bus is None else {"consumer_factory": bus.consumer, "sink_factory": bus.sink}
    )

    class TestEventStepActor(EventStepActor):
        def __init__(self, ctx: Any, factory: Any) -> None:
            super().__init__(ctx, factory, **factories)

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


class SyncHarness:
    """A user's synchronizer, run for a test: every step loaded as in production, time and events faked.

    >>> with SyncHarness("my-synchronizer/config.yaml") as sync:
    ...     obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
    ...     sync.run_until_idle()
    ...     sync.assert_enacted(obj)

    The config is the user's own, with a temporary embedded SQLite store
    (``data_dir`` is a fresh folder, removed at :meth:`stop`), the accessor
    local, and the clock a :class:`SteppingClock` that only :meth:`advance`
    moves. ``bus="inprocess"`` (the default) puts an :class:`InProcessBus`
    behind the event steps' consumer; ``bus="kafka"`` uses the config's real
    ``event_bus``. ``deterministic=True`` (the default) runs step code one step
    at a time, steps in name order, so a run replays the same way.
    ``runtime`` overrides keys of the config's ``runtime`` section. Log lines
    from ``log_level`` up are recorded (the root logger is lowered to it while the
    synchronizer runs); the root logger's handlers and level are put back at
    :meth:`stop` (the steps' logging config is undone). A step that cannot be
    loaded makes :meth:`start` raise, unless ``allow_load_errors``.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Config,
        *,
        bus: str = "inprocess",
        deterministic: bool = True,
        runtime: Mapping[str, Any] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        log_level: int | str = logging.INFO,
        allow_load_errors: bool = False,
    ) -> None:
        if bus not in ("inprocess", "kafka"):
            raise ValueError(f"bus: expected 'inprocess' or 'kafka', got {bus!r}")
        base = config if isinstance(config, Config) else load_config(config)
        self._tmp = None if data_dir is not None else tempfile.mkdtemp(prefix="actors-test-")
        data = base.as_dict()
        data["data_dir"] = str(data_dir if data_dir is not None else self._tmp)
        data["store"] = {}
        data.pop("accessor", None)
        if runtime:
            data["runtime"] = {**(data.get("runtime") or {}), **dict(runtime)}
        self.config = Config.from_dict(data, base_dir=base.base_dir)
        self.clock = SteppingClock(start=time.time())
        self.deterministic = deterministic
        self.timeout = timeout
        self.gate = Gate("" if deterministic else None)
        self.recorder = Recorder(self.gate)
        self.bus: InProcessBus | None = InProcessBus(self.clock.now) if bus == "inprocess" else None
        self.synchronizer = _Synchronizer(self.config, self, clock=self.clock)
        self._objects: _Objects | None = None
        self._live: dict[str, Any] | None = None
        self._started = False
        self._log_level = logging.getLevelName(log_level) if isinstance(log_level, str) else log_level
        self._root: tuple[list[logging.Handler], int] | None = None
        self._allow_load_errors = allow_load_errors

    # -- life -----------------------------------------------------------------
    def start(self) -> SyncHarness:
        """Load and start every step, then run until idle (the start-up resyncs and first pulls)."""
        root = logging.getLogger()
        self._root = (list(root.handlers), root.level)
        try:
            self.synchronizer.start()
            self._started = True
            errors = self.synchronizer.load_errors
            if errors and not self._allow_load_errors:
                raise SynchronizerTestError(
                    f"{len(errors)} step(s) not loaded: " + "; ".join(str(e) for e in errors)
                )
            self.run_until_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the synchronizer (hung injected calls are let go first) and remove the temporary store."""
        self.recorder.released.set()
        self.gate.release_all()
        if self.bus is not None:
            self.bus.stop_waiting()
        try:
            self.synchronizer.stop(timeout=2.0)
        finally:
            root = logging.getLogger()
            root.removeHandler(self.recorder)
            if self._root is not None:
                root.handlers[:], level = self._root
                root.setLevel(level)
                self._root = None
            self._started = False
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None

    def __enter__(self) -> SyncHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the synchronizer -------------------------------------------------------
    @property
    def model_accessor(self) -> ModelAccessor:
        """The accessor the steps use (writes as the synchronizer)."""
        return self.synchronizer.model_accessor

    @property
    def objects(self) -> _Objects:
        """The models as a client sees them: ``sync.objects.MyModel.create(first_name=...)``."""
        if self._objects is None:
            backend = self.synchronizer.model_accessor.backend
            wrappers = self.synchronizer.model_accessor.wrappers
            self._objects = _Objects(ModelAccessor(backend, caller=Caller.CLIENT, wrappers=wrappers))
        return self._objects

    @property
    def load_errors(self) -> list[Any]:
        """Steps that could not be loaded (each with its path and error)."""
        return list(self.synchronizer.load_errors)

    def status(self) -> dict[str, ChildStatus]:
        """Every child's status (see :meth:`actors.runtime.Synchronizer.status`)."""
        return self.synchronizer.status()

    # -- driving ----------------------------------------------------------------
    def run_until_idle(self, timeout: float | None = None) -> None:
        """Let every step work until none has anything queued or running; no time passes.

        Raises :class:`SynchronizerTestError` naming the busy steps after ``timeout``
        seconds (wall clock). A call hung by :meth:`hang` does not count as busy.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self._started:
            raise SynchronizerTestError("the synchronizer is not started: use start() or the fixture")
        if not self.deterministic:
            while not self._all_idle(deadline):
                pass
            return
        while True:
            self._barrier()
            progressed = False
            for name in self._child_names():
                if name == CHANGEFEED:
                    continue
                self._settle(CHANGEFEED, deadline)
                before = self.gate.entries
                self.gate.set_turn(name)
                try:
                    self._settle(name, deadline)
                finally:
                    self.gate.set_turn("")
                progressed = progressed or self.gate.entries != before
            with self.gate.cond:
                waiting = bool(self.gate.waiting)
            if not progressed and not waiting:
                return
            self._check_deadline(deadline)

    def advance(self, seconds: float) -> None:
        """Move the fake clock ``seconds`` forward, firing each timer at its time and letting its work run.

        Retries after backoff, pull periods, resyncs, restarts and event retries all
        run on this clock.
        """
        if seconds < 0:
            raise ValueError(f"advance: seconds must be >= 0, got {seconds!r}")
        clock = self.clock
        target = clock.now() + seconds
        while (fired := clock.fire_next(target)) is not None:
            if all(isinstance(m, CheckDeadlines) for m in fired) and not self._running():
                continue  # only the supervisor's watchdog, and no handler running: nothing to check
            else:
                self.run_until_idle()
        clock.advance(max(0.0, target - clock.now()))
        self.run_until_idle()

    def _running(self) -> bool:
        """Whether a step handler is running now."""
        with self.recorder.guard:
            return any(not c.done for c in self.recorder.calls)

    def _children(self) -> dict[str, Any]:
        """The supervisor's children (its own live records: refs change on restarts)."""
        if self._live is None:
            supervisor = self.synchronizer.supervisor
            if supervisor is None:
                return {}
            self._live = supervisor.proxy().children.get(timeout=5)
        return self._live

    def _child_names(self) -> list[str]:
        return sorted(self._children())

    def _hung(self) -> set[str]:
        with self.recorder.guard:
            return {c.step for c in self.recorder.calls if c.fault == "hang" and not c.done}

    def _child_idle(self, child: Any, hung: set[str]) -> bool:
        ref, state = child.ref, child.state
        if ref is None or child.phase not in _ACTIVE:
            return True
        if child.spec.name in hung or (
            child.spec.name == "policies" and hung & set(state.detail.get("policies", ()))
        ):
            return True
        try:
            answer = ref.ask(IsIdle(), block=False)
            if self.bus is not None and child.state.kind == "event":
                self.bus.interrupt()  # after the question is queued: the poll ends, the answer comes
            return bool(answer.get(timeout=0.5))
        except pykka.ActorDeadError:
            return True
        except pykka.Timeout:
            return False

    def _settle(self, name: str, deadline: float) -> None:
        streak = 0
        while streak < 2:
            child = self._children().get(name)
            if child is None:
                return
            if self._child_idle(child, self._hung()):
                streak += 1
            else:
                streak = 0
                self._check_deadline(deadline, [name])
                time.sleep(0.001)  # a handler is running: let it

    def _barrier(self) -> None:
        """Wait until the supervisor handled what was sent to it so far (deaths, restarts)."""
        supervisor = self.synchronizer.supervisor
        if supervisor is not None:
            supervisor.ask(GetStatus(), timeout=5)

    def _all_idle(self, deadline: float) -> bool:
        self._barrier()
        for _ in range(2):
            hung = self._hung()
            busy = [n for n, c in self._children().items() if not self._child_idle(c, hung)]
            if busy:
                self._check_deadline(deadline, busy)
                time.sleep(0.001)  # a handler is running: let it
                return False
        return True

    def _check_deadline(self, deadline: float, busy: Iterable[str] = ()) -> None:
        if time.monotonic() < deadline:
            return
        status = self.status()
        described = ", ".join(
            f"{n} ({status[n].state}, queue {status[n].queue_depth})" for n in busy if n in status
        )
        raise SynchronizerTestError(f"the synchronizer did not become idle: busy {described or 'steps'}")

    # -- events -----------------------------------------------------------------
    def send_event(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Iterable[tuple[str, bytes | str]] = (),
    ) -> BusRecord | None:
        """Publish an event (bytes, str, or anything JSON) to ``topic``; the event steps receive it.

        In-process: returns the record (its ``offset``). With ``bus="kafka"`` it is
        produced to the config's broker and ``None`` is returned.
        """
        if self.bus is not None:
            return self.bus.send(topic, value, key=key, headers=headers)
        from actors.runtime.produce import produce

        produce(topic, key=encode_value(key), value=encode_value(value), endpoint=self._servers())
        return None

    def _servers(self) -> tuple[str, ...]:
        from actors.runtime._kafka_client import bootstrap_servers

        return bootstrap_servers(self.synchronizer.settings.event_bus.endpoint)

    @property
    def dead_letter_topic(self) -> str:
        """The topic the event steps write dead letters to."""
        settings = self.synchronizer.settings
        return settings.event_bus.dead_letter_topic or f"{settings.name}.dead-letters"

    def dead_letters(self, topic: str | None = None) -> list[DeadLetter]:
        """The events given up on (after ``max_retries``), those of ``topic`` only if given.

        In-process only; with ``bus="kafka"`` read the dead-letter topic with a consumer.
        """
        if self.bus is None:
            raise SynchronizerTestError("dead_letters() needs the in-process bus (bus='inprocess')")
        letters = [dead_letter_of(r) for r in self.bus.records(self.dead_letter_topic)]
        return [d for d in letters if topic is None or d.topic == topic]

    # -- calls, logs, faults ------------------------------------------------------
    def calls(self, name: str | None = None) -> list[Call]:
        """The handler calls so far, of ``"Step"`` or ``"Step.method"`` if given, in call order."""
        step, method = _split(name)
        with self.recorder.guard:
            return [
                c
                for c in self.recorder.calls
                if (step is None or c.step == step) and (method is None or c.method == method)
            ]

    def wait_for_call(self, name: str, count: int = 1, timeout: float | None = None) -> Call:
        """Wait (driving the steps) until ``name`` was called ``count`` times; returns the last call."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            found = self.calls(name)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() >= deadline:
                raise SynchronizerTestError(f"{name} was called {len(found)} times, expected {count}")
            self.run_until_idle(timeout=max(0.01, deadline - time.monotonic()))
            if len(self.calls(name)) < count:
                with self.recorder.changed:
                    self.recorder.changed.wait(0.01)

    def logs(self, step: str | None = None) -> list[LogLine]:
        """The log lines so far: those logged while ``step``'s code ran or about it, if given."""
        with self.recorder.guard:
            return [line for line in self.recorder.lines if step is None or line.step == step]

    def fail(self, name: str, times: int = 1, error: BaseException | None = None) -> None:
        """Make the next ``times`` calls of ``"Step"`` (any handler) or ``"Step.method"`` raise ``error``."""
        self._fault(name, Fault("raise", times, error))

    def hang(self, name: str, times: int = 1) -> None:
        """Make the next ``times`` calls block until :meth:`release` (or the end of the test)."""
        self._fault(name, Fault("hang", times))

    def exit(self, name: str, times: int = 1) -> None:
        """Make the next ``times`` calls raise ``SystemExit`` (the step's actor dies and is replaced)."""
        self._fault(name, Fault("exit", times))

    def release(self, timeout: float = 5.0) -> None:
        """Let every hung call go (each then raises) and wait until they returned; later hangs hang again."""
        recorder = self.recorder
        recorder.released.set()
        deadline = time.monotonic() + timeout
        with recorder.changed:
            while any(c.fault == "hang" and not c.done for c in recorder.calls):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SynchronizerTestError(f"hung calls still running {timeout:g} s after release()")
                recorder.changed.wait(left)
        recorder.released.clear()

    def _fault(self, name: str, fault: Fault) -> None:
        if fault.times < 1:
            raise ValueError(f"times must be >= 1, got {fault.times!r}")
        step, method = _split(name)
        assert step is not None
        known = self._step_names()
        if step not in known:
            raise ValueError(f"no step named {step!r}: the steps are {', '.join(sorted(known))}")
        self.recorder.add_fault(step, method, fault)

    def _step_names(self) -> set[str]:
        loaded = self.synchronizer._loaded
        return {f.name for f in loaded.factories} if loaded is not None else set()

    # -- assertions -----------------------------------------------------------------
    def row(self, obj: Any) -> dict[str, Any]:
        """The object's stored row, read now (status fields included)."""
        model, id = _identify(obj)
        row = self.synchronizer.model_accessor.backend.get(model, id)
        if row is None:
            raise SynchronizerTestError(f"{model} id {id} is not in the store")
        return dict(row)

    def assert_enacted(self, obj: Any) -> None:
        """The object's last change was synced: ``backend_code`` 1 and ``enacted`` not behind ``updated``."""
        self._assert_current(obj, "enacted", "backend")

    def assert_failed(self, obj: Any, match: str | None = None) -> None:
        """The object's sync failed (``backend_code`` 2), its ``backend_status`` searched by ``match``."""
        row = self.row(obj)
        status = str(row.get("backend_status") or "")
        if row.get("backend_code") != 2:
            raise SynchronizerTestError(
                f"{_name(obj)} did not fail "
                f"(backend_code {row.get('backend_code')}, backend_status {status!r})"
            )
        if match is not None and not re.search(match, status):
            raise SynchronizerTestError(f"{_name(obj)} failed, but {status!r} does not match {match!r}")

    def assert_blocked(self, obj: Any, by: Any = None) -> None:
        """The object waits on a dependency (``by``, if given) and its sync step has not run on it since."""
        row = self.row(obj)
        if row.get("backend_code") == 1 and (row.get("enacted") or 0) >= (row.get("updated") or 0):
            raise SynchronizerTestError(f"{_name(obj)} is enacted, not blocked")
        model, id = _identify(obj)
        ran = [
            c
            for c in self.calls()
            if c.method in ("sync_record", "delete_record") and _identify_or_none(c.arg) == (model, id)
        ]
        if ran:
            raise SynchronizerTestError(f"{_name(obj)} is not blocked: {ran[-1]!r} ran")
        if by is None:
            return
        other = self.row(by)
        if other.get("backend_code") == 1 and (other.get("enacted") or 0) >= (other.get("updated") or 0):
            raise SynchronizerTestError(f"{_name(obj)} cannot be blocked by {_name(by)}: it is enacted")
        status = str(row.get("backend_status") or "")
        by_model, by_id = _identify(by)
        if other.get("backend_code") == 2 and f"in model {by_model} id {by_id}" not in status:
            raise SynchronizerTestError(
                f"{_name(obj)}: backend_status {status!r} does not name the failed {_name(by)}"
            )

    def assert_policed(self, obj: Any) -> None:
        """The model policies handled the object's last change (``policy_code`` 1, ``policed`` current)."""
        self._assert_current(obj, "policed", "policy")

    def _assert_current(self, obj: Any, done: str, part: str) -> None:
        """``<part>_code`` is 1 and the ``done`` time is not behind ``updated``, else the error saying why."""
        row = self.row(obj)
        if row.get(f"{part}_code") == 1 and (row.get(done) or 0) >= (row.get("updated") or 0):
            return
        raise SynchronizerTestError(
            f"{_name(obj)} is not {done} ({part}_code {row.get(f'{part}_code')}, "
            f"{part}_status {row.get(f'{part}_status')!r}){self._last_error(obj)}"
        )

    def _last_error(self, obj: Any) -> str:
        """The traceback of the last failed call on ``obj``, for an assertion's message."""
        key = _identify_or_none(obj)
        failed = [c for c in self.calls() if c.error is not None and _identify_or_none(c.arg) == key]
        if not failed:
            return ""
        call = failed[-1]
        return f"\n{call.step}.{call.method} raised:\n{call.traceback}"


def _split(name: str | None) -> tuple[str | None, str | None]:
    if name is None:
        return None, None
    step, _, method = name.partition(".")
    return step, method or None


def _identify(obj: Any) -> tuple[str, int]:
    found = _identify_or_none(obj)
    if found is None:
        raise TypeError(f"expected a saved model object, got {obj!r}")
    return found


def _identify_or_none(obj: Any) -> tuple[str, int] | None:
    model, id = getattr(obj, "_model", None), getattr(obj, "id", None)
    if not isinstance(model, str) or not isinstance(id, int):
        return None
    return model, id


def _name(obj: Any) -> str:
    model, id = _identify(obj)
    return f"{model} id {id}"
