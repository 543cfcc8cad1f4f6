#!/usr/bin/env python3
"""Run a real, throw-away PostgreSQL server on this machine, without Docker.

It uses the server binaries already installed (Debian: ``apt-get install postgresql``):
``initdb`` makes a cluster with trust authentication in a temporary folder, and
``postgres`` serves it on ``127.0.0.1`` on a free port (its Unix socket in the same
folder), tuned for tests (``fsync=off`` and friends), with one database created for the
caller. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
user (or ``ACTORS_PG_USER``), which must exist.

As a library (tests use it through the ``postgres_url`` fixture in ``tests/conftest.py``)::

    with LocalPostgres() as pg:
        engine = sqlalchemy.create_engine(pg.url)   # postgresql+psycopg://postgres@127.0.0.1:NNNN/actors_test

As a command::

    python scripts/local_postgres.py     # prints the URL (ACTORS_TEST_POSTGRES_URL=...), Ctrl-C stops

Environment: ``ACTORS_PG_BINDIR`` (the folder with ``initdb`` and ``postgres``; default:
``pg_config --bindir``, the newest ``/usr/lib/postgresql/*/bin``, or PATH),
``ACTORS_PG_USER`` (the unprivileged OS user to run as when root; default ``postgres``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["LocalPostgres", "LocalPostgresError", "find_bindir", "main"]

INSTALL_HINT = "install the PostgreSQL server: apt-get install -y postgresql"
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


def find_bindir() -> Path:
    """The folder with ``initdb``, ``postgres`` and ``pg_ctl``, or a :class:`LocalPostgresError`."""
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
    debian = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if _is_bindir(p)), key=_version_key)
    if debian:
        return debian[-1]
    initdb = shutil.which("initdb")
    if initdb and _is_bindir(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    raise LocalPostgresError(
        f"PostgreSQL server binaries (initdb, postgres, pg_ctl) not found: {INSTALL_HINT}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file (empty if it does not exist)."""
    try:
        text = path.read_bytes()[-64 * 1024 :].decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """In the child before exec: get SIGINT (fast shutdown) when the parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)


_LIVE: weakref.WeakSet[LocalPostgres] = weakref.WeakSet()


@atexit.register
def _close_leftovers() -> None:
    """Stop servers whose owners forgot to (an interpreter exit must not leave them behind)."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class LocalPostgres:
    """One PostgreSQL cluster in a temporary folder, served on a free loopback port.

    ``start()`` runs ``initdb`` the first time, starts ``postgres``, waits until it accepts
    connections and creates :attr:`database`. ``stop()`` stops it (``pg_ctl stop -m fast``)
    and keeps the data, so ``start()`` brings it back on the same port. ``close()`` (or
    leaving the ``with`` block) stops it and deletes the folder.
    """

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
        self.database = database
        self.user = SUPERUSER
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self._port = port
        self._workdir: Path | None = None
        self._bindir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._created = False

    # -- what callers read ------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The TCP port; fixed at the first start."""
        if self._port is None:
            raise LocalPostgresError("the server has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database`: ``postgresql+psycopg://postgres@127.0.0.1:<port>/<db>``."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """libpq connection string of :attr:`database` (for ``psycopg.connect`` or ``psql``)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    @property
    def workdir(self) -> Path:
        """The temporary folder with the data directory, the socket folder and the log."""
        if self._workdir is None:
            raise LocalPostgresError("the server has no folder yet: call start() first")
        return self._workdir

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        """The folder holding the server's Unix socket."""
        return self.workdir / "sock"

    @property
    def log_path(self) -> Path:
        """The file that receives ``initdb``'s and the server's output."""
        return self.workdir / "postgres.log"

    @property
    def running(self) -> bool:
        """Whether the postmaster process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """Start the server (initialising it the first time) and wait until it accepts connections."""
        if self.running:
            return self
        if self._workdir is None:
            self._prepare()
        self._launch()
        self._wait_ready()
        if not self._created:
            self._create_database()
            self._created = True
        _LIVE.add(self)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server (``pg_ctl stop -m fast``; SIGKILL after ``timeout``), keeping the data."""
        process = self._process
        if process is None:
            return
        deadline = self.stop_timeout if timeout is None else timeout
        try:
            if process.poll() is None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(
                        [str(self._bin("pg_ctl")), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=deadline,
                        check=False,
                        **self._as_user(),
                    )
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGQUIT)  # immediate shutdown
                    try:
                        process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=30)
        finally:
            self._process = None
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None

    def close(self, *, keep_files: bool = False) -> None:
        """Stop the server and delete its folder (``keep_files``: leave it, for its log)."""
        try:
            self.stop()
        finally:
            _LIVE.discard(self)
            if self._workdir is not None and not keep_files:
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> LocalPostgres:
        """Start the server; ``close()`` on leaving the block."""
        try:
            return self.start()
        except BaseException:
            self.close(keep_files=True)  # the error message points at the log in there
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server and delete its folder."""
        self.close()

    def __repr__(self) -> str:
        """Address and state."""
        where = f"{self.host}:{self._port}" if self._port else "not started"
        return f"<LocalPostgres {where} {'running' if self.running else 'stopped'}>"

    # -- internals ----------------------------------------------------------------------------

    def _bin(self, name: str) -> Path:
        """A program from the server's bin folder."""
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir / name

    def _run_as(self) -> pwd.struct_passwd | None:
        """The account to run the server programs as: ``None`` (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        name = os.environ.get("ACTORS_PG_USER") or "postgres"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise LocalPostgresError(
                f"PostgreSQL refuses to run as root and there is no user {name!r} to run it as: "
                f"{INSTALL_HINT} (it creates the postgres user), or "
                f"useradd --system --user-group {name}, or set ACTORS_PG_USER"
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
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=180,
                    check=False,
                    **self._as_user(),
                )
            except subprocess.TimeoutExpired as exc:
                raise LocalPostgresError(f"initdb timed out; log: {self.log_path}") from exc
        if result.returncode != 0:
            raise LocalPostgresError(
                f"initdb failed (exit {result.returncode}); log: {self.log_path}\n{_tail(self.log_path)}"
            )

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
        self._log_handle = self.log_path.open("ab")
        self._log_handle.write(f"$ {' '.join(command)}\n".encode())
        self._log_handle.flush()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only sets the parent-death signal (prctl)
            **self._as_user(),
        )

    def _accepts_connections(self) -> bool:
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

    def _wait_ready(self) -> None:
        """Poll until the server accepts connections; on failure stop it and show the log."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else None
                self.stop()
                raise LocalPostgresError(
                    f"postgres exited during start-up (exit {code}); "
                    f"log: {self.log_path}\n{_tail(self.log_path)}"
                )
            if self._accepts_connections():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LocalPostgresError(
                    f"postgres did not accept connections within {self.startup_timeout:.0f}s; "
                    f"log: {self.log_path}\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

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

    def _on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    server = LocalPostgres(args.database, port=args.port)
    started = time.monotonic()
    try:
        server.start()
        print(
            f"PostgreSQL ready in {time.monotonic() - started:.1f}s; log: {server.log_path}", file=sys.stderr
        )
        print(f"ACTORS_TEST_POSTGRES_URL={server.url}", flush=True)
        print(f"psql: psql '{server.dsn}'", file=sys.stderr)
        print("Ctrl-C stops it.", file=sys.stderr, flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"postgres exited; log: {server.log_path}\n{_tail(server.log_path)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping PostgreSQL ...", file=sys.stderr, flush=True)
        return 0
    except LocalPostgresError as exc:
        print(f"local_postgres: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
