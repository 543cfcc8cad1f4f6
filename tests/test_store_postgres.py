"""The PostgreSQL store's round trips and connections (issue 14, item 5): a real server.

Every statement on PostgreSQL is a round trip to the server; on a loaded machine each
costs a scheduling delay, so the store spends as few as it can: a read is its one
``SELECT`` (autocommit, no ping), and a write takes no ping or pool checkout of its own.
The round trips are counted from libpq's own protocol trace (one ``ReadyForQuery``
from the server ends each). A connection the server dropped while it sat idle is
replaced before it is used.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

import psycopg
import pytest
import sqlalchemy as sa

from actors.store import Caller, Store, WriteContext, _engine

from .store_support import open_store, postgres_database

pytestmark = pytest.mark.postgres

SYNC = WriteContext(Caller.SYNCHRONIZER)
NAMES = {"first_name": "Ada", "last_name": "Lovelace"}


class Trace:
    """libpq's protocol trace of every connection ``store`` checks out from now on."""

    def __init__(self, store: Store) -> None:
        self.files: dict[int, tuple[Any, IO[str]]] = {}
        sa.event.listen(store.engine, "checkout", self._on_checkout)

    def _on_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if id(dbapi_conn) not in self.files:
            file = tempfile.TemporaryFile("w+")  # noqa: SIM115 - libpq writes it while the connection lives
            self._trace(dbapi_conn, file)
            self.files[id(dbapi_conn)] = (dbapi_conn, file)

    @staticmethod
    def _trace(dbapi_conn: Any, file: IO[str]) -> None:
        dbapi_conn.pgconn.trace(file.fileno())
        dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

    def round_trips(self) -> int:
        """How many replies (``ReadyForQuery``) the server sent on the traced connections so far."""
        count = 0
        for dbapi_conn, file in self.files.values():
            if not dbapi_conn.closed:
                dbapi_conn.pgconn.untrace()  # flushes libpq's buffer
                self._trace(dbapi_conn, file)
            file.seek(0)
            count += sum(1 for line in file if line.startswith("B") and "\tReadyForQuery" in line)
        return count


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    with postgres_database(postgres_url) as url, open_store(url) as s:
        yield s


def test_a_read_is_one_round_trip(store: Store) -> None:
    created = store.create("MyModel", NAMES, SYNC)
    trace = Trace(store)
    store.get("MyModel", created["id"])  # the first checkout may ping a connection idle since the open
    before = trace.round_trips()
    assert store.get("MyModel", created["id"]) is not None
    # Only the SELECT: no ping, no BEGIN, no ROLLBACK on the way back to the pool.
    assert trace.round_trips() - before == 1


def test_a_write_spends_no_round_trip_on_its_connection(store: Store) -> None:
    trace = Trace(store)
    created = store.create("MyModel", NAMES, SYNC)
    before = trace.round_trips()
    store.update("MyModel", created["id"], {"backend_need_delete": True}, SYNC)
    # BEGIN, the UPDATE, the journal entry (its trigger sends the NOTIFY), COMMIT: no ping, no pool reset.
    assert trace.round_trips() - before <= 4
    assert store.get("MyModel", created["id"])["backend_need_delete"] is True


def test_connections_the_server_dropped_while_idle_are_replaced(
    store: Store, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids: set[int] = set()
    sa.event.listen(store.engine, "checkout", lambda dbapi, _record, _proxy: pids.add(dbapi.info.backend_pid))
    created = store.create("MyModel", NAMES, SYNC)  # the kept write connection
    assert store.get("MyModel", created["id"]) is not None  # a pooled read connection
    monkeypatch.setattr(_engine, "PING_IDLE_SECONDS", 0.0)  # every connection counts as idle
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for pid in pids:
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        assert store.get("MyModel", created["id"]) is not None
        store.update("MyModel", created["id"], {"backend_need_delete": True}, SYNC)
        assert store.get("MyModel", created["id"])["backend_need_delete"] is True
    finally:
        admin.dispose()
