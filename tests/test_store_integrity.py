"""Links that name objects: checks on write, foreign keys, on_delete, purge order, ids never reused.

Tests taking ``store`` or ``db_url`` run on an SQLite file and on a fresh PostgreSQL
database; the migration tests build a store file or database the old way first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog

from actors.models import Schema
from actors.store import Caller, Store, ValidationError, WriteContext
from actors.store._tables import Tables

from .helpers import wait_for
from .store_support import MODELS, make_schema, open_store, postgres_database, sqlite_url

SYNC = WriteContext(Caller.SYNCHRONIZER)

#: Links with each ``on_delete`` rule XOS's xproto can give (passed to Django there).
HOLDER = (
    MODELS
    + """
message Holder (XOSBase) {
    optional manytoone keeper->Service:holders_kept = 1 [on_delete = "PROTECT"];
    optional manytoone note->Service:holders_noted = 2 [on_delete = "models.SET_NULL"];
    optional manytoone part->Service:holders_parts = 3;
}
"""
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url, make_schema(HOLDER)) as s:
        yield s


def synced(store: Store, model: str, id: int) -> None:
    """As a sync step leaves an object: in the backend, so its deletion waits for the step."""
    store.update(model, id, {"backend_need_delete": True}, SYNC)


# -- a link names an object ------------------------------------------------------------


def test_a_link_to_a_missing_object_is_refused(store: Store) -> None:
    before = store.last_seq()
    with pytest.raises(ValidationError) as info:
        store.create("MyInstance", {"name": "x", "owner_id": 999})
    assert str(info.value) == "MyInstance.owner_id: no Service with id 999"
    assert store.select("ServiceInstance") == [] and store.last_seq() == before
    svc = store.create("MyService", {"name": "s"})
    inst = store.create("MyInstance", {"name": "x", "owner_id": svc["id"]})
    before = store.last_seq()
    with pytest.raises(ValidationError, match=r"^SubInstance\.owner_id: no Service with id 998$"):
        store.update("SubInstance", inst["id"], {"owner_id": 998})
    with pytest.raises(ValidationError, match=r"^Widget\.owner_id: no Service with id 5$"):
        store.update("Widget", store.create("Widget", {})["id"], {"owner_id": 5})
    assert store.get("MyInstance", inst["id"])["owner_id"] == svc["id"]
    assert [n.kind for n in store.changes_since(before)] == ["create"]  # the widget only


def test_a_live_object_may_not_link_to_a_deleted_one(store: Store) -> None:
    svc = store.create("Service", {"name": "s"})
    synced(store, "Service", svc["id"])
    store.delete("Service", svc["id"])  # stays, deleted, until its backend is done
    message = f"MyInstance.owner_id: Service {svc['id']} is deleted (only a deleted object may link to it)"
    with pytest.raises(ValidationError) as info:
        store.create("MyInstance", {"name": "x", "owner_id": svc["id"]})
    assert str(info.value) == message
    other = store.create("Service", {"name": "t"})
    inst = store.create("MyInstance", {"name": "x", "owner_id": other["id"]})
    with pytest.raises(ValidationError, match="is deleted"):
        store.update("MyInstance", inst["id"], {"owner_id": svc["id"]})
    # A deleted object may (XOS checks live objects only): a step writing one back, say.
    gone = store.create("MyInstance", {"name": "y", "owner_id": svc["id"], "deleted": True}, SYNC)
    synced(store, "MyInstance", inst["id"])
    store.delete("MyInstance", inst["id"])
    store.update("MyInstance", inst["id"], {"owner_id": svc["id"]}, SYNC)
    assert store.get("MyInstance", gone["id"])["owner_id"] == svc["id"]


def test_the_database_refuses_a_dangling_link_and_defers_the_check_to_the_commit(store: Store) -> None:
    table = store.tables.by_model["Widget"]
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(table.insert(), {"name": "raw", "owner_id": 4242})
    assert store.select("Widget") == []
    # In one transaction, the order of the writes does not matter: the key is checked at the commit.
    service = store.tables.by_model["Service"]
    with store.engine.begin() as conn:
        conn.execute(table.insert(), {"id": 1, "name": "first", "owner_id": 77})
        conn.execute(service.insert(), {"id": 77, "name": "later", "deleted": False})
    assert store.get("Widget", 1)["owner_id"] == 77


# -- on_delete ---------------------------------------------------------------------------


def test_protect_refuses_the_delete_while_a_live_object_links(store: Store) -> None:
    svc = store.create("Service", {"name": "s"})
    holder = store.create("Holder", {"keeper_id": svc["id"]})
    before = store.last_seq()
    with pytest.raises(ValidationError) as info:
        store.delete("Service", svc["id"])
    assert str(info.value) == (
        f"cannot delete Service {svc['id']}: Holder {holder['id']} links to it (keeper_id, on_delete PROTECT)"
    )
    with pytest.raises(ValidationError, match=r"^cannot purge Service \d+: Holder \d+ links to it"):
        store.delete("Service", svc["id"], purge=True)
    assert not store.get("Service", svc["id"])["deleted"] and store.last_seq() == before
    store.delete("Holder", holder["id"])
    store.delete("Service", svc["id"])
    assert store.get("Service", svc["id"]) is None


def test_set_null_leaves_the_object_and_clears_the_link_at_the_purge(store: Store) -> None:
    svc = store.create("Service", {"name": "s"})
    holder = store.create("Holder", {"note_id": svc["id"]})
    synced(store, "Service", svc["id"])
    store.delete("Service", svc["id"])
    row = store.get("Holder", holder["id"])
    assert not row["deleted"] and row["note_id"] == svc["id"]  # not cascaded; not holding the purge
    before = store.last_seq()
    store.update("Service", svc["id"], {"backend_need_reap": True}, SYNC)
    assert store.get("Service", svc["id"]) is None
    assert store.get("Holder", holder["id"])["note_id"] is None
    kinds = {(n.model, n.kind) for n in store.changes_since(before)}
    assert {("Holder", "update"), ("Service", "purge")} <= kinds
    assert store.dangling_links() == []


def test_cascade_waits_for_dependents_then_purges_in_order(store: Store) -> None:
    svc = store.create("Service", {"name": "s"})
    holder = store.create("Holder", {"part_id": svc["id"]})
    inst = store.create("MyInstance", {"name": "i", "owner_id": svc["id"]})
    synced(store, "Holder", holder["id"])
    store.delete("Service", svc["id"])
    assert store.get("MyInstance", inst["id"]) is None  # never synced: gone at once
    assert store.get("Holder", holder["id"])["deleted"] and store.get("Service", svc["id"])["deleted"]
    assert store.dangling_links() == []
    store.update("Holder", holder["id"], {"backend_need_reap": True}, SYNC)
    assert store.get("Holder", holder["id"]) is None and store.get("Service", svc["id"]) is None


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            '[on_delete = "SET_DEFAULT"]',
            "Thing.owner: on_delete 'SET_DEFAULT' is not one of CASCADE, PROTECT, SET_NULL",
        ),
        (
            '[on_delete = "SET_NULL", null = False]',
            "Thing.owner: on_delete SET_NULL needs a link that may be null",
        ),
    ],
)
def test_an_on_delete_the_store_cannot_honour_is_refused_at_open(
    tmp_path: Path, option: str, message: str
) -> None:
    schema = make_schema(
        f"message Thing (XOSBase) {{ required manytoone owner->Service:things = 1 {option}; }}"
    )
    with pytest.raises(ValidationError) as info:
        Store(sqlite_url(tmp_path), schema)
    assert str(info.value) == message
    assert not (tmp_path / "store.db").exists()


# -- ids ---------------------------------------------------------------------------------


def test_ids_are_never_given_again(db_url: str) -> None:
    with open_store(db_url) as store:
        ids = [store.create("Widget", {"name": f"w{n}"})["id"] for n in range(4)]
        store.delete("Widget", ids[-1], purge=True)
        assert store.create("Widget", {"name": "w5"})["id"] == ids[-1] + 1
        store.delete("Widget", ids[-1] + 1)  # never synced: purged at once
    with open_store(db_url) as store:
        assert store.create("Widget", {"name": "w6"})["id"] == ids[-1] + 2


# -- existing stores ---------------------------------------------------------------------


def old_sqlite_file(url: str, schema: Schema) -> sa.Engine:
    """A store file as the store made it before foreign keys and ``AUTOINCREMENT``."""
    engine = sa.create_engine(url)
    old = sa.MetaData()
    for table in Tables(schema, covering=True).metadata.sorted_tables:
        columns = [sa.Column(c.name, c.type, primary_key=c.primary_key, index=c.index) for c in table.c]
        sa.Table(table.name, old, *columns)
    old.create_all(engine)
    return engine


def test_an_old_sqlite_file_is_rebuilt_keeping_every_row(tmp_path: Path) -> None:
    url, schema = sqlite_url(tmp_path), make_schema()
    engine = old_sqlite_file(url, schema)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO m_service (id, name, deleted, leaf_model_name) VALUES (1, 's', 0, 'Service')"
        )
        for id, owner in ((1, 1), (2, 999)):
            conn.exec_driver_sql(
                "INSERT INTO m_serviceinstance (id, name, owner_id, deleted, leaf_model_name) "
                f"VALUES ({id}, 'i{id}', {owner}, 0, 'MyInstance')"
            )
            conn.exec_driver_sql(f"INSERT INTO m_myinstance (id, flavor) VALUES ({id}, 'f{id}')")
        for id in (1, 2, 3):
            conn.exec_driver_sql(f"INSERT INTO m_widget (id, name, deleted) VALUES ({id}, 'w{id}', 0)")
        # Widget 4 was created and purged: only the journal remembers its id.
        for kind in ("create", "purge"):
            conn.exec_driver_sql(
                f"INSERT INTO actors_changes (model, object_id, kind, at) VALUES ('Widget', 4, '{kind}', 1.0)"
            )
    engine.dispose()

    with structlog.testing.capture_logs() as logs, open_store(url, schema) as store:
        assert [r["id"] for r in store.select("Widget")] == [1, 2, 3]
        assert [(r["id"], r["owner_id"], r["flavor"]) for r in store.select("MyInstance")] == [
            (1, 1, "f1"),
            (2, 999, "f2"),
        ]
        assert store.dangling_links() == ["ServiceInstance 2: owner_id = 999, no Service with that id"]
        assert store.create("Widget", {"name": "w5"})["id"] == 5
        with pytest.raises(ValidationError, match="no Service with id 999"):
            store.create("MyInstance", {"name": "x", "owner_id": 999})
        with store.engine.connect() as conn:
            sql = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            indexes = {r[1] for r in conn.exec_driver_sql("PRAGMA index_list(m_serviceinstance)")}
        assert (
            "AUTOINCREMENT" in sql["m_widget"] and "fk_m_serviceinstance_owner_id" in sql["m_serviceinstance"]
        )
        assert [(p[0], p[1], p[2]) for p in problems] == [("m_serviceinstance", 2, "m_service")]
        assert "ix_m_serviceinstance_owner_id" in indexes
    events = [e["event"] for e in logs]
    assert "tables rebuilt with foreign keys and AUTOINCREMENT" in events
    warning = next(e for e in logs if e["event"] == "links to missing objects kept")
    assert warning["count"] == 1
    assert warning["first"] == ["ServiceInstance 2: owner_id = 999, no Service with that id"]
    with structlog.testing.capture_logs() as logs, open_store(url, schema) as store:
        assert store.create("Widget", {"name": "w6"})["id"] == 6
    assert "tables rebuilt with foreign keys and AUTOINCREMENT" not in [e["event"] for e in logs]


@pytest.mark.postgres
def test_postgres_keys_are_added_not_valid_over_dangling_links(postgres_url: str) -> None:
    schema = make_schema()
    with postgres_database(postgres_url) as url:
        with open_store(url, schema) as store:
            svc = store.create("Service", {"name": "s"})
            with store.engine.begin() as conn:
                conn.exec_driver_sql(
                    "ALTER TABLE m_serviceinstance DROP CONSTRAINT fk_m_serviceinstance_owner_id"
                )
                conn.exec_driver_sql(
                    "INSERT INTO m_serviceinstance (id, name, owner_id, deleted, leaf_model_name) "
                    "VALUES (50, 'old', 999, false, 'ServiceInstance')"
                )

        def validated(store: Store) -> Any:
            with store.engine.connect() as conn:
                return conn.exec_driver_sql(
                    "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_m_serviceinstance_owner_id'"
                ).scalar()

        with structlog.testing.capture_logs() as logs, open_store(url, schema) as store:
            assert validated(store) is False
            assert store.dangling_links() == ["ServiceInstance 50: owner_id = 999, no Service with that id"]
            assert store.get("ServiceInstance", 50) is not None  # kept
            with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:  # new rows are checked
                conn.exec_driver_sql("UPDATE m_serviceinstance SET owner_id = 998 WHERE id = 50")
            store.update("ServiceInstance", 50, {"owner_id": svc["id"]})
        assert any(e["event"] == "links to missing objects kept" for e in logs)
        with open_store(url, schema) as store:
            assert validated(store) is True and store.dangling_links() == []


@pytest.mark.postgres
def test_postgres_a_write_linking_to_an_object_being_deleted_waits_and_then_refuses(
    postgres_url: str,
) -> None:
    """The check locks its target: a concurrent delete cannot slip between the check and the commit."""
    with postgres_database(postgres_url) as url, open_store(url) as writer, open_store(url) as deleter:
        svc = writer.create("Service", {"name": "s"})
        outcome: dict[str, BaseException | None] = {}

        def create() -> None:
            try:
                writer.create("MyInstance", {"name": "i", "owner_id": svc["id"]})
                outcome["error"] = None
            except BaseException as exc:
                outcome["error"] = exc

        with deleter.engine.connect() as conn:
            conn.exec_driver_sql("SELECT id FROM m_service WHERE id = %s FOR UPDATE", (svc["id"],))
            thread = threading.Thread(target=create)
            thread.start()

            def waiting() -> bool:
                with deleter.engine.connect() as watch:
                    return bool(
                        watch.execute(
                            sa.text(
                                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query LIKE :q"
                            ),
                            {"q": "%FOR SHARE%"},
                        ).scalar()
                    )

            wait_for(waiting, description="the create waits for the service's lock")
            conn.exec_driver_sql("UPDATE m_service SET deleted = true WHERE id = %s", (svc["id"],))
            conn.commit()
        thread.join(10)
        assert isinstance(outcome["error"], ValidationError) and "is deleted" in str(outcome["error"])
        assert writer.select("ServiceInstance") == []


def test_a_link_added_to_an_existing_table_gets_its_foreign_key(db_url: str) -> None:
    before = make_schema("message Gadget (XOSBase) { optional string name = 1; }")
    after = make_schema(
        "message Gadget (XOSBase) {"
        " optional string name = 1; optional manytoone owner->Service:gadgets = 2; }"
    )
    with open_store(db_url, before) as store:
        gadget = store.create("Gadget", {"name": "g"})
        store.set_schema(after)
        with pytest.raises(ValidationError, match=r"^Gadget\.owner_id: no Service with id 9$"):
            store.update("Gadget", gadget["id"], {"owner_id": 9})
        with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
            conn.execute(store.tables.by_model["Gadget"].update().values(owner_id=9))
        assert store.get("Gadget", gadget["id"])["owner_id"] is None
