"""The database of one store: its engine (SQLite pragmas, transactions begun by hand) and connections.

SQLite runs in WAL mode with a memory map, foreign keys on, and transactions begun by
the store itself (``BEGIN IMMEDIATE`` for a write, none for a read). :class:`Database`
hands out the connections: one per read, and for writes one kept open (on an SQLite
file) or one from the pool, under the write lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

__all__ = ["SQLITE_MMAP_BYTES", "Database", "make_engine"]

#: How much of an SQLite file each connection reads through a memory map instead of
#: read() calls. The mapping is the operating system's shared page cache, not memory
#: of ours; a query that visits a thousand scattered rows takes a tenth to a third less.
SQLITE_MMAP_BYTES = 256 * 1024 * 1024


def make_engine(url: str) -> sa.Engine:
    """The SQLAlchemy engine of store ``url`` (an in-memory SQLite database is one shared connection)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, future=True)
    database = parsed.database
    memory = not database or database == ":memory:"
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("actors_read"):
            return  # one SELECT needs no transaction
        # Straight to the driver: exec_driver_sql would cost a full statement execution per write.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.execute("BEGIN IMMEDIATE" if options.get("actors_immediate") and not memory else "BEGIN")

    return engine


class Database:
    """An engine's connections for a store: reads, the write connection, and the write lock."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        #: One in-memory database is one shared connection: its users take turns.
        self.shared_connection = isinstance(engine.pool, StaticPool)
        #: Held by every write (and by a read of a shared connection).
        self.write_lock = threading.RLock()
        self._writer: sa.Connection | None = None

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reads, with no transaction."""
        lock = self.write_lock if self.shared_connection else nullcontext()
        with lock, self.engine.connect().execution_options(actors_read=True) as conn:
            yield conn

    @contextmanager
    def write_connection(self) -> Iterator[sa.Connection]:
        """The connection of one write; the caller holds the write lock.

        On an SQLite file, writes take turns anyway (one writer at a time), so one
        connection is kept for all of them: a pool checkout per write cost as much as
        the INSERT. Elsewhere each write checks one out of the pool.
        """
        if self.dialect != "sqlite" or self.shared_connection:
            with self.engine.connect().execution_options(actors_immediate=True) as conn:
                yield conn
            return
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = self.engine.connect().execution_options(actors_immediate=True)
        yield self._writer

    def close(self) -> None:
        """Close the kept write connection and every pooled one."""
        with self.write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()
