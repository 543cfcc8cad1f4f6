"""Hard crashes in step code: a record that names the step, and steps run in a child process.

A thread cannot survive ``os._exit()``, a segfault in native code or a kill: the
whole process ends. Two things soften that:

:class:`CrashRecords`
    Before each call into step code the actor writes one line (step, call, model,
    id) into its slot of a small file under ``<data_dir>/inflight/``, and blanks
    it after the call. The writes are plain ``pwrite`` calls into the kernel's page
    cache (no fsync), so they survive the process's death and cost a few
    microseconds. The file is locked (``flock``) while its process lives; the next
    start reads the files of dead processes and logs, per non-blank slot, one
    line naming the step and the object the previous run ended in.

:class:`IsolatedStep`
    A step with ``isolation = "process"`` (or ``runtime.isolation: process``) runs
    in a child process: a fresh interpreter, never a fork of the threaded parent.
    The child loads the synchronizer's steps again (same config) over an accessor
    whose backend forwards every read and write to the parent through the socket;
    the parent keeps the bookkeeping
    (enacted, backend_status). Each handler call sends the object's model and row,
    the child runs the handler and answers with the result or the exception. When
    the child dies the call raises :class:`StepProcessDied` (a :class:`StepExit`):
    the object gets a failure status naming the exit, and the supervisor replaces
    the step's actor, which starts a new child.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import inspect
import itertools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from actors.config import Config
from actors.models import Schema
from actors.orm import ModelAccessor, ORMWrapper, acting_as, current_caller, row_of
from actors.steps import EventStep, Policy, PullStep, StepFactory, SyncStep
from actors.store import Caller

from ._child import StepExit

__all__ = [
    "CrashRecords",
    "IsolatedStep",
    "StepIsolation",
    "StepProcessDied",
    "report_previous_crashes",
]

log = structlog.get_logger("actors.runtime")

#: Bytes per slot of a crash-record file (one JSON line, cut to fit).
RECORD_SIZE = 512
#: Seconds a child process gets to load the synchronizer, and to stop when asked.
START_TIMEOUT, STOP_TIMEOUT = 120.0, 5.0
#: How often a parent waiting on its child checks whether its actor was abandoned.
POLL_INTERVAL = 0.2
_BACKEND_METHODS = frozenset({"now", "get", "select", "count", "pending", "create", "update", "delete"})
_counter = itertools.count(1)


class StepProcessDied(StepExit):
    """The child process of an isolated step ended during a call (exit, signal, lost socket)."""


# -- crash records ------------------------------------------------------------------
class CrashRecords:
    """This process's file of in-flight step calls, one fixed-size slot per child actor."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.path = folder / f"{name}@{os.getpid()}-{next(_counter)}.inflight"
        self._lock = threading.Lock()
        self._slots: dict[str, int] = {}
        self._prefixes: dict[tuple[str, str], str] = {}
        folder.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], name: str) -> CrashRecords | None:
        """The records of a synchronizer ``name`` under ``data_dir``; ``None`` (logged) if unwritable."""
        try:
            return cls(Path(data_dir) / "inflight", name)
        except OSError as exc:
            log.warning("no crash records: cannot write the folder", folder=str(data_dir), error=str(exc))
            return None

    def previous(self) -> list[dict[str, Any]]:
        """The calls that processes which died (their file unlocked) were in; their files are removed."""
        found: list[dict[str, Any]] = []
        for path in sorted(self.folder.glob(f"{self.name}@*.inflight")):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    continue  # its process is alive
                raise
            try:
                data = path.read_bytes()
                path.unlink()
            finally:
                os.close(fd)
            for start in range(0, len(data), RECORD_SIZE):
                line = data[start : start + RECORD_SIZE].split(b"\n", 1)[0].strip()
                if line:
                    with contextlib.suppress(ValueError):
                        found.append(json.loads(line))
        return found

    def enter(self, child: str, call: str, args: tuple[Any, ...]) -> None:
        """Record that ``child`` runs ``call`` (on the ORM object ``args[0]``, if it is one)."""
        fd = self._fd
        if fd is None:
            return
        slot = self._slots.get(child)
        if slot is None:
            with self._lock:
                slot = self._slots.setdefault(child, len(self._slots))
        # Built by hand: json.dumps per call would cost more than the two writes.
        prefix = self._prefixes.get((child, call))
        if prefix is None:
            prefix = json.dumps({"step": child, "call": call, "pid": os.getpid()})[:-1]
            self._prefixes[(child, call)] = prefix
        line = f'{prefix},"at":{time.time():.3f}'
        obj = args[0] if args else None
        model = getattr(type(obj), "_model", None)
        if isinstance(model, str) and model.isidentifier():
            id = getattr(obj, "_data", {}).get("id")
            line += f',"model":"{model}","id":{id if isinstance(id, int) else "null"}'
        data = (line + "}").encode()[: RECORD_SIZE - 1] + b"\n"
        try:
            os.pwrite(fd, data, slot * RECORD_SIZE)
        except OSError:
            pass  # a full disk must not fail the step

    def leave(self, child: str) -> None:
        """Blank the slot of ``child``: its call is over."""
        fd, slot = self._fd, self._slots.get(child)
        if fd is not None and slot is not None:
            try:
                os.pwrite(fd, b" ", slot * RECORD_SIZE)
            except OSError:
                pass

    def close(self) -> None:
        """A clean stop: the file goes (nothing to report at the next start)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(fd)


def report_previous_crashes(records: CrashRecords) -> list[dict[str, Any]]:
    """Log one line per call a dead earlier run of this synchronizer was in; return them."""
    found = records.previous()
    for record in found:
        log.error(
            "the previous run ended inside a step handler (os._exit, a crash in native code, or a kill);"
            " isolation = 'process' runs a step in a child process",
            step=record.get("step"),
            call=record.get("call"),
            model=record.get("model"),
            id=record.get("id"),
            pid=record.get("pid"),
            at=record.get("at"),
        )
    return found


# -- the socket protocol ----------------------------------------------------------
@dataclass(frozen=True)
class _Obj:
    """An ORM object on the wire: rebuilt from its row by the receiving side's accessor."""

    model: str
    row: Mapping[str, Any]


