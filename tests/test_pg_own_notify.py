"""PostgreSQL: the listener leaves this store's own NOTIFYs unread (it published those entries itself).

A batch of more than ``PAYLOAD_ENTRIES`` entries notifies ``null``; before, the listener
then read the journal after its cursor only to drop this store's own entries.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from actors.store import Caller, ChangeNotice, Store, WriteContext
from actors.store._listen import PAYLOAD_ENTRIES

from .helpers import wait_for
from .store_support import driver_statements, make_schema, postgres_stores

pytestmark = pytest.mark.postgres

SYNC = WriteContext(Caller.SYNCHRONIZER, origin="SyncStep")
CLIENT = WriteContext(Caller.CLIENT)
BATCH = 300  # > PAYLOAD_ENTRIES: the trigger notifies null


def widgets(store: Store, n: int) -> list[int]:
    return [store.create("Widget", {"name": f"w{i}"}, CLIENT)["id"] for i in range(n)]


def status_batch(store: Store, ids: list[int], status: str) -> None:
    writes: list[Any] = [("Widget", i, {"backend_status": status}, SYNC) for i in ids]
    assert store.write_batch(writes) == [None] * len(ids)


def heard(seen: list[ChangeNotice], id: int) -> None:
    wait_for(lambda: any(n.id == id for n in seen), description=f"the notice of {id}")


def journal_reads(statements: list[tuple[str, str]], journal: str) -> list[str]:
    return [
        sql
        for thread, sql in statements
        if thread == "actors-pg-listen" and sql.lstrip().upper().startswith("SELECT") and journal in sql
    ]


def test_a_big_own_batch_makes_the_listener_read_no_journal(postgres_url):
    assert BATCH > PAYLOAD_ENTRIES
    with postgres_stores(postgres_url, make_schema()) as (me, other):
        seen: list[ChangeNotice] = []
        me.subscribe(seen.append)
        ids = widgets(me, BATCH)
        heard(
            seen, other.create("Widget", {"name": "up"}, CLIENT)["id"]
        )  # the listener is past its first look
        with driver_statements() as statements:
            status_batch(me, ids, "synced")
            # The other store's write commits after the batch: once it is heard, so was the batch's NOTIFY.
            heard(seen, other.create("Widget", {"name": "after"}, CLIENT)["id"])
        assert journal_reads(statements, me.tables.journal.name) == []
        assert len([n for n in seen if n.kind == "update"]) == BATCH  # each own entry published once


def test_another_stores_writes_between_own_batches_are_published_once(postgres_url):
    with postgres_stores(postgres_url, make_schema()) as (me, other):
        seen: list[ChangeNotice] = []
        me.subscribe(seen.append)
        mine = widgets(me, BATCH)
        theirs = widgets(other, BATCH)
        heard(seen, theirs[-1])
        for round in range(4):
            status_batch(me, mine, f"mine {round}")
            other.update("Widget", theirs[round], {"name": f"single {round}"}, CLIENT)
            status_batch(other, theirs, f"theirs {round}")  # null payload: the listener reads the journal
        wait_for(
            lambda: sum(1 for n in seen if n.kind == "update") == 4 * (2 * BATCH + 1),
            description="every update heard",
        )
        counts = Counter(n.seq for n in seen)
        assert max(counts.values()) == 1  # each entry once
        assert {n.id for n in seen if n.kind == "update"} == set(mine) | set(theirs)


@pytest.mark.parametrize("entries", [1, PAYLOAD_ENTRIES + 1], ids=["in-payload", "null-payload"])
def test_a_seq_of_another_store_committed_after_own_later_seqs_is_published(postgres_url, entries):
    """The other store takes its seqs first and commits last: the own wake moves the cursor
    past them (they are gaps), and their commit publishes them (from the payload, or from
    the journal read that looks for gaps)."""
    with postgres_stores(postgres_url, make_schema()) as (me, other):
        seen: list[ChangeNotice] = []
        me.subscribe(seen.append)
        mine = widgets(me, BATCH)
        heard(seen, other.create("Widget", {"name": "up"}, CLIENT)["id"])
        insert = (
            f'INSERT INTO "{other.tables.journal.name}" (model, object_id, kind, at, origin)'
            " SELECT 'Widget', g, 'update', 2.0, NULL FROM generate_series(900001, %(last)s) AS g"
        )
        with other.engine.connect() as conn:
            transaction = conn.begin()
            conn.exec_driver_sql(insert, {"last": 900000 + entries})  # seqs taken, not committed
            status_batch(me, mine, "synced")  # later seqs, committed first
            marker = other.create("Widget", {"name": "after"}, CLIENT)["id"]
            heard(seen, marker)  # the own wake is behind the listener now
            assert not [n for n in seen if n.id > 900000]
            transaction.commit()
        wanted = set(range(900001, 900001 + entries))
        wait_for(lambda: wanted <= {n.id for n in seen}, description="the other store's entries")
        assert Counter(n.seq for n in seen).most_common(1)[0][1] == 1
