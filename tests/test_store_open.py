"""A start that cannot go on ends in one line and exit status 2, with nothing written.

Each case runs ``python -m actors.main`` (the main job) or ``python -m actors.main core``
in a subprocess: an unusable store (a corrupt or read-only SQLite file, a folder that
cannot be made, no PostgreSQL server, a login PostgreSQL refuses), the API port in use,
a remote core that does not answer. The embedded :class:`Synchronizer` raises the same
messages as :class:`StoreOpenError` (or ``OSError``, ``Unavailable``).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from actors.api import Unavailable
from actors.config import load_config
from actors.models import load_schema
from actors.runtime import Synchronizer
from actors.store import Store, StoreOpenError
from tests.helpers import free_port
from tests.main_support import EXAMPLES, MainProcess, error_line, run_main, write_config

PASSWORD = "s3cret-pw"
USER = {"username": "sync", "password": PASSWORD, "role": "synchronizer"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (names and bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _corrupt_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database, but a note someone left here\n" + os.urandom(4000))


def _malformed_database(path: Path) -> None:
    """A real SQLite file whose table list (page 1 after the header) was overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.executemany("INSERT INTO t VALUES (?)", [("row",)] * 100)
    conn.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = os.urandom(3996)
    path.write_bytes(bytes(data))


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write to (the test's children obey it even as root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)


# -- corrupt files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_file, "the file is not an SQLite database (corrupt, or another kind of file)"),
        (_malformed_database, "the database file is corrupt: database disk image is malformed"),
    ],
    ids=["not-a-database", "malformed"],
)
def test_a_corrupt_file_is_one_line_and_left_untouched(tmp_path: Path, damage, reason: str) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "data" / "actors.db"
    damage(db)
    before = _snapshot(tmp_path / "data")
    result = run_main(["-C", str(config)])
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr).startswith(f"error: store sqlite:///{db} cannot be opened: {reason}")
    after = _snapshot(tmp_path / "data")
    assert after.pop("actors.db.lock", None) is not None  # the owner lock beside it, nothing else
    assert after == before


def test_core_on_a_corrupt_file(tmp_path: Path) -> None:
    db = tmp_path / "core.db"
    _corrupt_file(db)
    before = db.read_bytes()
    result = run_main(["core", "--store-url", f"sqlite:///{db}", "--address", "127.0.0.1:0"])
    assert result.returncode == 2, result.stderr
    line = error_line(result.stderr)
    assert line.startswith(f"actors core: store sqlite:///{db} cannot be opened: the file is not an SQLite")
    assert db.read_bytes() == before
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()


def test_embedded_store_and_synchronizer_raise_store_open_error(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    db = tmp_path / "data" / "actors.db"
    _corrupt_file(db)
    before = db.read_bytes()
    with pytest.raises(StoreOpenError) as direct:
        Store(f"sqlite:///{db}", load_schema([str(EXAMPLES / "models")]), exclusive=True)
    sync = Synchronizer(config)
    with pytest.raises(StoreOpenError) as embedded:
        sync.start()
    sync.stop()
    assert str(embedded.value) == str(direct.value)
    assert str(direct.value).startswith(f"store sqlite:///{db} cannot be opened: the file is not an SQLite")
    assert db.read_bytes() == before
    # A failed open does not keep the owner lock: a good file opens at once afterwards.
    db.unlink()
    Synchronizer(config).start().stop()


# -- places that cannot be written -----------------------------------------------------


def test_a_data_folder_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    config = write_config(tmp_path, data_dir=str(blocker / "data"))
    result = run_main(["-C", str(config)])
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == (
        f"error: store sqlite:///{blocker}/data/actors.db cannot be opened: "
        f"cannot create the folder {blocker}/data: {blocker} is a file, not a folder"
    )
    assert blocker.read_text() == "a file where a folder should be\n"


def test_a_data_folder_in_a_read_only_folder(tmp_path: Path, read_only: Path) -> None:
    config = write_config(tmp_path, data_dir=str(read_only / "data"))
    read_only.chmod(0o555)
    result = run_main(["-C", str(config)], obey_permissions=True)
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == (
        f"error: store sqlite:///{read_only}/data/actors.db cannot be opened: "
        f"cannot create the folder {read_only}/data: Permission denied ({read_only}/data)"
    )
    assert list(read_only.iterdir()) == []


def test_core_in_a_read_only_folder(read_only: Path) -> None:
    read_only.chmod(0o555)
    url = f"sqlite:///{read_only}/core.db"
    result = run_main(["core", "--store-url", url, "--address", "127.0.0.1:0"], obey_permissions=True)
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == (
        f"actors core: store {url} cannot be opened: the folder {read_only} is not writable "
        f"(cannot create the lock file {read_only}/core.db.lock)"
    )
    assert list(read_only.iterdir()) == []


def test_a_read_only_database_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "data" / "actors.db"
    Store(f"sqlite:///{db}", load_schema([str(EXAMPLES / "models")])).close()  # a good database
    db.chmod(0o444)
    before = db.read_bytes()
    result = run_main(["-C", str(config)], obey_permissions=True)
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == f"error: store sqlite:///{db} cannot be opened: the file is read-only"
    assert db.read_bytes() == before


# -- PostgreSQL ------------------------------------------------------------------------


def _no_server_url() -> str:
    return f"postgresql+psycopg://actors:{PASSWORD}@127.0.0.1:{free_port()}/actors"


def _check_postgres_line(line: str, url: str, *needles: str) -> None:
    hidden = sa.make_url(url).render_as_string(hide_password=True)
    assert f"store {hidden} cannot be opened: " in line
    assert PASSWORD not in line and "***" in hidden
    for needle in needles:
        assert needle in line, line


def test_no_postgresql_server(tmp_path: Path) -> None:
    url = _no_server_url()
    config = write_config(tmp_path, store={"url": url})
    main = run_main(["-C", str(config)])
    assert main.returncode == 2, main.stderr
    _check_postgres_line(error_line(main.stderr), url, "Connection refused")
    core = run_main(["core", "--store-url", url, "--address", "127.0.0.1:0"])
    assert core.returncode == 2, core.stderr
    line = error_line(core.stderr)
    assert line.startswith("actors core: store ")
    _check_postgres_line(line, url, "Connection refused")


def test_postgresql_refuses_the_login(tmp_path: Path, postgres_url: str) -> None:
    url = sa.make_url(postgres_url).set(username="no_such_user", password=PASSWORD)
    text = url.render_as_string(hide_password=False)
    config = write_config(tmp_path, store={"url": text})
    main = run_main(["-C", str(config)])
    assert main.returncode == 2, main.stderr
    _check_postgres_line(error_line(main.stderr), text, 'role "no_such_user" does not exist')
    core = run_main(["core", "--store-url", text, "--address", "127.0.0.1:0"])
    assert core.returncode == 2, core.stderr
    _check_postgres_line(error_line(core.stderr), text, 'role "no_such_user" does not exist')


# -- the API port ----------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_main_job_with_its_api_port_in_use(tmp_path: Path, busy_port: int) -> None:
    address = f"127.0.0.1:{busy_port}"
    config = write_config(tmp_path, api={"enabled": True, "address": address})
    result = run_main(["-C", str(config)])
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr) == f"error: the API cannot listen on {address}: address already in use"
    assert not (tmp_path / "data").exists()  # nothing opened, nothing pulled


