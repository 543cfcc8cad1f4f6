"""Event steps never stall on a real broker: many partitions, a slow handler, outages, rebalances.

Each test sends keyed events, runs an event step that upserts one object per key
(a real store write, 1 to 3 ms here), and ends with every event handled and every
object holding the last value sent for its key: nothing lost, nothing skipped,
order kept per key. Counts: 10,000 events on 3 and 8 partitions and through a
broker restart, 3,000 on 1 partition (it never stalled) and through the
rebalances (two consumers, retries and dead letters). Waits are on conditions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.orm import ModelAccessor
from actors.runtime.events import Event
from actors.steps import EventStep
from actors.store import Caller, Store
from tests.helpers import wait_for
from tests.runtime_support import make_store
from tests.test_events_kafka import (
    RECORDING_STEP,
    Running,
    Worker,
    actor_runner,
    caught_up,
    create_topic,
    read_topic,
    send_all,
    unique,
    write_synchronizer,
)

KEYS = 500


class Handled:
    """What the steps of a test handled, shared by its actors."""

    def __init__(self, half: int | None = None) -> None:
        self.lock = threading.Lock()
        self.values: set[bytes] = set()
        self.calls = 0
        #: Events handled per partition, and a copy of it taken when ``half`` were handled.
        self.by_partition: Counter[int] = Counter()
        self.half = half
        self.at_half: Counter[int] | None = None

    def add(self, value: bytes, partition: int = -1) -> None:
        with self.lock:
            self.values.add(value)
            self.calls += 1
            self.by_partition[partition] += 1
            if self.calls == self.half:
                self.at_half = Counter(self.by_partition)

    def count(self) -> int:
        with self.lock:
            return len(self.values)


@pytest.fixture
def run_actor(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    yield from actor_runner(tmp_path)


def events(count: int) -> tuple[list[bytes], list[bytes]]:
    """``count`` events over :data:`KEYS` keys: values ``{"key", "seq"}`` in send order."""
    keys = [f"key-{i % KEYS}".encode() for i in range(count)]
    values = [json.dumps({"key": k.decode(), "seq": i}).encode() for i, k in enumerate(keys)]
    return keys, values


def upsert_step(
    topic: str, store: Store, handled: Handled, fail: Callable[[dict[str, Any]], bool] | None = None
) -> type:
    """An event step that stores each event's ``seq`` on the object of its key (the reference's upsert)."""
    models = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    lock = threading.Lock()  # two actors in one process: one upsert of a key at a time

    class UpsertStep(EventStep):
        topics = [topic]

        def process_event(self, event: Event) -> None:
            value = json.loads(event.value)  # type: ignore[arg-type]
            if fail is not None and fail(value):
                raise RuntimeError(f"cannot handle {value['seq']}")
            with lock:
                obj = models.MyModel.objects.filter(first_name=value["key"]).first()
                if obj is None:
                    obj = models.MyModel(first_name=value["key"], last_name="-")
                obj.last_name = str(value["seq"])
                obj.save()
            handled.add(event.value, event.partition)  # type: ignore[arg-type]

    return UpsertStep


def assert_last_values_stored(
    store: Store, values: list[bytes], skipped: frozenset[int] = frozenset()
) -> None:
    """Every key's object holds the ``seq`` of the last event of that key (not skipped)."""
    last: dict[str, int] = {}
    for raw in values:
        value = json.loads(raw)
        if value["seq"] not in skipped:
            last[value["key"]] = value["seq"]
    models = ModelAccessor(store, caller=Caller.CLIENT)
    stored = {obj.first_name: int(obj.last_name) for obj in models.MyModel.objects.all()}
    assert stored == last


#: How long ``wait_all`` waits for the next event before it gives up (a loaded machine is slow, not stuck).
QUIET = 30.0


def wait_all(handled: Handled, want: int, running: list[Running], timeout: float) -> None:
    """Wait until ``want`` events were handled: fail after ``timeout`` seconds, or after :data:`QUIET`
    seconds without an event handled."""
    deadline = time.monotonic() + timeout
    try:
        while (seen := handled.count()) < want:
            left = deadline - time.monotonic()
            wait_for(
                lambda: handled.count() >= want or handled.count() > seen,
                timeout=max(0.0, min(QUIET, left)),
                description=f"{want} events handled",
            )
            if time.monotonic() >= deadline and handled.count() < want:
                raise AssertionError("time is up")
    except AssertionError:
        states = [(r.state.state, r.state.detail) for r in running]
        raise AssertionError(f"{handled.count()} of {want} events handled; actors: {states}") from None


