"""The event-step actor: one Kafka consumer per ``EventStep``, and no event lost.

One :class:`EventStepActor` runs each event step. It owns a kafka-python
consumer in the synchronizer's consumer group (the group id is the
synchronizer's ``name``), subscribed to the step's ``topics`` or ``pattern``,
and calls ``process_event(event)`` with an :class:`Event` for every record.

Delivery is at least once:

- Offsets are committed by hand, and only up to what was handled: each
  partition's events are processed in offset order, so the committed offset
  (the next one to read) never passes an event whose ``process_event`` has not
  returned, nor one with an unfinished predecessor in its partition.
- A failing event is tried again after ``retry_backoff`` seconds, doubling,
  ``max_retries`` times; meanwhile its partition is paused (its later events
  wait, in order) while the other partitions keep flowing. Then it is written to
  the dead-letter topic, with the error and its origin in headers, and
  consumption goes on past it.
- On a rebalance the processed offsets of the partitions being given up are
  committed first, and a partition handed back to this consumer is fetched
  again from its first unhandled event; on shutdown the running slice of
  events finishes and its offsets are committed; when the actor dies (step
  code exits) what was processed is committed and the rest is delivered again
  to its replacement.

It never stalls silently: fetching of a partition is paused while its buffer
is full or its head event waits for a retry, and the pause flags are
reconciled with the consumer's own after every poll. A watchdog
(:class:`CheckProgress`, run by the poll loop every quarter of ``stall_timeout``
of the runtime clock) looks for owned
partitions with events left that made no progress for ``stall_timeout``
seconds, or a group join that lasts that long; it reports the actor ``stalled``,
logs it once, and recovers by
committing what was handled and joining the group again with a new consumer,
which resumes at the committed offsets. ``detail["lag"]`` and
``detail["last_progress"]`` give each owned partition's events left and the
time of its last progress.

The actor never blocks for long inside one message: a :class:`Poll` message it
sends itself polls the consumer with a short timeout, handles a bounded slice
of events, commits when due and sends the next :class:`Poll`. With no broker at
start it keeps trying (:class:`Connect`, capped exponential backoff); when the
broker goes away mid-stream kafka-python reconnects by itself. Either way the
actor reports ``degraded`` (``detail["bus"]`` says why) and logs once per change.

:func:`validate_event_step` is the load-time check of a step class.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.structs import TopicPartition

from actors.steps import EventStep, StepFactory, validate_event_step
from actors.store import Caller

from . import produce as _produce
from ._child import ChildActor, ChildContext, tell_quietly
from ._kafka_client import (
    BusOptions,
    ConsumerClient,
    ConsumerFactory,
    ConsumerSpec,
    DeadLetterSink,
    EventBusError,
    KafkaConsumerClient,
    KafkaDeadLetterSink,
    SinkFactory,
    is_outage,
)
from ._kafka_offsets import OffsetTracker
from .messages import CheckProgress, Connect, DeadLettered, Poll, RetryDue

__all__ = [
    "DEAD_LETTER_HEADERS",
    "Event",
    "EventStepActor",
    "EventStepError",
    "validate_event_step",
]

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

#: Longest run of ``process_event`` calls inside one message (seconds, wall clock).
SLICE = 0.05
#: How many events of one partition run before the next partition gets a turn.
BURST = 100
#: Longest error text put into a dead-letter header.
MAX_ERROR = 2000
#: How long one ``poll()`` waits while the consumer (re)joins its group (see ``ConsumerClient.joining``).
JOIN_POLL = 1.0

_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class Event:
    """One record from the bus, as ``process_event(event)`` receives it.

    ``value`` and ``key`` are the raw bytes (``json.loads(event.value)`` works
    on bytes); ``timestamp`` is Kafka's, in milliseconds since the epoch;
    ``headers`` is a tuple of ``(name, bytes)``.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int | None
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, record: Any) -> Event:
        """An event from a kafka-python ``ConsumerRecord`` (or anything with the same attributes)."""
        event: Event = _new(cls)
        _set(event, "topic", record.topic)
        _set(event, "key", record.key)
        _set(event, "value", record.value)
        _set(event, "timestamp", record.timestamp)
        _set(event, "partition", record.partition)
        _set(event, "offset", record.offset)
        headers = record.headers
        _set(event, "headers", tuple(headers) if headers else ())
        return event


