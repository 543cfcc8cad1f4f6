"""PostgreSQL advisory locks: the claims of objects being synced, and the migration's lock.

A claim holds an object against other processes: a session advisory lock keyed by the
object's root model and id. All the claims of one store are held on one connection of
their own, in autocommit (no transaction stays open), so a claim costs one statement
and holds no pooled connection: a process may hold as many at once as it syncs objects
at once. Several claims are taken, or let go, in one statement (:meth:`Claims.take`,
:meth:`Claims.release`). Within the store, claims of one object are counted: a second
claim of an object the store holds gets it at once, and the lock goes with the last
release (inside a process, the supervisor's object locks keep two handlers of one
object apart). The migration takes a transaction lock so one process at a time changes
the tables.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

__all__ = ["Claims", "lock_migration"]

_TRY_LOCK = (
    "SELECT i FROM unnest(CAST(%(ids)s AS int4[])) AS i WHERE pg_try_advisory_lock(CAST(%(k)s AS int4), i)"
)
_UNLOCK = "SELECT pg_advisory_unlock(CAST(%(k)s AS int4), i) FROM unnest(CAST(%(ids)s AS int4[])) AS i"
_MIGRATE = sa.text("SELECT pg_advisory_xact_lock(:k)")
_MIGRATE_KEY = zlib.crc32(b"actors migrate")


def lock_migration(conn: sa.Connection) -> None:
    """Wait for the migration lock, held until ``conn``'s transaction ends."""
    conn.execute(_MIGRATE, {"k": _MIGRATE_KEY})


def _class(root: str) -> int:
    """The first key of the claims of objects of root model ``root``."""
    return zlib.crc32(root.encode()) & 0x7FFFFFFF


class Claims:
    """Claims of objects on ``engine``, all held on one kept connection."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn: sa.Connection | None = None
        self._held: Counter[tuple[int, int]] = Counter()  # (class, id) -> claims of it held here
        #: Guards the connection and ``_held``: one statement at a time, from any thread.
        self._lock = threading.Lock()

    @contextmanager
    def claim(self, root: str, id: int) -> Iterator[bool]:
        """Hold ``(root, id)`` against other processes; yields ``False`` at once if one of them holds it."""
        got = self.take(root, [id])
        try:
            yield bool(got)
        finally:
            self.release(root, got)

    def take(self, root: str, ids: Iterable[int]) -> list[int]:
        """Claim each object ``(root, id)`` of ``ids`` no other process holds; the ids got.

        One statement for the objects this store does not hold yet (none when it holds
        them all). Each id got must be given back once to :meth:`release`. A lost
        connection is replaced and the statement tried once more (the claims held on
        the lost one went with its session).
        """
        return self.take_reading(root, ids, None)[0]

    def take_reading(
        self, root: str, ids: Iterable[int], read: str | None
    ) -> tuple[list[int], list[tuple[Any, ...]]]:
        """As :meth:`take`, then ``read`` (SQL of an ``%(ids)s`` array: all of ``ids``); ids got, rows read.

        The claim and the read are sent together (a pipeline: one round trip) and run in
        that order, each in its own snapshot, so the rows read are at least as new as the
        last commit of whoever held a claim before.
        """
        k = _class(root)
        with self._lock:
            unique = list(dict.fromkeys(ids))
            wanted = [id for id in unique if (k, id) not in self._held]
            statements: list[tuple[str, dict[str, Any]]] = []
            if wanted:
                statements.append((_TRY_LOCK, {"k": k, "ids": wanted}))
            if read is not None and unique:
                statements.append((read, {"ids": unique}))
            results = self._run(statements, retry=True) if statements else []
            locked = {int(row[0]) for row in results[0]} if wanted else set()
            got = [id for id in unique if (k, id) in self._held or id in locked]
            self._held.update((k, id) for id in got)
            return got, (results[-1] if read is not None and results else [])

    def release(self, root: str, ids: Iterable[int]) -> None:
        """Give back one claim of ``(root, id)`` for each of ``ids`` (ids not held are passed over).

        The locks of the objects no claim holds any more go, in one statement.
        """
        k = _class(root)
        with self._lock:
            last: list[int] = []
            for id in ids:
                if (k, id) in self._held:
                    self._held[(k, id)] -= 1
                    if self._held[(k, id)] <= 0:
                        del self._held[(k, id)]
                        last.append(id)
            if last:
                self._run([(_UNLOCK, {"k": k, "ids": last})], retry=False)

    def _run(
        self, statements: list[tuple[str, dict[str, Any]]], *, retry: bool
    ) -> list[list[tuple[Any, ...]]]:
        """The rows of each of ``statements``, run in order on the claim connection (opened when needed).

        They run on the driver's cursors (psycopg: SQLAlchemy's execution path cost more
        than the statement), several sent together in a pipeline. A failed statement
        invalidates the connection: its session ends, and every claim with it (a lost
        connection has lost them already), so the held set is emptied too. ``retry``:
        then run once more on a new connection.
        """
        for attempt in (0, 1):
            if self._conn is None or self._conn.invalidated or self._conn.closed:
                self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            dbapi: Any = self._conn.connection.dbapi_connection
            try:
                cursors = [dbapi.cursor() for _ in statements]
                if len(statements) > 1:
                    with dbapi.pipeline():
                        for cursor, (sql, params) in zip(cursors, statements, strict=True):
                            cursor.execute(sql, params)
                else:
                    cursors[0].execute(*statements[0])
                rows = [cursor.fetchall() for cursor in cursors]
                for cursor in cursors:
                    cursor.close()
                return rows
            except self._engine.dialect.loaded_dbapi.Error:
                self._drop()
                if not retry or attempt:
                    raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        """Close the claim connection for good (its session and its locks end)."""
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        """Close the claim connection (its locks go with it)."""
        with self._lock:
            self._drop()
