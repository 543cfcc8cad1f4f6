"""``Core/Status`` and ``Core/Why`` over real gRPC, and ``status`` / ``why`` against a running main job."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import json_format

from actors.api import ApiServer, RemoteBackend, RemoteError
from actors.cli import main
from actors.config import Config
from actors.models import load_schema
from actors.runtime import FakeClock, Synchronizer
from actors.store import NotFound, Store, ValidationError
from tests.helpers import wait_for
from tests.main_support import EXAMPLES, MainProcess, environment
from tests.store_support import postgres_database
from tests.test_observe import client
from tests.test_observe_why import config_data, project

USERS = [
    {"username": "dev", "password": "dev", "role": "admin"},
    {"username": "viewer", "password": "viewer", "role": "readonly"},
]
CORE = "/actors.api.v1.Core"


# -- the RPC handlers, over real gRPC ------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'core.db'}", load_schema([]))
    yield store
    store.close()


def server(store: Store, **options: Any) -> ApiServer:
    return ApiServer(store, address="127.0.0.1:0", **options).start()


def raw_call(api: ApiServer, method: str, request: bytes, metadata: Any = ()) -> bytes:
    """One unary call with no client library in between."""
    with grpc.insecure_channel(api.address) as channel:
        stub = channel.unary_unary(f"{CORE}/{method}", request_serializer=None, response_deserializer=None)
        return bytes(stub(request, timeout=10, metadata=metadata))


TREE = {
    "name": "why",
    "state": "running",
    "children": [
        {
            "name": "SyncMyModel",
            "kind": "sync",
            "state": "running",
            "restarts": 1,
            "last_error": "backend refused bad",
            "done": 3,
            "failed": 2,
            "queue_depth": 4,
            "busy_for": 0.5,
            "detail": {"path": "/steps/sync_mymodel.py", "observes": ["MyModel"]},
        },
        {"name": "policies", "kind": "policy", "state": "failed", "restarts": 0, "last_error": None},
    ],
    "load_errors": [{"path": "/steps/broken.py", "step": None, "error": "SyntaxError: invalid syntax"}],
}


def fake_why(model: str, id: int) -> Mapping[str, Any]:
    if id == 404:
        raise LookupError(f"{model} {id} not found")
    return {
        "model": model,
        "id": id,
        "reason": "blocked",
        "message": f"{model} {id} waits for the sync of Alpha 2",
        "step": "SyncBeta",
        "until": 1234.5,
        "attempts": 3,
        "errors": ["first", "second"],
        "blocked_by": ["Alpha", 2],
        "owner": 7,
    }


def test_a_core_without_synchronizer_answers_its_own_state(store: Store) -> None:
    api = server(store)
    try:
        with RemoteBackend(api.address) as remote:
            assert remote.status() == {
                "name": "core",
                "kind": "core",
                "state": "running",
                "children": [],
                "load_errors": [],
            }
            with pytest.raises(RemoteError, match="no synchronizer runs in this process") as caught:
                remote.why("Service", 1)
            assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert cli("status", "--endpoint", api.address) == (
            0,
            "core: running; no synchronizer runs in its process\n",
            "",
        )
        assert cli("why", "Service", "1", "--endpoint", api.address) == (
            1,
            "",
            "error: no synchronizer runs in this process\n",
        )
    finally:
        api.stop()


def test_status_and_why_carry_every_field(store: Store) -> None:
    api = server(store)
    api.set_inspection(lambda: TREE, fake_why)
    try:
        with RemoteBackend(api.address) as remote:
            tree = remote.status()
            assert tree["kind"] == "synchronizer" and tree["name"] == "why" and tree["state"] == "running"
            mine, policies = tree["children"]
            assert mine == TREE["children"][0]  # type: ignore[index]
            assert policies == {
                "name": "policies",
                "kind": "policy",
                "state": "failed",
                "restarts": 0,
                "done": 0,
                "failed": 0,
                "queue_depth": 0,
                "last_error": None,
                "busy_for": None,
                "detail": {},
            }
            assert tree["load_errors"] == [
                {"path": "/steps/broken.py", "step": "", "error": "SyntaxError: invalid syntax"}
            ]
            assert remote.why("Beta", 5) == fake_why("Beta", 5)
            with pytest.raises(NotFound, match="Beta 404 not found"):
                remote.why("Beta", 404)
            with pytest.raises(ValidationError, match="object id 0: expected 1 or more"):
                remote.why("Beta", 0)
            with pytest.raises(ValidationError, match="Why needs a model name"):
                remote.why("", 1)
        # The protobuf JSON mapping (grpcurl, other languages): lowerCamel names.
        protos = api.protos
        status = protos.message("StatusResponse").FromString(raw_call(api, "Status", b""))
        as_json = json_format.MessageToDict(status)
        assert {"loadErrors", "children"} <= set(as_json)
        assert {"queueDepth", "lastError", "busyFor", "detailJson"} <= set(as_json["children"][0])
        request = protos.message("WhyRequest")(model="Beta", id=5).SerializeToString()
        why = json_format.MessageToDict(
            protos.message("WhyResponse").FromString(raw_call(api, "Why", request))
        )
        assert why["blockedBy"] == {"model": "Alpha", "id": 2} and why["owner"] == 7
        with pytest.raises(grpc.RpcError) as caught:
            raw_call(api, "Why", b"\xff\xff\xff")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot parse actors.api.v1.WhyRequest" in str(caught.value.details())
    finally:
        api.stop()


def test_status_and_why_are_authenticated_like_every_read(store: Store) -> None:
    closed = server(store, users=USERS, anonymous_read=False)
    opened = server(store, users=USERS, anonymous_read=True)
    try:
        for api in (closed, opened):
            api.set_inspection(lambda: TREE, fake_why)
        for method, body in (("Status", b""), ("Why", b"\n\x04Beta\x10\x05")):
            with pytest.raises(grpc.RpcError) as caught:
                raw_call(closed, method, body)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
            wrong = (("username", "viewer"), ("password", "nope"))
            with pytest.raises(grpc.RpcError) as caught:
                raw_call(closed, method, body, wrong)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
            reader = (("username", "viewer"), ("password", "viewer"))
            assert raw_call(closed, method, body, reader)  # any authenticated reader
            assert raw_call(opened, method, body)  # anonymous, with api.anonymous_read
    finally:
        closed.stop()
        opened.stop()


# -- the CLI against a running main job ----------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    """``actors.main ARGS`` in this process (the RPCs still go over the socket to the job)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
    )


