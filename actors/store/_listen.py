"""Other processes on the same PostgreSQL database: their change notices, and who is there.

Every write sends ``NOTIFY`` in its transaction (so only on commit), with the journal
seqs it wrote as the payload; a listener thread ``LISTEN``s and wakes the store with
the seqs that committed, and the store reads the journal entries it has not seen
(none when they are all its own). The
same connection holds this process's *replica* lock, a session advisory lock, and
reads every replica's lock from ``pg_locks``: the replicas alive right now, for
spreading work (see ``Store.spread``). A process that dies loses its connection, so
PostgreSQL releases its lock and the others see it gone at their next look.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import structlog

__all__ = ["CHANNEL", "MembersCallback", "PostgresListener", "WakeCallback", "notify_payload", "replica_lock_class"]

log = structlog.get_logger("actors.store")

#: The channel every write notifies (in its transaction, so only on commit).
CHANNEL = "actors_changes"

#: ``on_wake(seqs)``: the journal seqs that committed since the last wake, or ``None``
#: when they are not all known (the first wake, or a writer that did not name them).
WakeCallback = Callable[[frozenset[int] | None], None]

#: ``on_members(me, members)``: this process's replica id (``None`` while it has no
#: connection) and the ids of every replica of the same store schema, itself included.
MembersCallback = Callable[[int | None, frozenset[int]], None]

_MEMBERS = (
    "SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted"
    " AND classid::int8 = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def notify_payload(seqs: list[int]) -> str:
    """The ``NOTIFY`` payload naming the journal seqs of one transaction (at most 8000 bytes)."""
    text = ",".join(map(str, seqs))
    return text if len(text) < 8000 else ""


def _seqs(payload: str) -> frozenset[int] | None:
    try:
        return frozenset(int(part) for part in payload.split(",")) if payload else None
    except ValueError:
        return None


def replica_lock_class(schema_name: str) -> int:
    """The first key of the replica locks of the stores whose tables live in ``schema_name``."""
    return zlib.crc32(f"actors replica {schema_name}".encode()) & 0x7FFFFFFF


class PostgresListener:
    """Calls ``on_wake(seqs)`` from its own thread whenever any process committed a write.

    It holds one connection of ``engine`` in autocommit mode, listening on
    :data:`CHANNEL`; on a lost connection it reconnects and wakes once, so the
    reader catches up with whatever it missed. With ``on_members``, the connection
    also holds this process's replica lock (keyed by its backend pid, so unique), and
    every ``members_poll`` seconds the listener reads which replicas hold theirs,
    calling ``on_members`` when that set changed.
    """

    def __init__(
        self,
        engine: sa.Engine,
        on_wake: WakeCallback,
        *,
        on_members: MembersCallback | None = None,
        poll: float = 1.0,
        members_poll: float = 0.5,
    ) -> None:
        self._engine = engine
        self._on_wake = on_wake
        self._on_members = on_members
        self._poll = poll
        self._members_poll = members_poll
        self._members: tuple[int | None, frozenset[int]] = (None, frozenset())
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actors-pg-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._poll * 3)

    def _run(self) -> None:
        while not self._stopped.is_set():
            raw: Any = None
            try:
                raw = self._engine.raw_connection()
                conn = raw.driver_connection
                conn.autocommit = True
                conn.execute(f"LISTEN {CHANNEL}")
                lock_class = self._join(conn)
                self._on_wake(None)  # whatever happened before we listened
                timeout = self._poll if lock_class is None else min(self._poll, self._members_poll)
                next_look = 0.0
                while not self._stopped.is_set():
                    burst = list(conn.notifies(timeout=timeout, stop_after=1))
                    if burst:
                        # Drain the burst, then read the journal once.
                        burst.extend(conn.notifies(timeout=0.001))
                        seqs: set[int] | None = set()
                        for notify in burst:
                            named = _seqs(notify.payload)
                            seqs = None if named is None or seqs is None else seqs | named
                        self._on_wake(None if seqs is None else frozenset(seqs))
                    if lock_class is not None and time.monotonic() >= next_look:
                        next_look = time.monotonic() + self._members_poll
                        self._look(conn, lock_class)
            except Exception as exc:  # reconnect: the store may be restarting
                if not self._stopped.is_set():
                    log.warning("change listener lost its connection", error=repr(exc))
                    self._report(None, frozenset())
                    self._stopped.wait(self._poll)
            finally:
                if raw is not None:
                    try:
                        raw.close()
                    except Exception:
                        pass
        self._report(None, frozenset())

    def _join(self, conn: Any) -> int | None:
        """Take this process's replica lock on ``conn``; returns the lock class (``None``: not asked to)."""
        if self._on_members is None:
            return None
        pid, schema_name = conn.execute("SELECT pg_backend_pid(), current_schema()").fetchone()
        lock_class = replica_lock_class(str(schema_name))
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (lock_class, pid))  # free: pids are unique
        self._members = (int(pid), frozenset())
        self._look(conn, lock_class)
        return lock_class

    def _look(self, conn: Any, lock_class: int) -> None:
        members = frozenset(int(row[0]) for row in conn.execute(_MEMBERS, (lock_class,)))
        self._report(self._members[0], members)

    def _report(self, me: int | None, members: frozenset[int]) -> None:
        if self._on_members is None or (me, members) == self._members:
            return
        self._members = (me, members)
        self._on_members(me, members)
