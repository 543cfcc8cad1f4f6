"""Group commit: ``Store.write_batch``, many status updates in one transaction (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from actors.store import Caller, ChangeNotice, NotFound, Store, ValidationError, WriteContext

from .store_support import open_store, postgres_database, sqlite_url

SYNC = WriteContext(Caller.SYNCHRONIZER, origin="SyncStep")
CLIENT = WriteContext(Caller.CLIENT)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        yield s


def commits(store: Store) -> list[int]:
    """A list that grows by one at every commit of the store's engine."""
    seen: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _conn: seen.append(1))
    return seen


def stored(store: Store, url: str, model: str, id: int, column: str) -> Any:
    """``column`` of the object as a connection of its own sees it (what is committed)."""
    table = store.tables.chain(model)[-1]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(table.c[column]).where(table.c.id == id)).scalar()
    finally:
        engine.dispose()


def widgets(store: Store, n: int) -> list[int]:
    return [store.create("Widget", {"name": f"w{i}"}, CLIENT)["id"] for i in range(n)]


def test_a_batch_commits_once_and_publishes_every_notice_after(store: Store, db_url: str) -> None:
    ids = widgets(store, 5)
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)
    counted = commits(store)
    results = store.write_batch([("Widget", i, {"backend_status": f"s{i}"}, SYNC) for i in ids])
    assert results == [None] * 5
    assert len(counted) == 1
    assert [(n.id, n.kind, n.origin) for n in notices] == [(i, "update", "SyncStep") for i in ids]
    assert [stored(store, db_url, "Widget", i, "backend_status") for i in ids] == [f"s{i}" for i in ids]
    assert [n.id for n in store.changes_since(notices[0].seq - 1)] == ids


def test_a_failed_write_is_left_out_and_the_others_are_kept(store: Store, db_url: str) -> None:
    """A refused value, a purged object, a link to nothing and a link to a deleted object (refused
    after its UPDATE ran: the batch is rolled back and written again without it) each fail alone;
    the other writes of the batch are stored."""
    ids = widgets(store, 5)
    gone = store.create("Service", {"name": "gone", "backend_need_delete": True}, CLIENT)["id"]
    store.delete("Service", gone, CLIENT)
    assert store.get("Service", gone)["deleted"]
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)
    results = store.write_batch(
        [
            ("Widget", ids[0], {"backend_status": "a"}, SYNC),
            ("Widget", ids[1], {"backend_code": "not a number"}, SYNC),
            ("Widget", 999_999, {"backend_status": "gone"}, SYNC),
            ("Widget", ids[2], {"owner_id": 999_999}, SYNC),
            ("Widget", ids[4], {"owner_id": gone, "backend_status": "e"}, SYNC),
            ("Widget", ids[3], {"backend_status": "d"}, SYNC),
        ]
    )
    assert results[0] is None and results[5] is None
    assert isinstance(results[1], ValidationError)
    assert isinstance(results[2], NotFound)
    assert isinstance(results[3], ValidationError) and "no Service with id 999999" in str(results[3])
    assert isinstance(results[4], ValidationError) and "deleted" in str(results[4])
    assert stored(store, db_url, "Widget", ids[0], "backend_status") == "a"
    assert stored(store, db_url, "Widget", ids[3], "backend_status") == "d"
    assert stored(store, db_url, "Widget", ids[2], "owner_id") is None
    assert stored(store, db_url, "Widget", ids[4], "owner_id") is None  # its UPDATE was undone
    assert stored(store, db_url, "Widget", ids[4], "backend_status") == "Provisioning in progress"
    assert [n.id for n in notices] == [ids[0], ids[3]]  # only what was committed is published
    assert store.get("Widget", ids[1])["backend_code"] == 0


def test_a_batch_whose_commit_fails_stores_nothing(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = widgets(store, 3)
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)

    def refuse(dbapi_conn: Any) -> None:  # as a database that cannot commit: rolled back, an error
        dbapi_conn.rollback()
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(store.engine.dialect, "do_commit", refuse)
    with pytest.raises(RuntimeError, match="disk"):
        store.write_batch([("Widget", i, {"backend_status": "lost"}, SYNC) for i in ids])
    monkeypatch.undo()
    assert [stored(store, db_url, "Widget", i, "backend_status") for i in ids] == [
        "Provisioning in progress"
    ] * 3
    assert notices == []
    store.update("Widget", ids[0], {"backend_status": "after"}, SYNC)  # the store goes on
    assert stored(store, db_url, "Widget", ids[0], "backend_status") == "after"


def test_a_client_save_is_stored_when_it_returns(store: Store, db_url: str) -> None:
    counted = commits(store)
    [id] = widgets(store, 1)
    store.update("Widget", id, {"name": "saved"}, CLIENT)
    assert len(counted) == 2  # the create and the update: one commit each, before they returned
    assert stored(store, db_url, "Widget", id, "name") == "saved"
