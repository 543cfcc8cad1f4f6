"""The turns of API calls: how many run at once, and the synchronizer's share of the interpreter.

In the main job the API's handler threads and the synchronizer's actors share one
interpreter. Measured with 8 clients writing, the handlers (with gRPC's own per-call
work) took about three quarters of it and a sync step ran at a fifth of its unloaded
rate, ending thousands of objects behind. :class:`CallGate` gives the synchronizer
its share back in three ways:

* at most ``max_concurrent`` unary calls run their handler at once;
* *fair share*: while the synchronizer has objects ready to sync (:attr:`backlog`
  above 0), the calls take at most ``1 - sync_share`` of the interpreter: a call whose
  handler thread ran ``d`` seconds of CPU time makes the next one wait
  ``d * sync_share / (1 - sync_share)`` seconds (at most :data:`MAX_PAUSE`). CPU
  time, not wall time: a call waiting for the store's write lock or for the
  interpreter takes nothing from the synchronizer meanwhile, and calls running at
  once each count the time they used. gRPC's per-call work (receiving the request,
  sending the answer, the handler threads waking) follows the calls' rate, so it
  shrinks with them. With nothing to sync the calls run back to back;
* a write (create, update, delete) waits while the backlog is at or above
  ``backlog_limit``, for at most ``max_wait`` seconds: clients slow down to the pace
  the synchronizer keeps, and are never refused.

While a call waits it takes no share of the interpreter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

__all__ = ["MAX_PAUSE", "CallGate"]

#: How often a held-back write looks at the backlog again (seconds).
POLL_INTERVAL = 0.005
#: The longest one call waits for the synchronizer's share (seconds), however long the last call ran.
MAX_PAUSE = 0.25
#: The turn of a call when there is nothing to bound nor to share (reusable: it holds no state).
_FREE: AbstractContextManager[None] = nullcontext()


class CallGate:
    """Admission of API calls: a bound on concurrent calls, the synchronizer's share, backpressure.

    Args:
        max_concurrent: how many unary calls run their handler at once (``None``: no bound).
        backlog: the synchronizer's backlog, read before each write (``None``: no backpressure
            and no fair share).
        backlog_limit: a write waits while ``backlog()`` is at least this (0: never waits).
        max_wait: the longest a write waits for the backlog to fall (seconds).
        sync_share: the share of the time left to the synchronizer while ``backlog()`` is
            above 0, from 0 (none: calls run back to back) to below 1.
        clock: monotonic seconds (injectable for tests).
        cpu: the calling thread's CPU seconds, what a call's handler used (injectable for tests).
        pause: waits the given seconds (injectable for tests).
    """

    def __init__(
        self,
        max_concurrent: int | None = None,
        *,
        backlog: Callable[[], int] | None = None,
        backlog_limit: int = 0,
        max_wait: float = 1.0,
        sync_share: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.thread_time,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        if not 0.0 <= sync_share < 1.0:
            raise ValueError(f"sync_share must be at least 0 and below 1, not {sync_share!r}")
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        self.backlog = backlog
        self.backlog_limit = backlog_limit
        self.max_wait = max_wait
        self.sync_share = sync_share
        self.clock = clock
        self.cpu = cpu
        self._pause_event = threading.Event()  # never set: its wait() is the pause
        self.pause: Callable[[float], object] = pause or self._pause_event.wait
        #: Writes that waited for the backlog.
        self.held = 0
        #: Writes waiting for the backlog now.
        self.waiting = 0
        #: Calls that waited for the synchronizer's share, and the seconds they waited in total.
        self.yielded = 0
        self.yielded_seconds = 0.0
        self._count_lock = threading.Lock()
        #: When the next call may start, while the synchronizer has work (monotonic seconds).
        self._resume_at = float("-inf")

    def hold_write(self) -> float:
        """Wait while the backlog is at or above the limit (at most ``max_wait``); the seconds waited."""
        if self.backlog is None or self.backlog_limit <= 0 or self.backlog() < self.backlog_limit:
            return 0.0
        began = self.clock()
        deadline = began + self.max_wait
        with self._count_lock:
            self.waiting += 1
        try:
            while self.clock() < deadline and self.backlog() >= self.backlog_limit:
                self.pause(POLL_INTERVAL)
        finally:
            waited = self.clock() - began
            with self._count_lock:
                self.waiting -= 1
                self.held += 1
        return waited

    def yield_share(self) -> float:
        """Wait for the synchronizer's share of the time, if it has work; the seconds waited."""
        if self.sync_share <= 0 or self.backlog is None:
            return 0.0
        wait = self._resume_at - self.clock()
        if wait <= 0 or self.backlog() <= 0:
            return 0.0
        wait = min(wait, MAX_PAUSE)
        self.pause(wait)
        with self._count_lock:
            self.yielded += 1
            self.yielded_seconds += wait
        return wait

    def _ran(self, began: float) -> None:
        """A call's handler used the CPU time since ``began``: the next call waits in proportion."""
        if self.sync_share <= 0:
            return
        owed = (self.cpu() - began) * self.sync_share / (1.0 - self.sync_share)
        now = self.clock()
        with self._count_lock:
            self._resume_at = min(max(self._resume_at, now) + owed, now + MAX_PAUSE)

    def turn(self, write: bool = False) -> AbstractContextManager[None]:
        """A call's turn: a write first waits for the backlog, then any call for a free slot and its share.

        Without a bound on concurrent calls and without a backlog to look at (``core``),
        there is nothing to wait for: the turn is a shared no-op.
        """
        if self._slots is None and self.backlog is None:
            return _FREE
        return _Turn(self, write)


class _Turn:
    """One call's turn through a :class:`CallGate` (a class, not a generator: it is on every call)."""

    __slots__ = ("_began", "_gate", "_write")

    def __init__(self, gate: CallGate, write: bool) -> None:
        self._gate = gate
        self._write = write
        self._began = 0.0

    def __enter__(self) -> None:
        gate = self._gate
        if self._write:
            gate.hold_write()
        slots = gate._slots
        if slots is not None:
            slots.acquire()
        try:
            gate.yield_share()
            self._began = gate.cpu()
        except BaseException:
            if slots is not None:
                slots.release()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        gate = self._gate
        try:
            gate._ran(self._began)
        finally:
            if gate._slots is not None:
                gate._slots.release()