@dataclass(frozen=True)
class _Call:
    """Parent -> child: run ``method`` of the step with these arguments, as ``caller``."""

    method: str
    args: tuple[Any, ...]
    caller: Caller | None


@dataclass(frozen=True)
class _BackendCall:
    """Child -> parent: run ``method`` of the parent's backend."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class _Reply:
    """The answer to a :class:`_Call` or :class:`_BackendCall` (or the child's ready signal)."""

    value: Any = None
    error: BaseException | None = None
    #: Set when step code raised SystemExit or KeyboardInterrupt (the child then ends).
    exit: str | None = None


@dataclass(frozen=True)
class _WorkerSpec:
    config: Config
    schema: Schema
    kind: str
    step: str
    path: str


class _Remote(Exception):
    """An exception from the other side that could not be sent as itself."""


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return _Remote(f"{type(exc).__name__}: {exc}")


def _to_wire(value: Any) -> Any:
    if isinstance(value, ORMWrapper):
        return _Obj(value.model_name, dict(row_of(value)))
    if isinstance(value, list | tuple):
        return type(value)(_to_wire(v) for v in value)
    return value


def _from_wire(value: Any, accessor: ModelAccessor, cache: dict[tuple[str, Any], Any] | None = None) -> Any:
    if isinstance(value, _Obj):
        key = (value.model, value.row.get("id"))
        if cache is not None and key in cache:
            return cache[key]
        obj = accessor.from_row(value.model, dict(value.row))
        if cache is not None:
            cache[key] = obj
        return obj
    if isinstance(value, list | tuple):
        return type(value)(_from_wire(v, accessor, cache) for v in value)
    return value


def _kind_of(cls: type) -> str:
    for base, kind in ((SyncStep, "sync_steps"), (Policy, "policies"), (PullStep, "pull_steps")):
        if issubclass(cls, base):
            return kind
    raise ValueError(f"{cls.__name__}: isolation = 'process' needs a sync step, a policy or a pull step")


# -- the parent's side --------------------------------------------------------------
class IsolatedStep:
    """Stands for a step instance whose handlers run in a child process.

    Functions of the step class become calls to the child; other class attributes
    (``deadline``, ``observes``, ``model_name``...) are read from the class.
    """

    def __init__(
        self,
        factory: StepFactory,
        config: Config,
        accessor: ModelAccessor,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> None:
        self._cls = factory.cls
        self._name = factory.name
        self._accessor = accessor
        self._abandoned = abandoned
        self._lock = threading.Lock()
        spec = _WorkerSpec(config, accessor.schema, _kind_of(factory.cls), factory.name, factory.path)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            # A fresh interpreter (not fork: the parent has threads), with the parent's sys.path.
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**os.environ, _PATH_VARIABLE: json.dumps(sys.path)},
            )
            self._conn = Connection(os.dup(ours.fileno()))
        try:
            self._conn.send(spec)
            self._exchange(None, "start", START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cls, name)
        if not inspect.isfunction(value):
            return value

        def call(*args: Any) -> Any:
            return self.call(name, *args)

        call.__name__ = call.__qualname__ = name
        return call

    def call(self, method: str, *args: Any) -> Any:
        """Run ``method`` of the step in the child; its result, or its exception raised here."""
        return self._exchange(_Call(method, _to_wire(args), current_caller()), method, None)

    def _exchange(self, request: _Call | None, what: str, timeout: float | None) -> Any:
        with self._lock:
            if request is not None:
                try:
                    self._conn.send(request)
                except (OSError, ValueError):
                    raise self._died(what) from None
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    ready = self._conn.poll(POLL_INTERVAL)
                    message = self._conn.recv() if ready else None
                except (EOFError, OSError):
                    raise self._died(what) from None
                if message is None:
                    if self._abandoned():
                        self._kill()
                        raise StepExit(
                            f"the step process of {self._name} was stopped: its actor was replaced"
                        )
                    if deadline is not None and time.monotonic() > deadline:
                        self._kill()
                        raise StepProcessDied(
                            f"the step process of {self._name} did not start in {timeout:g} s"
                        )
                    continue
                if isinstance(message, _BackendCall):
                    self._serve(message)
                    continue
                if message.exit is not None:
                    raise StepExit(f"step code in the process of {self._name} exited: {message.exit}")
                if message.error is not None:
                    raise message.error
                return _from_wire(message.value, self._accessor)

    def _serve(self, message: _BackendCall) -> None:
        try:
            if message.method not in _BACKEND_METHODS:
                raise _Remote(f"the step process may not call backend.{message.method}")
            value = getattr(self._accessor.backend, message.method)(*message.args, **message.kwargs)
            reply = _Reply(value=value)
        except Exception as exc:
            reply = _Reply(error=_portable(exc))
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(reply)

    def _wait(self) -> int | None:
        try:
            return self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def _died(self, what: str) -> StepProcessDied:
        code = self._wait()
        if code is None:
            how = "closed its socket"
            self._kill()
        elif code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return StepProcessDied(
            f"the step process of {self._name} (pid {self._process.pid}) {how} during {what}"
        )

    def _kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._wait()

    def close(self) -> None:
        """Ask the child to end (it also ends when the socket closes); kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._wait()
        self._kill()
        self._conn.close()


@dataclass
class StepIsolation:
    """What the actors need to isolate steps and record calls: built once per synchronizer."""

    config: Config
    default: str = "thread"
    records: CrashRecords | None = None

    def mode(self, cls: type) -> str:
        """``"thread"`` or ``"process"``: the class's ``isolation``, else the configured default."""
        if issubclass(cls, EventStep):
            return "thread"
        return str(getattr(cls, "isolation", None) or self.default)

    def start(
        self, factory: StepFactory, accessor: ModelAccessor, abandoned: Callable[[], bool]
    ) -> IsolatedStep:
        """A child process running ``factory``'s step."""
        return IsolatedStep(factory, self.config, accessor, abandoned)


