"""The event-step actor's partitions: buffers in offset order, pause flags, commits.

:class:`EventFlow` is the lowest layer of :class:`~actors.runtime.events.EventStepActor`
(the layers above add the bus health, the watchdog, retries and dead letters, then
the poll loop). It holds the per-partition state every layer reads: the records
fetched and not yet handled, the failure at a partition's head, the pause flags it
wants, when each partition last moved, and the offsets handled (the
:class:`~actors.runtime._kafka_offsets.OffsetTracker`), which it commits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors.steps import describe

from ._child import ChildActor, ChildContext
from ._kafka_client import BusOptions, ConsumerClient
from ._kafka_offsets import OffsetTracker, Rebalance, TopicPartition, partition_names
from .messages import Poll

__all__ = ["EventFlow", "Failure", "retry_slot"]


@dataclass
class Failure:
    """The head event of a partition that failed, and what happens to it next."""

    record: Any
    attempts: int
    error: str
    error_type: str
    #: The partition waits (a retry timer, or a dead-letter write in flight).
    waiting: bool = True
    #: Past ``max_retries``: the event goes to the dead-letter topic.
    dead_letter: bool = False
    #: A dead-letter write was sent and its answer is pending.
    sending: bool = False


def retry_slot(tp: TopicPartition) -> str:
    """The timer slot of a partition's retry (see :meth:`ChildActor.schedule`)."""
    return f"retry {tp.topic}[{tp.partition}]"