class EventStepError(Exception):
    """An event step that cannot run: its class (topics/pattern/technology) or the ``event_bus`` config."""


@dataclass
class _Failure:
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


class _Rebalance:
    """The actor's side of a rebalance, called on kafka-python's I/O thread.

    It only reads and updates the offset tracker (thread-safe) and records
    what changed; the actor applies it after ``poll()`` returns
    (:meth:`EventStepActor._apply_rebalance`).
    """

    def __init__(self, actor: EventStepActor) -> None:
        self.log = actor.log
        self.tracker = actor.tracker
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
        log = self.log
        if offsets and error is None:
            self.tracker.confirmed(offsets)
            log.info("offsets committed before a rebalance", partitions=_names(offsets))
        elif error is not None:
            log.warning(
                "offsets not committed before a rebalance: those events will be delivered again",
                partitions=_names(offsets),
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
        with self.lock:
            seeks = {tp: self.resume_at[tp] for tp in partitions if tp in self.resume_at}
            self.resume_at.clear()
            self.owned.update(partitions)
            self.fresh.update(partitions)
        self.log.info("partitions assigned", partitions=_names(partitions))
        return seeks

    def owned_names(self) -> list[str]:
        with self.lock:
            return _names(self.owned)

    def take(self) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """The partitions given up and those assigned since the last call."""
        with self.lock:
            gone, fresh = self.gone, self.fresh
            self.gone, self.fresh = set(), set()
        return gone, fresh


def _retry_slot(tp: TopicPartition) -> str:
    """The timer slot of a partition's retry (see :meth:`ChildActor.schedule`)."""
    return f"retry {tp.topic}[{tp.partition}]"


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _names(partitions: Any) -> list[str]:
    return sorted(_name(tp) for tp in partitions)


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line (kafka-python's errors already start with their type)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


class EventStepActor(ChildActor):
    """Runs one event step: consumes its topics, calls ``process_event``, commits what was handled.

    Started by the supervisor as ``EventStepActor.start(ctx, factory)``; tests
    may pass ``consumer_factory`` and ``sink_factory`` (see
    :mod:`actors.runtime._kafka_client`) to run it without a broker.
    """

    kind = "event"

    def __init__(
        self,
        ctx: ChildContext,
        factory: StepFactory,
        *,
        consumer_factory: ConsumerFactory | None = None,
        sink_factory: SinkFactory | None = None,
    ) -> None:
        super().__init__(ctx)
        self.factory = factory
        self.consumer_factory: ConsumerFactory = consumer_factory or KafkaConsumerClient
        self.sink_factory: SinkFactory = sink_factory or KafkaDeadLetterSink
        self.options: BusOptions | None = None
        self.step: EventStep | None = None
        self.consumer: ConsumerClient | None = None
        self.sink: DeadLetterSink | None = None
        self.tracker = OffsetTracker()
        self.rebalance = _Rebalance(self)
        #: Records fetched and not yet handled, per partition, in offset order.
        self.buffers: dict[TopicPartition, deque[Any]] = {}
        #: The next offset expected per partition (a record below it is a duplicate).
        self.next_offset: dict[TopicPartition, int] = {}
        self.failures: dict[TopicPartition, _Failure] = {}
        #: Partitions the actor wants paused (the consumer's own flags are reconciled to this).
        self.paused: set[TopicPartition] = set()
        #: When each owned partition last made progress (clock time): an event handled or
        #: dead-lettered, caught up with its end, or just assigned.
        self.progress: dict[TopicPartition, float] = {}
        #: Owned partitions the watchdog found stalled, until each makes progress again.
        self.stalled: set[TopicPartition] = set()
        self.recoveries = 0
        #: When the poll loop next runs the watchdog (clock time; see :meth:`on_check_progress`).
        self.next_check = 0.0
        #: Since when the consumer has been (re)joining its group without a break (clock time).
        self.joining_since: float | None = None
        #: The watchdog found the group join stuck (kafka-python can stay "rebalancing" for ever).
        self.join_stuck = False
        self.poll_scheduled = False
        self.connect_delay = 0.0
        self.connected_once = False
        self.degraded = False
        self.problem_since: float | None = None
        self.polled_empty = False
        self.last_commit = 0.0
        self.dead_lettered = 0
        self.retried = 0
        self.handlers.update(
            {
                Connect: self.on_connect,
                Poll: self.on_poll,
                RetryDue: self.on_retry_due,
                DeadLettered: self.on_dead_lettered,
                CheckProgress: self.on_check_progress,
            }
        )

    # -- life -----------------------------------------------------------------
    def on_start(self) -> None:
        super().on_start()
        self.ctx.state.detail.update(self._subscription())
        self.ctx.state.detail["bus"] = "connecting"
        self.actor_ref.tell(Connect())

    def on_stop(self) -> None:
        self._shutdown("stop")

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self._shutdown("crash")
        super().on_failure(exc_type, exc_value, traceback)

    def is_idle(self) -> bool:
        """Nothing in hand: caught up with the bus (or unable to reach it), nothing buffered or retrying."""
        if self.consumer is None or self.degraded:
            return True
        if self.failures or any(self.buffers.values()) or self.tracker.uncommitted():
            return False
        return self.polled_empty and _caught_up(self.consumer)

    def _shutdown(self, why: str) -> None:
        """Commit what was processed, leave the group, close the dead-letter producer."""
        self.cancel_timers()
        timeout = self._release_consumer(why)
        sink, self.sink = self.sink, None
        if sink is not None:
            try:
                sink.close(timeout)
            except Exception as exc:
                self.log.warning("dead-letter producer did not close cleanly", error=_describe(exc))

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
                    self.log.info(f"offsets committed on {why}", partitions=_names(offsets))
                except Exception as exc:
                    self.log.warning(
                        f"offsets not committed on {why}: those events will be delivered again",
                        error=_describe(exc),
                    )
            try:
                consumer.close(timeout)
            except Exception as exc:
                self.log.warning("consumer did not close cleanly", error=_describe(exc))
        return timeout

    # -- connecting -----------------------------------------------------------
    def _prepare(self) -> BusOptions:
        """Check the step class and the ``event_bus`` config; :class:`EventStepError` if either is wrong."""
        if self.options is None:
            where = f"event step {self.factory.name} ({self.factory.path})"
            problem = validate_event_step(self.factory.cls)
            if problem is not None:
                raise EventStepError(f"{where}: {problem}")
            try:
                self.options = BusOptions.from_settings(self.ctx.settings.event_bus, self.ctx.settings.name)
            except EventBusError as exc:
                raise EventStepError(f"{where}: {exc}") from None
        return self.options

    def _subscription(self) -> dict[str, Any]:
        """``{"topics": [...]}`` or ``{"pattern": ...}``, as the step class declares."""
        cls: Any = self.factory.cls
        return {"topics": list(cls.topics)} if getattr(cls, "topics", None) else {"pattern": cls.pattern}

    def on_connect(self, _message: Connect) -> None:
        if self.consumer is not None:
            return
        options = self._prepare()
        if self.step is None:
            self.step = self.call_user(self.factory.make)
        subscription = self._subscription()
        spec = ConsumerSpec(
            options=options,
            name=self.factory.name,
            handler=self.rebalance,
            topics=tuple(subscription.get("topics", ())),
            pattern=subscription.get("pattern"),
        )
        try:
            self.consumer = self.consumer_factory(spec)
        except Exception as exc:
            if not is_outage(exc):
                raise
            delay = min(max(options.reconnect_backoff, self.connect_delay * 2), options.reconnect_backoff_max)
            self.connect_delay = delay
            servers = ",".join(options.servers)
            self._bus_down(f"no broker answers at {servers}: {_describe(exc)}", next_attempt=delay)
            self.schedule("connect", delay, Connect())
            return
        self.connect_delay = 0.0
        if not self.connected_once:
            self.connected_once = True
            self.log.info(
                "event step consuming",
                group=options.group,
                servers=list(options.servers),
                **subscription,
            )
        self._bus_up()
        self._schedule_poll()

    # -- the poll loop --------------------------------------------------------
    def _schedule_poll(self) -> None:
        if not self.poll_scheduled and self.consumer is not None:
            self.poll_scheduled = True
            self.actor_ref.tell(Poll())

    def _ready(self) -> list[TopicPartition]:
        failures = self.failures
        return [
            tp for tp, buf in self.buffers.items() if buf and (tp not in failures or not failures[tp].waiting)
        ]

    def on_poll(self, _message: Poll) -> None:
        self.poll_scheduled = False
        consumer = self.consumer
        options = self.options
        if consumer is None or options is None:
            return
        ready = self._ready()
        timeout = 0.0 if ready else options.poll_timeout
        if consumer.joining():
            timeout = max(timeout, JOIN_POLL)
            if self.joining_since is None:
                self.joining_since = self.ctx.clock.now()
        else:
            self.joining_since = None
            if self.join_stuck:
                self.join_stuck = False
                if not self.stalled:
                    self._unstall()
        error: BaseException | None = None
        try:
            batch = consumer.poll(timeout)
        except Exception as exc:
            if not is_outage(exc):
                raise
            batch, error = {}, exc
        self._apply_rebalance()
        if batch:
            self._buffer(batch)
        self.polled_empty = not batch
        ready = self._ready()  # again: the poll may have taken partitions away, or brought events
        if ready:
            self._process(ready)
        self._sync_pauses()
        self._maybe_commit()
        self._check_health(error)
        self._update_status()
        if self.ctx.clock.now() >= self.next_check:
            self.on_check_progress(CheckProgress())
        self._schedule_poll()

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
            buf = self.buffers.get(tp)
            if buf is None:
                buf = self.buffers[tp] = deque()
            buf.extend(records)
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
        self.cancel(_retry_slot(tp))

    def _process(self, ready: list[TopicPartition]) -> None:
        """Run ``process_event`` over the ready partitions, round robin, for at most :data:`SLICE` seconds."""
        step = self.step
        options = self.options
        assert step is not None and options is not None
        process = step.process_event
        make = Event.from_record
        buffers = self.buffers
        handled: dict[TopicPartition, int] = {}
        failed: list[tuple[TopicPartition, Any, Exception]] = []
        clock = time.monotonic
        deadline = clock() + SLICE
        count = 0

        def run() -> None:
            nonlocal count
            turn = list(ready)
            while turn:
                for tp in list(turn):
                    buf = buffers[tp]
                    n = 0
                    try:
                        while buf and n < BURST:
                            record = buf[0]
                            try:
                                process(make(record))
                            except Exception as exc:
                                failed.append((tp, record, exc))
                                turn.remove(tp)
                                break
                            buf.popleft()
                            handled[tp] = record.offset
                            n += 1
                            if clock() >= deadline:
                                return
                        else:
                            if not buf:
                                turn.remove(tp)
                    finally:
                        count += n

        try:
            with _produce.using_event_bus(options.servers):
                self.call_user(run, caller=Caller.SYNCHRONIZER)
        finally:
            now = self.ctx.clock.now()
            for tp, offset in handled.items():
                self.tracker.processed(tp, offset)
                self._progressed(tp, now)
                failure = self.failures.get(tp)
                if failure is not None and failure.record.offset <= offset:
                    del self.failures[tp]  # it succeeded on a retry
            self.ctx.state.done += count
            self.ctx.metrics.events(self.ctx.name, "success", count)
        for tp, record, exc in failed:
            self._failed(tp, record, exc)

    # -- failures, retries, dead letters --------------------------------------
    def _failed(self, tp: TopicPartition, record: Any, exc: Exception) -> None:
        options = self.options
        assert options is not None
        previous = self.failures.get(tp)
        again = previous is not None and previous.record.offset == record.offset
        attempts = previous.attempts + 1 if previous is not None and again else 1
        failure = _Failure(record, attempts, _describe(exc)[:MAX_ERROR], type(exc).__name__)
        self.failures[tp] = failure
        self.ctx.metrics.events(self.ctx.name, "error")
        where = f"{tp.topic}[{tp.partition}]@{record.offset}"
        self.ctx.state.detail["last_event_error"] = f"{where}: {failure.error}"
        if attempts <= options.max_retries:
            delay = min(options.retry_backoff * 2 ** (attempts - 1), options.retry_backoff_max)
            self.retried += 1
            self.log.warning(
                "event failed, will retry",
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
                attempt=attempts,
                max_retries=options.max_retries,
                retry_in=delay,
                error=failure.error,
            )
            self.schedule(_retry_slot(tp), delay, RetryDue(tp.topic, tp.partition, record.offset))
        else:
            failure.dead_letter = True
            self._send_dead_letter(tp, failure)
        self._sync_pauses()

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

    def _send_dead_letter(self, tp: TopicPartition, failure: _Failure) -> None:
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
            ("step", self.factory.name.encode()),
            ("group", options.group.encode()),
            ("attempts", str(failure.attempts).encode()),
            *(record.headers or ()),
        ]
        ref, offset = self.actor_ref, record.offset

        def done(error: BaseException | None) -> None:
            text = None if error is None else _describe(error)
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
            delay = min(options.retry_backoff * 2 ** min(failure.attempts, 16), options.retry_backoff_max)
            self.log.warning(
                "dead-letter write failed, will retry",
                topic=tp.topic,
                partition=tp.partition,
                offset=message.offset,
                dead_letter_topic=options.dead_letter_topic,
                retry_in=delay,
                error=message.error,
            )
            self.schedule(_retry_slot(tp), delay, RetryDue(tp.topic, tp.partition, message.offset))
            return
        del self.failures[tp]
        buf = self.buffers.get(tp)
        if buf and buf[0].offset == message.offset:
            buf.popleft()
        self.tracker.processed(tp, message.offset)
        self._progressed(tp, self.ctx.clock.now())
        self.dead_lettered += 1
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
        self.ctx.metrics.dead_letter(self.ctx.name)
        self.ctx.state.failed += 1
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

    # -- the progress watchdog ------------------------------------------------------
    def _progressed(self, tp: TopicPartition, now: float) -> None:
        self.progress[tp] = now
        if tp in self.stalled:
            self.stalled.discard(tp)
            if not self.stalled and not self.join_stuck:
                self._unstall()

    def _stalled_names(self) -> list[str]:
        return _names(self.stalled) + (["(group join)"] if self.join_stuck else [])

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

    def on_check_progress(self, _message: CheckProgress) -> None:
        """The watchdog: an owned partition with events left and no progress for ``stall_timeout``
        is stalled; the actor then reports ``stalled``, logs it once, and joins again."""
        consumer, options = self.consumer, self.options
        if consumer is None or options is None:
            return
        now = self.ctx.clock.now()
        self.next_check = now + options.stall_timeout / 4
        if self.degraded or consumer.joining():
            for tp in self.progress:  # an outage or a rebalance is not a stall...
                self.progress[tp] = now
            since = self.joining_since
            if not self.degraded and since is not None and now - since >= options.stall_timeout:
                self.join_stuck = True  # ... but a join that never ends is
                self._stall(set(), {}, options)
            return
        assigned = consumer.assignment()
        for tp in assigned:
            self.progress.setdefault(tp, now)
        if self.stalled - assigned:
            self.stalled &= assigned  # given up meanwhile: no longer this actor's to move
            if not self.stalled and not self.join_stuck:
                self._unstall()
        suspects = [
            tp
            for tp in assigned
            if now - self.progress[tp] >= options.stall_timeout
            and not (tp in self.failures and self.failures[tp].waiting)  # a retry timer will move it
        ]
        if not suspects:
            return
        try:
            ends = consumer.end_offsets(suspects, min(options.stall_timeout, 5.0))
        except Exception as exc:
            if not is_outage(exc):
                raise
            return  # the bus does not answer: the health check reports that
        lags = {tp: self._lag(tp, ends.get(tp)) for tp in suspects}
        stalled = {tp for tp, lag in lags.items() if lag}
        for tp in set(suspects) - stalled:
            self._progressed(tp, now)  # nothing left to read: idle, not stalled
        if stalled:
            self._stall(stalled, {tp: lags[tp] for tp in stalled}, options)

    def _stall(
        self, partitions: set[TopicPartition], lags: Mapping[TopicPartition, int | None], options: BusOptions
    ) -> None:
        state = self.ctx.state
        first = state.state != "stalled"
        self.stalled |= partitions
        state.detail["stalled"] = self._stalled_names()
        if state.state in ("starting", "running", "degraded"):
            state.state = "stalled"
        if first and partitions:
            self.log.warning(
                "event step stalled: partitions with events left made no progress, joining again",
                partitions=_names(partitions),
                lag={_name(tp): lag for tp, lag in lags.items()},
                stall_timeout=options.stall_timeout,
            )
        elif first:
            self.log.warning(
                "event step stalled: the consumer group join does not end, joining again",
                stall_timeout=options.stall_timeout,
            )
        self.recoveries += 1
        # A new consumer starts with nothing kafka-python may have kept: it joins the group
        # and fetches every partition it gets from the committed offsets.
        self._release_consumer("a stall")
        for tp in list(self.buffers) + list(self.failures) + list(self.next_offset):
            self._drop_partition(tp)
        self.tracker.forget(list(self.tracker.unconfirmed()))
        self.rebalance = _Rebalance(self)
        now = self.ctx.clock.now()
        for tp in self.stalled:
            self.progress[tp] = now
        self.joining_since = None  # the new consumer's join gets its own stall_timeout
        self.actor_ref.tell(Connect())

    def _unstall(self) -> None:
        state = self.ctx.state
        state.detail["stalled"] = []
        if state.state == "stalled":
            state.state = "degraded" if self.degraded else "running"
        self.log.info("event step consuming again", recoveries=self.recoveries)

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
            self.log.info("offset commit failed, will retry", error=_describe(error))

    # -- health -------------------------------------------------------------------
    def _check_health(self, error: BaseException | None) -> None:
        consumer, options = self.consumer, self.options
        if consumer is None or options is None:
            return
        problem = _describe(error) if error is not None else consumer.problem()
        if problem is None:
            self.problem_since = None
            if self.degraded:
                self._bus_up()
            return
        now = self.ctx.clock.now()
        if self.problem_since is None:
            self.problem_since = now
        if not self.degraded and now - self.problem_since >= options.health_grace:
            self._bus_down(f"{problem} (at {','.join(options.servers)})")

    def _bus_down(self, problem: str, next_attempt: float | None = None) -> None:
        state = self.ctx.state
        text = problem if next_attempt is None else f"{problem}; next attempt in {next_attempt:g} s"
        state.detail["bus"] = f"down: {text}"
        if state.state in ("starting", "running"):
            state.state = "degraded"
        if not self.degraded:
            self.degraded = True
            self.log.warning("event bus unreachable, retrying", problem=problem)

    def _bus_up(self) -> None:
        state = self.ctx.state
        state.detail["bus"] = "up"
        if state.state in ("starting", "degraded"):
            state.state = "running"
        if self.degraded:
            self.degraded = False
            self.problem_since = None
            self.log.info("event bus reachable again")

    def _update_status(self) -> None:
        state = self.ctx.state
        state.queue_depth = sum(len(buf) for buf in self.buffers.values())
        detail = state.detail
        detail["retrying"] = sum(1 for f in self.failures.values() if not f.dead_letter)
        detail["dead_lettered"] = self.dead_lettered
        detail["retries"] = self.retried
        detail["paused"] = len(self.paused)
        detail["partitions"] = self.rebalance.owned_names()
        consumer = self.consumer
        if consumer is None:
            return
        lag: dict[str, int | None] = {}
        now = None
        for tp in consumer.assignment():
            behind = lag[_name(tp)] = self._lag(tp, consumer.highwater(tp))
            if behind == 0:  # caught up: idle, not stalled
                now = self.ctx.clock.now() if now is None else now
                self._progressed(tp, now)
        detail["lag"] = lag
        detail["last_progress"] = {_name(tp): at for tp, at in self.progress.items()}
        detail["stalled"] = self._stalled_names()
        detail["recoveries"] = self.recoveries


def _caught_up(consumer: ConsumerClient) -> bool:
    probe: Callable[[], bool] | None = getattr(consumer, "caught_up", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:
        return True
