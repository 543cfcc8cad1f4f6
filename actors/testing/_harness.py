"""The kit's :class:`SyncHarness`: events in, and the calls, logs, faults and stored rows a test checks."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from actors.store import BackendCode

from ._bus import BusRecord, DeadLetter, dead_letter_of, encode_value
from ._driving import Driver, SynchronizerTestError
from ._record import Call, Fault, LogLine

__all__ = ["SyncHarness"]


class SyncHarness(Driver):
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
        from actors.runtime._kafka_client import bootstrap_servers
        from actors.runtime.produce import produce

        servers = bootstrap_servers(self.synchronizer.settings.event_bus.endpoint)
        produce(topic, key=encode_value(key), value=encode_value(value), endpoint=servers)
        return None

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
        self._assert_current(obj, "backend", "enacted")

    def assert_failed(self, obj: Any, match: str | None = None) -> None:
        """The object's sync failed (``backend_code`` 2), its ``backend_status`` searched by ``match``."""
        row = self.row(obj)
        status = str(row.get("backend_status") or "")
        if row.get("backend_code") != BackendCode.ERROR:
            raise SynchronizerTestError(
                f"{_name(obj)} did not fail "
                f"(backend_code {row.get('backend_code')}, backend_status {status!r})"
            )
        if match is not None and not re.search(match, status):
            raise SynchronizerTestError(f"{_name(obj)} failed, but {status!r} does not match {match!r}")

    def assert_blocked(self, obj: Any, by: Any = None) -> None:
        """The object waits on a dependency (``by``, if given) and its sync step has not run on it since."""
        row = self.row(obj)
        if _current(row):
            raise SynchronizerTestError(f"{_name(obj)} is enacted, not blocked")
        ran = [c for c in self._calls_on(obj) if c.method in ("sync_record", "delete_record")]
        if ran:
            raise SynchronizerTestError(f"{_name(obj)} is not blocked: {ran[-1]!r} ran")
        if by is None:
            return
        other = self.row(by)
        if _current(other):
            raise SynchronizerTestError(f"{_name(obj)} cannot be blocked by {_name(by)}: it is enacted")
        status = str(row.get("backend_status") or "")
        by_model, by_id = _identify(by)
        if other.get("backend_code") == BackendCode.ERROR and f"in model {by_model} id {by_id}" not in status:
            raise SynchronizerTestError(
                f"{_name(obj)}: backend_status {status!r} does not name the failed {_name(by)}"
            )

    def assert_policed(self, obj: Any) -> None:
        """The model policies handled the object's last change (``policy_code`` 1, ``policed`` current)."""
        self._assert_current(obj, "policy", "policed")

    def _assert_current(self, obj: Any, prefix: str, stamp: str) -> None:
        """``<prefix>_code`` is 1 and ``<stamp>`` not behind ``updated``, or raise with the last traceback."""
        row = self.row(obj)
        if _current(row, prefix, stamp):
            return
        failed = [c for c in self._calls_on(obj) if c.error is not None]
        trace = f"\n{failed[-1].step}.{failed[-1].method} raised:\n{failed[-1].traceback}" if failed else ""
        raise SynchronizerTestError(
            f"{_name(obj)} is not {stamp} ({prefix}_code {row.get(f'{prefix}_code')}, "
            f"{prefix}_status {row.get(f'{prefix}_status')!r}){trace}"
        )

    def _calls_on(self, obj: Any) -> list[Call]:
        """The handler calls so far whose argument is ``obj`` (the same model and id)."""
        key = _identify_or_none(obj)
        return [c for c in self.calls() if _identify_or_none(c.arg) == key]


def _split(name: str | None) -> tuple[str | None, str | None]:
    if name is None:
        return None, None
    step, _, method = name.partition(".")
    return step, method or None


def _current(row: dict[str, Any], prefix: str = "backend", stamp: str = "enacted") -> bool:
    """Whether ``row``'s last change was handled: ``<prefix>_code`` 1, ``<stamp>`` not behind ``updated``."""
    return row.get(f"{prefix}_code") == 1 and (row.get(stamp) or 0) >= (row.get("updated") or 0)


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
