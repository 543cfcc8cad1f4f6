"""One owner per SQLite file: an exclusive lock on ``<file>.lock`` that names its holder.

A synchronizer (the main job, ``core``, an embedded :class:`~actors.runtime.Synchronizer`)
opens its store with ``exclusive=True``. The store then holds ``fcntl.flock`` on a lock
file next to the database and writes its pid, host and command line into it. A second
exclusive opener, in another process or in the same one, is refused with
:class:`StoreInUse` naming that holder. The operating system drops the lock when its
holder's file descriptor closes, so an owner that was killed (even with ``SIGKILL``)
never blocks a restart: the lock file stays, but a stale one is simply locked again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from typing import Any

from ._errors import StoreInUse, safe_url

__all__ = ["OwnerLock", "lock_path"]

#: The longest command line kept in the lock file.
_COMMAND_CHARS = 200


def lock_path(database: str) -> str:
    """The lock file of an SQLite database file: ``<file>.lock`` beside it."""
    return os.path.abspath(database) + ".lock"


def _describe(info: dict[str, Any]) -> str:
    """``pid 1234 (python -m actors.main) on host h``, from what a holder wrote."""
    pid, host, command = info.get("pid"), info.get("host"), info.get("command")
    if not isinstance(pid, int):
        return "another process"
    text = f"pid {pid}"
    if pid == os.getpid() and host == socket.gethostname():
        text += " (this process)"
    elif isinstance(command, str) and command:
        text += f" ({command})"
    if isinstance(host, str) and host:
        text += f" on host {host}"
    return text


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class OwnerLock:
    """The held lock of one SQLite file; :meth:`release` (or the process's end) frees it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(cls, url: str, database: str) -> OwnerLock:
        """Lock ``database`` (the file of store ``url``) for this process, or raise :class:`StoreInUse`.

        The folder of the file must exist. ``OSError`` if the lock file cannot be created.
        """
        path = lock_path(database)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_owner(fd))
            os.close(fd)
            raise StoreInUse(
                f"store {safe_url(url)} is in use by {holder}: one process per SQLite file (lock file {path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        argv = list(getattr(sys, "orig_argv", sys.argv))
        if argv:
            argv[0] = os.path.basename(argv[0])
        command = " ".join(argv)[:_COMMAND_CHARS]
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass  # the lock holds without the description
        return cls(fd)

    def release(self) -> None:
        """Free the lock (the lock file stays; the next owner overwrites it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing drops the flock once no copy of the descriptor is left. No LOCK_UN:
            # in a forked child it would unlock the parent's file too.
            os.close(fd)

    def __del__(self) -> None:
        self.release()
