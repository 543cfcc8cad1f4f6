"""The command line: objects, models, protos, login, hash-password; and the core process."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from actors.api import ApiServer, RemoteBackend, verify_password
from actors.api._commands import render_table
from actors.cli import main as cli_main
from actors.store import Store

from .support import PASSWORDS, WIDGETS_XPROTO


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def auth(api_server: ApiServer) -> list[str]:
    return ["--endpoint", api_server.address, "--username", "admin", "--password", PASSWORDS["admin"]]


def test_objects_create_list_get_update_delete(auth: list[str], api_store: Store) -> None:
    code, out, err = run(
        "objects", "create", "Widget", "name=first", "size=3", "weight=1.5", "active=no", *auth
    )
    assert code == 0, err
    assert "first" in out and "size" in out
    code, out, err = run("objects", "create", "Widget", "name=second", "size=10", *auth, "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["name"] == "second" and second["size"] == 10 and second["active"] is True

    code, out, _ = run("objects", "list", "Widget", *auth)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "SIZE"]
    assert "first" in lines[1] and "second" in lines[2] and lines[-1] == "(2 Widget objects)"

    code, out, _ = run("objects", "list", "Widget", "size__gt=5", *auth, "--json")
    assert [w["name"] for w in json.loads(out)] == ["second"]
    code, out, _ = run("objects", "list", "Widget", "size__in=3,10", "--order-by=-size", *auth, "--json")
    assert [w["name"] for w in json.loads(out)] == ["second", "first"]
    code, out, _ = run("objects", "list", "Widget", "weight__isnull=true", "--fields", "id,name", *auth)
    assert out.splitlines()[0].split() == ["ID", "NAME"] and "second" in out and "first" not in out

    code, out, _ = run("objects", "get", "Widget", str(second["id"]), *auth)
    assert code == 0 and any(line.split()[:2] == ["name", "second"] for line in out.splitlines())

    code, out, err = run(
        "objects", "update", "Widget", str(second["id"]), "size=11", "weight:=null", *auth, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["size"] == 11
    assert api_store.get("Widget", second["id"])["size"] == 11

    code, out, _ = run("objects", "delete", "Widget", str(second["id"]), *auth)
    assert code == 0 and out.strip() == f"deleted Widget id {second['id']}"
    assert api_store.get("Widget", second["id"]) is None


def test_objects_errors(auth: list[str], api_server: ApiServer) -> None:
    code, _, err = run("objects", "create", "Widget", "name=w", "size=big", *auth)
    assert code == 2 and "Widget.size: expected a int32" in err
    code, _, err = run("objects", "create", "Widget", "nope=1", *auth)
    assert code == 2 and "no field 'nope'" in err
    code, _, err = run("objects", "create", "Widget", "name=" + "x" * 65, *auth)
    assert code == 1 and "max_length" in err
    code, _, err = run("objects", "get", "Widget", "999", *auth)
    assert code == 1 and "Widget id 999 does not exist" in err
    code, _, err = run("objects", "list", "Gadget", *auth)
    assert code == 2 and "unknown model 'Gadget'" in err
    code, _, err = run("objects", "create", "Widget", "name=w", "--endpoint", api_server.address)
    assert code == 1 and "no users are configured" not in err and "credentials" in err
    code, _, err = run(
        "objects",
        "create",
        "Widget",
        "name=w",
        "--endpoint",
        api_server.address,
        "--username",
        "reader",
        "--password",
        PASSWORDS["reader"],
    )
    assert code == 1 and "may not write" in err
    code, _, err = run("objects", "list", "Widget", "--endpoint", "127.0.0.1:1", "--timeout", "0.5")
    assert code == 1 and "unavailable" in err
    code, _, _ = run("objects", "frobnicate", "Widget")
    assert code == 2


def test_models(auth: list[str]) -> None:
    code, out, _ = run("models", *auth)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"Service", "Widget", "SpecialWidget"} <= set(rows) and "XOSBase" not in rows
    assert "name, size, weight, active, owner, color" in rows["Widget"]
    code, out, _ = run("models", "--abstract", *auth)
    assert "XOSBase" in out
    code, out, _ = run("models", "Widget", *auth)
    assert any(
        line.split()[:4] == ["owner", "owner_id", "manytoone", "optional"] for line in out.splitlines()
    )
    code, out, _ = run("models", "Widget", *auth, "--json")
    data = json.loads(out)
    assert data["name"] == "Widget" and data["bases"] == ["XOSBase"]
    assert {f["name"] for f in data["fields"]} >= {"name", "owner", "created"}
    code, out, _ = run("models", *auth, "--json")
    assert "Widget" in [m["name"] for m in json.loads(out)]


def test_protos_download(auth: list[str], tmp_path: Path) -> None:
    code, out, _ = run("protos", *auth, "--out", str(tmp_path))
    assert code == 0
    assert (tmp_path / "actors/services/v1/services.proto").read_text().count("service ") >= 3
    code, out, _ = run("protos", *auth)
    assert "// ---- actors/api/v1/api.proto" in out


def test_login_and_token(api_server: ApiServer) -> None:
    code, out, _ = run(
        "login", "--endpoint", api_server.address, "--username", "sync", "--password", PASSWORDS["sync"]
    )
    assert code == 0
    token = out.strip()
    code, out, err = run(
        "objects", "create", "Widget", "name=t", "--endpoint", api_server.address, "--token", token
    )
    assert code == 0, err


def test_password_from_a_file(api_server: ApiServer, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORDS["reader"] + "\n")
    code, _, err = run(
        "objects",
        "list",
        "Widget",
        "--endpoint",
        api_server.address,
        "--username",
        "reader",
        "--password",
        f"@{secret}",
    )
    assert code == 0, err


def test_hash_password() -> None:
    code, out, _ = run("hash-password", "--password", "s3cret")
    assert code == 0 and verify_password("s3cret", out.strip())


def test_render_table() -> None:
    text = render_table(["id", "name"], [{"id": 1, "name": "a"}, {"id": 22, "name": None}])
    assert text.splitlines() == ["ID  NAME", "1   a", "22"]


# -- python -m actors.main core ----------------------------------------------------


def _start_core(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    code = "import sys; from actors.cli import main; sys.exit(main(['core', *sys.argv[1:]]))"
    # The HTTP endpoint on a free port, never the default 8080 (busy on a shared machine).
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ACTORS_HTTP__ADDRESS": "127.0.0.1:0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "actors core: serving" in line:
            address = line.split(" on ", 1)[1].split()[0]
            return proc, address
    proc.kill()
    raise AssertionError("the core did not start:\n" + "".join(lines))


def test_core_process_serves_a_store(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "widgets.xproto").write_text(WIDGETS_XPROTO)
    url = "sqlite:///" + str(tmp_path / "core.db")
    proc, address = _start_core(
        "--store-url", url, "--address", "127.0.0.1:0", "--models", str(models), cwd=tmp_path
    )
    try:
        with RemoteBackend(address, timeout=10) as backend:
            assert "Widget" in backend.schema
            assert backend.select("Widget") == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_core_process_reads_the_config(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "widgets.xproto").write_text(WIDGETS_XPROTO)
    (tmp_path / "pw").write_text("file-secret\n")
    config: dict[str, Any] = {
        "name": "core-test",
        "models_dir": "models",
        "store": {"url": "sqlite:///" + str(tmp_path / "cfg.db")},
        "api": {
            "address": "127.0.0.1:0",
            "users": [{"username": "ops", "password": "@pw", "role": "admin"}],
        },
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    proc, address = _start_core("--config", str(tmp_path / "config.yaml"), cwd=tmp_path)
    try:
        with RemoteBackend(address, username="ops", password="file-secret", timeout=10) as backend:
            row = backend.create("Widget", {"name": "configured"})
            assert backend.get("Widget", row["id"])["name"] == "configured"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


def test_core_process_reports_bad_options(tmp_path: Path) -> None:
    code = "import sys; from actors.cli import main; sys.exit(main(['core', *sys.argv[1:]]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "--models", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "cannot load the models" in result.stderr
