"""Message tests of the event-step actor, with an in-memory consumer and dead-letter sink: no broker.

The stand-in :class:`FakeBus` behaves like a kafka-python 3.0.12 consumer in a
group of one: per-partition logs, positions, pause/resume, manual commits (async
ones are answered at the next poll, as kafka-python does), eager rebalances run
inside ``poll()`` and ``close()`` through the actor's rebalance handler, and a
partition handed back keeps its fetch position and its paused flag, as
kafka-python's do. ``stuck`` partitions are never fetched until a new consumer
is made (kafka-python's parked-records stall).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition

from actors.logs import capture_logs
from actors.runtime import ChildContext, ChildState, FakeClock, RuntimeSettings
from actors.runtime._kafka_client import (
    BusOptions,
    ConsumerSpec,
    EventBusError,
    bootstrap_servers,
    subscription_pattern,
)
from actors.runtime._kafka_offsets import OffsetTracker
from actors.runtime.events import DEAD_LETTER_HEADERS, Event, EventStepActor, validate_event_step
from actors.runtime.messages import ChildDied, IsIdle
from actors.runtime.produce import event_bus_servers, using_event_bus
from actors.steps import EventStep, StepFactory
from tests.helpers import wait_for
from tests.runtime_support import make_store

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


# -- the stand-ins --------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_700_000_000_000
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FakeBus:
    """The broker, the group and the consumer at once (one member)."""

    def __init__(self, partitions: Iterable[TopicPartition] = (TP0, TP1)) -> None:
        self.cond = threading.Condition()
        self.logs: dict[TopicPartition, list[Record]] = {tp: [] for tp in partitions}
        self.committed: dict[TopicPartition, int] = {}
        self.commit_log: list[dict[TopicPartition, int]] = []
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused_tps: set[TopicPartition] = set()
        self.pending_async: list[tuple[Callable[..., None], dict[TopicPartition, int]]] = []
        self.next_assignment: set[TopicPartition] | None = None
        self.specs: list[ConsumerSpec] = []
        self.connect_failures = 0
        #: How many more consumers are made with ``stuck`` kept (a stall that a new consumer does not cure).
        self.stuck_connects = 0
        self.problem_text: str | None = None
        self.closed = 0
        self.handler: Any = None
        #: Partitions whose records are never returned, until the next ``connect()``.
        self.stuck: set[TopicPartition] = set()
        #: Whether the assignment resumes assigned partitions (as KafkaConsumerClient's listener does).
        self.client_resumes = True
        self.seeks: list[tuple[TopicPartition, int]] = []
        #: The consumer's group join never ends (kafka-python's lost join answers), until a new consumer.
        self.join_forever = False
        self.polls = 0

    # the factory
    def connect(self, spec: ConsumerSpec) -> FakeBus:
        self.specs.append(spec)
        if self.connect_failures > 0:
            self.connect_failures -= 1
            raise KafkaTimeoutError("Unable to bootstrap from broker:9092")
        with self.cond:
            self.handler = spec.handler
            self.next_assignment = set(self.logs)
            if self.stuck_connects > 0:
                self.stuck_connects -= 1
            else:
                self.stuck = set()
            self.join_forever = False
        return self

    # the test's side
    def produce(self, tp: TopicPartition, value: bytes, key: bytes | None = None) -> Record:
        with self.cond:
            log = self.logs.setdefault(tp, [])
            record = Record(tp.topic, tp.partition, len(log), key, value)
            log.append(record)
            self.cond.notify_all()
            return record

    def rebalance(self, assignment: set[TopicPartition]) -> None:
        with self.cond:
            self.next_assignment = assignment
            self.cond.notify_all()

    def committed_offset(self, tp: TopicPartition) -> int:
        with self.cond:
            return self.committed.get(tp, 0)

    # ConsumerClient
    def _assign(self) -> None:
        new, self.next_assignment = self.next_assignment, None
        if new is None:
            return
        retained = self.assigned & new
        if self.assigned:
            self._revoke(set(self.assigned))
        self.assigned = set(new)
        self.paused_tps &= retained  # kafka-python keeps the flag and the position of a retained partition
        for tp in new - retained:
            self.positions[tp] = self.committed.get(tp, 0)
        for tp, offset in self.handler.assigned(set(new)).items():
            self.positions[tp] = offset
            self.seeks.append((tp, offset))
        if self.client_resumes:
            self.paused_tps -= new

    def _revoke(self, partitions: set[TopicPartition]) -> None:
        offsets = self.handler.revoking(partitions, False)
        self._commit(offsets)
        self.handler.revoked(partitions, offsets, None, False)

    def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if offsets:
            self.commit_log.append(dict(offsets))
            self.committed.update(offsets)

    def _fetchable(self) -> dict[TopicPartition, list[Record]]:
        out = {}
        for tp in sorted(self.assigned - self.paused_tps - self.stuck):
            records = self.logs[tp][self.positions[tp] :]
            if records:
                out[tp] = records
        return out

    def poll(self, timeout: float) -> Mapping[TopicPartition, Sequence[Record]]:
        self.polls += 1
        with self.cond:
            done, self.pending_async = self.pending_async, []
        for callback, offsets in done:
            callback(offsets, None)
        with self.cond:
            self._assign()
            if not self._fetchable() and timeout > 0:
                self.cond.wait(min(timeout, 0.02))
                self._assign()
            out: dict[TopicPartition, list[Record]] = {}
            budget = 500
            for tp, records in self._fetchable().items():
                taken = records[:budget]
                if taken:
                    out[tp] = taken
                    self.positions[tp] = taken[-1].offset + 1
                    budget -= len(taken)
            return out

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        with self.cond:
            for tp in partitions:
                assert tp in self.assigned, f"pause of an unassigned {tp}"
                self.paused_tps.add(tp)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        with self.cond:
            for tp in partitions:
                self.paused_tps.discard(tp)

    def paused(self) -> set[TopicPartition]:
        with self.cond:
            return set(self.paused_tps & self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        with self.cond:
            assert tp in self.assigned, f"seek of an unassigned {tp}"
            self.positions[tp] = offset
            self.seeks.append((tp, offset))

    def position(self, tp: TopicPartition) -> int | None:
        with self.cond:
            return self.positions.get(tp) if tp in self.assigned else None

    def highwater(self, tp: TopicPartition) -> int | None:
        with self.cond:
            return len(self.logs[tp])

    def end_offsets(self, partitions: Iterable[TopicPartition], timeout: float) -> dict[TopicPartition, int]:
        with self.cond:
            return {tp: len(self.logs[tp]) for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        with self.cond:
            return set(self.assigned)

    def commit(self, offsets: Mapping[TopicPartition, int], timeout: float) -> None:
        with self.cond:
            self._commit(offsets)

    def commit_async(self, offsets: Mapping[TopicPartition, int], callback: Callable[..., None]) -> None:
        with self.cond:
            self._commit(offsets)
            self.pending_async.append((callback, dict(offsets)))

    def problem(self) -> str | None:
        return self.problem_text

    def joining(self) -> bool:
        return self.join_forever

    def caught_up(self) -> bool:
        with self.cond:
            return all(self.positions.get(tp, 0) >= len(self.logs[tp]) for tp in self.assigned)

    def close(self, timeout: float) -> None:
        with self.cond:
            if self.assigned:
                self._revoke(set(self.assigned))
            self.assigned = set()
            self.closed += 1


class WaitingBus(FakeBus):
    """A :class:`FakeBus` whose ``poll()`` waits its whole timeout for records, as kafka-python's does."""

    def __init__(self) -> None:
        super().__init__()
        #: Set when a ``poll()`` starts waiting for records.
        self.waiting = threading.Event()
        #: The longest timeout a ``poll()`` was called with.
        self.longest = 0.0

    def _idle(self) -> bool:
        return not (self._fetchable() or self.pending_async or self.next_assignment is not None)

    def poll(self, timeout: float) -> Mapping[TopicPartition, Sequence[Record]]:
        self.longest = max(self.longest, timeout)
        with self.cond:
            if timeout > 0 and self._idle():
                self.waiting.set()
                self.cond.wait_for(lambda: not self._idle(), timeout)
        return super().poll(0.0)


