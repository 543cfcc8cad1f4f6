"""The real services the suite runs against, and the helpers that start them.

PostgreSQL through SQLAlchemy and psycopg, Kafka through kafka-python: nothing is mocked.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer
from local_kafka import LocalKafka

from tests.helpers import free_ports, wait_for


def _unique(prefix: str) -> str:
    """A name no other test uses (topics, groups and tables are shared by the session)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _produce(bootstrap: str, topic: str, *values: bytes) -> None:
    """Send ``values`` to ``topic`` and wait until the broker has acknowledged each."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        for value in values:
            producer.send(topic, value).get(timeout=60)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def _consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[bytes]:
    """Read ``count`` values from the start of ``topic`` in a fresh group, committing explicitly."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=_unique("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received: list[bytes] = []
    try:

        def enough() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(record.value for record in records)
            return len(received) >= count

        wait_for(enough, timeout=timeout, interval=0, description=f"{count} records on {topic}")
        consumer.commit()
    finally:
        consumer.close()
    return received


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    """A SQLAlchemy engine on the session's PostgreSQL database."""
    eng = sa.create_engine(postgres_url)
    yield eng
    eng.dispose()


def test_postgres_table_round_trip(engine: sa.Engine) -> None:
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"
    metadata = sa.MetaData()
    table = sa.Table(
        _unique("services"),
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON),
    )
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(table),
                [{"name": "alpha", "payload": {"n": 1}}, {"name": "beta", "payload": {"n": 2}}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.payload).order_by(table.c.id)).all()
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        assert [tuple(row) for row in rows] == [("alpha", {"n": 1}), ("beta", {"n": 2})]
        assert int(str(version).split(".")[0]) >= 12
    finally:
        metadata.drop_all(engine)


def test_postgres_transactions_roll_back(engine: sa.Engine) -> None:
    name = _unique("rollback")
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (v integer)"))
    try:
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {name} VALUES (1)"))
            raise RuntimeError("abort")
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() == 0
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {name}"))


def test_kafka_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = _unique("services")
    _produce(kafka_bootstrap, topic, b"hello", b"world")
    assert _consume(kafka_bootstrap, topic, 2) == [b"hello", b"world"]


def test_local_kafka_restart_keeps_data_and_port(local_kafka: LocalKafka) -> None:
    bootstrap = local_kafka.bootstrap
    topic = _unique("restart")
    _produce(bootstrap, topic, b"before-restart")

    local_kafka.stop()
    assert not local_kafka.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", local_kafka.port), timeout=1):
        pass

    started = time.monotonic()
    local_kafka.start()
    assert local_kafka.running
    assert local_kafka.bootstrap == bootstrap
    assert time.monotonic() - started < local_kafka.startup_timeout

    _produce(bootstrap, topic, b"after-restart")
    assert _consume(bootstrap, topic, 2) == [b"before-restart", b"after-restart"]


def test_wait_for_returns_the_truthy_value() -> None:
    calls: list[int] = []

    def third_time() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert wait_for(third_time, timeout=5, interval=0.001) == 3


def test_wait_for_times_out_with_a_description() -> None:
    def broken() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(
        AssertionError, match=r"waiting for the moon; last value: None; last error: .*refused"
    ):
        wait_for(broken, timeout=0.05, interval=0.01, description="the moon", ignore=(ConnectionError,))
    with pytest.raises(ConnectionError):
        wait_for(broken, timeout=0.05)


def test_free_ports_are_distinct_and_bindable(free_port: int) -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in [free_port, *ports]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
