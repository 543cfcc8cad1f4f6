"""Event-step benchmark: throughput beside a bare kafka-python consumer, and produce-to-handle latency.

Run by hand: ``python benchmarks/bench_events.py [--quick] [--bootstrap HOST:PORT]``.
Without ``--bootstrap`` (or ``KAFKA_BOOTSTRAP_SERVERS``) it starts a broker of its
own with ``scripts/local_kafka.py``.

- throughput: events per second through a no-op ``process_event`` (an
  :class:`~actors.runtime.events.EventStepActor`, committing as it does in
  production) reading N events (default 100,000, 100-byte values) from a topic
  with 1 partition and from one with 8 (``--partitions``), beside the ceiling:
  a bare ``KafkaConsumer`` (manual commit, no commits made) reading the same
  topic in the same run. Each side
  reads the whole topic with a fresh consumer group; the rounds alternate and
  the median is reported. The rate is counted from the consumer's creation to
  the last event handled, so it includes joining the group (the time to the
  first event is reported too: the actor fetches everything the consumer
  holds in one poll, so its first event comes later), with the process's CPU
  time per event over the same stretch (steadier than rates on a busy machine).
  The bare consumer polls as kafka-python's examples do (``poll(timeout_ms=100)``,
  at most ``max_poll_records`` = 500 records a poll).
  Also the actor's own work per event, measured with an in-memory consumer.
- latency: one event every 10 ms; from ``send()`` returning in the producer to
  ``process_event`` being called (p50, p99), for the actor and the bare consumer.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition

from actors.models import load_schema
from actors.orm import ModelAccessor
from actors.runtime import ChildContext, ChildState, RealClock, RuntimeSettings
from actors.runtime._kafka_client import ConsumerSpec
from actors.runtime.events import Event, EventStepActor
from actors.runtime.messages import Poll
from actors.steps import EventStep, StepFactory
from actors.store import Caller, Store

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


# -- the topic ---------------------------------------------------------------------------
def create_topic(bootstrap: str, partitions: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + 30
    while len(probe.partitions_for_topic(name) or ()) < partitions:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name} did not appear")
        time.sleep(0.05)
    probe.close()
    return name


def fill(bootstrap: str, topic: str, count: int, size: int = 100) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    payload = b"x" * (size - 8)
    start = time.perf_counter()
    for i in range(count):
        producer.send(topic, key=str(i % 64).encode(), value=b"%08d" % i + payload)
    producer.flush(120)
    producer.close()
    return time.perf_counter() - start


# -- the ceiling: a bare consumer ----------------------------------------------------------
def poll_timeout(consumer: KafkaConsumer) -> int:
    """100 ms, or 1 s while joining: kafka-python 3.0.12 needs long polls to finish a join."""
    return 1000 if consumer.group_metadata().state != "<stable>" else 100


def bare_consumer(bootstrap: str, topic: str, count: int) -> tuple[float, float, float]:
    """(seconds from creation to the last record, seconds to the first record, CPU seconds meanwhile)."""
    created, cpu = time.perf_counter(), time.process_time()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.subscribe([topic])
    seen = 0
    first = None
    while seen < count:
        for records in consumer.poll(timeout_ms=poll_timeout(consumer), max_records=500).values():
            for _record in records:
                if first is None:
                    first = time.perf_counter()
                seen += 1
    last, cpu = time.perf_counter(), time.process_time() - cpu
    consumer.close(autocommit=False)
    assert first is not None
    return last - created, first - created, cpu


# -- the actor -----------------------------------------------------------------------------
class Counter:
    def __init__(self, want: int) -> None:
        self.want = want
        self.seen = 0
        self.first: float | None = None
        self.started = time.perf_counter()
        self.last: float | None = None
        self.cpu = 0.0
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.measure_latency = False


def no_op_step(topic: str, counter: Counter) -> type[EventStep]:
    class NoOp(EventStep):
        topics = [topic]

        def process_event(self, event: Event) -> None:
            if counter.first is None:
                counter.first = time.perf_counter()
            if counter.measure_latency:
                counter.latencies.append(time.time() - float(event.value))  # type: ignore[arg-type]
            counter.seen += 1
            if counter.seen >= counter.want:
                counter.last, counter.cpu = time.perf_counter(), time.process_time() - counter.cpu
                counter.done.set()

    return NoOp


class TimedActor(EventStepActor):
    """The event-step actor, noting its longest ``Poll`` message once in its group (how long a stop
    or a status request may wait behind one; while joining, a poll waits up to 1 s on purpose)."""

    longest = 0.0

    def on_poll(self, message: Poll) -> None:
        joining = self.consumer is None or self.consumer.joining()
        start = time.perf_counter()
        try:
            super().on_poll(message)
        finally:
            if not joining:
                TimedActor.longest = max(TimedActor.longest, time.perf_counter() - start)


def actor_context(bootstrap: str, group: str, store: Store, name: str) -> ChildContext:
    return ChildContext(
        name=name,
        state=ChildState(name, "event"),
        accessor=ModelAccessor(store, caller=Caller.SYNCHRONIZER),
        clock=RealClock(),
        settings=RuntimeSettings(name=group, event_bus={"kind": "kafka", "endpoint": bootstrap}),
    )


def actor_consumer(bootstrap: str, topic: str, count: int, store: Store) -> tuple[float, float, float]:
    counter = Counter(count)
    step = no_op_step(topic, counter)
    ctx = actor_context(bootstrap, f"actor-{uuid.uuid4().hex[:8]}", store, "NoOp")
    created = counter.started = time.perf_counter()
    counter.cpu = time.process_time()
    ref = TimedActor.start(ctx, StepFactory(step, "<bench>"))
    try:
        if not counter.done.wait(300):
            raise RuntimeError(f"only {counter.seen} of {count} events handled")
    finally:
        ctx.stopping.set()
        ref.stop(timeout=30)
    assert counter.first is not None and counter.last is not None
    return counter.last - created, counter.first - created, counter.cpu


# -- the actor's own cost: an in-memory consumer ------------------------------------------------
@dataclass(frozen=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


class MemoryConsumer:
    """A ``ConsumerClient`` serving prebuilt records from memory: what is left is the actor's cost."""

    def __init__(self, spec: ConsumerSpec, records: dict[TopicPartition, list[Any]]) -> None:
        self.handler = spec.handler
        self.records = records
        self.positions = dict.fromkeys(records, 0)
        self.assigned = False

    def poll(self, timeout: float) -> dict[TopicPartition, list[Any]]:
        if not self.assigned:
            self.assigned = True
            self.handler.assigned(set(self.records))
        out = {}
        for tp, records in self.records.items():
            position = self.positions[tp]
            taken = records[position : position + 500 // len(self.records)]
            if taken:
                out[tp] = taken
                self.positions[tp] = position + len(taken)
        if not out and timeout:
            time.sleep(timeout)
        return out

    def pause(self, partitions: Any) -> None:
        pass

    def resume(self, partitions: Any) -> None:
        pass

    def paused(self) -> set[TopicPartition]:
        return set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.records[tp])

    def end_offsets(self, partitions: Any, timeout: float) -> dict[TopicPartition, int]:
        return {tp: len(self.records[tp]) for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    def commit(self, offsets: Any, timeout: float) -> None:
        pass

    def commit_async(self, offsets: Any, callback: Callable[..., None]) -> None:
        callback(offsets, None)

    def problem(self) -> None:
        return None

    def joining(self) -> bool:
        return False

    def close(self, timeout: float) -> None:
        pass


def actor_overhead(count: int, store: Store) -> float:
    """Microseconds of the actor's own work per event (a no-op step, records already in memory)."""
    partitions = [TopicPartition("mem", p) for p in range(4)]
    records: dict[TopicPartition, list[Any]] = {tp: [] for tp in partitions}
    for i in range(count):
        tp = partitions[i % 4]
        records[tp].append(ConsumerRecord("mem", tp.partition, len(records[tp]), b"%08d" % i + b"x" * 92))
    counter = Counter(count)
    counter.started = time.perf_counter()
    ctx = actor_context("memory:9092", "mem", store, "Memory")
    ref = EventStepActor.start(
        ctx,
        StepFactory(no_op_step("mem", counter), "<bench>"),
        consumer_factory=lambda spec: MemoryConsumer(spec, records),
    )
    try:
        if not counter.done.wait(300):
            raise RuntimeError(f"only {counter.seen} of {count} events handled")
    finally:
        ctx.stopping.set()
        ref.stop(timeout=30)
    assert counter.first is not None and counter.last is not None
    return (counter.last - counter.started) / count * 1e6


# -- latency -------------------------------------------------------------------------------
def trickle(bootstrap: str, topic: str, count: int, period: float) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    next_at = time.perf_counter()
    for _ in range(count):
        producer.send(topic, value=repr(time.time()).encode())
        next_at += period
        time.sleep(max(0.0, next_at - time.perf_counter()))
    producer.flush(30)
    producer.close()


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def latency_actor(bootstrap: str, count: int, period: float, store: Store) -> tuple[float, float]:
    topic = create_topic(bootstrap, 4)
    counter = Counter(count)
    counter.measure_latency = True
    ctx = actor_context(bootstrap, f"lat-{uuid.uuid4().hex[:8]}", store, "Latency")
    ref = EventStepActor.start(ctx, StepFactory(no_op_step(topic, counter), "<bench>"))
    try:
        _wait(lambda: bool(ctx.state.detail.get("partitions")), "the actor's partitions")
        trickle(bootstrap, topic, count, period)
        if not counter.done.wait(60):
            raise RuntimeError(f"only {counter.seen} of {count} events handled")
    finally:
        ctx.stopping.set()
        ref.stop(timeout=30)
    return percentiles(counter.latencies)


def latency_bare(bootstrap: str, count: int, period: float) -> tuple[float, float]:
    topic = create_topic(bootstrap, 4)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"latbare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.subscribe([topic])

    def joined() -> bool:
        consumer.poll(timeout_ms=poll_timeout(consumer))
        return bool(consumer.assignment())

    _wait(joined, "the join")
    latencies: list[float] = []
    producer = threading.Thread(target=trickle, args=(bootstrap, topic, count, period))
    producer.start()
    while len(latencies) < count:
        for records in consumer.poll(timeout_ms=poll_timeout(consumer)).values():
            now = time.time()
            latencies.extend(now - float(r.value) for r in records)
    producer.join()
    consumer.close(autocommit=False)
    return percentiles(latencies)


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- main ----------------------------------------------------------------------------------
def throughput(bootstrap: str, partitions: int, count: int, rounds: int, store: Store) -> dict[str, Any]:
    """The bare consumer and the actor reading one topic of ``partitions``, ``rounds`` times each."""
    topic = create_topic(bootstrap, partitions)
    produce_s = fill(bootstrap, topic, count)
    print(f"filled {topic} ({partitions} partitions): {count} events in {produce_s:.1f} s", flush=True)
    bare: list[tuple[float, float, float]] = []
    actor: list[tuple[float, float, float]] = []
    for r in range(rounds):
        if r % 2:  # alternate who reads first
            actor.append(actor_consumer(bootstrap, topic, count, store))
            bare.append(bare_consumer(bootstrap, topic, count))
        else:
            bare.append(bare_consumer(bootstrap, topic, count))
            actor.append(actor_consumer(bootstrap, topic, count, store))
        print(
            f"  round {r + 1}: bare {count / bare[-1][0]:,.0f}/s, actor {count / actor[-1][0]:,.0f}/s",
            flush=True,
        )
    bare_s = statistics.median(b[0] for b in bare)
    actor_s = statistics.median(a[0] for a in actor)
    longest, TimedActor.longest = TimedActor.longest, 0.0
    return {
        "partitions": partitions,
        "longest_poll_ms": longest * 1000,
        "bare_per_s": count / bare_s,
        "actor_per_s": count / actor_s,
        "ratio": bare_s / actor_s,
        "bare_join_s": statistics.median(b[1] for b in bare),
        "actor_join_s": statistics.median(a[1] for a in actor),
        "bare_cpu_us": statistics.median(b[2] for b in bare) / count * 1e6,
        "actor_cpu_us": statistics.median(a[2] for a in actor) / count * 1e6,
    }


def run(bootstrap: str, count: int, rounds: int, latency_count: int, partitions: list[int]) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="bench-events-")
    store = Store(f"sqlite:///{folder}/bench.db", load_schema([]))
    runs = [throughput(bootstrap, n, count, rounds, store) for n in partitions]
    overhead = statistics.median(actor_overhead(count, store) for _ in range(3))
    lat_actor = latency_actor(bootstrap, latency_count, 0.01, store)
    lat_bare = latency_bare(bootstrap, latency_count, 0.01)
    return {
        "events": count,
        "throughput": runs,
        "actor_overhead_us": overhead,
        "latency_actor_ms": tuple(x * 1000 for x in lat_actor),
        "latency_bare_ms": tuple(x * 1000 for x in lat_bare),
        "latency_events": latency_count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-events", type=int, default=1000)
    parser.add_argument("--partitions", default="1,8", help="partition counts of the throughput topics")
    parser.add_argument("--quick", action="store_true", help="10,000 events, 1 round, 200 latency events")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds, args.latency_events = 10_000, 1, 200
    broker = None
    bootstrap = args.bootstrap
    if not bootstrap:
        sys.path.append(str(SCRIPTS))
        from local_kafka import LocalKafka

        broker = LocalKafka().start()
        bootstrap = broker.bootstrap
    try:
        partitions = [int(n) for n in args.partitions.split(",")]
        result = run(bootstrap, args.events, args.rounds, args.latency_events, partitions)
    finally:
        if broker is not None:
            broker.close()
    import kafka

    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"kafka-python {kafka.__version__}"
    )
    for one in result["throughput"]:
        events, parts = result["events"], one["partitions"]
        print(f"throughput, {events:,} events, {parts} partitions, median of {args.rounds}:")
        for label, key in (("bare KafkaConsumer", "bare"), ("EventStepActor", "actor")):
            rate, join, cpu = one[f"{key}_per_s"], one[f"{key}_join_s"], one[f"{key}_cpu_us"]
            print(f"  {label:<20} {rate:>10,.0f} events/s  {cpu:5.1f} CPU us/event  (join {join:.2f} s)")
        print(f"  actor / bare         {one['ratio']:>10.0%}")
        print(f"  the actor's longest Poll message {one['longest_poll_ms']:.0f} ms")
    print(f"  the actor's own work {result['actor_overhead_us']:>10.1f} us/event (in-memory consumer)")
    la, lb = result["latency_actor_ms"], result["latency_bare_ms"]
    print(f"latency, produce -> handled, {result['latency_events']} events at 100/s:")
    print(f"  EventStepActor       p50 {la[0]:6.1f} ms   p99 {la[1]:6.1f} ms")
    print(f"  bare KafkaConsumer   p50 {lb[0]:6.1f} ms   p99 {lb[1]:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
