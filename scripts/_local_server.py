"""What ``local_kafka.py`` and ``local_postgres.py`` share: one server process for tests.

:class:`LocalServer` is the life cycle of a server started in a temporary folder on a
loopback port: ``start()`` (prepare the first time, launch, wait until ready), ``stop()``
(keeping the data and the port), ``close()`` (stop and delete the folder), ``with``, and a
registry that stops forgotten servers when the interpreter exits. A subclass says how to
prepare, launch, probe and shut down its server. :func:`serve` is the command line's
foreground loop. Private to ``scripts/``: imported as a sibling module.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Self

__all__ = ["LocalServer", "die_with_parent", "free_port", "free_ports", "serve", "tail", "wait_or_kill"]


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """Ports that nothing listens on right now, all different (held together while picked)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    return int(free_ports(1, host)[0])


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def die_with_parent(signum: int) -> None:
    """In the child before exec: get ``signum`` when the parent dies (Linux), so no server is orphaned."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signum)


def wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait ``timeout`` seconds for ``process`` to exit, then SIGKILL it."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


_LIVE: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _close_leftovers() -> None:
    """Stop servers whose owners forgot to (an interpreter exit must not leave them behind)."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class LocalServer:
    """One server process in a temporary folder on ``127.0.0.1``; subclasses fill in the details.

    A subclass sets the class attributes below and implements :meth:`_start` (prepare the
    first time, launch with :meth:`_spawn`, :meth:`_wait_ready`) and :meth:`_ready`; it may
    override :meth:`_shutdown` (default: SIGTERM, SIGKILL after the deadline).
    """

    #: The exception raised for every failure.
    _error: ClassVar[type[Exception]] = RuntimeError
    #: What the server is called in "the <noun> has no port yet".
    _noun: ClassVar[str] = "server"
    #: What the server is called in start-up failures ("<title> exited during start-up").
    _title: ClassVar[str] = "the server"
    #: How a start-up timeout reads ("<title> <not_ready> within 60s").
    _not_ready: ClassVar[str] = "did not answer"
    #: The log file's name in the folder.
    _log_name: ClassVar[str] = "server.log"
    #: The signal the server gets when this process dies.
    _death_signal: ClassVar[int] = signal.SIGTERM
    #: Seconds between two readiness probes.
    _poll_interval: ClassVar[float] = 0.2

    def __init__(self, *, port: int | None, startup_timeout: float, stop_timeout: float) -> None:
        """Nothing runs and no folder exists until :meth:`start`."""
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._port = port
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    # -- what callers read ------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The TCP port; fixed at the first start."""
        if self._port is None:
            raise self._error(f"the {self._noun} has no port yet: call start() first")
        return self._port

    @property
    def workdir(self) -> Path:
        """The temporary folder with the configuration, the data and the log."""
        if self._workdir is None:
            raise self._error(f"the {self._noun} has no folder yet: call start() first")
        return self._workdir

    @property
    def log_path(self) -> Path:
        """The file that receives the server's (and its set-up tools') output."""
        return self.workdir / self._log_name

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server (preparing it the first time) and wait until it answers."""
        if self.running:
            return self
        self._start()
        _LIVE.add(self)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the server, keeping its data and port; SIGKILL after ``timeout`` (``stop_timeout``)."""
        process = self._process
        if process is None:
            return
        deadline = self.stop_timeout if timeout is None else timeout
        try:
            if process.poll() is None:
                self._shutdown(process, deadline)
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

    def __enter__(self) -> Self:
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

    # -- for subclasses -----------------------------------------------------------------------

    def _start(self) -> None:
        """Prepare the server if it has no folder yet, launch it and wait until it is ready."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Whether the launched server answers clients yet."""
        raise NotImplementedError

    def _shutdown(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Make the running ``process`` exit: SIGTERM, then SIGKILL after ``timeout``."""
        process.terminate()
        wait_or_kill(process, timeout)

    def _log_excerpt(self) -> str:
        """``log: <path>`` and the log's last lines, for error messages."""
        return f"log: {self.log_path}\n{tail(self.log_path)}"

    def _run_logged(self, what: str, command: list[str], timeout: float, **run: Any) -> None:
        """Run a set-up ``command`` to completion, its output appended to the log; raise if it fails."""
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                    **run,
                )
            except subprocess.TimeoutExpired as exc:
                raise self._error(f"{what} timed out; log: {self.log_path}") from exc
        if result.returncode != 0:
            raise self._error(f"{what} failed (exit {result.returncode}); {self._log_excerpt()}")

    def _spawn(self, command: list[str], **popen: Any) -> None:
        """Start the server ``command`` in the background, its output appended to the log."""
        self._log_handle = self.log_path.open("ab")
        self._log_handle.write(f"$ {' '.join(command)}\n".encode())
        self._log_handle.flush()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # only sets the parent-death signal (prctl)
            preexec_fn=functools.partial(die_with_parent, self._death_signal),
            **popen,
        )

    def _wait_ready(self) -> None:
        """Poll until :meth:`_ready`; on failure stop the server and show the log."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else None
                self.stop()
                raise self._error(
                    f"{self._title} exited during start-up (exit {code}); {self._log_excerpt()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise self._error(
                    f"{self._title} {self._not_ready} within {self.startup_timeout:.0f}s; "
                    f"{self._log_excerpt()}"
                )
            time.sleep(self._poll_interval)


def serve(
    server: LocalServer, *, name: str, exited: str, announce: Callable[[], None], ready: str | None = None
) -> int:
    """Command line: run ``server`` in the foreground until Ctrl-C or SIGTERM, then close it.

    Prints ``<ready or name> ready in ...`` once it answers, then calls ``announce`` (which prints
    how to reach it); returns 0 when stopped by a signal, 1 when the server exits by itself.
    Start-up errors (``server._error``) propagate, after the folder is deleted.
    """

    def _on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    started = time.monotonic()
    try:
        server.start()
        elapsed = time.monotonic() - started
        print(f"{ready or name} ready in {elapsed:.1f}s; log: {server.log_path}", file=sys.stderr)
        announce()
        print("Ctrl-C stops it.", file=sys.stderr, flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"{exited}; log: {server.log_path}\n{tail(server.log_path)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopping {name} ...", file=sys.stderr, flush=True)
        return 0
    finally:
        server.close()
