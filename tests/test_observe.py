"""The HTTP endpoint: /metrics after a run, /healthz and /readyz, JSON routes; the metrics registry."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors.api import RemoteBackend
from actors.config import Config
from actors.observe import Health, HttpSettings, Metrics, NullMetrics, ObserveServer, http_settings
from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, FakeClock, RuntimeSettings, Supervisor, Synchronizer
from actors.runtime._child import ChildActor
from actors.runtime.messages import CheckDeadlines, ChildDied, GetStatus
from actors.store import Caller
from tests.helpers import wait_for
from tests.main_support import environment, error_line, write_config
from tests.runtime_support import make_store

MODELS = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""

# Fails on last_name "bad", exits (a crash of the actor: a restart) on "exit".
STEP = """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import MyModel

class SyncMyModel(SyncStep):
    observes = MyModel

    def sync_record(self, o):
        if o.last_name == "bad":
            raise RuntimeError("backend refused " + o.first_name)
        if o.last_name == "exit":
            raise SystemExit(3)
"""

POLICY = """
from synchronizers.new_base.policy import Policy

class MyModelPolicy(Policy):
    model_name = "MyModel"

    def handle_create(self, model):
        pass
"""


def project(folder: Path, step: str = STEP) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "mymodel.xproto").write_text(MODELS)
    (folder / "steps").mkdir()
    (folder / "steps" / "sync_mymodel.py").write_text(step)
    (folder / "policies").mkdir()
    (folder / "policies" / "mymodel_policy.py").write_text(POLICY)
    return folder


def config(folder: Path, **extra: Any) -> Config:
    data = {
        "name": "observed",
        "models_dir": str(folder / "models"),
        "steps_dir": str(folder / "steps"),
        "model_policies_dir": str(folder / "policies"),
        "data_dir": str(folder / "data"),
        "http": {"address": "127.0.0.1:0"},
        **extra,
    }
    return Config.from_dict(data)


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of a Prometheus text exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def client(sync: Synchronizer) -> Any:
    return ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)


def test_metrics_move_after_a_run(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    clock = FakeClock()
    cfg = config(folder, runtime={"max_restarts": 3}, api={"address": "127.0.0.1:0"})
    sync = Synchronizer(cfg, clock=clock, serve_api=True).start()
    try:
        assert sync.http is not None
        url = sync.http.url
        models = client(sync)
        good = models.MyModel(first_name="good", last_name="ok")
        good.save()
        models.MyModel(first_name="bad", last_name="bad").save()
        doomed = models.MyModel(first_name="doomed", last_name="exit")
        doomed.save()
        wait_for(lambda: sync.status()["SyncMyModel"].restarts >= 1, description="a restart")
        remote = RemoteBackend(sync.api.address)
        try:
            assert remote.get("MyModel", good.id) is not None
            assert remote.get("MyModel", 999) is None  # NOT_FOUND
        finally:
            remote.close()
        doomed.delete(purge=True)  # the replacement runs on, with nothing left that exits
        clock.advance(60)
        wait_for(lambda: sync.status()["SyncMyModel"].state == "running")

        def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            found = samples(get(f"{url}/metrics")[2])
            return found if value(found, "actors_objects", model="MyModel", state="error") == 1 else None

        found = wait_for(scraped, description="bad counted as an error")
    finally:
        sync.stop()
    step = "SyncMyModel"
    assert value(found, "actors_reconcile_total", step=step, result="success") >= 1
    assert value(found, "actors_reconcile_total", step=step, result="error") >= 2  # bad, and doomed
    assert value(found, "actors_reconcile_errors_total", step=step) >= 2
    assert value(found, "actors_reconcile_total", step="policies", result="success") >= 3
    assert value(found, "actors_reconcile_time_seconds_count", step=step) >= 3
    assert value(found, "actors_workqueue_queue_duration_seconds_count", step=step) >= 3
    assert value(found, "actors_sync_lag_seconds_count", step=step) >= 1
    assert value(found, "actors_supervisor_restarts_total", step=step, reason="crash") >= 1
    assert value(found, "actors_step_up", step=step) == 1
    assert value(found, "actors_step_up", step="policies") == 1
    assert ("actors_workqueue_depth", frozenset({("step", step)})) in found
    assert value(found, "actors_objects", model="MyModel", state="enacted") == 1
    assert value(found, "actors_objects", model="MyModel", state="pending") == 0
    grpc_calls = {
        dict(labels)["grpc_code"]
        for (name, labels), v in found.items()
        if name == "actors_grpc_server_handled_total" and v >= 1
    }
    assert {"OK", "NOT_FOUND"} <= grpc_calls, grpc_calls
    assert any(name.startswith("process_") for name, _ in found)  # the process's own collectors


def test_metrics_in_the_openmetrics_format_when_asked(tmp_path: Path) -> None:
    sync = Synchronizer(config(project(tmp_path / "sync")), clock=FakeClock()).start()
    try:
        assert sync.http is not None
        client(sync).MyModel(first_name="a", last_name="ok").save()
        assert sync.wait_idle()
        code, kind, text = get(f"{sync.http.url}/metrics", accept="application/openmetrics-text")
        plain_code, plain_kind, plain = get(f"{sync.http.url}/metrics")
    finally:
        sync.stop()
    assert code == 200 and kind.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert 'actors_reconcile_total{result="success",step="SyncMyModel"} 1.0' in text
    assert plain_code == 200 and plain_kind.startswith("text/plain") and "# EOF" not in plain


def test_two_embedded_synchronizers_count_apart(tmp_path: Path) -> None:
    one = Synchronizer(config(project(tmp_path / "one")), clock=FakeClock()).start()
    two = Synchronizer(config(project(tmp_path / "two")), clock=FakeClock()).start()
    try:
        assert one.http is not None and two.http is not None and one.http.port != two.http.port
        for _ in range(3):
            client(one).MyModel(first_name="a", last_name="ok").save()
        client(two).MyModel(first_name="b", last_name="ok").save()
        assert one.wait_idle() and two.wait_idle()
        first = samples(get(f"{one.http.url}/metrics")[2])
        second = samples(get(f"{two.http.url}/metrics")[2])
    finally:
        one.stop()
        two.stop()
    assert value(first, "actors_reconcile_total", step="SyncMyModel", result="success") == 3
    assert value(second, "actors_reconcile_total", step="SyncMyModel", result="success") == 1


def test_embedded_serves_the_endpoint_only_with_an_http_section(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    data = config(folder).as_dict()
    del data["http"]
    plain = Synchronizer(Config.from_dict(data), clock=FakeClock()).start()
    try:
        assert plain.http is None
        assert plain.health.ok("readyz")  # the checks are there all the same
    finally:
        plain.stop()
    off = Synchronizer(config(folder, http={"enabled": False, "address": "127.0.0.1:0"})).start()
    try:
        assert off.http is None
    finally:
        off.stop()
    assert http_settings(Config.from_dict(data)) is None
    assert http_settings(config(folder)) == HttpSettings(True, "127.0.0.1:0")


def test_http_address_from_the_environment(tmp_path: Path) -> None:
    from actors.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("name: x\n")
    loaded = load_config(str(path), env={"ACTORS_HTTP__ADDRESS": "127.0.0.1:9999"})
    assert http_settings(loaded) == HttpSettings(True, "127.0.0.1:9999")


def test_a_busy_port_is_one_line_naming_the_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=rf"^the HTTP endpoint cannot listen on 127.0.0.1:{port}: address"):
            ObserveServer(f"127.0.0.1:{port}", metrics=None, health=Health())
    with pytest.raises(ValueError, match=r"http\.address 'nowhere': expected host:port"):
        ObserveServer("nowhere", metrics=None, health=Health())


def test_health_endpoints_list_named_checks() -> None:
    health = Health()
    state = {"store": None}
    health.add("healthz", "ping", lambda: None)
    health.add("readyz", "store", lambda: state["store"])
    health.add("readyz", "steps", lambda: None)

    def boom() -> None:
        raise ConnectionError("bus\nunreachable")

    server = ObserveServer("127.0.0.1:0", metrics=Metrics(), health=health).start()
    try:
        url = server.url
        assert get(f"{url}/healthz")[::2] == (200, "ok\n")
        assert get(f"{url}/healthz?verbose")[::2] == (200, "[+]ping ok\nhealthz check passed\n")
        assert get(f"{url}/readyz")[::2] == (200, "ok\n")
        state["store"] = "store down"
        assert get(f"{url}/readyz")[::2] == (500, "[-]store failed: store down\nreadyz check failed\n")
        assert get(f"{url}/readyz?verbose")[::2] == (
            500,
            "[-]store failed: store down\n[+]steps ok\nreadyz check failed\n",
        )
        assert get(f"{url}/readyz/store")[::2] == (500, "store down\n")
        assert get(f"{url}/readyz/steps")[::2] == (200, "ok\n")
        assert get(f"{url}/readyz/nope")[0] == 404
        health.add("readyz", "events", boom)
        assert get(f"{url}/readyz/events")[::2] == (500, "ConnectionError: bus unreachable\n")
        assert get(f"{url}/nothing")[0] == 404
    finally:
        server.stop()


def test_json_routes_answer_errors_as_json() -> None:
    def route(args: list[str]) -> Any:
        if args == ["missing"]:
            raise LookupError("no such thing")
        if args == ["bad"]:
            raise ValueError("bad argument")
        return {"args": args}

    server = ObserveServer("127.0.0.1:0", metrics=None, health=Health(), routes={"thing": route}).start()
    try:
        assert get(f"{server.url}/thing/a/b")[::2] == (200, '{\n  "args": [\n    "a",\n    "b"\n  ]\n}\n')
        assert get(f"{server.url}/thing/missing")[::2] == (404, '{\n  "error": "no such thing"\n}\n')
        assert get(f"{server.url}/thing/bad")[0] == 400
        assert get(f"{server.url}/metrics")[0] == 404  # no metrics given
    finally:
        server.stop()


def test_a_grpc_recorder_counts_the_calls_of_its_method_by_code() -> None:
    metrics = Metrics()
    record, again = metrics.grpc_calls("svc", "Get"), metrics.grpc_calls("svc", "Get")
    started = time.monotonic()
    record("OK", started)
    again("OK", started)  # a second recorder of the same method adds to the same series
    record("NOT_FOUND", started)
    metrics.grpc_calls("svc", "List")("OK", started)
    found = samples(generate_latest(metrics.registry).decode())
    handled = "actors_grpc_server_handled_total"
    assert value(found, handled, grpc_service="svc", grpc_method="Get", grpc_code="OK") == 2
    assert value(found, handled, grpc_service="svc", grpc_method="Get", grpc_code="NOT_FOUND") == 1
    assert value(found, handled, grpc_service="svc", grpc_method="List", grpc_code="OK") == 1
    timed = "actors_grpc_server_handling_seconds_count"
    assert value(found, timed, grpc_service="svc", grpc_method="Get") == 3
    assert NullMetrics().grpc_calls("svc", "Get")("OK", started) is None  # counts nothing


def test_grpc_calls_are_counted_by_method_and_code(tmp_path: Path) -> None:
    sync = Synchronizer(config(project(tmp_path / "sync"), api={"address": "127.0.0.1:0"}), serve_api=True)
    sync.start()
    try:
        assert sync.http is not None
        with grpc.insecure_channel(sync.api.address) as channel:
            call = channel.unary_unary("/actors.core.Core/NoSuchMethod")
            with pytest.raises(grpc.RpcError):
                call(b"", timeout=5)
        remote = RemoteBackend(sync.api.address)
        try:
            remote.last_seq()
        finally:
            remote.close()
        found = samples(get(f"{sync.http.url}/metrics")[2])
    finally:
        sync.stop()
    handled = {
        (dict(labels)["grpc_method"], dict(labels)["grpc_code"]): v
        for (name, labels), v in found.items()
        if name == "actors_grpc_server_handled_total"
    }
    assert handled.get(("Now", "OK"), 0) >= 1, handled


def test_the_main_job_stops_with_one_line_when_the_http_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, http={"address": f"127.0.0.1:{port}"})
        env = {k: v for k, v in environment().items() if k != "ACTORS_HTTP__ADDRESS"}
        done = subprocess.run(
            [sys.executable, "-m", "actors.main", "-C", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert done.returncode == 2, done.stderr
    line = error_line(done.stderr)
    assert line == f"error: the HTTP endpoint cannot listen on 127.0.0.1:{port}: address already in use"
    assert not (tmp_path / "data" / "actors.db").exists()  # checked before the store was opened


class _Idle(ChildActor):
    kind = "test"


def test_the_supervisor_counts_restarts_by_reason() -> None:
    store = make_store()
    metrics = Metrics()
    clock = FakeClock()
    sup = Supervisor.start(
        [ChildSpec("worker", _Idle)],
        accessor=ModelAccessor(store, caller=Caller.SYNCHRONIZER),
        clock=clock,
        settings=RuntimeSettings(restart_backoff=1, step_deadline=5),
        metrics=metrics,
    )
    try:

        def restarts(reason: str) -> float:
            labels = {"step": "worker", "reason": reason}
            return metrics.registry.get_sample_value("actors_supervisor_restarts_total", labels) or 0.0

        wait_for(lambda: sup.ask(GetStatus())["worker"].state == "running")
        sup.tell(ChildDied("worker", 1, "RuntimeError: boom"))
        wait_for(lambda: restarts("crash") == 1, description="a crash counted")
        clock.advance(1)
        wait_for(lambda: sup.ask(GetStatus())["worker"].state == "running")
        state = sup.proxy().children.get()["worker"].state
        state.busy_deadline = 5.0
        state.busy[0] = clock.now() - 10  # a handler running for 10 s, past its deadline of 5 s
        sup.tell(CheckDeadlines())
        wait_for(lambda: restarts("deadline") == 1, description="a deadline counted")
        assert restarts("crash") == 1
    finally:
        sup.stop()
        store.close()