def test_core_with_its_port_in_use(tmp_path: Path, busy_port: int) -> None:
    address = f"127.0.0.1:{busy_port}"
    result = run_main(["core", "--store-url", f"sqlite:///{tmp_path}/core.db", "--address", address])
    assert result.returncode == 2, result.stderr
    expected = f"actors core: the API cannot listen on {address}: address already in use"
    assert error_line(result.stderr) == expected
    assert list(tmp_path.iterdir()) == []


def test_embedded_synchronizer_with_its_api_port_in_use(tmp_path: Path, busy_port: int) -> None:
    address = f"127.0.0.1:{busy_port}"
    config = load_config(write_config(tmp_path, api={"enabled": True, "address": address}))
    sync = Synchronizer(config, serve_api=True)
    with pytest.raises(OSError, match=f"^the API cannot listen on {address}: address already in use$"):
        sync.start()
    sync.stop()
    assert sync.supervisor is None and not (tmp_path / "data").exists()


# -- a remote core ---------------------------------------------------------------------


def _remote_config(folder: Path, endpoint: str, connect_timeout: float) -> Path:
    accessor = {"kind": "grpcapi", "endpoint": endpoint, "connect_timeout": connect_timeout}
    return write_config(folder, accessor={**accessor, "username": "sync", "password": PASSWORD})


def test_main_job_whose_core_is_unreachable(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    config = _remote_config(tmp_path, endpoint, 2.5)
    started = time.monotonic()
    result = run_main(["-C", str(config)])
    took = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    # The wait is logged through the configured logging (stderr by default), then the one error line.
    *logged, last = result.stderr.strip().splitlines()
    assert last == f"error: the core at {endpoint} is unavailable: unreachable, no connection within 2.5 s"
    retries = [line for line in logged if "core unreachable, retrying" in line]
    assert len(retries) >= 1 and all(f"endpoint={endpoint}" in line for line in retries)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert took < 25
    assert not (tmp_path / "data").exists()


def test_embedded_synchronizer_whose_core_is_unreachable(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    sync = Synchronizer(load_config(_remote_config(tmp_path, endpoint, 1)))
    with pytest.raises(Unavailable, match=f"^the core at {endpoint} is unavailable: unreachable"):
        sync.start()
    sync.stop()


def test_main_job_waits_for_a_core_that_comes_up(tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"127.0.0.1:{port}"
    job = MainProcess(["-C", str(_remote_config(tmp_path, endpoint, 60))], tmp_path / "main.log")
    core: MainProcess | None = None
    try:
        job.wait_for_line("core unreachable, retrying")
        core_config = tmp_path / "core.yaml"
        core_config.write_text(
            "name: core\n"
            f"store: {{url: 'sqlite:///{tmp_path}/core.db'}}\n"
            f"api: {{address: '{endpoint}', users: [{{username: sync, password: {PASSWORD}, "
            "role: synchronizer}]}\n"
        )
        core = MainProcess(["core", "--config", str(core_config)], tmp_path / "core.log")
        job.wait_for_line("running")
        assert job.stop() == 0, job.text()
    finally:
        job.kill()
        if core is not None:
            assert core.stop() == 0, core.text()
    assert "Traceback" not in job.text()


if sys.platform != "linux":  # pragma: no cover - flock and prctl as used here are Linux's
    pytestmark = pytest.mark.skip("Linux only")
