"""Other processes on the same PostgreSQL database: their change notices, and who is there.

Every write sends ``NOTIFY`` in its transaction (so only on commit), with the journal
entries it wrote as the payload: a trigger on the journal sends it from each ``INSERT``
of entries (:func:`install_notify_trigger`), so it costs the writer no round trip of its
own. A listener thread ``LISTEN``s and hands the store the
entries that committed, in commit order, so the store publishes them without reading
the journal (it reads it after a reconnect, or for a payload it cannot use). A ``NOTIFY``
sent by the store's own write connection (its backend pid) is not even parsed: the store
published those entries itself. The
same connection holds this process's *replica* lock, a session advisory lock, and
reads every replica's lock from ``pg_locks``: the replicas alive right now, for
spreading work (see ``Store.spread``). A process that dies loses its connection, so
PostgreSQL releases its lock and the others see it gone at their next look.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from actors.logs import get_logger

from ._notices import ChangeNotice

__all__ = [
    "CHANNEL",
    "NOTIFY",
    "MembersCallback",
    "PostgresListener",
    "WakeCallback",
    "install_notify_trigger",
    "notify_payload",
    "replica_lock_class",
]

log = get_logger("actors.store")

#: The channel every write notifies (in its transaction, so only on commit).
CHANNEL = "actors_changes"

#: ``on_wake(notices, own)``: the journal entries other sessions committed since the last
#: wake, in commit order, or ``None`` when they are not all known (the first wake after a
#: connect, or a writer whose payload did not carry them): then read the journal. ``own``:
#: some of the commits were this store's own writes (known by their session), whose
#: entries it published itself and that the listener did not look at.
WakeCallback = Callable[[list[ChangeNotice] | None, bool], None]

#: ``on_members(me, members)``: this process's replica id (``None`` while it has no
#: connection) and, for each group it is in, the ids of the replicas in that group.
MembersCallback = Callable[[int | None, dict[str, frozenset[int]]], None]

_MEMBERS = (
    "SELECT classid::int8, objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
    " AND granted AND classid::int8 = ANY(%s)"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


#: What a write's transaction runs: ``pg_notify`` with ``{"schema": <the store's schema>,
#: "entries": [[seq, model, id, kind, at, origin], ...]}``, the schema filled in by the
#: server (stores of other schemas of the same database listen on the same channel).
NOTIFY = "SELECT pg_notify(%s, json_build_object('schema', current_schema(), 'entries', %s::json)::text)"


#: More entries than this in one ``INSERT`` cannot fit in a payload (each takes 40 bytes
#: at the least): the trigger sends ``null`` without building their JSON.
PAYLOAD_ENTRIES = 175

#: The trigger function: the ``NOTIFY`` of the entries one ``INSERT`` statement added to the
#: journal, as :data:`NOTIFY` sends it (``null`` entries past 7000 bytes: then listeners read).
_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION actors_notify_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entries text;
    n int;
BEGIN
    SELECT count(*) INTO n FROM actors_new_entries;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF n > %(most)s THEN
        entries := 'null';
    ELSE
        SELECT json_agg(json_build_array(seq, model, object_id, kind, at, origin) ORDER BY seq)::text
            INTO entries FROM actors_new_entries;
        IF octet_length(entries) >= 7000 THEN
            entries := 'null';
        END IF;
    END IF;
    PERFORM pg_notify('%(channel)s',
        json_build_object('schema', current_schema(), 'entries', entries::json)::text);
    RETURN NULL;
END
$$
"""
_NOTIFY_TRIGGER = (
    'CREATE TRIGGER actors_notify AFTER INSERT ON "%(table)s" REFERENCING NEW TABLE AS actors_new_entries'
    " FOR EACH STATEMENT EXECUTE FUNCTION actors_notify_entries()"
)
_HAS_TRIGGER = (
    "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE t.tgname = 'actors_notify' AND c.oid = to_regclass(%(table)s)"
)


def install_notify_trigger(conn: sa.Connection, journal: str) -> None:
    """Make every ``INSERT`` into the journal table ``journal`` send the ``NOTIFY`` of its entries.

    Run by the migration, in its transaction (under its lock). The function is
    replaced each time (it lives in the store's schema); the trigger is created once.
    """
    conn.exec_driver_sql(_NOTIFY_FUNCTION % {"channel": CHANNEL, "most": PAYLOAD_ENTRIES})
    if conn.exec_driver_sql(_HAS_TRIGGER, {"table": f'"{journal}"'}).first() is None:
        conn.exec_driver_sql(_NOTIFY_TRIGGER % {"table": journal})


def notify_payload(notices: list[ChangeNotice]) -> str:
    """The entries part of a write's ``NOTIFY`` payload (``"null"`` if it would pass 8000 bytes)."""
    text = json.dumps([[n.seq, n.model, n.id, n.kind, n.at, n.origin] for n in notices])
    return text if len(text.encode()) < 7000 else "null"


