"""PostgreSQL: a drain's status writes and its claims in as few statements and round trips as they take.

A batch's shared update runs with its journal entries as one statement over arrays, its
text the same for any number of rows; a drain's claims and the read of their rows are
sent together; a journal INSERT too big for a payload notifies ``null`` at once.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from actors.store import Caller, ChangeNotice, Store, WriteContext
from actors.store._listen import CHANNEL, PAYLOAD_ENTRIES

from .helpers import wait_for
from .store_support import driver_statements, make_schema, open_store, postgres_stores, sqlite_url

pytestmark = pytest.mark.postgres

SYNC = WriteContext(Caller.SYNCHRONIZER, origin="SyncStep")
CLIENT = WriteContext(Caller.CLIENT)


def widgets(store: Store, n: int) -> list[int]:
    return [store.create("Widget", {"name": f"w{i}"}, CLIENT)["id"] for i in range(n)]


def batch(store: Store, ids: list[int], status: str) -> list[str]:
    """``write_batch`` of a status for the first half of ``ids`` and the ``backend_need_delete``
    mark for the second half (two sets of columns); the SQL the driver ran for it."""
    half = len(ids) // 2
    writes: list[Any] = [
        ("Widget", i, {"backend_status": status, "backend_code": 1}, SYNC) for i in ids[:half]
    ]
    writes += [("Widget", i, {"backend_need_delete": True}, SYNC) for i in ids[half:]]
    with driver_statements() as statements:
        results = store.write_batch(writes)
    assert results == [None] * len(ids)
    return [sql for thread, sql in statements if thread == threading.current_thread().name]


def test_a_batch_is_one_statement_per_set_of_columns_with_its_journal_whatever_its_size(postgres_url):
    """Before, the batch read its objects' state (one SELECT per 500 ids), ran an UPDATE per row
    and one INSERT of the entries, each text written for its number of rows."""
    with postgres_stores(postgres_url, make_schema(), n=1) as (store,):
        ids = widgets(store, 306)
        notices: list[ChangeNotice] = []
        store.subscribe(notices.append)
        small = batch(store, ids[:6], "small")
        large = batch(store, ids[6:], "large")
        # The same texts for 6 rows and for 300: the transaction's BEGIN (sent with them, in one
        # pipeline), and one statement per set of columns, each with its journal entries.
        assert len(small) == 3 and small == large
        assert small[0].startswith("BEGIN") and all(
            sql.startswith("WITH actors_u AS (UPDATE") for sql in small[1:]
        )
        assert [store.get("Widget", i)["backend_status"] for i in (ids[0], ids[6], ids[155])] == [
            "small",
            "large",
            "large",
        ]
        assert store.get("Widget", ids[-1])["backend_need_delete"] is True
        seqs = [n.seq for n in notices]
        assert len(notices) == 306 and seqs == sorted(seqs) and len(set(seqs)) == 306
        journal = store.changes_since(seqs[0] - 1, limit=1000)
        assert [(e.seq, e.model, e.id, e.kind, e.origin) for e in journal] == [
            (n.seq, "Widget", n.id, "update", "SyncStep") for n in notices
        ]
        # The write connection is out of the batch's autocommit: a client's save is one transaction again.
        store.update("Widget", ids[0], {"name": "saved"}, CLIENT)
        assert store._db._writer is not None
        assert store._db._writer.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        with store.engine.connect() as conn:
            table = store.tables.chain("Widget")[0].name
            assert conn.exec_driver_sql(f'SELECT name FROM "{table}" WHERE id = {ids[0]}').scalar() == "saved"


def test_a_string_longer_than_its_column_in_a_shared_statement_is_refused_not_cut(postgres_url):
    """The arrays are cast without a length (an explicit cast to VARCHAR(n) would cut the value)."""
    with postgres_stores(postgres_url, make_schema(), n=1) as (store,):
        ids = widgets(store, 3)
        table = store.tables.chain("Widget")[0].name
        with store.engine.begin() as conn:  # a column narrower than the store's check (as a DBA may make it)
            conn.exec_driver_sql(f'ALTER TABLE "{table}" ALTER COLUMN backend_status TYPE VARCHAR(30)')
        results = store.write_batch(
            [
                ("Widget", i, {"backend_status": s}, SYNC)
                for i, s in zip(ids, ["ok", "x" * 31, "ok2"], strict=True)
            ]
        )
        assert results[0] is None and results[2] is None
        assert "value too long" in str(results[1])
        assert [store.get("Widget", i)["backend_status"] for i in ids] == [
            "ok",
            "Provisioning in progress",
            "ok2",
        ]


def test_claim_read_claims_and_reads_the_claimed_rows_in_one_go(postgres_url):
    with postgres_stores(postgres_url, make_schema()) as (first, second):
        ids = widgets(first, 4)
        first.delete("Widget", ids[3], CLIENT)  # never reached the backend: purged at once
        assert second.claim_many("Widget", [ids[1]]) == [ids[1]]
        second.update("Widget", ids[0], {"backend_status": "synced by the other"}, SYNC)
        with driver_statements() as statements:
            got = first.claim_read("Widget", [ids[0], ids[1], ids[2], ids[3], ids[0]])
        statements = [(t, sql) for t, sql in statements if t == threading.current_thread().name]
        assert list(got) == [ids[0], ids[2], ids[3]]  # the one the other holds left out
        assert got[ids[0]] is not None and got[ids[0]]["backend_status"] == "synced by the other"
        assert got[ids[2]] is not None and got[ids[2]]["name"] == "w2"
        assert got[ids[3]] is None  # claimed, but gone
        assert len(statements) == 2  # the claim and the read, sent together
        assert second.claim_many("Widget", [ids[0], ids[2]]) == []
        again = first.claim_read("Widget", [ids[2]])  # counted: held here already
        assert list(again) == [ids[2]]
        first.release_many("Widget", [ids[0], ids[2], ids[2], ids[3]])
        assert second.claim_many("Widget", [ids[0], ids[2]]) == [ids[0], ids[2]]


def test_claim_read_on_sqlite_claims_every_object(tmp_path):
    with open_store(sqlite_url(tmp_path)) as store:
        ids = widgets(store, 2)
        got = store.claim_read("Widget", [ids[1], 999, ids[0]])
        assert list(got) == [ids[1], 999, ids[0]]
        assert got[999] is None and got[ids[0]] is not None and got[ids[0]]["name"] == "w0"


def test_an_insert_of_more_entries_than_a_payload_holds_notifies_null_and_is_read(postgres_url):
    """Past :data:`PAYLOAD_ENTRIES` entries the trigger does not build their JSON (it could not
    be sent): it notifies ``null``, and a listener reads the journal."""
    with postgres_stores(postgres_url, make_schema()) as (reader, writer):
        seen: list[ChangeNotice] = []
        reader.subscribe(seen.append)
        first = writer.create("Widget", {"name": "first"}, CLIENT)
        wait_for(lambda: any(n.id == first["id"] for n in seen), description="the listener up")
        raw = writer.engine.raw_connection()
        listen: Any = raw.driver_connection
        listen.autocommit = True
        insert = (
            f'INSERT INTO "{writer.tables.journal.name}" (model, object_id, kind, at, origin)'
            " SELECT 'W', g, 'update', 1.0, NULL FROM generate_series(%(a)s, %(b)s) AS g"
        )
        try:
            listen.execute(f"LISTEN {CHANNEL}")
            for count, carried in ((PAYLOAD_ENTRIES, True), (PAYLOAD_ENTRIES + 1, False)):
                a = 10_000 + 1000 * count
                with writer.engine.begin() as conn:
                    conn.exec_driver_sql(insert, {"a": a, "b": a + count - 1})
                [notify] = list(listen.notifies(timeout=10, stop_after=1))
                assert (json.loads(notify.payload)["entries"] is not None) is carried
                ids = set(range(a, a + count))
                wait_for(lambda ids=ids: ids <= {n.id for n in seen}, description=f"{count} notices")
        finally:
            raw.close()


def test_the_journal_is_pruned_to_journal_keep_in_one_statement(postgres_url):
    with postgres_stores(postgres_url, make_schema(), n=1) as (store,):
        store._journal._keep = 10
        ids = widgets(store, 1)
        writes: list[Any] = [("Widget", ids[0], {"backend_status": f"s{i}"}, SYNC) for i in range(999)]
        with driver_statements() as statements:
            assert store.write_batch(writes) == [None] * 999  # the 1000th write: a prune
        kept = store.changes_since(0)
        assert len(kept) <= 10 + 1 and kept[-1].seq == store.last_seq() == 1000
        prune = [sql for _thread, sql in statements if "DELETE" in sql]
        assert len(prune) == 1 and "max(" in prune[0]