class EventFlow(ChildActor):
    """Per-partition buffers, pauses and commits of an event-step actor."""

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__(ctx)
        self.options: BusOptions | None = None
        self.consumer: ConsumerClient | None = None
        self.tracker = OffsetTracker()
        self.rebalance = Rebalance(self.log, self.tracker)
        #: Records fetched and not yet handled, per partition, in offset order; the partitions are in
        #: the order of their next turn (``EventStepActor._process`` moves those served to the end).
        self.buffers: dict[TopicPartition, deque[Any]] = {}
        #: The next offset expected per partition (a record below it is a duplicate).
        self.next_offset: dict[TopicPartition, int] = {}
        self.failures: dict[TopicPartition, Failure] = {}
        #: Partitions the actor wants paused (the consumer's own flags are reconciled to this).
        self.paused: set[TopicPartition] = set()
        #: When each owned partition last made progress (clock time): an event handled or
        #: dead-lettered, caught up with its end, or just assigned.
        self.progress: dict[TopicPartition, float] = {}
        #: The bus is reported down (see :mod:`actors.runtime._event_watchdog`).
        self.degraded = False
        self.poll_scheduled = False
        self.polled_empty = False
        self.last_commit = 0.0
        self.dead_lettered = 0
        self.retried = 0

    def _schedule_poll(self) -> None:
        """Send the next :class:`~actors.runtime.messages.Poll`, unless one is on its way."""
        if not self.poll_scheduled and self.consumer is not None:
            self.poll_scheduled = True
            self.actor_ref.tell(Poll())

    # -- buffers --------------------------------------------------------------
    def _ready(self) -> list[TopicPartition]:
        """Partitions with buffered events whose head does not wait (for a retry or a dead-letter write)."""
        failures = self.failures
        return [
            tp for tp, buf in self.buffers.items() if buf and (tp not in failures or not failures[tp].waiting)
        ]

    def _buffer(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        for tp, records in batch.items():
            if not records:
                continue
            expected = self.next_offset.get(tp)
            if expected is None:
                self.tracker.received(tp, records[0].offset)
            elif records[0].offset < expected:
                records = [r for r in records if r.offset >= expected]
                if not records:
                    continue
            self.buffers.setdefault(tp, deque()).extend(records)
            self.next_offset[tp] = records[-1].offset + 1

    def _apply_rebalance(self) -> None:
        """Drop the events of partitions given up or handed back (both are fetched again from their
        first unhandled event: by their next owner, or by this consumer after the seek the rebalance
        handler asked for), and start each assigned partition afresh."""
        gone, fresh = self.rebalance.take()
        if not gone and not fresh:
            return
        if gone:
            self.tracker.forget(gone)
        for tp in gone | fresh:
            self._drop_partition(tp)
        now = self.ctx.clock.now()
        for tp in fresh:
            self.progress[tp] = now

    def _drop_partition(self, tp: TopicPartition) -> None:
        self.buffers.pop(tp, None)
        self.next_offset.pop(tp, None)
        self.paused.discard(tp)
        self.failures.pop(tp, None)
        self.progress.pop(tp, None)
        self.cancel(retry_slot(tp))

    def _first_unhandled(self, tp: TopicPartition) -> int | None:
        buf = self.buffers.get(tp)
        if buf:
            return int(buf[0].offset)
        expected = self.next_offset.get(tp)
        if expected is not None:
            return expected
        consumer = self.consumer
        return consumer.position(tp) if consumer is not None else None

    def _lag(self, tp: TopicPartition, end: int | None) -> int | None:
        first = self._first_unhandled(tp)
        if end is None or first is None:
            return None
        return max(0, end - first)

    # -- flow control -----------------------------------------------------------
    def _sync_pauses(self) -> None:
        """Pause partitions that wait on a failure or hold a full buffer; resume the others.

        The consumer's own paused set is the truth: kafka-python keeps the flag of a
        partition handed back in a rebalance, and the actor must never leave one paused
        that it does not mean to. A buffer pauses at ``max_poll_records`` events and
        resumes below half of that. A resumed partition is fetched from the first offset
        not yet received (a seek if the consumer stands elsewhere): nothing relies on
        kafka-python keeping the records it fetched while the partition was paused.
        """
        consumer, options = self.consumer, self.options
        if consumer is None or options is None:
            return
        high = options.max_poll_records
        low = high // 2
        paused = self.paused
        wanted = {tp for tp, f in self.failures.items() if f.waiting}
        for tp, buf in self.buffers.items():
            if len(buf) >= high or (tp in paused and len(buf) > low):
                wanted.add(tp)
        assigned = consumer.assignment()
        wanted &= assigned
        actual = consumer.paused() & assigned
        pause = wanted - actual
        if pause:
            consumer.pause(pause)
        resume = actual - wanted
        if resume:
            consumer.resume(resume)
            for tp in resume:
                expected = self.next_offset.get(tp)
                if expected is not None and consumer.position(tp) != expected:
                    consumer.seek(tp, expected)
        self.paused = wanted

    # -- commits ------------------------------------------------------------------
    def _maybe_commit(self) -> None:
        consumer, options = self.consumer, self.options
        if consumer is None or options is None:
            return
        offsets = self.tracker.to_commit()
        if not offsets:
            return
        now = self.ctx.clock.now()
        caught_up = self.polled_empty and not self._ready()
        if not caught_up and now - self.last_commit < options.commit_interval:
            return
        self.last_commit = now
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        self.tracker.sending(offsets)
        consumer.commit_async(offsets, self._committed)

    def _committed(self, offsets: Mapping[TopicPartition, int], error: BaseException | None) -> None:
        if error is None:
            self.tracker.confirmed(offsets)
            return
        self.tracker.failed(offsets)
        if not self.degraded:
            self.log.info("offset commit failed, will retry", error=describe(error))

    def _release_consumer(self, why: str) -> float:
        """Commit what was processed and close the consumer (it leaves the group); the timeout used."""
        # The commit and the close share the supervisor's shutdown budget (and the bus may be down).
        timeout = max(0.5, min(5.0, self.ctx.settings.shutdown_timeout / 3))
        if self.degraded:
            timeout = min(timeout, 1.0)
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            offsets = self.tracker.unconfirmed()
            if offsets:
                try:
                    consumer.commit(offsets, timeout)
                    self.tracker.confirmed(offsets)
                    self.log.info(f"offsets committed on {why}", partitions=partition_names(offsets))
                except Exception as exc:
                    self.log.warning(
                        f"offsets not committed on {why}: those events will be delivered again",
                        error=describe(exc),
                    )
            try:
                consumer.close(timeout)
            except Exception as exc:
                self.log.warning("consumer did not close cleanly", error=describe(exc))
        return timeout
