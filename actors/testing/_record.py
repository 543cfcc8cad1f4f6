"""What the kit records and injects around step code: calls, faults, log lines, the turn gate."""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HANDLERS", "Call", "Fault", "Gate", "LogLine", "Recorder"]

#: The methods of each kind of step that the kit watches (and can make fail).
HANDLERS: dict[str, tuple[str, ...]] = {
    "sync": ("sync_record", "delete_record"),
    "policy": ("handle_create", "handle_update", "handle_delete"),
    "pull": ("pull_records",),
    "event": ("process_event",),
}


@dataclass
class Call:
    """One call of a step handler: its arguments, and how it ended.

    ``error`` is the exception it raised (``None`` if it returned), ``traceback``
    the formatted traceback of that exception (through the step's own code),
    ``fault`` the injected fault that replaced the call, if any.
    """

    step: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    fault: str | None = None
    done: bool = False

    @property
    def arg(self) -> Any:
        """The first argument (the object of ``sync_record`` or a policy handler, the event)."""
        return self.args[0] if self.args else None

    def __repr__(self) -> str:
        end = "running" if not self.done else "ok" if self.error is None else f"raised {self.error!r}"
        return f"<Call {self.step}.{self.method}({', '.join(map(_short, self.args))}) {end}>"


def _short(value: Any) -> str:
    model = getattr(value, "_model", None)
    if model is not None:
        return f"{model}#{getattr(value, 'id', None)}"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


@dataclass
class Fault:
    """A fault to inject in the next ``times`` calls of a handler: ``raise``, ``hang`` or ``exit``."""

    kind: str
    times: int
    error: BaseException | None = None
    used: int = 0


@dataclass(frozen=True)
class LogLine:
    """One log line: its level, event text, key-value fields and the step it came from."""

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    step: str | None = None

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"[{self.level}] {self.event}" + (f" {extra}" if extra else "")


_SKIP_FIELDS = {"event", "level", "logger", "timestamp", "child", "_record", "_from_structlog"}


class Gate:
    """Who may run step code now: everyone (``None``), nobody (``""``) or one step by name."""

    def __init__(self, turn: str | None = None) -> None:
        self.cond = threading.Condition()
        self.turn = turn
        self.entries = 0
        self.waiting: dict[str, int] = {}
        self.open_all = False

    def enter(self, step: str) -> None:
        with self.cond:
            self.waiting[step] = self.waiting.get(step, 0) + 1
            try:
                while not (self.open_all or self.turn is None or self.turn == step):
                    self.cond.wait()
            finally:
                self.waiting[step] -= 1
                if not self.waiting[step]:
                    del self.waiting[step]
            self.entries += 1

    def set_turn(self, turn: str | None) -> None:
        with self.cond:
            self.turn = turn
            self.cond.notify_all()

    def release_all(self) -> None:
        """Let everyone through from now on (when the synchronizer stops)."""
        with self.cond:
            self.open_all = True
            self.cond.notify_all()


class Recorder(logging.Handler):
    """Wraps step handlers: records each call, injects faults, attributes log lines to steps."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(logging.DEBUG)
        self.gate = gate
        self.guard = threading.Lock()
        self.calls: list[Call] = []
        self.lines: list[LogLine] = []
        self.faults: dict[tuple[str, str | None], deque[Fault]] = {}
        self.released = threading.Event()
        self.changed = threading.Condition(self.guard)
        self._local = threading.local()

    # -- wrapping -----------------------------------------------------------
    def wrap(self, cls: type, step: str, methods: tuple[str, ...], child: str) -> None:
        """Replace ``methods`` of ``cls`` (this synchronizer's own copy of the step class).

        ``child`` is the name of the actor that runs the step (its turn at the gate).
        """
        for method in methods:
            original = getattr(cls, method, None)
            if original is None or getattr(original, "__actors_testing__", False):
                continue
            setattr(cls, method, self._wrapper(original, step, method, child))

    def _wrapper(
        self, original: Callable[..., Any], step: str, method: str, child: str
    ) -> Callable[..., Any]:
        recorder = self

        @functools.wraps(original)
        def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
            recorder.gate.enter(child)
            call = Call(step, method, args, kwargs)
            with recorder.guard:
                recorder.calls.append(call)
                fault = recorder._take_fault(step, method)
                recorder.changed.notify_all()
            try:
                with recorder._running(step):
                    if fault is not None:
                        call.fault = fault.kind
                        recorder._inject(fault, step, method)
                    call.result = original(self, *args, **kwargs)
                    return call.result
            except BaseException as exc:
                call.error = exc
                call.traceback = "".join(traceback.format_exception(exc))
                raise
            finally:
                with recorder.guard:
                    call.done = True
                    recorder.changed.notify_all()

        handler.__actors_testing__ = True  # type: ignore[attr-defined]
        return handler

    @contextmanager
    def _running(self, step: str) -> Iterator[None]:
        previous = getattr(self._local, "step", None)
        self._local.step = step
        try:
            yield
        finally:
            self._local.step = previous

    # -- faults -------------------------------------------------------------
    def add_fault(self, step: str, method: str | None, fault: Fault) -> None:
        with self.guard:
            self.faults.setdefault((step, method), deque()).append(fault)

    def _take_fault(self, step: str, method: str) -> Fault | None:
        for key in ((step, method), (step, None)):
            queue = self.faults.get(key)
            if queue:  # a fault leaves its queue when used up (``times`` is at least 1)
                fault = queue[0]
                fault.used += 1
                if fault.used >= fault.times:
                    queue.popleft()
                return fault
        return None

    def _inject(self, fault: Fault, step: str, method: str) -> None:
        where = f"{step}.{method}"
        if fault.kind == "raise":
            error = fault.error if fault.error is not None else RuntimeError(f"fault injected in {where}")
            raise error
        if fault.kind == "exit":
            raise SystemExit(f"fault injected in {where}: exit")
        if fault.kind == "hang":
            self.released.wait()
            raise RuntimeError(f"fault injected in {where}: hung, then released")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    # -- logging ------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg
        step = getattr(self._local, "step", None)
        if isinstance(msg, dict):
            event = str(msg.get("event", ""))
            fields = {k: v for k, v in msg.items() if k not in _SKIP_FIELDS}
            step = step or msg.get("child")
        else:
            try:
                event = record.getMessage()
            except Exception:
                event = str(msg)
            fields = {}
        line = LogLine(record.levelname.lower(), event, fields, step)
        with self.guard:
            self.lines.append(line)
