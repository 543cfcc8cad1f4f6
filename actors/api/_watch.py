"""The watch streams: change notices from the journal, then live ones, with no gap and no repeat.

A stream subscribes to the store first, then replays the journal after the
requested seq, then forwards live notices, skipping any seq already sent. A live
notice that jumps ahead (another writer's notice published first) or a queue
overflow is filled from the journal, so the order stays by seq.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from actors.store import ChangeNotice, Store

from ._protos import Protos
from ._wire import notice_to_message

__all__ = ["WATCH_QUEUE_LIMIT", "Watches"]

#: Journal entries read per query when a watch replays.
REPLAY_BATCH = 500
#: Live notices queued for one slow watcher before it falls back to the journal.
WATCH_QUEUE_LIMIT = 10_000


#: Put in a watcher's queue to wake it: the call ended, or the queue overflowed.
_CANCELLED, _OVERFLOW = object(), object()


class _Stream:
    """One watch call: its queue of live notices and the last seq it sent."""

    def __init__(
        self, store: Store, protos: Protos, since_seq: int, models: Sequence[str], context: Any
    ) -> None:
        self.store = store
        self.notice_cls = protos.message("ChangeNotice")
        self.models = tuple(models)
        self.context = context
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.overflow = threading.Event()
        self.since_seq = since_seq
        self.last = since_seq

    def on_notice(self, notice: ChangeNotice) -> None:
        """Runs in the writer's thread: must be quick and must not block."""
        if self.overflow.is_set():
            return
        if self.queue.qsize() >= WATCH_QUEUE_LIMIT:
            self.overflow.set()
            self.queue.put(_OVERFLOW)
            return
        self.queue.put(notice)

    def _send(self, notice: ChangeNotice) -> Iterator[bytes]:
        self.last = notice.seq
        if not self.models or self.store.schema.base_among(notice.model, self.models) is not None:
            yield notice_to_message(self.notice_cls, notice).SerializeToString()

    def replay(self, stopping: threading.Event, upto: int | None = None) -> Iterator[bytes]:
        """The journal after the last seq sent (up to ``upto``), in batches."""
        while self.context.is_active() and not stopping.is_set():
            batch = self.store.changes_since(self.last, REPLAY_BATCH)
            for notice in batch:
                if upto is not None and notice.seq > upto:
                    return
                yield from self._send(notice)
            if len(batch) < REPLAY_BATCH:
                return

    def _drain(self) -> None:
        """Drop the queue of a reader too slow for it; the journal has every dropped notice."""
        self.overflow.clear()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def run(self, stopping: threading.Event) -> Iterator[bytes]:
        """Replay, then forward live notices until the call ends or the server stops."""
        self.last = self.since_seq if self.since_seq >= 0 else self.store.last_seq()
        yield from self.replay(stopping)
        while self.context.is_active() and not stopping.is_set():
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is _CANCELLED:
                return
            if item is _OVERFLOW:
                # Every dropped notice was committed before it was queued, so the
                # replay that follows the drain reads it back.
                self._drain()
                yield from self.replay(stopping)
                continue
            if item.seq <= self.last:
                continue
            if item.seq > self.last + 1:
                yield from self.replay(stopping, upto=item.seq - 1)
                if item.seq <= self.last:
                    continue
            yield from self._send(item)


class Watches:
    """The watch streams of one server over ``store``; :meth:`stop` ends them all at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stopping = threading.Event()
        self._streams: set[_Stream] = set()
        self._lock = threading.Lock()

    def stream(
        self, protos: Protos, since_seq: int, models: Sequence[str], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        """Serialized notices after ``since_seq`` (from now on if negative) of ``models`` and
        the models derived from them (all when empty), until the call ends."""
        stream = _Stream(self.store, protos, since_seq, models, context)
        unsubscribe = self.store.subscribe(stream.on_notice)
        with self._lock:
            self._streams.add(stream)
        context.add_callback(lambda: stream.queue.put(_CANCELLED))
        try:
            yield from stream.run(self._stopping)
        finally:
            unsubscribe()
            with self._lock:
                self._streams.discard(stream)

    def stop(self) -> None:
        """Wake every watch stream so the server can stop at once."""
        self._stopping.set()
        with self._lock:
            for stream in list(self._streams):
                stream.queue.put(_CANCELLED)
