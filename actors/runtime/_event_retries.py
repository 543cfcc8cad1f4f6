"""The event-step actor's failed events: retries with backoff, then the dead-letter topic.

The rule is in :mod:`actors.runtime.events`; here also: the backoff doubles up to
``retry_backoff_max``, a dead-letter record carries :data:`DEAD_LETTER_HEADERS`, a
failed write is tried again after a backoff, and nothing is committed past the event
until its write succeeded.
"""

from __future__ import annotations

from typing import Any

from actors._backoff import Backoff
from actors.steps import describe

from ._child import ChildContext, tell_quietly
from ._event_flow import Failure, retry_slot
from ._event_watchdog import EventWatchdog
from ._kafka_offsets import TopicPartition
from ._kafka_producer import DeadLetterSink, SinkFactory
from .messages import DeadLettered, RetryDue

__all__ = ["DEAD_LETTER_HEADERS", "MAX_ERROR", "EventRetries"]

#: Headers of a dead-letter record, in this order, before the original record's own headers.
DEAD_LETTER_HEADERS = (
    "error",
    "error_type",
    "origin_topic",
    "origin_partition",
    "origin_offset",
    "origin_timestamp",
    "step",
    "group",
    "attempts",
)

#: Longest error text put into a dead-letter header.
MAX_ERROR = 2000


class EventRetries(EventWatchdog):
    """Schedules the retries of a failed head event and writes it to the dead-letter topic after them."""

    def __init__(self, ctx: ChildContext, step_name: str, sink_factory: SinkFactory) -> None:
        super().__init__(ctx)
        self.step_name = step_name
        self.sink_factory = sink_factory
        self.sink: DeadLetterSink | None = None

    def _failed(self, tp: TopicPartition, record: Any, exc: Exception) -> None:
        """``process_event`` raised ``exc`` on ``record``, the head of ``tp``: a retry, or a dead letter."""
        options = self.options
        assert options is not None
        previous = self.failures.get(tp)
        again = previous is not None and previous.record.offset == record.offset
        attempts = previous.attempts + 1 if previous is not None and again else 1
        failure = Failure(record, attempts, describe(exc)[:MAX_ERROR], type(exc).__name__)
        self.failures[tp] = failure
        self.ctx.metrics.events(self.ctx.name, "error")
        where = f"{tp.topic}[{tp.partition}]@{record.offset}"
        self.ctx.state.detail["last_event_error"] = f"{where}: {failure.error}"
        if attempts <= options.max_retries:
            self.retried += 1
            self._retry_later(
                tp,
                record.offset,
                attempts,
                "event failed, will retry",
                attempt=attempts,
                max_retries=options.max_retries,
                error=failure.error,
            )
        else:
            failure.dead_letter = True
            self._send_dead_letter(tp, failure)
        self._sync_pauses()

    def _retry_later(self, tp: TopicPartition, offset: int, step: int, event: str, **fields: Any) -> None:
        """Log ``event`` and send ``tp`` a :class:`RetryDue` after the ``step``-th retry backoff."""
        options = self.options
        assert options is not None
        delay = Backoff(options.retry_backoff, options.retry_backoff_max).delay(step)
        self.log.warning(
            event, topic=tp.topic, partition=tp.partition, offset=offset, retry_in=delay, **fields
        )
        self.schedule(retry_slot(tp), delay, RetryDue(tp.topic, tp.partition, offset))

    def on_retry_due(self, message: RetryDue) -> None:
        tp = TopicPartition(message.topic, message.partition)
        failure = self.failures.get(tp)
        if failure is None or failure.record.offset != message.offset or failure.sending:
            return
        if failure.dead_letter:
            self._send_dead_letter(tp, failure)  # the previous write failed: again
            return
        failure.waiting = False
        self._sync_pauses()
        self._schedule_poll()

    def _send_dead_letter(self, tp: TopicPartition, failure: Failure) -> None:
        options = self.options
        assert options is not None
        record = failure.record
        failure.waiting = True
        failure.sending = True
        if self.sink is None:
            self.sink = self.sink_factory(options)
        headers: list[tuple[str, bytes]] = [
            ("error", failure.error.encode("utf-8", "replace")),
            ("error_type", failure.error_type.encode()),
            ("origin_topic", tp.topic.encode()),
            ("origin_partition", str(tp.partition).encode()),
            ("origin_offset", str(record.offset).encode()),
            ("origin_timestamp", str(record.timestamp).encode()),
            ("step", self.step_name.encode()),
            ("group", options.group.encode()),
            ("attempts", str(failure.attempts).encode()),
            *(record.headers or ()),
        ]
        ref, offset = self.actor_ref, record.offset

        def done(error: BaseException | None) -> None:
            text = None if error is None else describe(error)
            tell_quietly(ref, DeadLettered(tp.topic, tp.partition, offset, text))

        self.sink.send(options.dead_letter_topic, record.key, record.value, headers, done)

    def on_dead_lettered(self, message: DeadLettered) -> None:
        options = self.options
        assert options is not None
        tp = TopicPartition(message.topic, message.partition)
        failure = self.failures.get(tp)
        if failure is None or failure.record.offset != message.offset or not failure.sending:
            return  # the partition was given up meanwhile
        failure.sending = False
        if message.error is not None:
            # The event's attempts are spent: every failed write waits the step after its last one.
            self._retry_later(
                tp,
                message.offset,
                failure.attempts + 1,
                "dead-letter write failed, will retry",
                dead_letter_topic=options.dead_letter_topic,
                error=message.error,
            )
            return
        del self.failures[tp]
        buf = self.buffers.get(tp)
        if buf and buf[0].offset == message.offset:
            buf.popleft()
        self.tracker.processed(tp, message.offset)
        self._progressed(tp, self.ctx.clock.now())
        self.dead_lettered += 1
        self.ctx.metrics.dead_letter(self.ctx.name)
        self.ctx.state.failed += 1
        last = {
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": message.offset,
            "error": failure.error,
        }
        self.ctx.state.detail["dead_letters"] = [  # the last five, for the web view
            *self.ctx.state.detail.get("dead_letters", [])[-4:],
            {**last, "at": self.ctx.clock.now(), "to": options.dead_letter_topic},
        ]
        self.log.warning(
            "event sent to the dead-letter topic",
            topic=tp.topic,
            partition=tp.partition,
            offset=message.offset,
            dead_letter_topic=options.dead_letter_topic,
            attempts=failure.attempts,
            error=failure.error,
        )
        self._sync_pauses()
        self._update_status()
        self._schedule_poll()

    def _close_sink(self, timeout: float) -> None:
        """Close the dead-letter producer, if one was made."""
        sink, self.sink = self.sink, None
        if sink is not None:
            try:
                sink.close(timeout)
            except Exception as exc:
                self.log.warning("dead-letter producer did not close cleanly", error=describe(exc))
