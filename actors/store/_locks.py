"""PostgreSQL advisory locks: an object's claim while it is synced, and the migration's lock.

A claim is a session advisory lock keyed by the object's root model and id, held on a
connection of its own (no transaction stays open); the migration takes a transaction
lock so one process at a time changes the tables.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

__all__ = ["Claims", "lock_migration"]

_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:k, :i)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:k, :i)")
_MIGRATE = sa.text("SELECT pg_advisory_xact_lock(:k)")
_MIGRATE_KEY = zlib.crc32(b"actors migrate")


def lock_migration(conn: sa.Connection) -> None:
    """Wait for the migration lock, held until ``conn``'s transaction ends."""
    conn.execute(_MIGRATE, {"k": _MIGRATE_KEY})


class Claims:
    """Claims of objects on ``engine``; the claim connections are kept for the next claims."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._idle: list[sa.Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def claim(self, root: str, id: int) -> Iterator[bool]:
        """Hold ``(root, id)`` against other processes; yields ``False`` at once if another holds it."""
        key = {"k": zlib.crc32(root.encode()) & 0x7FFFFFFF, "i": id}
        conn, held = self._try(key)
        try:
            yield held
        finally:
            try:
                if held:
                    conn.execute(_UNLOCK, key)
            except Exception:
                conn.close()  # the session ends, and its locks with it
                raise
            with self._lock:
                self._idle.append(conn)

    def _try(self, key: dict[str, int]) -> tuple[sa.Connection, bool]:
        """A claim connection (an idle one if there is one) and whether it got the lock ``key``.

        Claim connections stay checked out of the pool, in autocommit mode, so a claim
        costs two statements and no pool checkout; one that fails is closed, and the
        claim tried once more on a new connection.
        """
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:
                return conn, bool(conn.execute(_TRY_LOCK, key).scalar())
            except sa.exc.DBAPIError:
                conn.close()
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            return conn, bool(conn.execute(_TRY_LOCK, key).scalar())
        except Exception:
            conn.close()
            raise

    def close(self) -> None:
        """Close the claim connections (their locks go with them)."""
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()
