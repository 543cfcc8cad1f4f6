"""Time for the runtime: a real clock with timers, and a fake one that tests drive."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "FakeClock", "RealClock", "Timer"]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """``now()`` in seconds since the epoch; ``call_later`` runs a quick callback later.

    Callbacks run in the clock's own thread (or, for :class:`FakeClock`, in the
    thread that advances it) and should only send a message.
    """

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class _Entry:
    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Heap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Entry]] = []
        self._counter = itertools.count()

    def push(self, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.due, next(self._counter), entry))

    def pop_due(self, now: float) -> _Entry | None:
        due = self.next_due()
        return heapq.heappop(self._heap)[2] if due is not None and due <= now else None

    def next_due(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None


class RealClock:
    """Wall-clock time; timers fire from one daemon thread shared by the clock's users."""

    def __init__(self) -> None:
        self._heap = _Heap()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        entry = _Entry(self.now() + max(0.0, delay), callback)
        with self._cond:
            self._heap.push(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="actors-clock", daemon=True)
                self._thread.start()
            self._cond.notify()
        return entry

    def _run(self) -> None:
        while True:
            with self._cond:
                entry = self._heap.pop_due(self.now())
                if entry is None:
                    due = self._heap.next_due()
                    self._cond.wait(None if due is None else max(0.0, due - self.now()))
                    continue
            try:
                entry.callback()
            except Exception:  # a timer callback must never kill the clock
                pass


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`; due timers fire then.

    A timer with a delay of zero or less fires at once, in the caller's thread.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._heap = _Heap()
        self._lock = threading.RLock()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        entry = _Entry(self._now + delay, callback)
        if delay <= 0:
            callback()
            return entry
        with self._lock:
            self._heap.push(entry)
        return entry

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each due timer at its own time, in order."""
        with self._lock:
            target = self._now + seconds
            while (entry := self._heap.pop_due(target)) is not None:
                self._now = max(self._now, entry.due)
                entry.callback()
            self._now = target

    def pending_timers(self) -> int:
        with self._lock:
            return sum(1 for _, _, e in self._heap._heap if not e.cancelled)
