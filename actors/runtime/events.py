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
of the runtime clock) looks for owned partitions with events left that made no
progress for ``stall_timeout`` seconds, or a group join that lasts that long; it
reports the actor ``stalled``, logs it once, and recovers by committing what was
handled and joining the group again with a new consumer, which resumes at the
committed offsets. ``detail["lag"]`` and ``detail["last_progress"]`` give each
owned partition's events left and the time of its last progress.

The actor never blocks for long inside one message: a :class:`Poll` message it
sends itself polls the consumer, handles a bounded slice of events, commits when
due and sends the next :class:`Poll`. No single ``poll()`` call waits more than
:data:`MAILBOX_CHECK` seconds, and a message waiting in the mailbox (a stop, an
``IsIdle``) ends the poll early, so those are answered within about a tenth of a
second. With no broker at start it keeps trying (:class:`Connect`, capped
exponential backoff); when the broker goes away mid-stream kafka-python
reconnects by itself. Either way the actor reports ``degraded``
(``detail["bus"]`` says why) and logs once per change.

The actor is built in layers, one job each: the partitions' buffers, pauses and
commits (:mod:`._event_flow`), the bus health, the progress watchdog and the
status (:mod:`._event_watchdog`), retries and dead letters
(:mod:`._event_retries`), and here its life, connecting and the poll loop.
:mod:`._kafka_offsets` keeps the offsets handled and the rebalance handler;
:mod:`._kafka_client` is the seam to kafka-python.

:func:`validate_event_step` is the load-time check of a step class.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors._backoff import Backoff
from actors.steps import EventStep, StepFactory, describe, validate_event_step
from actors.store import Caller

from . import produce as _produce
from ._child import ChildContext
from ._event_retries import DEAD_LETTER_HEADERS, EventRetries
from ._kafka_client import (
    BusOptions,
    ConsumerClient,
    ConsumerFactory,
    ConsumerSpec,
    EventBusError,
    KafkaConsumerClient,
    is_outage,
)
from ._kafka_offsets import TopicPartition
from ._kafka_producer import KafkaDeadLetterSink, SinkFactory
from .messages import CheckProgress, Connect, DeadLettered, Poll, RetryDue

__all__ = [
    "DEAD_LETTER_HEADERS",
    "Event",
    "EventStepActor",
    "EventStepError",
    "validate_event_step",
]

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


#: Longest run of ``process_event`` calls inside one message (seconds, wall clock).
SLICE = 0.05
#: How many events of one partition run before the next partition gets a turn.
BURST = 100
#: Longest one ``poll()`` call waits before the actor looks at its mailbox (seconds, wall clock).
MAILBOX_CHECK = 0.1


class EventStepActor(EventRetries):
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
        super().__init__(ctx, factory.name, sink_factory or KafkaDeadLetterSink)
        self.factory = factory
        self.consumer_factory: ConsumerFactory = consumer_factory or KafkaConsumerClient
        self.step: EventStep | None = None
        #: The wait before the last attempt to build the consumer (0: it was built).
        self.connect_delay = 0.0
        self.connected_once = False
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
        self._close_sink(self._release_consumer(why))

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
            backoff = Backoff(options.reconnect_backoff, options.reconnect_backoff_max)
            delay = self.connect_delay = backoff.after(self.connect_delay)
            servers = ",".join(options.servers)
            self._bus_down(f"no broker answers at {servers}: {describe(exc)}", next_attempt=delay)
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
    def on_poll(self, _message: Poll) -> None:
        self.poll_scheduled = False
        consumer = self.consumer
        options = self.options
        if consumer is None or options is None:
            return
        timeout = 0.0 if self._ready() else options.poll_timeout
        self._note_joining(consumer.joining())
        error: BaseException | None = None
        try:
            batch = self._poll(consumer, timeout)
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

    def _poll(self, consumer: ConsumerClient, timeout: float) -> Mapping[TopicPartition, Sequence[Any]]:
        """``consumer.poll`` for up to ``timeout`` seconds in calls of at most :data:`MAILBOX_CHECK`,
        back early with records or when a message waits in the mailbox."""
        if timeout <= MAILBOX_CHECK:
            return consumer.poll(timeout)
        deadline = time.monotonic() + timeout
        inbox = self.actor_inbox
        while True:
            batch = consumer.poll(min(MAILBOX_CHECK, timeout))
            timeout = deadline - time.monotonic()
            if batch or timeout <= 0 or not inbox.empty():
                return batch

    def _process(self, ready: list[TopicPartition]) -> None:
        """Run ``process_event`` over the ready partitions, round robin, for at most :data:`SLICE` seconds.

        The round robin goes on from one slice to the next: the partitions served move to the end
        of :attr:`buffers` (whose order :meth:`_ready` keeps), last served last, so the next slice
        starts with the partition after the last one served. A handler slower than a slice thus
        still serves every ready partition within as many slices as there are partitions.
        """
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
        served: dict[TopicPartition, None] = {}  # the partitions that had a turn, by their last one

        def run() -> None:
            nonlocal count
            turn = list(ready)
            while turn:
                for tp in list(turn):
                    served.pop(tp, None)
                    served[tp] = None
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
            for tp in served:  # the next slice starts after the last partition served
                buffers[tp] = buffers.pop(tp)
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


def _caught_up(consumer: ConsumerClient) -> bool:
    probe: Callable[[], bool] | None = getattr(consumer, "caught_up", None)
    if probe is None:
        return True
    try:
        return bool(probe())
    except Exception:
        return True
