"""/healthz, /readyz and the gRPC health service: a failed step, the event bus stopped, the store stopped."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actors.runtime import FakeClock, Synchronizer
from tests.helpers import wait_for
from tests.test_events_kafka import create_topic, send_all, unique
from tests.test_observe import client, config, get, project, samples, value

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

EVENT_STEP = """
from synchronizers.new_base.eventstep import EventStep

class CountEvents(EventStep):
    technology = "kafka"
    topics = [{topic!r}]

    def process_event(self, event):
        if event.value == b"bad":
            raise ValueError("cannot read " + repr(event.value))
"""


def grpc_health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)


def test_a_failed_step_makes_it_not_ready_but_alive(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = config(
        project(tmp_path / "sync"),
        runtime={"max_restarts": 1, "restart_backoff": 1},
        api={"address": "127.0.0.1:0"},
    )
    sync = Synchronizer(cfg, clock=clock, serve_api=True).start()
    try:
        assert sync.http is not None
        url = sync.http.url
        wait_for(lambda: get(f"{url}/readyz")[0] == 200, description="ready at start")
        assert grpc_health(sync.api.address) == SERVING
        client(sync).MyModel(first_name="doomed", last_name="exit").save()
        wait_for(lambda: sync.status()["SyncMyModel"].state == "restarting")
        clock.advance(1)  # the replacement reads the object again and exits again: failed for good
        wait_for(lambda: sync.status()["SyncMyModel"].state == "failed")
        code, _, text = get(f"{url}/readyz?verbose")
        assert code == 500
        assert "[+]store ok" in text
        assert "[-]steps failed: SyncMyModel failed (StepExit: SystemExit: 3)" in text
        assert get(f"{url}/readyz/steps")[0] == 500 and get(f"{url}/readyz/store")[0] == 200
        assert get(f"{url}/healthz")[::2] == (200, "ok\n")  # alive: restarting the process would not help
        assert grpc_health(sync.api.address) == NOT_SERVING
        found = samples(get(f"{url}/metrics")[2])
        assert value(found, "actors_step_up", step="SyncMyModel") == 0
        assert value(found, "actors_step_up", step="policies") == 1
    finally:
        sync.stop()


def test_a_step_not_loaded_makes_it_not_ready(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    (folder / "steps" / "broken.py").write_text("import no_such_module\n")
    sync = Synchronizer(config(folder), clock=FakeClock()).start()
    try:
        assert sync.http is not None
        code, _, text = get(f"{sync.http.url}/readyz/steps")
        assert code == 500 and "broken.py not loaded" in text and "no_such_module" in text
    finally:
        sync.stop()


def test_the_event_bus_stopped_and_back(tmp_path: Path, local_kafka: Any) -> None:
    bootstrap = local_kafka.bootstrap
    topic = create_topic(bootstrap, unique("observed"), partitions=1)
    folder = project(tmp_path / "sync")
    (folder / "events").mkdir()
    (folder / "events" / "count.py").write_text(EVENT_STEP.format(topic=topic))
    cfg = config(
        folder,
        name=unique("obs"),
        event_steps_dir=str(folder / "events"),
        event_bus={
            "kind": "kafka",
            "endpoint": bootstrap,
            "health_grace": 0.5,
            "max_retries": 0,
            "retry_backoff": 0.1,
            "reconnect_backoff_max": 1,
        },
        api={"address": "127.0.0.1:0"},
    )
    sync = Synchronizer(cfg, serve_api=True).start()
    try:
        assert sync.http is not None
        url = sync.http.url
        send_all(bootstrap, topic, [b"one", b"two", b"bad", b"three"])

        def counted() -> dict[Any, float] | None:
            found = samples(get(f"{url}/metrics")[2])
            done = value(found, "actors_events_total", step="CountEvents", result="success") >= 3
            dead = value(found, "actors_dead_letters_total", step="CountEvents")
            return found if done and dead >= 1 else None

        found = wait_for(counted, timeout=60, description="events counted")
        assert value(found, "actors_events_total", step="CountEvents", result="error") >= 1
        assert value(found, "actors_event_consumer_lag", step="CountEvents", topic=topic, partition="0") == 0
        wait_for(lambda: get(f"{url}/readyz")[0] == 200, timeout=30, description="ready")
        assert grpc_health(sync.api.address) == SERVING
        local_kafka.stop()
        wait_for(lambda: get(f"{url}/readyz/events")[0] == 500, timeout=60, description="bus down seen")
        code, _, text = get(f"{url}/readyz?verbose")
        assert code == 500 and "[-]events failed: CountEvents: bus down:" in text and "[+]store ok" in text
        assert grpc_health(sync.api.address) == NOT_SERVING
        assert get(f"{url}/healthz")[0] == 200
        local_kafka.start()
        wait_for(lambda: get(f"{url}/readyz")[0] == 200, timeout=90, description="ready again")
        assert grpc_health(sync.api.address) == SERVING
    finally:
        sync.stop()


@pytest.fixture
def own_database(postgres_url: str) -> Any:
    """A PostgreSQL database of this test's own; ``(url, admin engine, name)``. Dropped afterwards."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = "obs_" + uuid.uuid4().hex[:12]
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url, admin, name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_a_stopped_store_makes_it_not_ready(tmp_path: Path, own_database: Any) -> None:
    url, admin, name = own_database
    cfg = config(project(tmp_path / "sync"), store={"url": url}, api={"address": "127.0.0.1:0"})
    clock = FakeClock()
    sync = Synchronizer(cfg, clock=clock, serve_api=True).start()
    try:
        assert sync.http is not None
        http = sync.http.url
        wait_for(lambda: get(f"{http}/readyz")[0] == 200, description="ready at start")
        with admin.connect() as conn:  # the database goes away: no connection, old or new
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        wait_for(lambda: get(f"{http}/readyz/store")[0] == 500, timeout=30, description="store down seen")
        code, _, text = get(f"{http}/readyz?verbose")
        assert code == 500 and "[-]store failed:" in text
        assert grpc_health(sync.api.address) == NOT_SERVING
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        wait_for(lambda: get(f"{http}/readyz/store")[0] == 200, timeout=30, description="store back")

        def ready() -> bool:
            clock.advance(2)  # the steps that crashed on the lost connections are restarted
            return get(f"{http}/readyz")[0] == 200

        wait_for(ready, timeout=30, description="ready again")
        assert grpc_health(sync.api.address) == SERVING
    finally:
        sync.stop()


def test_core_serves_its_own_endpoint(tmp_path: Path) -> None:
    from actors.api import ApiServer
    from actors.observe import HttpSettings
    from tests.runtime_support import make_store

    store = make_store()
    server = ApiServer(store, address="127.0.0.1:0", http=HttpSettings(address="127.0.0.1:0")).start()
    try:
        assert server.http is not None
        url = server.http.url
        assert get(f"{url}/readyz?verbose")[::2] == (200, "[+]store ok\nreadyz check passed\n")
        assert grpc_health(server.address) == SERVING
        found = samples(get(f"{url}/metrics")[2])
        assert any(name == "actors_grpc_server_handled_total" for name, _ in found)  # the health Check
        store.close()
    finally:
        server.stop()
