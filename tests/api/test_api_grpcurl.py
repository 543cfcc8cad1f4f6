"""A client in another language: grpcurl (Go) talks to the core over a real socket.

grpcurl is built from the Go module proxy by ``scripts/api_clients.py`` (``.ci/run`` builds
it before the tests; here it is built if missing). It learns the services by server
reflection (it asks ``grpc.reflection.v1`` first), or reads the ``.proto`` files that
``python -m actors.main protos`` writes and compiles them with Go's protobuf compiler, and
speaks the protobuf JSON mapping: lowerCamel names in and out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.api import ApiServer
from actors.store import Caller, Store, WriteContext

from .support import PASSWORDS

W = "actors.services.v1.Widget"


@pytest.fixture(scope="session")
def grpcurl_path() -> Path:
    import api_clients  # scripts/ is on sys.path (tests/conftest.py)

    try:
        return api_clients.grpcurl()
    except api_clients.ToolMissing as exc:
        pytest.skip(f"grpcurl cannot be built: {exc}")


class Grpcurl:
    """Runs grpcurl against one server and returns its JSON answers."""

    def __init__(self, path: Path, address: str) -> None:
        self.path = path
        self.address = address
        self.headers: list[str] = []
        self.proto_args: list[str] = []

    def run(self, *args: str, body: Any = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.path), "-plaintext", "-max-time", "20", *self.proto_args]
        for header in self.headers:
            argv += ["-H", header]
        if body is not None:
            argv += ["-d", json.dumps(body)]
        result = subprocess.run(
            [*argv, self.address, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def call(self, method: str, body: Any = None) -> Any:
        return json.loads(self.run(method, body=body if body is not None else {}).stdout)


@pytest.fixture
def grpcurl(grpcurl_path: Path, api_server: ApiServer) -> Grpcurl:
    return Grpcurl(grpcurl_path, api_server.address)


def test_reflection_list_and_describe(grpcurl: Grpcurl) -> None:
    services = grpcurl.run("list").stdout.split()
    assert {
        "actors.api.v1.Core",
        W,
        "actors.services.v1.SpecialWidget",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(services)
    described = grpcurl.run("describe", W).stdout
    assert "rpc Create ( .actors.models.v1.WidgetWrite ) returns ( .actors.models.v1.Widget );" in described
    assert "returns ( stream .actors.api.v1.ChangeNotice )" in described
    message = grpcurl.run("describe", "actors.models.v1.Widget").stdout
    assert "optional int32 owner_id = " in message and "optional int32 id = 1;" in message
    assert (
        "grpc.reflection.v1.ServerReflectionRequest"
        in grpcurl.run("describe", "grpc.reflection.v1.ServerReflection").stdout
    )


def test_login_then_write_and_read_with_lower_camel_json(grpcurl: Grpcurl, api_store: Store) -> None:
    # No credentials: refused.
    refused = grpcurl.run(f"{W}/List", body={}, check=False)
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
    login = grpcurl.call("actors.api.v1.Core/Login", {"username": "admin", "password": PASSWORDS["admin"]})
    assert login["role"] == "admin" and isinstance(login["expiresAt"], float)
    grpcurl.headers = [f"authorization: Bearer {login['token']}"]

    created = grpcurl.call(f"{W}/Create", {"object": {"name": "g1", "size": 3, "weight": 1.5}})
    wid = created["id"]
    assert isinstance(wid, int) and created["leafModelName"] == "Widget" and created["size"] == 3
    assert isinstance(created["created"], float)
    grpcurl.call(f"{W}/Create", {"object": {"name": "g2", "size": 8}})
    assert grpcurl.call(f"{W}/Get", {"id": wid})["name"] == "g1"

    updated = grpcurl.call(f"{W}/Update", {"object": {"id": wid, "size": 4}, "nullFields": ["weight"]})
    assert updated["object"]["id"] == wid and updated["object"]["size"] == 4
    assert updated["nullFields"] == ["weight"] and "updated" in updated["object"]
    assert api_store.get("Widget", wid)["weight"] is None

    where = {"where": [{"field": "size", "op": "gte", "value": {"intValue": 5}}], "orderBy": ["-size"]}
    assert [w["name"] for w in grpcurl.call(f"{W}/Filter", where)["items"]] == ["g2"]

    # Owed a backend delete, g1 stays soft-deleted: includeDeleted lists it.
    api_store.update("Widget", wid, {"backend_need_delete": True}, WriteContext(Caller.SYNCHRONIZER))
    assert grpcurl.call(f"{W}/Delete", {"id": wid}) == {"id": wid, "deleted": True}
    assert [w["name"] for w in grpcurl.call(f"{W}/List", {"orderBy": ["-size"]})["items"]] == ["g2"]
    listed = grpcurl.call(f"{W}/List", {"orderBy": ["-size"], "includeDeleted": True})["items"]
    assert [(w["name"], w["deleted"]) for w in listed] == [("g2", False), ("g1", True)]
    assert grpcurl.call(f"{W}/Delete", {"id": wid, "purge": True}) == {
        "id": wid,
        "deleted": True,
        "purged": True,
    }
    assert grpcurl.call(f"{W}/Count", {})["count"] == 1
    assert grpcurl.call("actors.api.v1.Core/Now")["lastSeq"] == api_store.last_seq()


def test_health(grpcurl: Grpcurl) -> None:
    for service in ("", "actors.api.v1.Core", W):
        assert grpcurl.call("grpc.health.v1.Health/Check", {"service": service}) == {"status": "SERVING"}
    missing = grpcurl.run(
        "grpc.health.v1.Health/Check", body={"service": "actors.services.v1.Gadget"}, check=False
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_protos_from_the_cli_compile_for_go(grpcurl: Grpcurl, api_server: ApiServer, tmp_path: Path) -> None:
    """The ``.proto`` files of ``actors.main protos``, compiled by Go's protobuf compiler inside grpcurl."""
    out = tmp_path / "protos"
    command = [
        sys.executable,
        "-m",
        "actors.main",
        "protos",
        "--endpoint",
        api_server.address,
        "--out",
        str(out),
    ]
    command += ["--username", "reader", "--password", PASSWORDS["reader"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    grpcurl.proto_args = ["-import-path", str(out), "-proto", "actors/services/v1/services.proto"]
    grpcurl.headers = ["username: sync", f"password: {PASSWORDS['sync']}"]
    assert W in grpcurl.run("list").stdout.split()  # from the files: no reflection
    service = grpcurl.call("actors.services.v1.Service/Create", {"object": {"name": "svc"}})
    created = grpcurl.call(f"{W}/Create", {"object": {"name": "from-protos", "ownerId": service["id"]}})
    got = grpcurl.call(f"{W}/Get", {"id": created["id"]})
    assert got["name"] == "from-protos" and got["ownerId"] == service["id"]


def test_status_and_why_by_reflection(grpcurl: Grpcurl) -> None:
    described = grpcurl.run("describe", "actors.api.v1.Core").stdout
    assert "rpc Status ( .actors.api.v1.Empty ) returns ( .actors.api.v1.StatusResponse );" in described
    assert "rpc Why ( .actors.api.v1.WhyRequest ) returns ( .actors.api.v1.WhyResponse );" in described
    refused = grpcurl.run("actors.api.v1.Core/Status", body={}, check=False)
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
    grpcurl.headers = ["username: reader", f"password: {PASSWORDS['reader']}"]
    # A core alone: its own state, no children; Why needs a synchronizer in the process.
    assert grpcurl.call("actors.api.v1.Core/Status") == {"name": "core", "kind": "core", "state": "running"}
    why = grpcurl.run("actors.api.v1.Core/Why", body={"model": "Widget", "id": 1}, check=False)
    assert why.returncode != 0 and "FailedPrecondition" in why.stderr
    assert "no synchronizer runs in this process" in why.stderr