@pytest.mark.parametrize(("partitions", "count"), [(1, 3000), (3, 10_000), (8, 10_000)])
def test_keyed_events_with_a_slow_handler_are_all_handled(
    kafka_bootstrap: str, run_actor: Callable[..., Running], tmp_path: Path, partitions: int, count: int
) -> None:
    topic = create_topic(kafka_bootstrap, unique("slow"), partitions=partitions)
    group = unique("g")
    keys, values = events(count)
    send_all(kafka_bootstrap, topic, values, keys)
    store = make_store(f"sqlite:///{tmp_path}/store.db")
    handled = Handled(half=count // 2)
    running = run_actor(upsert_step(topic, store, handled), kafka_bootstrap, group, store=store)
    wait_all(handled, count, [running], timeout=300)
    assert handled.values == set(values)
    # Fair between partitions whatever the speed: when half the events were handled, every partition
    # had had its share of turns (serving the first partitions to the end starved the others).
    assert handled.at_half is not None
    shares = {p: handled.at_half[p] / n for p, n in handled.by_partition.items()}
    assert min(shares.values()) >= 0.2, f"share of each partition's events handled at half time: {shares}"
    wait_for(lambda: caught_up(kafka_bootstrap, group, topic), timeout=30)
    assert_last_values_stored(store, values)
    detail = running.state.detail
    assert running.state.state == "running" and detail["recoveries"] == 0 and detail["stalled"] == []
    wait_for(lambda: set(running.state.detail["lag"].values()) == {0}, timeout=10)
    assert sorted(detail["last_progress"]) == sorted(f"{topic}[{p}]" for p in range(partitions))


def test_a_broker_restart_with_a_slow_handler_loses_nothing(
    local_kafka: Any, run_actor: Callable[..., Running], tmp_path: Path
) -> None:
    bootstrap = local_kafka.bootstrap
    topic = create_topic(bootstrap, unique("restart"), partitions=3)
    group = unique("g")
    keys, values = events(10_000)
    send_all(bootstrap, topic, values[:6000], keys[:6000])
    store = make_store(f"sqlite:///{tmp_path}/store.db")
    handled = Handled()
    step = upsert_step(topic, store, handled)
    running = run_actor(step, bootstrap, group, store=store, health_grace=0.5, commit_interval=0.2)
    wait_for(lambda: handled.count() >= 2000, timeout=60)
    local_kafka.stop()
    wait_for(lambda: running.state.state == "degraded", timeout=30)
    local_kafka.start()
    send_all(bootstrap, topic, values[6000:], keys[6000:])
    wait_all(handled, 10_000, [running], timeout=300)
    assert handled.values == set(values)
    wait_for(lambda: caught_up(bootstrap, group, topic), timeout=30)
    assert_last_values_stored(store, values)
    wait_for(lambda: running.state.state == "running", timeout=30)


def test_a_consumer_joining_and_leaving_during_retries_and_dead_letters_loses_nothing(
    kafka_bootstrap: str, run_actor: Callable[..., Running], tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique("join"), partitions=3)
    group = unique("g")
    count = 3000
    keys, values = events(count)
    poison = frozenset(seq for seq in range(count) if seq % 250 == 7)  # always fail: dead letters
    flaky_left = {seq: 1 for seq in range(count) if seq % 50 == 3}  # fail once: a retry
    flaky_lock = threading.Lock()

    def fail(value: dict[str, Any]) -> bool:
        seq = value["seq"]
        if seq in poison:
            return True
        with flaky_lock:
            if flaky_left.get(seq):
                flaky_left[seq] -= 1
                return True
        return False

    half = count // 2
    send_all(kafka_bootstrap, topic, values[:half], keys[:half])
    store = make_store(f"sqlite:///{tmp_path}/store.db")
    handled = Handled()
    step = upsert_step(topic, store, handled, fail)
    options = {"store": store, "max_retries": 1, "retry_backoff": 0.05}
    first = run_actor(step, kafka_bootstrap, group, **options)
    wait_for(lambda: first.state.detail.get("retries", 0) >= 3 and handled.count() >= 300, timeout=60)
    second = run_actor(step, kafka_bootstrap, group, **options)  # joins: the partitions are shared
    wait_for(lambda: first.state.detail["partitions"] and second.state.detail.get("partitions"), timeout=60)
    send_all(kafka_bootstrap, topic, values[half:], keys[half:])  # work for both
    wait_for(lambda: second.state.done >= 100 and second.state.detail.get("retries", 0) >= 1, timeout=60)
    second.stop()  # leaves while events, retries and dead letters flow: its partitions go back
    wait_all(handled, count - len(poison), [first], timeout=120)
    assert handled.values == {v for i, v in enumerate(values) if i not in poison}
    letters = read_topic(kafka_bootstrap, f"{group}.dead-letters", len(poison))
    assert {json.loads(r.value)["seq"] for r in letters} == poison
    wait_for(lambda: caught_up(kafka_bootstrap, group, topic), timeout=30)
    assert_last_values_stored(store, values, skipped=poison)
    assert first.state.state == "running" and first.state.detail["stalled"] == []


def test_a_killed_member_s_partitions_are_taken_over_within_the_session_timeout(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique("kill"), partitions=4)
    name = unique("pair")
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    workers = [
        Worker(write_synchronizer(tmp_path / f"w{i}", name, kafka_bootstrap, step))
        for i, step in enumerate(RECORDING_STEP.format(topic=topic, out=str(out)) for out in outs)
    ]
    try:
        wait_for(lambda: all(len(w.partitions()) == 2 for w in workers), timeout=60, description="the group")
        workers[0].process.kill()  # SIGKILL: no goodbye to the group, the broker notices a silent member
        killed = time.monotonic()
        # session_timeout_ms 10 s (kafka-python's default is 45 s), then one rebalance
        wait_for(lambda: len(workers[1].partitions()) == 4, timeout=25, description="the take-over")
        taken_over = time.monotonic() - killed
        ids = [str(i) for i in range(400)]
        send_all(kafka_bootstrap, topic, [i.encode() for i in ids], keys=[i.encode() for i in ids])
        wait_for(lambda: outs[1].exists() and set(outs[1].read_text().split()) == set(ids), timeout=30)
    finally:
        for worker in workers:
            worker.stop()
    assert 5 < taken_over < 25
