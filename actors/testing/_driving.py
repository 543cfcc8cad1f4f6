"""Driving the synchronizer under test: start and stop it, run it until idle, move its fake clock."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

import pykka

from actors.config import Config, load_config
from actors.orm import ModelAccessor
from actors.runtime._supervisor import CHANGEFEED
from actors.runtime.messages import CheckDeadlines, ChildStatus, GetStatus, IsIdle
from actors.store import Caller

from ._bus import InProcessBus
from ._record import Gate, Recorder
from ._under_test import SteppingClock, _Objects, _Synchronizer

_ACTIVE = ("starting", "running", "degraded")


class SynchronizerTestError(AssertionError):
    """An assertion of the kit failed, or the synchronizer did not settle (message says why)."""


class Driver:
    """The synchronizer under test and what moves it (the parameters are :class:`SyncHarness`'s)."""

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
        # A test run never serves the operator HTTP endpoint (the full config above names every section).
        self.synchronizer = _Synchronizer(self.config, self, clock=self.clock, http=False)
        self._objects: _Objects | None = None
        self._live: dict[str, Any] | None = None
        self._started = False
        self._log_level = logging.getLevelName(log_level) if isinstance(log_level, str) else log_level
        self._root: tuple[list[logging.Handler], int] | None = None
        self._allow_load_errors = allow_load_errors

    # -- life -----------------------------------------------------------------
    def start(self) -> Self:
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

    def __enter__(self) -> Self:
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
            for name in sorted(self._children()):
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
            # Only the supervisor's watchdog, and no handler running: nothing to check.
            if not all(isinstance(m, CheckDeadlines) for m in fired) or self._running():
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
            return bool(ref.ask(IsIdle(), timeout=0.5))
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
