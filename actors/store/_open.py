"""Opening a store's database: its folder, its owner lock, a first check, and clear errors.

Whatever goes wrong while a store opens (a corrupt or read-only SQLite file, a folder
that cannot be made, a PostgreSQL server that is not there or refuses the login) ends
in one :class:`~actors.store.StoreOpenError` whose message is one line naming the URL
(password hidden) and the reason. Nothing is written before the checks pass: a
corrupt file is left as it was.

One owner per SQLite file: an exclusive opener (the main job, ``core``, a
:class:`~actors.runtime.Synchronizer`) holds :class:`OwnerLock`, ``fcntl.flock`` on
``<file>.lock`` beside the database, with its pid, host and command line written in it;
a second one, in this process or another, gets :class:`StoreInUse` naming that holder.
The lock belongs to the file descriptor, so an owner killed even with ``SIGKILL``
never blocks a restart: the stale lock file is simply locked again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from ._errors import StoreInUse, StoreOpenError, safe_url

__all__ = ["OwnerLock", "check_database", "claim_file", "open_errors"]


def sqlite_file(url: str) -> str | None:
    """The database file of an SQLite URL; ``None`` for memory and other databases."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def claim_file(url: str, *, exclusive: bool) -> OwnerLock | None:
    """Make the folder of an SQLite file and, when ``exclusive``, take its owner lock.

    Raises :class:`~actors.store.StoreInUse` when another owner holds it, and
    :class:`~actors.store.StoreOpenError` when the folder or the lock file cannot be made.
    """
    database = sqlite_file(url)
    if database is None:
        return None
    folder = os.path.dirname(database)
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        reason = f"{_blocking_file(folder)} is a file, not a folder"
        raise _error(url, f"cannot create the folder {folder}: {reason}") from exc
    except OSError as exc:
        raise _error(url, f"cannot create the folder {folder}: {_os_reason(exc)}") from exc
    if os.path.isdir(database):
        raise _error(url, f"{database} is a folder, not a database file")
    if not exclusive:
        return None
    path = lock_path(database)
    try:
        return OwnerLock.take(url, database)
    except OSError as exc:
        if os.path.exists(path):
            reason = f"cannot open the lock file {path}: {exc.strerror or exc}"
        elif isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            reason = f"the folder {folder} is not writable (cannot create the lock file {path})"
        else:
            reason = f"cannot create the lock file {path}: {exc.strerror or exc}"
        raise _error(url, reason) from exc


def _blocking_file(folder: str) -> str:
    """The nearest existing path at or above ``folder`` (a file, when makedirs failed so)."""
    path = folder
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_database(url: str, engine: sa.Engine) -> None:
    """Connect once, before anything is written; an SQLite file must also be writable.

    The connection reads an SQLite file's header (a file that is not a database fails
    here) and a PostgreSQL server checks the login. SQLite opens a file it may not
    write read-only without a word, and would fail only at the first write: that is
    checked here instead. Driver errors propagate as raised (see :func:`open_errors`).
    """
    database = sqlite_file(url)
    if database is not None and os.path.exists(database):
        for mode, problem in ((os.R_OK, "not readable"), (os.W_OK, "read-only")):
            if not os.access(database, mode):
                raise _error(url, f"the file is {problem}")
    with engine.connect():
        pass


@contextmanager
def open_errors(url: str, on_error: Callable[[], None]) -> Iterator[None]:
    """Turn the errors of opening store ``url`` into one-line :class:`StoreOpenError` s.

    ``on_error`` runs first (it closes what was opened).
    """
    try:
        yield
    except StoreOpenError:
        on_error()
        raise
    except (sa.exc.DBAPIError, sa.exc.ArgumentError, ImportError, OSError) as exc:
        on_error()
        raise _error(url, _reason(url, exc)) from exc


def _error(url: str, reason: str) -> StoreOpenError:
    return StoreOpenError(f"store {safe_url(url)} cannot be opened: {reason}")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _os_reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


def _reason(url: str, exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError):
        message = _one_line(str(exc.orig))
    elif isinstance(exc, OSError):
        return _os_reason(exc)
    else:
        message = _one_line(str(exc))
    database = sqlite_file(url) if not isinstance(exc, sa.exc.ArgumentError) else None
    if database is None:
        return message
    lowered = message.lower()
    if "not a database" in lowered:
        return f"the file is not an SQLite database (corrupt, or another kind of file): {message}"
    if "malformed" in lowered or "corrupt" in lowered:
        return f"the database file is corrupt: {message}"
    if any(word in lowered for word in _ACCESS_WORDS):
        return f"{_access_problem(database)}: {message}"
    return message


#: Words of SQLite errors that mean the file or its folder cannot be written (or read).
_ACCESS_WORDS = ("readonly", "read-only", "unable to open", "permission", "i/o error")


def _access_problem(database: str) -> str:
    """Why an SQLite file cannot be opened for writing, as far as the file system tells."""
    folder = os.path.dirname(database)
    if os.path.exists(database):
        if not os.access(database, os.R_OK):
            return "the file is not readable"
        if not os.access(database, os.W_OK):
            return "the file is read-only"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable (SQLite writes its -wal and -shm files there)"
    return "the file cannot be opened for writing"


# -- the owner lock -----------------------------------------------------------
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
