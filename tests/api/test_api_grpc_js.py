"""A client in JavaScript: @grpc/grpc-js over the ``.proto`` files of ``actors.main protos``.

``scripts/api_clients.py`` installs @grpc/grpc-js and @grpc/proto-loader from npm into a
cache (``.ci/run`` does it before the tests; here it is done if missing). The client
(``grpc_js_client.js``) compiles the files with protobuf.js, logs in and writes and reads
a Widget; this test checks what it got.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from actors.api import ApiServer
from actors.store import Store

from .support import PASSWORDS

CLIENT = Path(__file__).with_name("grpc_js_client.js")


@pytest.fixture(scope="session")
def node_path() -> Path:
    import api_clients  # scripts/ is on sys.path (tests/conftest.py)

    try:
        return api_clients.grpc_js()
    except api_clients.ToolMissing as exc:
        pytest.skip(f"the grpc-js client cannot run: {exc}")


def test_grpc_js_client(node_path: Path, api_server: ApiServer, api_store: Store, tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    command = [sys.executable, "-m", "actors.main", "protos", "--endpoint", api_server.address]
    command += ["--out", str(protos), "--username", "reader", "--password", PASSWORDS["reader"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(CLIENT), api_server.address, str(protos), "admin", PASSWORDS["admin"]],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, NODE_PATH=str(node_path)),
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)

    assert out["login"]["role"] == "admin"
    created = out["created"]
    wid = created["id"]
    # Ids are plain numbers in JavaScript (int32), and the fields have lowerCamel names.
    assert isinstance(wid, int) and created["leafModelName"] == "Widget" and created["size"] == 3
    assert out["got"]["name"] == "from-js" and out["got"]["weight"] == 1.5
    assert out["updated"]["object"]["id"] == wid and out["updated"]["object"]["size"] == 4
    assert out["updated"]["nullFields"] == ["weight"]
    assert [w["name"] for w in out["listed"]["items"]] == ["from-js"]
    assert out["deleted"]["id"] == wid and out["deleted"]["deleted"] is True
    assert out["deleted"]["purged"] is True  # it never reached a backend: gone at once
    assert api_store.get("Widget", wid) is None
    assert out["count"].get("count", 0) == 0
    notices = [(n["seq"], n["id"], n["kind"]) for n in out["notices"]]
    assert notices == [(1, wid, "create"), (2, wid, "update"), (3, wid, "delete"), (4, wid, "purge")]