@pytest.fixture
def main_job(tmp_path: Path) -> Iterator[str]:
    """A main job on the why project (users, no anonymous reads); yields its API address."""
    data = config_data(project(tmp_path / "sync"))
    data["api"] = {"address": "127.0.0.1:0", "users": USERS, "anonymous_read": False}
    data["logging"] = yaml.safe_load((EXAMPLES / "config.yaml").read_text())["logging"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    job = MainProcess(["-C", str(path)], tmp_path / "main.log")
    try:
        job.wait_for_line("synchronizer started")
        found = re.search(r"API serving\s.*address=(127\.0\.0\.1:\d+)", job.text())
        assert found, job.text()
        yield found.group(1)
    finally:
        assert job.stop() == 0


def test_status_and_why_against_a_running_main_job(main_job: str) -> None:
    login = ("--endpoint", main_job, "--username", "dev", "--password", "dev")
    with RemoteBackend(main_job, username="dev", password="dev") as remote:
        good = remote.create("MyModel", {"first_name": "good", "last_name": "ok"})["id"]
        bad = remote.create("MyModel", {"first_name": "bad", "last_name": "bad"})["id"]
        quiet = remote.create("MyModel", {"first_name": "John", "last_name": "Doe", "no_sync": True})["id"]
        alpha = remote.create("Alpha", {"name": "bad"})["id"]
        beta = remote.create("Beta", {"name": "b", "alpha_id": alpha})["id"]
        gamma = remote.create("Gamma", {"name": "g"})["id"]
        first = remote.create("Slow", {"name": "1"})["id"]
        second = remote.create("Slow", {"name": "2"})["id"]

    def why(model: str, id: int) -> dict[str, Any]:
        code, out, err = cli("why", model, str(id), *login, "--json")
        assert code == 0, err
        return dict(json.loads(out))

    def reason(model: str, id: int, wanted: str) -> dict[str, Any]:
        return wait_for(lambda: (w := why(model, id))["reason"] == wanted and w, timeout=30)

    assert reason("MyModel", good, "enacted")["attempts"] == 0
    backoff = reason("MyModel", bad, "backoff")  # the first failure retries at once; the second waits
    assert backoff["attempts"] == 2 and backoff["errors"] == ["backend refused bad"]
    assert backoff["step"] == "SyncMyModel" and backoff["until"] is not None
    assert why("MyModel", quiet)["reason"] == "no_sync"
    blocked = reason("Beta", beta, "blocked")
    assert blocked["blocked_by"] == ["Alpha", alpha] and "alpha refused" in blocked["message"]
    assert "no policy for g" in reason("Gamma", gamma, "waiting_for_policy")["message"]
    reason("Slow", first, "enacted")
    queued = why("Slow", second)  # the rate limit gives one token per 1000 s
    assert queued["reason"] == "queued" and queued["step"] == "SyncSlow"

    # What a person reads (the real command line, in its own process).
    text = run_cli("why", "MyModel", str(bad), *login)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"backoff: MyModel {bad} failed 2 time(s); tried again in ")
    assert lines[0].endswith(": backend refused bad")
    assert re.fullmatch(r"  until: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+ s\)", lines[2]), lines
    assert "  step:     SyncMyModel" in lines and "  attempts: 2" in lines
    assert "  error:    backend refused bad" in lines
    assert cli("why", "MyModel", str(good), *login) == (
        0,
        f"enacted: MyModel {good} is enacted: nothing to wait for\n",
        "",
    )
    assert (
        cli("why", "MyModel", str(quiet), *login)[1]
        == f"no_sync: MyModel {quiet} has no_sync set: no step syncs it\n"
    )
    blocked_text = cli("why", "Beta", str(beta), *login)[1].splitlines()
    assert f"  blocked by: Alpha {alpha}" in blocked_text

    table = run_cli("status", *login)
    assert table.returncode == 0, table.stderr
    header, columns, *rows = table.stdout.splitlines()
    assert header.startswith("synchronizer why: running, ")
    assert columns.split() == [
        "NAME",
        "KIND",
        "STATE",
        "RESTARTS",
        "DONE",
        "FAILED",
        "QUEUE",
        "BUSY",
        "LAST_ERROR",
    ]
    steps = {row.split()[0]: row.split() for row in rows}
    assert {"changefeed", "SyncMyModel", "SyncAlpha", "SyncBeta", "SyncSlow", "policies"} <= set(steps)
    assert steps["SyncMyModel"][1:3] == ["sync", "running"] and int(steps["SyncMyModel"][5]) >= 2
    code, out, _err = cli("status", *login, "--json")
    tree = json.loads(out)
    assert code == 0 and tree["kind"] == "synchronizer" and tree["name"] == "why"
    mine = next(c for c in tree["children"] if c["name"] == "SyncMyModel")
    assert mine["state"] == "running" and mine["done"] >= 1 and mine["failed"] >= 2
    assert next(c for c in tree["children"] if c["name"] == "SyncSlow")["queue_depth"] == 1

    # Failures: not found (1), an unknown model and bad usage (2), no credentials (1).
    code, _out, err = cli("why", "MyModel", "9999", *login)
    assert code == 1 and err == "error: MyModel 9999 not found\n"
    code, _out, err = cli("why", "Nope", "1", *login)  # as in every client command: bad usage
    assert code == 2 and err.startswith("error: unknown model 'Nope' (models: "), err
    assert cli("why", "MyModel", "x", *login)[0] == 2
    assert cli("why", "MyModel", *login)[0] == 2
    code, _out, err = cli("status", "--endpoint", main_job)
    assert code == 1 and "error:" in err and "credentials" in err.lower(), err