def _notices(payload: str, schema_name: str) -> list[ChangeNotice] | None:
    """The entries a payload carries for ``schema_name`` (none for another schema); ``None``: unknown."""
    try:
        parsed = json.loads(payload)
        if parsed["schema"] != schema_name:
            return []
        return [
            ChangeNotice(int(s), str(m), int(i), str(k), float(a), o)
            for s, m, i, k, a, o in parsed["entries"]
        ]
    except (ValueError, TypeError, KeyError):
        return None


def replica_lock_class(schema_name: str, group: str) -> int:
    """The first key of the replica locks of ``group`` for the stores whose tables live in ``schema_name``."""
    return zlib.crc32(f"actors replica {schema_name} {group}".encode()) & 0x7FFFFFFF


class PostgresListener:
    """Calls ``on_wake(notices)`` from its own thread whenever any process committed a write.

    It holds one connection of ``engine`` in autocommit mode, listening on
    :data:`CHANNEL`; on a lost connection it reconnects and wakes once, so the
    reader catches up with whatever it missed. With ``groups`` (what this process
    takes part in, e.g. the sync steps it runs), the connection also holds one replica
    lock per group, keyed by its backend pid (so unique), and every ``members_poll``
    seconds the listener reads which replicas hold the locks of those groups, calling
    ``on_members`` when that changed. ``own_sessions()``: the backend pids of this
    store's write connections; their ``NOTIFY`` s are left unread (the store published
    those entries itself), so a wake of its own big batch (a ``null`` payload) reads no journal.
    """

    def __init__(
        self,
        engine: sa.Engine,
        on_wake: WakeCallback,
        *,
        groups: Callable[[], frozenset[str]] | None = None,
        on_members: MembersCallback | None = None,
        poll: float = 1.0,
        members_poll: float = 0.5,
        own_sessions: Callable[[], frozenset[int]] = frozenset,
    ) -> None:
        self._engine = engine
        self._own_sessions = own_sessions
        self._on_wake = on_wake
        self._groups = groups
        self._on_members = on_members
        self._poll = poll
        self._members_poll = members_poll
        self._members: tuple[int | None, dict[str, frozenset[int]]] = (None, {})
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
                schema_name = str(conn.execute("SELECT current_schema()").fetchone()[0])
                replica = _Replica(conn, schema_name) if self._groups is not None else None
                self._on_wake(None, False)  # whatever happened before we listened
                timeout = self._poll if replica is None else min(self._poll, self._members_poll)
                next_look = 0.0
                while not self._stopped.is_set():
                    burst = list(conn.notifies(timeout=timeout, stop_after=1))
                    if burst:
                        # Drain the burst, then read the journal once.
                        burst.extend(conn.notifies(timeout=0.001))
                        own_sessions = self._own_sessions()
                        notices: list[ChangeNotice] | None = []
                        own = False
                        for notify in burst:
                            if notify.pid in own_sessions:
                                own = True  # published by this store already
                                continue
                            carried = _notices(notify.payload, schema_name)
                            notices = None if carried is None or notices is None else notices + carried
                        self._on_wake(notices, own)
                    if replica is not None and self._groups is not None and time.monotonic() >= next_look:
                        next_look = time.monotonic() + self._members_poll
                        self._report(replica.pid, replica.look(self._groups()))
            except Exception as exc:  # reconnect: the store may be restarting
                if not self._stopped.is_set():
                    log.warning("change listener lost its connection", error=repr(exc))
                    self._report(None, {})
                    self._stopped.wait(self._poll)
            finally:
                if raw is not None:
                    try:
                        raw.close()
                    except Exception:
                        pass
        self._report(None, {})

    def _report(self, me: int | None, members: dict[str, frozenset[int]]) -> None:
        if self._on_members is None or (me, members) == self._members:
            return
        self._members = (me, members)
        self._on_members(me, members)


class _Replica:
    """This process's replica locks on the listener's connection, one per group it is in."""

    def __init__(self, conn: Any, schema_name: str) -> None:
        self.conn = conn
        self.pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        self.schema_name = schema_name
        self.held: dict[str, int] = {}  # group -> lock class

    def look(self, groups: frozenset[str]) -> dict[str, frozenset[int]]:
        """Hold the locks of ``groups`` (and no others); the replicas of each group, this one included."""
        for group in set(self.held) - groups:
            self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.held.pop(group), self.pid))
        for group in groups - set(self.held):
            lock_class = replica_lock_class(self.schema_name, group)
            self.conn.execute(
                "SELECT pg_advisory_lock(%s, %s)", (lock_class, self.pid)
            )  # free: pids are unique
            self.held[group] = lock_class
        if not self.held:
            return {}
        by_class = {lock_class: group for group, lock_class in self.held.items()}
        members: dict[str, set[int]] = {group: set() for group in self.held}
        for lock_class, member in self.conn.execute(_MEMBERS, (list(by_class),)):
            members[by_class[int(lock_class)]].add(int(member))
        return {group: frozenset(ids) for group, ids in members.items()}
