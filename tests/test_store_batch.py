"""Group commit: ``Store.write_batch``, many status updates in one transaction (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from actors.store import Caller, ChangeNotice, NotFound, Store, ValidationError, WriteContext

from .store_support import open_store

SYNC = WriteContext(Caller.SYNCHRONIZER, origin="SyncStep")
CLIENT = WriteContext(Caller.CLIENT)


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


# -- the statements a batch shares -----------------------------------------------
def updates_through_sqlalchemy(store: Store) -> list[str]:
    """A list that grows by each UPDATE run through SQLAlchemy's execution path (the batch's shared
    statements run on the driver's cursor, so they are not in it)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    return seen


def raise_on(store: Store, status: str) -> None:
    """A trigger that refuses an UPDATE of a Widget to ``backend_status = status`` (a failure inside
    a statement that writes many rows: the store cannot tell beforehand which row fails)."""
    table = store.tables.chain("Widget")[0].name
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE UPDATE ON \"{table}\" WHEN NEW.backend_status = '{status}'"
                " BEGIN SELECT RAISE(ABORT, 'refused by the trigger'); END"
            )
            return
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN"
            f" IF NEW.backend_status = '{status}' THEN RAISE EXCEPTION 'refused by the trigger'; END IF;"
            " RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            f'CREATE TRIGGER refuse BEFORE UPDATE ON "{table}" FOR EACH ROW EXECUTE FUNCTION refuse()'
        )


def test_a_row_refused_inside_a_shared_statement_is_undone_alone(store: Store, db_url: str) -> None:
    """The status writes of a batch share one UPDATE; when the database refuses one row of it, the
    batch is written again one by one: that write fails alone, the others are stored, and only
    what was committed is published."""
    ids = widgets(store, 6)
    raise_on(store, "boom")
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)
    counted = commits(store)
    one_by_one = updates_through_sqlalchemy(store)
    statuses = ["a", "b", "boom", "d", "e", "f"]
    results = store.write_batch(
        [
            ("Widget", id, {"backend_status": s, "backend_code": 1}, SYNC)
            for id, s in zip(ids, statuses, strict=True)
        ]
    )
    assert [r is None for r in results] == [True, True, False, True, True, True]
    assert "refused by the trigger" in str(results[2])
    assert len(counted) == 1  # the shared attempt was rolled back, never committed
    # Then one by one: a, b and the refused one (rolled back), then the five others again.
    assert len(one_by_one) == 3 + 5
    want = ["a", "b", "Provisioning in progress", "d", "e", "f"]
    assert [stored(store, db_url, "Widget", i, "backend_status") for i in ids] == want
    assert [n.id for n in notices] == [i for i, s in zip(ids, statuses, strict=True) if s != "boom"]


def test_the_same_mark_for_many_objects_is_one_statement_and_a_purged_one_is_left_out(
    store: Store, db_url: str
) -> None:
    ids = widgets(store, 4)
    store.delete("Widget", ids[1], CLIENT)  # never reached the backend: purged at once
    assert store.get("Widget", ids[1]) is None
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)
    one_by_one = updates_through_sqlalchemy(store)
    results = store.write_batch([("Widget", i, {"backend_need_delete": True}, SYNC) for i in ids])
    assert one_by_one == []  # all in the shared statement
    assert [type(r).__name__ for r in results] == ["NoneType", "NotFound", "NoneType", "NoneType"]
    assert [
        bool(stored(store, db_url, "Widget", i, "backend_need_delete")) for i in (ids[0], ids[2], ids[3])
    ] == [True] * 3
    assert [(n.model, n.id, n.kind) for n in notices] == [
        ("Widget", i, "update") for i in (ids[0], ids[2], ids[3])
    ]
    seqs = [n.seq for n in notices]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    journal = store.changes_since(seqs[0] - 1)
    assert [(e.seq, e.id, e.origin) for e in journal] == [(n.seq, n.id, "SyncStep") for n in notices]


def test_a_batch_of_many_models_names_each_leaf_and_keeps_each_objects_order(store: Store) -> None:
    """Objects of a three-table chain are written on their root table and journalled under their leaf
    model; an object written twice in one batch gets both writes, in order."""
    [widget] = widgets(store, 1)
    service = store.create("MyService", {"name": "s"}, CLIENT)["id"]
    sub = store.create("SubInstance", {"name": "i", "owner_id": service}, CLIENT)["id"]
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)
    results = store.write_batch(
        [
            ("Widget", widget, {"backend_status": "first"}, SYNC),
            ("ServiceInstance", sub, {"backend_status": "sub", "backend_code": 1}, SYNC),
            ("Widget", widget, {"backend_status": "second"}, SYNC),
            ("MyService", service, {"backend_status": "svc", "backend_code": 1}, SYNC),
        ]
    )
    assert results == [None] * 4
    assert store.get("Widget", widget)["backend_status"] == "second"
    assert store.get("SubInstance", sub)["backend_status"] == "sub"
    assert store.get("MyService", service)["backend_status"] == "svc"
    assert sorted((n.model, n.id) for n in notices) == sorted(
        [("Widget", widget), ("Widget", widget), ("SubInstance", sub), ("MyService", service)]
    )
    assert [n.seq for n in notices] == sorted(n.seq for n in notices)


def test_a_status_that_ends_a_deletion_in_a_batch_purges_the_object(store: Store) -> None:
    ids = widgets(store, 3)
    for id in ids:
        store.update("Widget", id, {"backend_need_delete": True}, SYNC)
    store.delete("Widget", ids[0], CLIENT)
    store.delete("Widget", ids[1], CLIENT)
    notices: list[ChangeNotice] = []
    store.subscribe(notices.append)
    results = store.write_batch(
        [
            ("Widget", ids[0], {"backend_need_reap": True}, SYNC),
            ("Widget", ids[1], {"backend_need_reap": True}, SYNC),
            ("Widget", ids[2], {"backend_status": "kept"}, SYNC),
        ]
    )
    assert results == [None] * 3
    assert store.get("Widget", ids[0]) is None and store.get("Widget", ids[1]) is None
    assert store.get("Widget", ids[2])["backend_status"] == "kept"
    kinds = [(n.id, n.kind) for n in notices]
    for id in ids[:2]:
        assert kinds.index((id, "update")) < kinds.index((id, "purge"))