class FakeSink:
    """The dead-letter producer: records what it is given; fails the first ``failures`` writes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.failures = 0
        self.closed = False

    def __call__(self, options: BusOptions) -> FakeSink:
        return self

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        callback: Callable[[BaseException | None], None],
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            callback(KafkaTimeoutError("no broker"))
            return
        self.sent.append((topic, key, value, headers))
        callback(None)

    def close(self, timeout: float) -> None:
        self.closed = True


class Recorder(pykka.ThreadingActor):
    """Stands in for the supervisor: keeps what it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return list(self.messages)
        self.messages.append(message)
        return None


# -- steps ---------------------------------------------------------------------------
class Seen:
    """What the steps of a test saw, shared with the test's thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.fail: dict[tuple[int, int], int] = {}  # (partition, offset) -> failures left (-1: always)
        self.block: threading.Event | None = None
        self.blocked = threading.Event()
        self.exit_at: tuple[int, int] | None = None

    def values(self, partition: int | None = None) -> list[bytes | None]:
        with self.lock:
            return [e.value for e in self.events if partition is None or e.partition == partition]


SEEN = Seen()


class Recording(EventStep):
    topics = ["t"]

    def process_event(self, event: Event) -> None:
        where = (event.partition, event.offset)
        if SEEN.exit_at == where:
            SEEN.exit_at = None
            raise SystemExit(3)
        if SEEN.block is not None and event.value == b"block":
            SEEN.blocked.set()
            SEEN.block.wait(10)
        with SEEN.lock:
            left = SEEN.fail.get(where, 0)
            if left:
                SEEN.fail[where] = left - 1
                raise ValueError(f"cannot handle {event.value!r}")
            SEEN.events.append(event)


class ByPattern(Recording):
    topics: list[str] = []
    pattern = "^t$"


@pytest.fixture(autouse=True)
def fresh_seen() -> Iterable[None]:
    global SEEN
    SEEN = Seen()
    yield
    if SEEN.block is not None:
        SEEN.block.set()


@pytest.fixture
def store() -> Any:
    s = make_store()
    yield s
    s.close() if hasattr(s, "close") else None


@dataclass
class Harness:
    ref: pykka.ActorRef[Any]
    ctx: ChildContext
    bus: FakeBus
    sink: FakeSink
    clock: FakeClock

    def stop(self) -> None:
        self.ctx.stopping.set()
        self.ref.stop(timeout=10)

    def idle(self) -> bool:
        return bool(self.ref.ask(IsIdle(), timeout=10))


@pytest.fixture
def start(store: Any) -> Iterable[Callable[..., Harness]]:
    started: list[Harness] = []

    def _start(
        cls: type = Recording,
        *,
        bus: FakeBus | None = None,
        sink: FakeSink | None = None,
        supervisor: pykka.ActorRef[Any] | None = None,
        **event_bus: Any,
    ) -> Harness:
        from actors.orm import ModelAccessor
        from actors.store import Caller

        clock = FakeClock()
        settings = RuntimeSettings(
            name="sync-test",
            event_bus={"kind": "kafka", "endpoint": "broker:9092", "retry_backoff": 0.5, **event_bus},
            shutdown_timeout=2.0,
        )
        ctx = ChildContext(
            name=cls.__name__,
            state=ChildState(cls.__name__, "event"),
            accessor=ModelAccessor(store, caller=Caller.SYNCHRONIZER),
            clock=clock,
            settings=settings,
            supervisor=supervisor,
        )
        bus = bus or FakeBus()
        sink = sink or FakeSink()
        ref = EventStepActor.start(
            ctx,
            StepFactory(cls, f"<test>/{cls.__name__}.py"),
            consumer_factory=bus.connect,
            sink_factory=sink,
        )
        harness = Harness(ref, ctx, bus, sink, clock)
        started.append(harness)
        return harness

    yield _start
    for h in started:
        if h.ref.is_alive():
            h.stop()


# -- delivery and commits -------------------------------------------------------------
def test_events_reach_process_event_in_partition_order_with_all_fields(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    for i in range(5):
        bus.produce(TP0, f"a{i}".encode(), key=b"k")
        bus.produce(TP1, f"b{i}".encode())
    h = start(bus=bus)
    wait_for(lambda: len(SEEN.values()) == 10)
    assert SEEN.values(0) == [f"a{i}".encode() for i in range(5)]
    assert SEEN.values(1) == [f"b{i}".encode() for i in range(5)]
    first = SEEN.events[0] if SEEN.events[0].partition == 0 else SEEN.events[1]
    assert (first.topic, first.key, first.partition, first.offset) == ("t", b"k", 0, 0)
    assert first.timestamp == 1_700_000_000_000 and first.headers == ()
    assert json.loads(b'{"a": 1}') == {"a": 1}  # values are bytes, as json.loads accepts
    wait_for(lambda: bus.committed_offset(TP0) == 5 and bus.committed_offset(TP1) == 5)
    wait_for(h.idle)
    assert h.ctx.state.done == 10 and h.ctx.state.state == "running"
    spec = bus.specs[0]
    assert spec.topics == ("t",) and spec.pattern is None
    assert spec.options.group == "sync-test" and spec.options.servers == ("broker:9092",)
    assert spec.options.dead_letter_topic == "sync-test.dead-letters"


def test_an_offset_is_committed_only_after_process_event_returned(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    SEEN.block = threading.Event()
    bus.produce(TP0, b"x0")
    bus.produce(TP0, b"block")
    bus.produce(TP0, b"x2")
    start(bus=bus)
    assert SEEN.blocked.wait(10)
    time.sleep(0.1)  # give a wrong implementation time to commit too early
    assert bus.committed_offset(TP0) <= 1  # x0 may be committed; "block" is still running
    SEEN.block.set()
    wait_for(lambda: bus.committed_offset(TP0) == 3)
    # commits only ever move forward
    seen = [c[TP0] for c in bus.commit_log if TP0 in c]
    assert seen == sorted(seen)


def test_a_failing_event_is_retried_with_backoff_other_partitions_flow(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    SEEN.fail[(0, 1)] = 2  # fails twice, then works
    for i in range(3):
        bus.produce(TP0, f"a{i}".encode())
    h = start(bus=bus)
    wait_for(lambda: SEEN.values(0) == [b"a0"] and TP0 in bus.paused_tps)
    # other partitions keep flowing while partition 0 waits
    bus.produce(TP1, b"b0")
    wait_for(lambda: SEEN.values(1) == [b"b0"])
    assert bus.committed_offset(TP0) == 1
    assert h.ctx.state.detail["retrying"] == 1
    h.clock.advance(0.49)
    time.sleep(0.05)
    assert SEEN.values(0) == [b"a0"]
    h.clock.advance(0.01)  # first retry after 0.5 s: fails again
    wait_for(lambda: h.clock.pending_timers() == 1 and TP0 in bus.paused_tps)
    h.clock.advance(0.99)
    time.sleep(0.05)
    assert SEEN.values(0) == [b"a0"]
    h.clock.advance(0.01)  # second retry after 1 s more: works, and the partition goes on in order
    wait_for(lambda: SEEN.values(0) == [b"a0", b"a1", b"a2"])
    wait_for(lambda: bus.committed_offset(TP0) == 3 and TP0 not in bus.paused_tps)
    assert h.ctx.state.detail["retrying"] == 0 and h.ctx.state.failed == 0


def test_an_event_failing_past_max_retries_goes_to_dead_letters(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    SEEN.fail[(0, 1)] = -1
    bus.produce(TP0, b"a0")
    poison = bus.produce(TP0, b"not json", key=b"pk")
    bus.produce(TP0, b"a2")
    h = start(bus=bus, max_retries=2, retry_backoff=0.1)
    wait_for(lambda: h.clock.pending_timers() == 1)
    h.clock.advance(0.1)
    wait_for(lambda: h.clock.pending_timers() == 1 and not h.sink.sent)
    h.clock.advance(0.2)
    wait_for(lambda: SEEN.values(0) == [b"a0", b"a2"])
    wait_for(lambda: bus.committed_offset(TP0) == 3)
    [(topic, key, value, headers)] = h.sink.sent
    assert (topic, key, value) == ("sync-test.dead-letters", b"pk", b"not json")
    named = dict(headers)
    assert [name for name, _ in headers] == list(DEAD_LETTER_HEADERS)
    assert named["error"] == b"ValueError: cannot handle b'not json'"
    assert named["error_type"] == b"ValueError"
    assert (named["origin_topic"], named["origin_partition"], named["origin_offset"]) == (b"t", b"0", b"1")
    assert named["origin_timestamp"] == str(poison.timestamp).encode()
    assert (named["step"], named["group"], named["attempts"]) == (b"Recording", b"sync-test", b"3")
    assert h.ctx.state.failed == 1 and h.ctx.state.detail["dead_lettered"] == 1
    assert "cannot handle" in h.ctx.state.detail["last_event_error"]


def test_with_no_retries_a_failing_event_goes_straight_to_dead_letters(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    SEEN.fail[(1, 0)] = -1
    bus.produce(TP1, b"bad")
    bus.produce(TP1, b"good")
    h = start(bus=bus, max_retries=0, dead_letter_topic="poison")
    wait_for(lambda: SEEN.values(1) == [b"good"] and bus.committed_offset(TP1) == 2)
    assert [s[0] for s in h.sink.sent] == ["poison"]


def test_a_failed_dead_letter_write_is_retried_and_nothing_is_committed_past_it(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    SEEN.fail[(0, 0)] = -1
    bus.produce(TP0, b"bad")
    bus.produce(TP0, b"next")
    sink_failures = 2
    sink = FakeSink()
    sink.failures = sink_failures
    h = start(bus=bus, sink=sink, max_retries=0, retry_backoff=0.1)
    wait_for(lambda: h.clock.pending_timers() == 1)
    assert bus.committed_offset(TP0) == 0 and SEEN.values(0) == []
    for _ in range(sink_failures):  # each failed write waits on a timer, then goes again
        wait_for(lambda: h.clock.pending_timers() == 1)
        assert not h.sink.sent and bus.committed_offset(TP0) == 0
        h.clock.advance(30)
    wait_for(lambda: h.sink.sent)
    wait_for(lambda: SEEN.values(0) == [b"next"] and bus.committed_offset(TP0) == 2)
    assert len(h.sink.sent) == 1 and h.ctx.state.failed == 1


# -- rebalance, shutdown, crash --------------------------------------------------------
def test_a_rebalance_commits_processed_offsets_first_and_drops_buffered_events(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    SEEN.fail[(1, 1)] = -1  # partition 1 stops at offset 1 (waiting for a retry)
    for i in range(3):
        bus.produce(TP0, f"a{i}".encode())
        bus.produce(TP1, f"b{i}".encode())
    h = start(bus=bus)
    wait_for(lambda: len(SEEN.values(0)) == 3 and TP1 in bus.paused_tps)
    commits_before = len(bus.commit_log)
    bus.rebalance({TP0})  # partition 1 goes to another member
    wait_for(lambda: bus.assigned == {TP0})
    # processed offsets of both partitions were committed as they were revoked
    assert bus.committed_offset(TP0) == 3 and bus.committed_offset(TP1) == 1
    assert len(bus.commit_log) >= commits_before
    wait_for(lambda: h.ctx.state.detail.get("retrying") == 0)
    assert h.clock.pending_timers() == 0  # the retry of the given-up partition was dropped
    bus.produce(TP0, b"a3")
    wait_for(lambda: SEEN.values(0)[-1] == b"a3")
    assert SEEN.values(0) == [b"a0", b"a1", b"a2", b"a3"]  # nothing handled twice


def test_events_buffered_for_a_partition_given_up_are_left_to_its_next_owner(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    SEEN.block = threading.Event()
    bus.produce(TP0, b"a0")
    bus.produce(TP0, b"block")
    for i in range(5):
        bus.produce(TP1, f"b{i}".encode())
    h = start(bus=bus)
    assert SEEN.blocked.wait(10)  # partition 0 runs first; partition 1's events wait in the buffer
    bus.rebalance({TP0})
    time.sleep(0.1)  # the slice of events is over when "block" returns
    SEEN.block.set()
    wait_for(lambda: bus.assigned == {TP0} and bus.committed_offset(TP0) == 2)
    wait_for(lambda: h.ctx.state.queue_depth == 0)
    assert h.ref.is_alive() and SEEN.values(1) == [] and bus.committed_offset(TP1) == 0
    bus.rebalance({TP0, TP1})  # it comes back: read again from the committed offset
    wait_for(lambda: SEEN.values(1) == [f"b{i}".encode() for i in range(5)])


def test_shutdown_lets_the_running_event_finish_and_commits_it(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    SEEN.block = threading.Event()
    bus.produce(TP0, b"a0")
    bus.produce(TP0, b"block")
    bus.produce(TP0, b"after")
    h = start(bus=bus)
    assert SEEN.blocked.wait(10)
    stopper = threading.Thread(target=h.stop)
    stopper.start()
    time.sleep(0.05)
    SEEN.block.set()
    stopper.join(10)
    assert not h.ref.is_alive()
    assert bus.committed_offset(TP0) == 2  # a0 and the in-flight event, not "after"
    assert SEEN.values(0) == [b"a0", b"block"]
    assert bus.closed == 1


def test_step_code_exiting_kills_the_actor_and_commits_what_was_done(start: Callable[..., Harness]) -> None:
    supervisor = Recorder.start()
    try:
        bus = FakeBus()
        SEEN.exit_at = (0, 2)
        for i in range(4):
            bus.produce(TP0, f"a{i}".encode())
        h = start(bus=bus, supervisor=supervisor)
        wait_for(lambda: supervisor.ask("get"))
        [died] = supervisor.ask("get")
        assert isinstance(died, ChildDied) and died.name == "Recording"
        assert "SystemExit" in died.error
        assert bus.committed_offset(TP0) == 2 and bus.closed == 1
        wait_for(lambda: not h.ref.is_alive())
        # a replacement resumes at the committed offset: the event that exited comes again
        h2 = start(bus=bus)
        wait_for(lambda: SEEN.values(0) == [b"a0", b"a1", b"a2", b"a3"])
        wait_for(lambda: bus.committed_offset(TP0) == 4)
        h2.stop()
    finally:
        supervisor.stop()


@pytest.mark.parametrize("joining", [False, True])
def test_stop_and_is_idle_are_answered_within_a_tenth_of_a_second_while_a_poll_waits(
    start: Callable[..., Harness], joining: bool
) -> None:
    from actors.runtime.events import MAILBOX_CHECK

    bus = WaitingBus()
    h = start(bus=bus, poll_timeout=5.0)
    wait_for(lambda: bus.assigned == {TP0, TP1} and h.idle())
    bus.join_forever = joining  # a group join in progress makes no poll longer
    for _ in range(3):
        bus.waiting.clear()
        assert bus.waiting.wait(10)  # a poll waits for records (5 s) before
        assert h.ref.ask(IsIdle(), timeout=0.5) is True  # a deadline, not a sleep
    bus.waiting.clear()
    assert bus.waiting.wait(10)
    h.ctx.state.state = "stopping"
    h.ref.stop(timeout=0.5)  # raises pykka.Timeout if the stop waits for the poll
    assert bus.closed == 1 and 0 < bus.longest <= MAILBOX_CHECK < 5.0


# -- never stalled: rebalances, pause flags, the watchdog ----------------------------------
def test_a_partition_handed_back_is_fetched_again_from_its_first_unhandled_event(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    SEEN.fail[(0, 3)] = 1  # partition 0 waits for a retry at offset 3, offsets 4-9 buffered behind it
    for i in range(10):
        bus.produce(TP0, f"a{i}".encode())
    h = start(bus=bus, retry_backoff=100)
    wait_for(lambda: SEEN.values(0) == [b"a0", b"a1", b"a2"] and TP0 in bus.paused_tps)
    assert bus.positions[TP0] == 10  # kafka-python's position is past the buffered events
    bus.rebalance({TP0, TP1})  # eager: every partition revoked, then the same ones handed back
    # the actor dropped offsets 3-9 with its buffer: the consumer goes back to 3, not on from 10
    wait_for(lambda: SEEN.values(0) == [f"a{i}".encode() for i in range(10)])
    assert (TP0, 3) in bus.seeks and h.clock.pending_timers() == 0  # the old retry timer is gone
    wait_for(lambda: bus.committed_offset(TP0) == 10)


def test_a_partition_the_consumer_keeps_paused_after_a_rebalance_is_resumed(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    bus.client_resumes = False  # the consumer keeps the paused flag of a retained partition
    SEEN.fail[(0, 1)] = 1
    for i in range(3):
        bus.produce(TP0, f"a{i}".encode())
    h = start(bus=bus, retry_backoff=100)
    wait_for(lambda: TP0 in bus.paused_tps and h.ctx.state.detail.get("paused") == 1)
    bus.rebalance({TP0, TP1})
    # the actor's own state for partition 0 was reset: it reconciles with the consumer's flags
    wait_for(lambda: SEEN.values(0) == [b"a0", b"a1", b"a2"])
    assert TP0 not in bus.paused_tps and h.ctx.state.detail["paused"] == 0
    bus.paused_tps.add(TP1)  # a flag the actor did not set is cleared at the next poll
    wait_for(lambda: TP1 not in bus.paused_tps)
    bus.produce(TP1, b"b0")
    wait_for(lambda: SEEN.values(1) == [b"b0"])


def test_the_watchdog_reports_a_stalled_partition_logs_once_and_recovers_by_joining_again(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    with capture_logs() as logs:
        h = start(bus=bus, stall_timeout=60)
        wait_for(lambda: bus.assigned == {TP0, TP1})
        bus.stuck = {TP0}  # partition 0 is never fetched (kafka-python's parked records)
        bus.stuck_connects = 1  # and the first new consumer does not cure it either
        for i in range(3):
            bus.produce(TP0, f"a{i}".encode())
            bus.produce(TP1, f"b{i}".encode())
        wait_for(lambda: len(SEEN.values(1)) == 3)
        wait_for(lambda: h.ctx.state.detail.get("lag") == {"t[0]": 3, "t[1]": 0})
        start_time = h.clock.now()
        assert h.ctx.state.detail["last_progress"]["t[0]"] == start_time
        h.clock.advance(59)
        wait_for(lambda: h.ctx.state.detail.get("last_progress", {}).get("t[1]") == start_time + 59)
        assert h.ctx.state.state == "running" and bus.closed == 0  # not yet
        h.clock.advance(15)  # the watchdog looks every quarter of stall_timeout
        wait_for(lambda: h.ctx.state.state == "stalled" and len(bus.specs) == 2)
        assert h.ctx.state.detail["stalled"] == ["t[0]"] and bus.closed == 1
        wait_for(lambda: bus.assigned == {TP0, TP1} and h.ctx.state.detail.get("recoveries") == 1)
        assert SEEN.values(0) == []
        h.clock.advance(60)  # still stalled with the new consumer: it joins once more
        wait_for(lambda: SEEN.values(0) == [b"a0", b"a1", b"a2"])
        wait_for(lambda: h.ctx.state.state == "running")
        assert len(bus.specs) == 3 and h.ctx.state.detail["stalled"] == []
        assert h.ctx.state.detail["recoveries"] == 2
        wait_for(lambda: bus.committed_offset(TP0) == 3 and bus.committed_offset(TP1) == 3)
    assert SEEN.values(1) == [b"b0", b"b1", b"b2"]  # committed before the new consumer: not handled again
    events = [entry["event"] for entry in logs]
    stalled = "event step stalled: partitions with events left made no progress, joining again"
    assert events.count(stalled) == 1
    assert events.count("event step consuming again") == 1
    [warning] = [e for e in logs if e["event"].startswith("event step stalled")]
    assert warning["partitions"] == ["t[0]"] and warning["lag"] == {"t[0]": 3}


def test_a_group_join_that_never_ends_is_a_stall_and_a_new_consumer_ends_it(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    with capture_logs() as logs:
        h = start(bus=bus, stall_timeout=8)
        wait_for(lambda: bus.assigned == {TP0, TP1})
        bus.join_forever = True
        wait_for(lambda: h.ctx.state.detail.get("recoveries") == 0)
        polls = bus.polls
        wait_for(lambda: bus.polls > polls + 1)  # the poll loop noted when the join started
        h.clock.advance(7)
        wait_for(lambda: h.ctx.state.detail.get("last_progress", {}).get("t[0]") == h.clock.now())
        assert h.ctx.state.state == "running" and len(bus.specs) == 1  # 7 s of joining: not yet
        h.clock.advance(2)
        wait_for(lambda: len(bus.specs) == 2)  # 9 s (the watchdog looks every 2 s): a new consumer
        wait_for(lambda: h.ctx.state.state == "running" and h.ctx.state.detail["recoveries"] == 1)
        bus.produce(TP0, b"a0")
        wait_for(lambda: SEEN.values(0) == [b"a0"])
    events = [entry["event"] for entry in logs]
    assert events.count("event step stalled: the consumer group join does not end, joining again") == 1
    assert events.count("event step consuming again") == 1


def test_an_idle_partition_or_one_waiting_for_a_retry_is_not_stalled(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    SEEN.fail[(0, 0)] = 1
    bus.produce(TP0, b"a0")
    h = start(bus=bus, stall_timeout=10, retry_backoff=25, retry_backoff_max=25)
    wait_for(lambda: h.ctx.state.detail.get("retrying") == 1)
    for _ in range(4):  # 20 s: partition 1 has nothing to read, partition 0 waits for its timer
        h.clock.advance(5)
        now = h.clock.now()
        wait_for(lambda: h.ctx.state.detail.get("last_progress", {}).get("t[1]") == now)  # noqa: B023
    assert h.ctx.state.state == "running" and len(bus.specs) == 1 and SEEN.values(0) == []
    h.clock.advance(5)  # the retry is due
    wait_for(lambda: SEEN.values(0) == [b"a0"])
    h.clock.advance(30)
    now = h.clock.now()
    wait_for(lambda: h.ctx.state.detail.get("last_progress", {}).get("t[0]") == now)
    assert h.ctx.state.state == "running" and len(bus.specs) == 1 and h.ctx.state.detail["recoveries"] == 0


def test_check_progress_sent_as_a_message_finds_nothing_to_do_on_a_moving_partition(
    start: Callable[..., Harness],
) -> None:
    from actors.runtime.messages import CheckProgress

    bus = FakeBus()
    h = start(bus=bus, stall_timeout=60)
    bus.produce(TP0, b"a0")
    wait_for(lambda: SEEN.values(0) == [b"a0"])
    h.ref.ask(CheckProgress(), timeout=10)
    assert h.ctx.state.state == "running" and h.ctx.state.detail["stalled"] == []


def test_a_handler_slower_than_a_slice_serves_every_partition_in_turn(
    start: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SLICE 0: every slice ends after its first event, as with a handler slower than SLICE. Each
    # slice must start with the partition after the last one served; starting again with the first
    # partition of the buffers (refilled by every poll) starved the others until the watchdog fired.
    import actors.runtime.events as events_module

    monkeypatch.setattr(events_module, "SLICE", 0.0)
    parts = [TopicPartition("t", p) for p in range(4)]
    bus = FakeBus(parts)
    for tp in parts:
        for i in range(150):
            bus.produce(tp, f"{tp.partition}-{i}".encode())
    start(bus=bus, max_poll_records=20)
    wait_for(lambda: len(SEEN.values()) >= 100)
    with SEEN.lock:
        first = [e.partition for e in SEEN.events[:100]]
    assert {p: first.count(p) for p in range(4)} == {p: 25 for p in range(4)}
    wait_for(lambda: len(SEEN.values()) == 600)
    for p in range(4):
        assert SEEN.values(p) == [f"{p}-{i}".encode() for i in range(150)]


def test_bus_options_read_the_stall_timeout_and_check_consumer_options() -> None:
    from actors.runtime._kafka_client import CONSUMER_DEFAULTS

    assert BusOptions.from_settings({"endpoint": "x:1"}, "g").stall_timeout == 60.0
    options = BusOptions.from_settings(
        {"endpoint": "x:1", "stall_timeout": 5, "consumer": {"session_timeout_ms": 6000}}, "g"
    )
    assert options.stall_timeout == 5.0 and options.consumer == {"session_timeout_ms": 6000}
    assert CONSUMER_DEFAULTS == {
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
        "fetch_max_bytes": 512 * 1024,
    }
    with pytest.raises(EventBusError, match=r"^event_bus\.consumer\.sesion_timeout_ms: not a kafka-python "):
        BusOptions.from_settings({"endpoint": "x:1", "consumer": {"sesion_timeout_ms": 1}}, "g")
    with pytest.raises(EventBusError, match=r"consumer\.enable_auto_commit: set by the framework"):
        BusOptions.from_settings({"endpoint": "x:1", "consumer": {"enable_auto_commit": True}}, "g")
    with pytest.raises(EventBusError, match=r"producer\.lingr_ms: not a kafka-python KafkaProducer option"):
        BusOptions.from_settings({"endpoint": "x:1", "producer": {"lingr_ms": 1}}, "g")
    with pytest.raises(EventBusError, match="stall_timeout"):
        BusOptions.from_settings({"endpoint": "x:1", "stall_timeout": "soon"}, "g")


# -- outages -------------------------------------------------------------------------
def test_no_broker_at_start_degrades_logs_once_and_recovers(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    bus.connect_failures = 4
    bus.produce(TP0, b"a0")
    with capture_logs() as logs:
        h = start(bus=bus)
        wait_for(lambda: h.ctx.state.state == "degraded" and len(bus.specs) == 1)
        assert "no broker answers at broker:9092" in h.ctx.state.detail["bus"]
        assert h.idle()  # nothing it can work on
        for delay in (0.5, 1.0, 2.0, 4.0):  # exponential backoff between attempts
            wait_for(lambda: h.clock.pending_timers() == 1)  # the next attempt is scheduled
            attempts = len(bus.specs)
            h.clock.advance(delay - 0.01)
            time.sleep(0.02)
            assert len(bus.specs) == attempts
            h.clock.advance(0.01)
            wait_for(lambda n=attempts: len(bus.specs) == n + 1)  # type: ignore[misc]
        wait_for(lambda: SEEN.values(0) == [b"a0"])
        assert h.ctx.state.state == "running" and h.ctx.state.detail["bus"] == "up"
    events = [entry["event"] for entry in logs]
    assert events.count("event bus unreachable, retrying") == 1
    assert events.count("event bus reachable again") == 1


def test_reconnect_backoff_is_capped(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    bus.connect_failures = 100
    h = start(bus=bus, reconnect_backoff_max=3.0)
    wait_for(lambda: len(bus.specs) == 1)
    for _ in range(6):
        wait_for(lambda: h.clock.pending_timers() == 1)  # the next attempt is scheduled
        attempts = len(bus.specs)
        h.clock.advance(3.0)
        wait_for(lambda n=attempts: len(bus.specs) == n + 1)  # type: ignore[misc]
    assert "next attempt in 3 s" in h.ctx.state.detail["bus"]


def test_losing_the_broker_mid_stream_degrades_after_a_grace_period_and_recovers(
    start: Callable[..., Harness],
) -> None:
    bus = FakeBus()
    with capture_logs() as logs:
        h = start(bus=bus, health_grace=2.0)
        bus.produce(TP0, b"a0")
        wait_for(lambda: SEEN.values(0) == [b"a0"])
        bus.problem_text = "the group coordinator cannot be reached"
        time.sleep(0.05)
        assert h.ctx.state.state == "running"  # a blip is not an outage
        h.clock.advance(2.0)
        wait_for(lambda: h.ctx.state.state == "degraded")
        assert "coordinator" in h.ctx.state.detail["bus"]
        h.clock.advance(10.0)
        time.sleep(0.05)
        bus.problem_text = None
        wait_for(lambda: h.ctx.state.state == "running")
        bus.produce(TP0, b"a1")
        wait_for(lambda: SEEN.values(0) == [b"a0", b"a1"])
    events = [entry["event"] for entry in logs]
    assert events.count("event bus unreachable, retrying") == 1
    assert events.count("event bus reachable again") == 1


# -- configuration and load-time checks -------------------------------------------------
def test_pattern_steps_subscribe_by_pattern(start: Callable[..., Harness]) -> None:
    bus = FakeBus()
    start(ByPattern, bus=bus)
    wait_for(lambda: bus.specs)
    assert bus.specs[0].pattern == "^t$" and bus.specs[0].topics == ()


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"topics": ["a"], "pattern": "b.*"}, "both topics and pattern are set"),
        ({}, "neither topics nor pattern is set"),
        ({"topics": "MyTopic"}, "not a string: write topics = ['MyTopic']"),
        ({"topics": ["ok", "bad topic"]}, "'bad topic' not a Kafka topic name"),
        ({"pattern": "(unclosed"}, "is not a valid regular expression"),
        ({"topics": ["a"], "technology": "amqp"}, "technology = 'amqp' is not supported (only 'kafka')"),
    ],
)
def test_validate_event_step_names_the_problem(attrs: dict[str, Any], expected: str) -> None:
    cls = type("Step", (EventStep,), {"process_event": lambda self, e: None, **attrs})
    problem = validate_event_step(cls)
    assert problem is not None and expected in problem


def test_validate_event_step_accepts_the_reference_example_and_wants_process_event() -> None:
    class MyModelEventStep(EventStep):
        technology = "kafka"
        topics = ["MyTopic"]

        def process_event(self, event: Any) -> None:
            pass

    class Lazy(EventStep):
        topics = ["MyTopic"]

    assert validate_event_step(MyModelEventStep) is None
    assert validate_event_step(Lazy) == "process_event is not overridden"


def test_an_invalid_step_makes_the_actor_fail_clearly(start: Callable[..., Harness]) -> None:
    class Both(Recording):
        pattern = "x"

    supervisor = Recorder.start()
    try:
        bus = FakeBus()
        start(Both, bus=bus, supervisor=supervisor)
        wait_for(lambda: supervisor.ask("get"))
        [died] = supervisor.ask("get")
        assert "EventStepError" in died.error and "event step Both (<test>/Both.py)" in died.error
        assert "both topics and pattern are set" in died.error
        assert bus.specs == []
    finally:
        supervisor.stop()


def test_a_missing_endpoint_makes_the_actor_fail_clearly(start: Callable[..., Harness]) -> None:
    supervisor = Recorder.start()
    try:
        start(Recording, supervisor=supervisor, endpoint=None)
        wait_for(lambda: supervisor.ask("get"))
        [died] = supervisor.ask("get")
        assert "event_bus.endpoint is not set" in died.error
    finally:
        supervisor.stop()


def test_bus_options_read_the_event_bus_section() -> None:
    options = BusOptions.from_settings(
        {"endpoint": ["k1:9092", "k2"], "max_retries": 5, "retry_backoff": 0.25, "dead_letter_topic": "dl"},
        "g",
    )
    assert options.servers == ("k1:9092", "k2:9092") and options.group == "g"
    assert (options.max_retries, options.retry_backoff, options.dead_letter_topic) == (5, 0.25, "dl")
    with pytest.raises(EventBusError, match=r"event_bus\.kind: 'amqp' is not supported"):
        BusOptions.from_settings({"kind": "amqp", "endpoint": "x:1"}, "g")
    with pytest.raises(EventBusError, match="max_retries"):
        BusOptions.from_settings({"endpoint": "x:1", "max_retries": -1}, "g")
    with pytest.raises(EventBusError, match="is not host:port"):
        bootstrap_servers("host:port")


def test_bootstrap_servers_accept_one_several_and_bare_hosts() -> None:
    assert bootstrap_servers("cord-kafka-kafka") == ("cord-kafka-kafka:9092",)
    assert bootstrap_servers("a:1,b:2") == ("a:1", "b:2")
    assert bootstrap_servers(["a:1", "[::1]:2", "[::1]"]) == ("a:1", "[::1]:2", "[::1]:9092")


def test_subscription_pattern_searches_like_the_original_and_skips_dead_letters() -> None:
    import re

    regex = re.compile(subscription_pattern("events", ["g.dead-letters"]))
    assert regex.match("my-events") and regex.match("events.1")
    assert not regex.match("g.dead-letters")
    anchored = re.compile(subscription_pattern("^dev\\..*$", []))
    assert anchored.match("dev.a") and not anchored.match("x.dev.a")
    flagged = re.compile(subscription_pattern("(?i)^EV", ["ev-dead"]))
    assert flagged.match("events") and not flagged.match("ev-dead")


def test_offset_tracker_commits_only_what_was_processed() -> None:
    tracker = OffsetTracker()
    assert tracker.to_commit() == {}
    tracker.processed(TP0, 4)
    tracker.processed(TP0, 2)  # never backwards
    assert tracker.to_commit() == {TP0: 5}
    tracker.sending({TP0: 5})
    assert tracker.to_commit() == {} and tracker.uncommitted() == 1
    assert tracker.unconfirmed() == {TP0: 5}  # sent, not acknowledged: a last commit includes it
    tracker.failed({TP0: 5})
    assert tracker.to_commit() == {TP0: 5}
    tracker.confirmed({TP0: 5})
    assert tracker.to_commit() == {} and tracker.uncommitted() == 0 and tracker.committed(TP0) == 5
    tracker.forget([TP0])
    assert tracker.position(TP0) is None


def test_event_is_a_frozen_value() -> None:
    event = Event.from_record(Record("t", 1, 7, b"k", b"v", headers=[("h", b"1")]))
    assert event == Event("t", b"k", b"v", 1_700_000_000_000, 1, 7, (("h", b"1"),))
    with pytest.raises(AttributeError):
        event.value = b"x"  # type: ignore[misc]


def test_produce_finds_the_bus_in_argument_runtime_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.config import Config, use_config

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(EventBusError, match="no event bus to produce to"):
        event_bus_servers()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:1")
    assert event_bus_servers() == ("env:1",)
    with use_config(Config.from_dict({"name": "n", "event_bus": {"kind": "kafka", "endpoint": "cfg:2"}})):
        assert event_bus_servers() == ("cfg:2",)
        with using_event_bus(["rt:3", "rt:4"]):
            assert event_bus_servers() == ("rt:3", "rt:4")
            assert event_bus_servers("arg:5") == ("arg:5",)