def test_an_object_of_another_replica_over_the_rpc(tmp_path: Path, postgres_url: str) -> None:
    """Two synchronizers share a PostgreSQL store; each serves the API; each object is one's."""
    with postgres_database(postgres_url) as url:
        folder = project(tmp_path / "sync")
        syncs = [
            Synchronizer(
                Config.from_dict(
                    config_data(
                        folder,
                        data_dir=str(tmp_path / f"data{i}"),
                        store={"url": url},
                        api={"address": "127.0.0.1:0"},
                    )
                ),
                clock=FakeClock(),
                serve_api=True,
            )
            for i in range(2)
        ]
        for sync in syncs:
            sync.start()
        try:
            for sync in syncs:
                backend: Any = sync.model_accessor.backend
                wait_for(lambda b=backend: len(b.replicas("SyncMyModel")[1]) == 2, description="two replicas")
            models = client(syncs[0])
            objects = [models.MyModel(first_name=f"n{i}", last_name="bad") for i in range(6)]
            for obj in objects:
                obj.save()
            remotes = [RemoteBackend(sync.api.address) for sync in syncs]
            try:
                answers = [[remote.why("MyModel", obj.id) for remote in remotes] for obj in objects]
                me = [sync.model_accessor.backend.replicas("SyncMyModel")[0] for sync in syncs]  # type: ignore[attr-defined]
            finally:
                for remote in remotes:
                    remote.close()
        finally:
            for sync in syncs:
                sync.stop()
    for pair in answers:  # each object belongs to one of them; the other says so, naming the owner
        theirs = [i for i, answer in enumerate(pair) if answer["reason"] == "other_replica"]
        assert len(theirs) == 1, answers
        other = pair[theirs[0]]
        assert other["owner"] == me[1 - theirs[0]] and other["step"] == "SyncMyModel"
        assert "belongs to another replica of SyncMyModel" in other["message"]
