"""Event steps against a real Kafka broker.

``kafka_bootstrap`` is one broker for the session; ``local_kafka`` a broker of the
test's own, which it stops and starts.

Every test makes its own topics and consumer group, so tests do not see each
other's events. Waits are on conditions with deadlines, never bare sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition

from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import ChildContext, ChildState, RealClock, RuntimeSettings, Synchronizer
from actors.runtime.events import Event, EventStepActor
from actors.runtime.produce import close_producers, produce
from actors.steps import EventStep, StepFactory
from actors.store import Caller, Store
from tests.helpers import read_topic, wait_for
from tests.runtime_support import make_store

EXAMPLES = Path(__file__).resolve().parent.parent / "steps_examples"
ROOT = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------------
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int = 4) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        wait_for(
            lambda: len(probe.partitions_for_topic(name) or ()) == partitions, description=f"topic {name}"
        )
    finally:
        probe.close()
    return name


def send_all(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=keys[i] if keys else None, value=value)
        producer.flush(30)
    finally:
        producer.close()


def group_position(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset and the end offset of every partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(partitions)
        committed = {tp.partition: consumer.committed(tp) or 0 for tp in partitions}
        return committed, {tp.partition: ends[tp] for tp in partitions}
    finally:
        consumer.close(autocommit=False)


def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    committed, ends = group_position(bootstrap, group, topic)
    return committed == ends


class NoRebalanceWork:
    """A rebalance handler with nothing to commit or seek (for tests of the bare consumer client)."""

    def revoking(self, partitions: Any, lost: bool) -> dict[Any, int]:
        return {}

    def revoked(self, partitions: Any, offsets: Any, error: Any, lost: bool) -> None:
        pass

    def assigned(self, partitions: Any) -> dict[Any, int]:
        return {}


class Recorder:
    """What a step class saw (steps are classes: each test makes its own subclass bound to one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: list[bytes] = []

    def add(self, value: bytes) -> None:
        with self.lock:
            self.values.append(value)

    def distinct(self) -> set[bytes]:
        with self.lock:
            return set(self.values)

    def count(self) -> int:
        with self.lock:
            return len(self.values)


@dataclass
class Running:
    ref: pykka.ActorRef[Any]
    ctx: ChildContext

    @property
    def state(self) -> ChildState:
        return self.ctx.state

    def stop(self) -> None:
        if self.ref.is_alive():
            self.ctx.stopping.set()
            self.ref.stop(timeout=30)


def actor_runner(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start EventStepActors directly (no supervisor), on a SQLite file store (or ``store``) and a real
    clock; stop them at the end (the body of the ``run_actor`` fixtures)."""
    started: list[Running] = []

    def _run(
        cls: type, bootstrap: str, group: str, *, store: Store | None = None, **event_bus: Any
    ) -> Running:
        store = store or make_store(f"sqlite:///{tmp_path}/{group}.db")
        settings = RuntimeSettings(
            name=group, event_bus={"kind": "kafka", "endpoint": bootstrap, **event_bus}, shutdown_timeout=10
        )
        ctx = ChildContext(
            name=cls.__name__,
            state=ChildState(cls.__name__, "event"),
            accessor=ModelAccessor(store, caller=Caller.SYNCHRONIZER),
            clock=RealClock(),
            settings=settings,
        )
        running = Running(EventStepActor.start(ctx, StepFactory(cls, f"<test>/{cls.__name__}.py")), ctx)
        started.append(running)
        return running

    yield _run
    for running in started:
        running.stop()


@pytest.fixture
def run_actor(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start an EventStepActor directly (see :func:`actor_runner`)."""
    yield from actor_runner(tmp_path)


# -- the reference document's event step, end to end ------------------------------------------
def examples_synchronizer(tmp_path: Path, bootstrap: str, name: str) -> Synchronizer:
    data = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    data.pop("pull_steps_dir")  # its John Doe (no_sync) would shadow the event's John Doe
    data.update(name=name, data_dir=str(tmp_path / "data"))
    data["event_bus"] = {"kind": "kafka", "endpoint": bootstrap}
    return Synchronizer(Config.from_dict(data, base_dir=EXAMPLES))


def test_the_reference_event_step_creates_the_object_and_its_sync_step_runs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    name = unique("refsync")
    sync = examples_synchronizer(tmp_path, kafka_bootstrap, name).start()
    try:
        assert sync.load_errors == []
        wait_for(lambda: sync.status()["MyModelEventStep"].detail.get("partitions"), timeout=30)
        # The reference's producer snippet; kafka-python on Python 3 wants bytes, hence .encode().
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        producer.send("MyTopic", json.dumps({"first_name": "John", "last_name": "Doe"}).encode())
        producer.flush()
        producer.close()
        models = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
        john = wait_for(lambda: models.MyModel.objects.filter(first_name="John", last_name="Doe").first())
        # saved with always_update_timestamp=True: the sync step runs for it
        synced = wait_for(
            lambda: models.MyModel.objects.filter(id=john.id, backend_status="OK").first(),
            description="the sync step",
        )
        assert synced.enacted is not None and synced.enacted >= synced.updated
        # A second identical event creates nothing. (Our produce() helper takes the str value
        # as the reference wrote it.)
        value = json.dumps({"first_name": "John", "last_name": "Doe"})
        produce("MyTopic", value=value, endpoint=kafka_bootstrap)
        wait_for(lambda: caught_up(kafka_bootstrap, name, "MyTopic"), timeout=20, description="2nd event")
        assert models.MyModel.objects.filter(first_name="John", last_name="Doe").count() == 1
        assert sync.wait_idle(timeout=20)  # caught up with MyTopic, nothing buffered or uncommitted
        status = sync.status()
        assert status["MyModelEventStep"].state == "running" and status["MyModelEventStep"].done >= 2
        assert status["SyncMyModel"].done >= 1
    finally:
        sync.stop()
        close_producers()


# -- subscriptions -------------------------------------------------------------------------
def test_a_pattern_subscription_picks_up_a_topic_created_later(
    kafka_bootstrap: str, run_actor: Callable[..., Running]
) -> None:
    prefix = unique("pat")
    seen = Recorder()

    class PatternStep(EventStep):
        pattern = rf"^{prefix}\..*"

        def process_event(self, event: Event) -> None:
            seen.add(event.value)  # type: ignore[arg-type]

    create_topic(kafka_bootstrap, f"{prefix}.first", partitions=1)
    send_all(kafka_bootstrap, f"{prefix}.first", [b"one"])
    # kafka-python 3.0.12 sometimes stays "rebalancing" for ever after a new topic matches (3 runs
    # in 12 here): the watchdog then joins again with a new consumer after stall_timeout.
    running = run_actor(PatternStep, kafka_bootstrap, unique("g"), metadata_max_age=0.5, stall_timeout=5)
    wait_for(lambda: seen.distinct() == {b"one"}, timeout=30)
    create_topic(kafka_bootstrap, f"{prefix}.later", partitions=2)
    send_all(kafka_bootstrap, f"{prefix}.later", [b"two", b"three"])
    wait_for(lambda: seen.distinct() == {b"one", b"two", b"three"}, timeout=30)
    partitions = running.state.detail["partitions"]
    assert f"{prefix}.later[1]" in partitions and f"{prefix}.first[0]" in partitions


def test_poison_messages_go_to_the_dead_letter_topic_and_the_rest_is_processed(
    kafka_bootstrap: str, run_actor: Callable[..., Running]
) -> None:
    topic = create_topic(kafka_bootstrap, unique("poison"), partitions=2)
    group = unique("g")
    seen = Recorder()

    class JsonStep(EventStep):
        topics = [topic]

        def process_event(self, event: Event) -> None:
            value = json.loads(event.value)  # type: ignore[arg-type]
            if value.get("explode"):
                raise RuntimeError(f"cannot handle {value['id']}")
            seen.add(str(value["id"]).encode())

    values = [json.dumps({"id": i}).encode() for i in range(40)]
    values[7] = b"this is not json"
    values[23] = json.dumps({"id": 23, "explode": True}).encode()
    keys = [str(i % 2).encode() for i in range(40)]  # both partitions get events after a poison one
    send_all(kafka_bootstrap, topic, values, keys)
    running = run_actor(JsonStep, kafka_bootstrap, group, max_retries=2, retry_backoff=0.05)
    expected = {str(i).encode() for i in range(40)} - {b"7", b"23"}
    wait_for(lambda: seen.distinct() == expected, timeout=30)
    letters = read_topic(kafka_bootstrap, f"{group}.dead-letters", 2)
    assert sorted(r.value for r in letters) == sorted([values[7], values[23]])
    by_value = {r.value: dict(r.headers) for r in letters}
    poison = by_value[values[7]]
    assert poison["error_type"] == b"JSONDecodeError" and poison["origin_topic"] == topic.encode()
    assert poison["step"] == b"JsonStep" and poison["group"] == group.encode() and poison["attempts"] == b"3"
    exploded = by_value[values[23]]
    assert exploded["error"] == b"RuntimeError: cannot handle 23"
    assert int(exploded["origin_offset"]) >= 0 and exploded["origin_partition"] in (b"0", b"1")
    wait_for(lambda: caught_up(kafka_bootstrap, group, topic), timeout=20)
    assert running.state.failed == 2 and running.state.detail["dead_lettered"] == 2


def test_event_bus_consumer_options_reach_kafka_python_over_the_defaults(kafka_bootstrap: str) -> None:
    from actors.runtime._kafka_client import BusOptions, ConsumerSpec, KafkaConsumerClient

    def config(**consumer: Any) -> dict[str, Any]:
        options = BusOptions.from_settings({"endpoint": kafka_bootstrap, "consumer": consumer}, unique("g"))
        client = KafkaConsumerClient(ConsumerSpec(options, "Step", NoRebalanceWork(), topics=("t",)))
        try:
            return dict(client._consumer.config)
        finally:
            client.close(1.0)

    defaults = config()
    assert (defaults["session_timeout_ms"], defaults["heartbeat_interval_ms"]) == (10_000, 3_000)
    assert defaults["enable_auto_commit"] is False and defaults["auto_offset_reset"] == "earliest"
    tuned = config(session_timeout_ms=6000, heartbeat_interval_ms=2000, auto_offset_reset="latest")
    assert (tuned["session_timeout_ms"], tuned["heartbeat_interval_ms"]) == (6000, 2000)
    assert tuned["auto_offset_reset"] == "latest"


def test_a_group_join_that_ends_between_two_polls_is_not_lost(kafka_bootstrap: str) -> None:
    """The worst case of short polls (or a loaded machine): every join ends while no poll waits.

    kafka-python 3.0.12 lost such a join: the member stayed "rebalancing" with no
    partitions for ever (when the reason to rejoin, here the topics a pattern
    matches, was settled during the join), or threw the assignment away and started
    a new rebalance of the group. Each of two members polls 5 ms at a time and,
    between two polls, waits until its join in flight has ended (the broker holds a
    JoinGroup until every member has sent one: no join of this group ends within
    one poll). They must share the partitions, then those of a topic created later.
    """
    from actors.runtime._kafka_client import BusOptions, ConsumerSpec, KafkaConsumerClient

    prefix = unique("join")
    first = create_topic(kafka_bootstrap, f"{prefix}-a", partitions=4)
    options = BusOptions.from_settings({"endpoint": kafka_bootstrap, "metadata_max_age": 0.5}, unique("g"))
    clients = [
        KafkaConsumerClient(ConsumerSpec(options, f"Step{i}", NoRebalanceWork(), pattern=f"^{prefix}-"))
        for i in range(2)
    ]
    stop = threading.Event()

    def run(client: KafkaConsumerClient) -> None:
        coordinator = client._consumer._coordinator

        def join_in_flight() -> bool:
            task = coordinator._join_task
            return task is not None and not task.is_done

        while not stop.is_set():
            client.poll(0.005)
            while join_in_flight() and not stop.wait(0.005):
                pass  # the join goes on without a poll waiting for it

    def shared(*topics: str) -> bool:
        held = [c.assignment() for c in clients]
        return all(len(h) == 2 * len(topics) for h in held) and not any(c.joining() for c in clients)

    threads = [threading.Thread(target=run, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: shared(first), timeout=30, description="the members sharing the first topic")
        second = create_topic(kafka_bootstrap, f"{prefix}-b", partitions=4)
        wait_for(lambda: shared(first, second), timeout=30, description="the members sharing both topics")
        everything = {TopicPartition(t, p) for t in (first, second) for p in range(4)}
        assert clients[0].assignment() | clients[1].assignment() == everything
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for client in clients:
            client.close(2.0)


# -- outages -------------------------------------------------------------------------------
def test_no_broker_at_start_then_the_broker_comes(
    local_kafka: Any, run_actor: Callable[..., Running]
) -> None:
    topic = create_topic(local_kafka.bootstrap, unique("late"), partitions=1)
    seen = Recorder()

    class LateStep(EventStep):
        topics = [topic]

        def process_event(self, event: Event) -> None:
            seen.add(event.value)  # type: ignore[arg-type]

    local_kafka.stop()
    running = run_actor(
        LateStep, local_kafka.bootstrap, unique("g"), connect_timeout=0.5, reconnect_backoff_max=1
    )
    wait_for(lambda: running.state.state == "degraded", timeout=20)
    assert "no broker answers" in running.state.detail["bus"]
    local_kafka.start()
    send_all(local_kafka.bootstrap, topic, [b"hello"])
    wait_for(lambda: seen.distinct() == {b"hello"}, timeout=60)
    assert running.state.state == "running" and running.state.detail["bus"] == "up"


def test_the_broker_restarting_mid_stream_loses_no_event(
    local_kafka: Any, run_actor: Callable[..., Running]
) -> None:
    bootstrap = local_kafka.bootstrap
    topic = create_topic(bootstrap, unique("outage"), partitions=4)
    group = unique("g")
    seen = Recorder()

    class CountingStep(EventStep):
        topics = [topic]

        def process_event(self, event: Event) -> None:
            seen.add(event.value)  # type: ignore[arg-type]

    ids = [str(i).encode() for i in range(10_000)]
    send_all(bootstrap, topic, ids[:5000])
    running = run_actor(CountingStep, bootstrap, group, health_grace=0.5, commit_interval=0.2)
    wait_for(lambda: len(seen.distinct()) >= 2500, timeout=30)
    local_kafka.stop()
    wait_for(lambda: running.state.state == "degraded", timeout=30)
    assert running.state.detail["bus"].startswith("down:")
    local_kafka.start()
    send_all(bootstrap, topic, ids[5000:])
    wait_for(lambda: len(seen.distinct()) == 10_000, timeout=90)
    assert seen.distinct() == set(ids)  # every event processed at least once
    wait_for(lambda: running.state.state == "running", timeout=30)
    wait_for(lambda: caught_up(bootstrap, group, topic), timeout=30)
    duplicates = seen.count() - 10_000
    assert duplicates >= 0  # at least once: redeliveries are allowed, losses are not


# -- scaling out and restarts, through the Synchronizer ---------------------------------------
WORKER = """
import sys

from actors.config import load_config
from actors.runtime import Synchronizer

sync = Synchronizer(load_config(sys.argv[1])).start()
print("started", flush=True)
last = None
import time
while True:
    if sys.stdin in __import__("select").select([sys.stdin], [], [], 0.1)[0]:
        break
    partitions = sync.status()["RecordingStep"].detail.get("partitions")
    if partitions != last:
        last = partitions
        print("partitions", ",".join(partitions or []), flush=True)
sync.stop()
print("stopped", flush=True)
"""

RECORDING_STEP = """
import os
from synchronizers.new_base.eventstep import EventStep

class RecordingStep(EventStep):
    technology = "kafka"
    topics = [{topic!r}]

    def process_event(self, event):
        with open({out!r}, "a") as fh:
            fh.write(event.value.decode() + "\\n")
"""


def write_synchronizer(folder: Path, name: str, bootstrap: str, step_source: str, **runtime: Any) -> Path:
    (folder / "event_steps").mkdir(parents=True)
    (folder / "event_steps" / "recording.py").write_text(step_source)
    config = {
        "name": name,
        "data_dir": str(folder / "data"),
        "event_steps_dir": "event_steps",
        "event_bus": {"kind": "kafka", "endpoint": bootstrap},
        "runtime": runtime,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Worker:
    """One synchronizer process; reads its stdout lines in a thread."""

    def __init__(self, config: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def partitions(self) -> list[str]:
        found = [line.partition(" ")[2] for line in self.lines if line.startswith("partitions")]
        return found[-1].split(",") if found and found[-1] else []

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def test_two_synchronizer_processes_in_one_group_share_the_partitions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique("scale"), partitions=4)
    name = unique("pair")
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    workers = [
        Worker(write_synchronizer(tmp_path / f"w{i}", name, kafka_bootstrap, step))
        for i, step in enumerate(RECORDING_STEP.format(topic=topic, out=str(out)) for out in outs)
    ]
    try:
        # A process's start (imports, loading the steps) alone takes half a minute on a loaded 2-core machine.
        wait_for(lambda: all("started" in w.lines for w in workers), timeout=120, description="the processes")
        # both members are in the group, and each owns some partitions
        wait_for(lambda: all(len(w.partitions()) == 2 for w in workers), timeout=60, description="the group")
        owned = workers[0].partitions() + workers[1].partitions()
        assert sorted(owned) == sorted(f"{topic}[{p}]" for p in range(4))
        ids = [str(i) for i in range(2000)]
        send_all(kafka_bootstrap, topic, [i.encode() for i in ids], keys=[i.encode() for i in ids])

        def processed() -> list[list[str]]:
            return [out.read_text().split() if out.exists() else [] for out in outs]

        wait_for(lambda: set(processed()[0]) | set(processed()[1]) == set(ids), timeout=60)
        a, b = processed()
        assert a and b, "each process handled some of the events"
        assert not set(a) & set(b), "a partition belongs to one member at a time"
    finally:
        for worker in workers:
            worker.stop()
    assert all("stopped" in w.lines for w in workers)


CRASHING_STEP = """
import os
from synchronizers.new_base.eventstep import EventStep

class RecordingStep(EventStep):
    technology = "kafka"
    topics = [{topic!r}]

    def process_event(self, event):
        if event.value == b"50" and not os.path.exists({marker!r}):
            open({marker!r}, "w").close()
            raise SystemExit("the step exits once, at event 50")
        with open({out!r}, "a") as fh:
            fh.write(event.value.decode() + "\\n")
"""

OTHER_STEP = """
from synchronizers.new_base.eventstep import EventStep

class OtherStep(EventStep):
    technology = "kafka"
    topics = [{topic!r}]

    def process_event(self, event):
        pass
"""


def test_a_crashed_event_step_restarts_alone_and_resumes_from_the_committed_offset(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique("crash"), partitions=1)
    other_topic = create_topic(kafka_bootstrap, unique("other"), partitions=1)
    out, marker = tmp_path / "out", tmp_path / "marker"
    config = write_synchronizer(
        tmp_path / "s",
        unique("crashy"),
        kafka_bootstrap,
        CRASHING_STEP.format(topic=topic, out=str(out), marker=str(marker)),
        restart_backoff=0.1,
    )
    (tmp_path / "s" / "event_steps" / "other.py").write_text(OTHER_STEP.format(topic=other_topic))
    from actors.config import load_config

    sync = Synchronizer(load_config(config)).start()
    try:
        send_all(kafka_bootstrap, topic, [str(i).encode() for i in range(100)])
        wait_for(lambda: out.exists() and len(out.read_text().split()) == 100, timeout=60)
        status = sync.status()
        crashed = status["RecordingStep"]
        assert crashed.restarts == 1 and "SystemExit" in (crashed.last_error or "")
        assert status["OtherStep"].restarts == 0 and status["OtherStep"].state == "running"
        # events before the crash were committed as the actor died: none is handled twice
        counts = Counter(out.read_text().split())
        assert sorted(counts, key=int) == [str(i) for i in range(100)]
        assert set(counts.values()) == {1}
        wait_for(lambda: sync.status()["RecordingStep"].state == "running")
    finally:
        sync.stop()