# -- the child's side ---------------------------------------------------------------
class _PipeBackend:
    """The child's backend: every read and write runs in the parent, through the socket."""

    def __init__(self, conn: Connection, schema: Schema) -> None:
        self._conn = conn
        self.schema = schema
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._conn.send(_BackendCall(method, args, kwargs))
            reply: _Reply = self._conn.recv()
        if reply.error is not None:
            raise reply.error
        return reply.value

    def __getattr__(self, name: str) -> Any:
        if name in _BACKEND_METHODS:
            return lambda *args, **kwargs: self._call(name, *args, **kwargs)
        raise AttributeError(name)

    def subscribe(self, callback: Any) -> Callable[[], None]:
        """Change notices do not reach a step process: step code does not need them."""
        return lambda: None


@contextlib.contextmanager
def _running(config: Config, accessor: ModelAccessor, caller: Caller | None) -> Iterator[None]:
    from actors.compat import activated

    with activated(config, accessor), acting_as(caller) if caller else contextlib.nullcontext():
        yield


_PATH_VARIABLE = "ACTORS_STEP_PROCESS_PATH"
#: What the child runs: the parent's sys.path, then the worker on the inherited socket.
_BOOT = (
    "import json, os, sys; "
    f"sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r})); "
    "from actors.runtime._isolation import worker_main; worker_main(int(sys.argv[1]))"
)


