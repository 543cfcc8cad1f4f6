"""The database of one store: its engine (SQLite pragmas, transactions begun by hand) and connections.

SQLite runs in WAL mode with a memory map, foreign keys on, and transactions begun by
the store itself (``BEGIN IMMEDIATE`` for a write, none for a read). :class:`Database`
hands out the connections: one per read, and for writes one kept open (on an SQLite
file or PostgreSQL) or one from the pool, under the write lock.

On PostgreSQL every statement is a round trip to another process, and on a loaded
machine each one costs a scheduling delay or two beside the server's few microseconds
of work, so the connections here spend as few as they can: a read runs in autocommit
(no ``BEGIN`` and no ``ROLLBACK`` around its ``SELECT``, as on SQLite), and a pooled
connection is pinged on checkout only when it sat idle for :data:`PING_IDLE_SECONDS`
(SQLAlchemy's ``pool_pre_ping`` pinged at every checkout: one more round trip per read
and per write).
"""

from __future__ import annotations

import threading
import time
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

#: A pooled PostgreSQL connection idle for longer than this is pinged when it is checked
#: out (a server restarted meanwhile has dropped it: the pool opens a new one); one used
#: more recently goes straight to work, and a connection lost under it is invalidated
#: by its first failing statement (the caller sees that error; the next checkout connects anew).
PING_IDLE_SECONDS = 1.0


def make_engine(url: str) -> sa.Engine:
    """The SQLAlchemy engine of store ``url`` (an in-memory SQLite database is one shared connection)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return _server_engine(url)
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


def _server_engine(url: str) -> sa.Engine:
    """A PostgreSQL (or other server's) engine whose pool pings a connection only after it sat idle."""
    engine = sa.create_engine(url, future=True)

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["actors_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("actors_idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise sa.exc.DisconnectionError() from exc  # the pool connects anew and checks out again

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
        self._writer_used = 0.0  # time.monotonic() when the kept write connection was last used
        #: The backend pids of the kept PostgreSQL write connection (the one alive, or none):
        #: the change listener knows this store's own commits by them (see ``PostgresListener``).
        self.write_sessions: frozenset[int] = frozenset()
        #: SQLite's reads begin no transaction (see make_engine); PostgreSQL's run in autocommit.
        self._read_options: dict[str, Any] = {"actors_read": True}
        if self.dialect == "postgresql":
            self._read_options["isolation_level"] = "AUTOCOMMIT"

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reads, with no transaction."""
        lock = self.write_lock if self.shared_connection else nullcontext()
        with lock, self.engine.connect().execution_options(**self._read_options) as conn:
            yield conn

    @contextmanager
    def write_connection(self) -> Iterator[sa.Connection]:
        """The connection of one write; the caller holds the write lock.

        Writes take turns under the lock anyway (one writer at a time), so on an SQLite
        file and on PostgreSQL one connection is kept for all of them: a pool checkout per
        write cost as much as the INSERT on SQLite, and on PostgreSQL a round trip or two
        (the ping, the reset). The kept PostgreSQL connection is pinged before a write
        when it sat idle for :data:`PING_IDLE_SECONDS`, and replaced when that fails.
        Elsewhere each write checks one out of the pool.
        """
        if self.dialect not in ("sqlite", "postgresql") or self.shared_connection:
            with self.engine.connect().execution_options(actors_immediate=True) as conn:
                yield conn
            return
        if self._writer is not None and self.dialect == "postgresql" and not self._alive(self._writer):
            self._writer.close()
            self._writer = None
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self.write_sessions = frozenset()
            self._writer = self.engine.connect().execution_options(actors_immediate=True)
            if self.dialect == "postgresql":
                dbapi = self._writer.connection.dbapi_connection
                pid = getattr(getattr(dbapi, "info", None), "backend_pid", None)  # psycopg 3: no round trip
                self.write_sessions = frozenset() if pid is None else frozenset({int(pid)})
        try:
            yield self._writer
        finally:
            self._writer_used = time.monotonic()

    def _alive(self, conn: sa.Connection) -> bool:
        """Whether the kept write connection still answers (asked only after it sat idle)."""
        if conn.closed or conn.invalidated:
            return False
        if time.monotonic() - self._writer_used < PING_IDLE_SECONDS:
            return True
        dbapi = conn.connection.dbapi_connection
        try:
            assert dbapi is not None
            self.engine.dialect.do_ping(dbapi)
            return True
        except Exception:
            conn.invalidate()
            return False

    def close(self) -> None:
        """Close the kept write connection and every pooled one."""
        with self.write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self.write_sessions = frozenset()
        self.engine.dispose()
