"""PostgreSQL: the journal's INSERT sends the change NOTIFY itself (a statement trigger)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from actors.store import Store

from .helpers import wait_for
from .runtime_support import make_store
from .store_support import postgres_database, postgres_stores

pytestmark = pytest.mark.postgres


def test_an_entry_inserted_into_the_journal_is_published_from_its_own_notify(postgres_url):
    with postgres_stores(postgres_url, make_store().schema) as (reader, writer):
        seen: list[Any] = []
        journal_reads: list[str] = []
        reader.subscribe(seen.append)
        # A first write heard: the listener is up and past its first look at the journal.
        first = writer.create("MyModel", {"first_name": "a", "last_name": "b"})
        wait_for(lambda: any(n.id == first["id"] for n in seen), description="the first write")
        sa.event.listen(
            reader.engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_a: (
                journal_reads.append(statement) if "actors_changes" in statement else None
            ),
        )
        # A bare INSERT, as any writer's: no NOTIFY sent by hand.
        entry = {"model": "MyModel", "object_id": 77, "kind": "update", "at": 1.5, "origin": "x"}
        with writer.engine.begin() as conn:
            seq = conn.execute(writer.tables.journal.insert(), entry).inserted_primary_key[0]
        wait_for(lambda: any(n.id == 77 for n in seen), description="the entry's notice")
        notice = next(n for n in seen if n.id == 77)
        assert (notice.seq, notice.model, notice.kind, notice.at, notice.origin) == (
            seq,
            "MyModel",
            "update",
            1.5,
            "x",
        )
        assert not [s for s in journal_reads if s.lstrip().upper().startswith("SELECT")], journal_reads


def test_the_trigger_is_made_once_however_often_a_store_opens(postgres_url):
    with postgres_database(postgres_url) as url:
        schema = make_store().schema
        for _ in range(3):
            Store(url, schema).close()
        store = Store(url, schema)
        try:
            with store.engine.connect() as conn:
                count = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_trigger WHERE tgname = 'actors_notify'"
                        " AND tgrelid = to_regclass('actors_changes')"
                    )
                ).scalar_one()
            assert count == 1
        finally:
            store.close()