def worker_main(fd: int) -> None:
    """The child process: receive the step to run on socket ``fd``, load it, run calls.

    It ends when the parent says stop or its end of the socket closes (the parent died).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us
    conn = Connection(fd)
    try:
        spec: _WorkerSpec = conn.recv()
    except (EOFError, OSError):
        return
    from actors.logs import create_logger

    create_logger(spec.config.settings.logging, name="actors.step_process")
    _serve_calls(conn, spec)


def _serve_calls(conn: Connection, spec: _WorkerSpec) -> None:
    from actors.compat import load_synchronizer

    accessor = ModelAccessor(_PipeBackend(conn, spec.schema), caller=Caller.SYNCHRONIZER)
    try:
        loaded = load_synchronizer(spec.config, accessor)
        factory = next(
            (f for f in getattr(loaded, spec.kind) if f.name == spec.step and _same(f.path, spec.path)), None
        )
        if factory is None:
            errors = "; ".join(str(e) for e in loaded.errors if e.cls in (None, spec.step))
            raise _Remote(
                f"the step process could not load {spec.step} from {spec.path}: {errors or 'not found'}"
            )
        with _running(spec.config, accessor, None):
            step = factory.make()
            if getattr(step, "model_accessor", None) is None:
                step.model_accessor = accessor
        conn.send(_Reply())
    except Exception as exc:
        conn.send(_Reply(error=_portable(exc)))
        return
    cache: dict[tuple[str, Any], Any] = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            # after_sync_save / after_policy_save get the objects of the call before them, as in a
            # thread (they see what sync_record set); every other call gets objects fresh from rows.
            args = _from_wire(request.args, accessor, cache if request.method.startswith("after_") else {})
            cache = {(o.model_name, o.id): o for o in args if isinstance(o, ORMWrapper)}
            with _running(spec.config, accessor, request.caller):
                value = getattr(step, request.method)(*args)
            reply = _Reply(value=_to_wire(value))
        except Exception as exc:
            reply = _Reply(error=_portable(exc))
        except BaseException as exc:
            reply = _Reply(exit=f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:
            return  # the parent is gone
        if reply.exit is not None:
            return


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b
