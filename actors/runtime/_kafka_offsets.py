"""Which offsets an event-step actor may commit, and what a rebalance changed.

:class:`OffsetTracker` says which offsets may be committed: only what ``process_event`` finished.

Each partition's records are processed strictly in order, so "processed" is one
number per partition: the offset after the last record whose handling ended
(``process_event`` returned, or the record went to the dead-letter topic). That
number is what Kafka expects as a committed offset (the next record to read), so
a commit never covers an event that was not handled, nor one whose predecessors
in its partition were not.

The tracker is written by the actor's thread and read by the consumer's
rebalance listener, which kafka-python runs on its own I/O thread while the
actor's thread waits inside ``poll()``; a lock keeps both views consistent.

:class:`Rebalance` is the actor's rebalance handler (the consumer seam's
``RebalanceHandler``): on the I/O thread it hands the tracker's offsets to the
commit before a revocation and notes which partitions went and came, for the
actor to apply after ``poll()`` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from kafka.structs import TopicPartition

from actors.logs import BoundLogger

__all__ = ["OffsetTracker", "Rebalance", "TopicPartition", "partition_name", "partition_names"]


def partition_name(tp: TopicPartition) -> str:
    """``topic[partition]``, as logs and the status name a partition."""
    return f"{tp.topic}[{tp.partition}]"


def partition_names(partitions: Iterable[TopicPartition]) -> list[str]:
    """The sorted names of ``partitions`` (see :func:`partition_name`)."""
    return sorted(partition_name(tp) for tp in partitions)


class OffsetTracker:
    """Processed and committed offsets per partition.

    ``processed[tp]`` is the next offset to read after everything handled;
    ``sent[tp]`` the highest offset handed to a commit that has not failed;
    ``confirmed[tp]`` the highest offset the broker acknowledged.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processed: dict[TopicPartition, int] = {}
        self._sent: dict[TopicPartition, int] = {}
        self._confirmed: dict[TopicPartition, int] = {}
        self._first: dict[TopicPartition, int] = {}

    def received(self, tp: TopicPartition, offset: int) -> None:
        """Records of ``tp`` from ``offset`` on reached the actor (only the first call counts)."""
        with self._lock:
            self._first.setdefault(tp, offset)

    def first_unhandled(self, tp: TopicPartition) -> int | None:
        """The offset of the first record of ``tp`` not handled, if any record of it was received."""
        with self._lock:
            processed = self._processed.get(tp)
            return processed if processed is not None else self._first.get(tp)

    def processed(self, tp: TopicPartition, offset: int) -> None:
        """The record at ``offset`` (and so every earlier one of ``tp``) is handled."""
        with self._lock:
            if offset + 1 > self._processed.get(tp, -1):
                self._processed[tp] = offset + 1

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset of ``tp`` to handle, if anything of it was handled."""
        with self._lock:
            return self._processed.get(tp)

    def to_commit(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets handled but not yet sent in a commit (for ``partitions``, default all)."""
        with self._lock:
            wanted = (
                self._processed
                if partitions is None
                else {tp: self._processed[tp] for tp in partitions if tp in self._processed}
            )
            return {tp: off for tp, off in wanted.items() if off > self._sent.get(tp, -1)}

    def unconfirmed(self) -> dict[TopicPartition, int]:
        """Offsets handled but not acknowledged (sent or not): what a last, blocking commit needs."""
        with self._lock:
            return {tp: off for tp, off in self._processed.items() if off > self._confirmed.get(tp, -1)}

    def uncommitted(self) -> int:
        """How many partitions have handled offsets the broker has not acknowledged."""
        return len(self.unconfirmed())

    def sending(self, offsets: Mapping[TopicPartition, int]) -> None:
        """A commit of ``offsets`` was sent (the answer comes later)."""
        with self._lock:
            for tp, off in offsets.items():
                if off > self._sent.get(tp, -1):
                    self._sent[tp] = off

    def confirmed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The broker acknowledged a commit of ``offsets``."""
        with self._lock:
            for tp, off in offsets.items():
                if off > self._confirmed.get(tp, -1):
                    self._confirmed[tp] = off
                if off > self._sent.get(tp, -1):
                    self._sent[tp] = off

    def failed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """A commit of ``offsets`` failed: they are due again (unless a later one covered them)."""
        with self._lock:
            for tp, off in offsets.items():
                if self._sent.get(tp) == off:
                    confirmed = self._confirmed.get(tp)
                    if confirmed is None:
                        self._sent.pop(tp, None)
                    else:
                        self._sent[tp] = confirmed

    def committed(self, tp: TopicPartition) -> int | None:
        """The last acknowledged commit of ``tp``."""
        with self._lock:
            return self._confirmed.get(tp)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """The partitions were given up: their next owner starts from the committed offsets."""
        with self._lock:
            for tp in partitions:
                for offsets in (self._processed, self._sent, self._confirmed, self._first):
                    offsets.pop(tp, None)


class Rebalance:
    """The actor's side of a rebalance, called on kafka-python's I/O thread.

    It only reads and updates the offset tracker (thread-safe) and records
    what changed; the actor applies it after ``poll()`` returns (see
    ``EventFlow._apply_rebalance`` in :mod:`actors.runtime._event_flow`).
    """

    def __init__(self, log: BoundLogger, tracker: OffsetTracker) -> None:
        self.log = log
        self.tracker = tracker
        self.lock = threading.Lock()
        #: Partitions given up (their buffered events are to be dropped).
        self.gone: set[TopicPartition] = set()
        #: Partitions assigned since the actor last looked.
        self.fresh: set[TopicPartition] = set()
        #: The partitions this consumer owns now (for the status).
        self.owned: set[TopicPartition] = set()
        #: Revoked partitions' first unhandled offsets: where to fetch them from if they come back.
        self.resume_at: dict[TopicPartition, int] = {}

    def revoking(self, partitions: set[TopicPartition], lost: bool) -> dict[TopicPartition, int]:
        """The offsets to commit before ``partitions`` are given up (none for lost ones)."""
        if lost:
            return {}
        return self.tracker.to_commit(partitions)

    def revoked(
        self,
        partitions: set[TopicPartition],
        offsets: Mapping[TopicPartition, int],
        error: BaseException | None,
        lost: bool,
    ) -> None:
        """``partitions`` are given up; ``offsets`` were committed unless ``error``."""
        log = self.log
        if offsets and error is None:
            self.tracker.confirmed(offsets)
            log.info("offsets committed before a rebalance", partitions=partition_names(offsets))
        elif error is not None:
            log.warning(
                "offsets not committed before a rebalance: those events will be delivered again",
                partitions=partition_names(offsets),
                error=f"{type(error).__name__}: {error}",
            )
        # kafka-python keeps the fetch position of a partition handed back to the same member
        # (eager rebalance): it must go back to the first event the actor did not handle. A lost
        # partition starts afresh from the committed offset (another member may have moved it on).
        first = {} if lost else {tp: self.tracker.first_unhandled(tp) for tp in partitions}
        self.tracker.forget(partitions)
        with self.lock:
            for tp in partitions:
                offset = first.get(tp)
                if offset is None:
                    self.resume_at.pop(tp, None)
                else:
                    self.resume_at[tp] = offset
            self.gone.update(partitions)
            self.owned.difference_update(partitions)

    def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """``partitions`` are this consumer's now; the seeks back to first unhandled events."""
        with self.lock:
            seeks = {tp: self.resume_at[tp] for tp in partitions if tp in self.resume_at}
            self.resume_at.clear()
            self.owned.update(partitions)
            self.fresh.update(partitions)
        self.log.info("partitions assigned", partitions=partition_names(partitions))
        return seeks

    def owned_names(self) -> list[str]:
        """The names of the partitions this consumer owns now."""
        with self.lock:
            return partition_names(self.owned)

    def take(self) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """The partitions given up and those assigned since the last call."""
        with self.lock:
            gone, fresh = self.gone, self.fresh
            self.gone, self.fresh = set(), set()
        return gone, fresh
