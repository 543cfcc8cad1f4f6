"""The turns of API calls: how many run at once, and writes held back while the synchronizer is behind.

In the main job the API's handler threads and the synchronizer's actors share one
interpreter. Measured with 8 clients writing, the handlers (with gRPC's own per-call
work) took about three quarters of it and a sync step ran at a fifth of its unloaded
rate, ending thousands of objects behind. :class:`CallGate` gives the synchronizer
its share back in two ways:

* at most ``max_concurrent`` unary calls run their handler at once;
* a write (create, update, delete) waits while the synchronizer's backlog (objects
  ready to sync, :attr:`backlog`) is at or above ``backlog_limit``, for at most
  ``max_wait`` seconds: clients slow down to the pace the synchronizer keeps, and are
  never refused. While they wait they take no share of the interpreter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CallGate"]

#: How often a held-back write looks at the backlog again (seconds).
POLL_INTERVAL = 0.005


class CallGate:
    """Admission of API calls: a bound on concurrent calls, and backpressure for writes.

    Args:
        max_concurrent: how many unary calls run their handler at once (``None``: no bound).
        backlog: the synchronizer's backlog, read before each write (``None``: no backpressure).
        backlog_limit: a write waits while ``backlog()`` is at least this (0: never waits).
        max_wait: the longest a write waits for the backlog to fall (seconds).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        max_concurrent: int | None = None,
        *,
        backlog: Callable[[], int] | None = None,
        backlog_limit: int = 0,
        max_wait: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        self.backlog = backlog
        self.backlog_limit = backlog_limit
        self.max_wait = max_wait
        self.clock = clock
        self._pause = threading.Event()  # never set: its wait() is the poll's pause
        #: Writes that waited for the backlog, and the seconds they waited in total.
        self.held = 0
        self.held_seconds = 0.0
        #: Writes waiting for the backlog now.
        self.waiting = 0
        self._count_lock = threading.Lock()

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
                self._pause.wait(POLL_INTERVAL)
        finally:
            waited = self.clock() - began
            with self._count_lock:
                self.waiting -= 1
                self.held += 1
                self.held_seconds += waited
        return waited

    @contextmanager
    def turn(self, write: bool = False) -> Iterator[None]:
        """A call's turn: a write first waits for the backlog, then any call for a free slot."""
        if write:
            self.hold_write()
        if self._slots is None:
            yield
            return
        with self._slots:
            yield
