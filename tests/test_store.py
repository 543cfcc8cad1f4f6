"""The store: bookkeeping rules, deletion, inheritance, queries, validation, migration, journal.

Every test that takes ``store`` runs twice: on an SQLite file and on a fresh PostgreSQL
database (``-m "not postgres"`` skips the second).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from actors.store import (
    Caller,
    ChangeNotice,
    Condition,
    NotFound,
    Pending,
    Query,
    Store,
    ValidationError,
    WriteContext,
    as_dict,
    check_value,
    row_is_pending,
)

from .store_support import EXTRA_FIELD, StepClock, make_schema, open_store, postgres_database, sqlite_url

CLIENT = WriteContext(Caller.CLIENT)
SYNC = WriteContext(Caller.SYNCHRONIZER)
STEP = WriteContext(Caller.STEP)
POLICY = WriteContext(Caller.POLICY)
PENDING = ("sync", "sync_deleted", "policy", "policy_deleted")


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(db_url: str, clock: StepClock) -> Iterator[Store]:
    with open_store(db_url, clock=clock) as s:
        yield s


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in rows]


def where(*conditions: Condition, **options: Any) -> Query:
    return Query(where=conditions, **options)


def cond(column: str, op: str, value: Any) -> Condition:
    return Condition(column, op, value)


# -- create and the bookkeeping rules of updates ----------------------------------------


def test_create_fills_defaults_and_timestamps(store: Store, clock: StepClock) -> None:
    clock.t = 2000.0
    row = store.create("Widget", {"name": "w"})
    assert isinstance(row["id"], int)
    assert row["created"] == row["updated"] == 2000.0
    stored = store.get("Widget", row["id"])
    assert stored == row
    assert stored is not None
    assert stored["size"] == 7 and stored["active"] is True and stored["color"] == "red"
    assert stored["weight"] is None and stored["notes"] is None and stored["owner_id"] is None
    assert stored["enacted"] is None and stored["policed"] is None
    assert stored["deleted"] is False and stored["backend_need_delete"] is False
    assert stored["backend_status"] == "Provisioning in progress" and stored["backend_code"] == 0
    assert stored["backend_register"] == "{}"
    assert stored["leaf_model_name"] == "Widget"
    assert stored["changed_by_step"] is None and stored["changed_by_policy"] is None


def test_create_ignores_a_given_leaf_model_name_and_timestamps(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"leaf_model_name": "Other", "created": 1.0, "updated": 2.0})
    assert row["leaf_model_name"] == "Widget"
    assert row["created"] == row["updated"] == clock.t


def test_ids_are_distinct_and_increasing(store: Store) -> None:
    got = [store.create("MyModel", {"first_name": f"a{i}", "last_name": "b"})["id"] for i in range(5)]
    assert got == sorted(got) and len(set(got)) == 5


def test_client_update_bumps_updated(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w"})
    clock.t = 3000.0
    written = store.update("Widget", row["id"], {"name": "v"}, CLIENT)
    assert written == {"name": "v", "updated": 3000.0}
    stored = store.get("Widget", row["id"])
    assert stored is not None and stored["name"] == "v" and stored["updated"] == 3000.0
    assert stored["created"] == row["created"]


def test_synchronizer_update_does_not_bump_updated(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w"})
    clock.tick()
    store.update("Widget", row["id"], {"name": "v", "backend_status": "OK"}, SYNC)
    stored = store.get("Widget", row["id"])
    assert stored is not None and stored["name"] == "v" and stored["backend_status"] == "OK"
    assert stored["updated"] == row["updated"]
    assert stored["changed_by_step"] is None and stored["changed_by_policy"] is None


def test_synchronizer_update_with_always_update_timestamp_bumps_updated(
    store: Store, clock: StepClock
) -> None:
    row = store.create("Widget", {"name": "w"})
    clock.t = 4000.0
    store.update(
        "Widget", row["id"], {"name": "v"}, WriteContext(Caller.SYNCHRONIZER, always_update_timestamp=True)
    )
    stored = store.get("Widget", row["id"])
    assert stored is not None and stored["updated"] == 4000.0


def test_step_write_of_a_model_field_sets_changed_by_step(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w"})
    clock.t = 5000.0
    written = store.update("Widget", row["id"], {"size": 9, "backend_status": "OK"}, STEP)
    assert written["changed_by_step"] == 5000.0
    stored = store.get("Widget", row["id"])
    assert stored is not None
    assert stored["changed_by_step"] == 5000.0 and stored["changed_by_policy"] is None
    assert stored["updated"] == row["updated"], "a step write is a synchronizer write"


@pytest.mark.parametrize(
    "values",
    [
        {"backend_status": "OK", "backend_code": 1, "backend_register": '{"failures": 0}'},
        {"enacted": 10.0, "backend_need_delete": True},
        {"policy_status": "done", "policy_code": 1, "policed": 10.0},
        {"no_sync": True, "lazy_blocked": True},
    ],
    ids=["feedback", "bookkeeping", "policy-feedback", "flags"],
)
def test_step_or_policy_write_of_bookkeeping_fields_only_stamps_nothing(
    store: Store, clock: StepClock, values: dict[str, Any]
) -> None:
    row = store.create("Widget", {"name": "w"})
    for ctx in (STEP, POLICY):
        clock.tick()
        written = store.update("Widget", row["id"], values, ctx)
        assert "changed_by_step" not in written and "changed_by_policy" not in written
    stored = store.get("Widget", row["id"])
    assert stored is not None
    assert stored["changed_by_step"] is None and stored["changed_by_policy"] is None
    assert all(stored[k] == v for k, v in values.items())


def test_policy_write_sets_changed_by_policy(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w"})
    clock.t = 6000.0
    store.update("Widget", row["id"], {"notes": "from policy"}, POLICY)
    stored = store.get("Widget", row["id"])
    assert stored is not None
    assert stored["changed_by_policy"] == 6000.0 and stored["changed_by_step"] is None
    assert stored["updated"] == row["updated"]
    assert row_is_pending(stored, "sync"), "a policy change must be synced"


def test_client_write_stamps_neither_step_nor_policy(store: Store) -> None:
    row = store.create("Widget", {"name": "w"})
    store.update("Widget", row["id"], {"size": 1}, CLIENT)
    stored = store.get("Widget", row["id"])
    assert stored is not None and stored["changed_by_step"] is None and stored["changed_by_policy"] is None


def test_step_create_of_a_model_field_sets_changed_by_step(store: Store, clock: StepClock) -> None:
    clock.t = 7000.0
    row = store.create("Widget", {"name": "pulled"}, STEP)
    assert row["changed_by_step"] == 7000.0


def test_update_fields_writes_only_those_columns(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w", "size": 1})
    clock.t = 8000.0
    written = store.update(
        "Widget",
        row["id"],
        {"name": "v", "size": 2, "notes": "n"},
        WriteContext(Caller.CLIENT, update_fields=("name", "notes")),
    )
    assert written == {"name": "v", "notes": "n", "updated": 8000.0}
    stored = store.get("Widget", row["id"])
    assert stored is not None and (stored["name"], stored["size"], stored["notes"]) == ("v", 1, "n")


def test_update_fields_naming_an_unknown_field_is_rejected(store: Store) -> None:
    row = store.create("Widget", {"name": "w"})
    with pytest.raises(ValidationError, match=r"Widget.*'nope'"):
        store.update("Widget", row["id"], {"name": "v"}, WriteContext(update_fields=("nope",)))
    assert store.get("Widget", row["id"])["name"] == "w"  # type: ignore[index]


def test_update_cannot_change_id_or_leaf_model_name(store: Store) -> None:
    row = store.create("Widget", {"name": "w"})
    with pytest.raises(ValidationError, match="id"):
        store.update("Widget", row["id"], {"id": row["id"] + 100})
    written = store.update("Widget", row["id"], {"id": row["id"], "leaf_model_name": "MyModel"})
    assert "leaf_model_name" not in written
    assert store.get("Widget", row["id"])["leaf_model_name"] == "Widget"  # type: ignore[index]


def test_update_and_delete_of_a_missing_object_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="Widget id 999"):
        store.update("Widget", 999, {"name": "x"})
    with pytest.raises(NotFound):
        store.delete("Widget", 999)
    assert store.get("Widget", 999) is None
    assert issubclass(NotFound, LookupError)


def test_now_is_strictly_increasing_even_when_the_clock_stands_still(store: Store) -> None:
    stamps = [store.now() for _ in range(100)]
    assert all(a < b for a, b in itertools.pairwise(stamps))


# -- deletion and purge -----------------------------------------------------------------


def test_soft_delete_marks_deleted_and_clears_enacted_and_policed(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w", "backend_need_delete": True})
    store.update("Widget", row["id"], {"enacted": clock.t, "policed": clock.t}, SYNC)
    clock.t = 9000.0
    store.delete("Widget", row["id"], CLIENT)
    stored = store.get("Widget", row["id"])
    assert stored is not None
    assert stored["deleted"] is True and stored["enacted"] is None and stored["policed"] is None
    assert stored["updated"] == 9000.0
    assert ids(store.pending("Widget", "sync_deleted")) == [row["id"]]
    assert store.pending("Widget", "sync") == []


def test_synchronizer_delete_does_not_bump_updated(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w", "backend_need_delete": True})
    clock.tick()
    store.delete("Widget", row["id"], SYNC)
    stored = store.get("Widget", row["id"])
    assert stored is not None and stored["deleted"] and stored["updated"] == row["updated"]


def test_never_synced_object_is_purged_at_once(store: Store) -> None:
    row = store.create("Widget", {"name": "w"})
    seq = store.last_seq()
    store.delete("Widget", row["id"])
    assert store.get("Widget", row["id"]) is None
    assert [(n.kind, n.id) for n in store.changes_since(seq)] == [("delete", row["id"]), ("purge", row["id"])]
    assert all(store.pending("Widget", which) == [] for which in PENDING)


def test_object_in_the_backend_is_kept_until_reaped(store: Store) -> None:
    row = store.create("Widget", {"name": "w"})
    store.update("Widget", row["id"], {"backend_need_delete": True}, SYNC)
    store.delete("Widget", row["id"])
    assert store.get("Widget", row["id"]) is not None
    assert ids(store.pending("Widget", "sync_deleted")) == [row["id"]]
    store.update("Widget", row["id"], {"backend_status": "deleting"}, SYNC)
    assert store.get("Widget", row["id"]) is not None, "only backend_need_reap ends it"
    store.update("Widget", row["id"], {"backend_need_reap": True}, SYNC)
    assert store.get("Widget", row["id"]) is None
    assert store.pending("Widget", "sync_deleted") == []


def test_object_owing_a_delete_policy_is_kept_until_policed(store: Store, clock: StepClock) -> None:
    row = store.create("Widget", {"name": "w", "backend_need_delete_policy": True})
    store.delete("Widget", row["id"])
    assert store.get("Widget", row["id"]) is not None
    assert ids(store.pending("Widget", "policy_deleted")) == [row["id"]]
    assert store.pending("Widget", "sync_deleted") == [], "never in the backend: no delete_record"
    store.update("Widget", row["id"], {"policy_status": "done"}, SYNC)
    assert store.get("Widget", row["id"]) is not None
    store.update("Widget", row["id"], {"policed": clock.tick(), "policy_code": 1}, SYNC)
    assert store.get("Widget", row["id"]) is None


def test_object_owing_both_is_kept_until_both_are_done(store: Store, clock: StepClock) -> None:
    row = store.create(
        "Widget", {"name": "w", "backend_need_delete": True, "backend_need_delete_policy": True}
    )
    store.delete("Widget", row["id"])
    store.update("Widget", row["id"], {"backend_need_reap": True}, SYNC)
    assert store.get("Widget", row["id"]) is not None, "the delete policy has not run"
    assert store.pending("Widget", "sync_deleted") == []
    store.update("Widget", row["id"], {"policed": clock.tick()}, SYNC)
    assert store.get("Widget", row["id"]) is None


def test_delete_twice_is_harmless_and_purge_removes_at_once(store: Store) -> None:
    row = store.create("Widget", {"name": "w", "backend_need_delete": True})
    store.delete("Widget", row["id"])
    seq = store.last_seq()
    store.delete("Widget", row["id"])
    assert store.last_seq() == seq
    store.delete("Widget", row["id"], purge=True)
    assert store.get("Widget", row["id"]) is None
    assert [n.kind for n in store.changes_since(seq)] == ["purge"]


# -- inheritance ------------------------------------------------------------------------


def make_sub(store: Store, **values: Any) -> dict[str, Any]:
    service = store.create("MyService", {"name": "svc"})
    return store.create(
        "SubInstance",
        {"name": "si", "owner_id": service["id"], "flavor": "large", "level": 3, **values},
    )


def test_three_level_inheritance_stores_each_field_in_its_table(store: Store) -> None:
    row = make_sub(store)
    assert row["leaf_model_name"] == "SubInstance"
    tables = store.tables
    with store.engine.connect() as conn:
        sub = conn.execute(sa.select(tables.by_model["SubInstance"])).mappings().all()
        mid = conn.execute(sa.select(tables.by_model["MyInstance"])).mappings().all()
        top = conn.execute(sa.select(tables.by_model["ServiceInstance"])).mappings().all()
    assert [dict(r) for r in sub] == [{"id": row["id"], "level": 3}]
    assert [dict(r) for r in mid] == [{"id": row["id"], "flavor": "large"}]
    assert len(top) == 1 and top[0]["name"] == "si" and top[0]["leaf_model_name"] == "SubInstance"
    assert "updated" in top[0] and "updated" not in sub[0]


def test_three_level_inheritance_reads_through_every_level(store: Store) -> None:
    row = make_sub(store)
    other = store.create("ServiceInstance", {"name": "plain", "owner_id": row["owner_id"]})
    as_top = store.get("ServiceInstance", row["id"])
    as_mid = store.get("MyInstance", row["id"])
    as_sub = store.get("SubInstance", row["id"])
    assert as_top is not None and as_mid is not None and as_sub is not None
    assert "flavor" not in as_top and "level" not in as_mid
    assert as_sub["flavor"] == as_mid["flavor"] == "large" and as_sub["level"] == 3
    assert as_top["leaf_model_name"] == "SubInstance"
    assert ids(store.select("ServiceInstance")) == [row["id"], other["id"]]
    assert ids(store.select("MyInstance")) == [row["id"]]
    assert store.get("SubInstance", other["id"]) is None
    assert ids(store.select("SubInstance", where(cond("name", "eq", "si"), cond("level", "gte", 3)))) == [
        row["id"]
    ]
    assert store.count("ServiceInstance") == 2 and store.count("SubInstance") == 1


def test_three_level_inheritance_updates_and_pending(store: Store, clock: StepClock) -> None:
    row = make_sub(store)
    clock.t = 10_000.0
    store.update("SubInstance", row["id"], {"name": "renamed", "flavor": "small", "level": 4}, CLIENT)
    stored = store.get("SubInstance", row["id"])
    assert stored is not None
    assert (stored["name"], stored["flavor"], stored["level"], stored["updated"]) == (
        "renamed",
        "small",
        4,
        10_000.0,
    )
    with pytest.raises(ValidationError, match="level"):
        store.update("ServiceInstance", row["id"], {"level": 5})
    store.update("ServiceInstance", row["id"], {"enacted": clock.tick()}, SYNC)
    assert store.pending("SubInstance", "sync") == []
    clock.tick()
    store.update("MyInstance", row["id"], {"flavor": "medium"}, CLIENT)
    assert ids(store.pending("SubInstance", "sync")) == [row["id"]]
    assert row["id"] in ids(store.pending("ServiceInstance", "sync"))
    assert store.pending("SubInstance", "sync")[0]["level"] == 4


def test_deleting_through_a_base_model_purges_every_table(store: Store) -> None:
    row = make_sub(store)
    seq = store.last_seq()
    store.delete("ServiceInstance", row["id"])
    assert store.get("ServiceInstance", row["id"]) is None
    with store.engine.connect() as conn:
        for model in ("SubInstance", "MyInstance", "ServiceInstance"):
            assert conn.execute(sa.select(store.tables.by_model[model])).first() is None
    notices = store.changes_since(seq)
    assert [(n.model, n.kind) for n in notices] == [("SubInstance", "delete"), ("SubInstance", "purge")]


def test_notices_name_the_leaf_model(store: Store) -> None:
    row = make_sub(store)
    seq = store.last_seq()
    store.update("ServiceInstance", row["id"], {"name": "x"})
    assert [(n.model, n.kind, n.id) for n in store.changes_since(seq)] == [
        ("SubInstance", "update", row["id"])
    ]


def test_abstract_and_unknown_models_have_no_objects(store: Store) -> None:
    with pytest.raises(ValidationError, match="XOSBase is abstract"):
        store.create("XOSBase", {})
    with pytest.raises(ValidationError, match="unknown model 'Nope'"):
        store.select("Nope")
    with pytest.raises(ValidationError, match="Nope"):
        store.pending("Nope", "sync")


# -- queries ----------------------------------------------------------------------------


MODULE_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def module_store(request: pytest.FixtureRequest, folder: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        with open_store(sqlite_url(folder)) as s:
            yield s
        return
    with postgres_database(request.getfixturevalue("postgres_url")) as url, open_store(url) as s:
        yield s


@pytest.fixture(scope="module", params=MODULE_BACKENDS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for the query tests, which only read (saves a store per case)."""
    with module_store(request, tmp_path_factory.mktemp("shared")) as s:
        yield s


@pytest.fixture(scope="module", params=MODULE_BACKENDS)
def rejecting(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for the validation tests, whose writes are all rejected."""
    with module_store(request, tmp_path_factory.mktemp("rejecting")) as s:
        yield s


@pytest.fixture(scope="module")
def widgets(shared: Store) -> dict[str, int]:
    """Six widgets; names chosen for the string operators (one NULL name)."""
    store = shared
    specs = [
        ("alpha", 1, 1.5, "red"),
        ("Beta", 2, 2.5, "blue"),
        ("gamma 50%", 3, None, "red"),
        ("ALPHABET", 4, 0.5, "blue"),
        ("x_y", 5, 3.0, "red"),
        (None, None, None, "red"),
    ]
    out = {}
    for name, size, ratio, color in specs:
        row = store.create("Widget", {"name": name, "size": size, "ratio": ratio, "color": color})
        out[str(name)] = row["id"]
    return out


def names(store: Store, query: Query) -> list[str | None]:
    return [r["name"] for r in store.select("Widget", query)]


@pytest.mark.parametrize(
    ("column", "op", "value", "expected"),
    [
        ("name", "eq", "alpha", ["alpha"]),
        ("name", "eq", None, [None]),
        ("size", "eq", 3, ["gamma 50%"]),
        ("size", "gt", 3, ["ALPHABET", "x_y"]),
        ("size", "gte", 3, ["gamma 50%", "ALPHABET", "x_y"]),
        ("size", "lt", 3, ["alpha", "Beta"]),
        ("size", "lte", 3, ["alpha", "Beta", "gamma 50%"]),
        ("ratio", "gt", 1.5, ["Beta", "x_y"]),
        ("ratio", "lte", 1, ["ALPHABET"]),
        ("name", "gte", "gamma", ["gamma 50%", "x_y"]),
        ("name", "iexact", "ALPHA", ["alpha"]),
        ("name", "iexact", "beta", ["Beta"]),
        ("name", "contains", "alpha", ["alpha"]),
        ("name", "contains", "ALPHA", ["ALPHABET"]),
        ("name", "contains", "a", ["alpha", "Beta", "gamma 50%"]),
        ("name", "icontains", "alpha", ["alpha", "ALPHABET"]),
        ("name", "icontains", "BET", ["Beta", "ALPHABET"]),
        ("name", "contains", "%", ["gamma 50%"]),
        ("name", "icontains", "%", ["gamma 50%"]),
        ("name", "contains", "_", ["x_y"]),
        ("name", "icontains", "_", ["x_y"]),
        ("name", "icontains", "a%", []),
        ("name", "in", ["alpha", "Beta", "zzz"], ["alpha", "Beta"]),
        ("size", "in", [1, 5], ["alpha", "x_y"]),
        ("size", "in", [], []),
        ("name", "isnull", True, [None]),
        ("name", "isnull", False, ["alpha", "Beta", "gamma 50%", "ALPHABET", "x_y"]),
        ("ratio", "isnull", True, ["gamma 50%", None]),
        ("color", "eq", "blue", ["Beta", "ALPHABET"]),
    ],
)
def test_select_with_each_operator(
    shared: Store, widgets: dict[str, int], column: str, op: str, value: Any, expected: list[str | None]
) -> None:
    query = where(cond(column, op, value))
    assert names(shared, query) == expected
    assert shared.count("Widget", query) == len(expected)


@pytest.mark.parametrize(
    ("column", "op", "value", "expected"),
    [
        # Like Django: a row whose column is NULL is not "equal to x", so exclude keeps it.
        ("name", "eq", "alpha", ["Beta", "gamma 50%", "ALPHABET", "x_y", None]),
        ("size", "gt", 2, ["alpha", "Beta", None]),
        ("ratio", "lt", 2, ["Beta", "gamma 50%", "x_y", None]),
        ("name", "icontains", "alpha", ["Beta", "gamma 50%", "x_y", None]),
        ("name", "contains", "%", ["alpha", "Beta", "ALPHABET", "x_y", None]),
        ("name", "iexact", "BETA", ["alpha", "gamma 50%", "ALPHABET", "x_y", None]),
        ("name", "in", ["alpha", "x_y"], ["Beta", "gamma 50%", "ALPHABET", None]),
        # Excluding NULL itself removes exactly the NULL rows.
        ("name", "eq", None, ["alpha", "Beta", "gamma 50%", "ALPHABET", "x_y"]),
        ("name", "isnull", True, ["alpha", "Beta", "gamma 50%", "ALPHABET", "x_y"]),
        ("ratio", "isnull", False, ["gamma 50%", None]),
    ],
)
def test_exclude_keeps_null_rows_like_django(
    shared: Store, widgets: dict[str, int], column: str, op: str, value: Any, expected: list[str | None]
) -> None:
    query = Query(exclude=(cond(column, op, value),))
    assert names(shared, query) == expected
    assert shared.count("Widget", query) == len(expected)


def test_where_and_exclude_combine(shared: Store, widgets: dict[str, int]) -> None:
    query = Query(
        where=(cond("color", "eq", "red"),), exclude=(cond("size", "gte", 3), cond("name", "eq", None))
    )
    assert names(shared, query) == ["alpha"]


def test_order_by_limit_offset(shared: Store, widgets: dict[str, int]) -> None:
    # (NULLs sort first on SQLite and last on PostgreSQL, as in plain SQL: filtered out here.)
    not_null = (cond("size", "isnull", False),)
    assert names(shared, Query(where=not_null, order_by=("-size",))) == [
        "x_y",
        "ALPHABET",
        "gamma 50%",
        "Beta",
        "alpha",
    ]
    assert names(shared, Query(order_by=("color", "-id"))) == [
        "ALPHABET",
        "Beta",
        None,
        "x_y",
        "gamma 50%",
        "alpha",
    ]
    assert names(shared, Query(order_by=("ratio",), where=(cond("ratio", "isnull", False),))) == [
        "ALPHABET",
        "alpha",
        "Beta",
        "x_y",
    ]
    assert names(shared, Query(limit=2)) == ["alpha", "Beta"]
    assert names(shared, Query(limit=2, offset=3)) == ["ALPHABET", "x_y"]
    assert names(shared, Query(offset=4)) == ["x_y", None]
    assert names(shared, Query(limit=0)) == []
    with pytest.raises(ValidationError, match="nope"):
        shared.select("Widget", Query(order_by=("nope",)))


def test_order_by_and_filter_on_a_link_by_field_name(store: Store) -> None:
    s1 = store.create("Service", {"name": "s1"})
    s2 = store.create("Service", {"name": "s2"})
    a = store.create("Widget", {"name": "a", "owner_id": s2["id"]})
    b = store.create("Widget", {"name": "b", "owner_id": s1["id"]})
    assert ids(store.select("Widget", Query(order_by=("owner",)))) == [b["id"], a["id"]]
    assert ids(store.select("Widget", where(cond("owner_id", "eq", s2["id"])))) == [a["id"]]
    assert ids(store.select("Widget", where(cond("owner", "in", [s1["id"]])))) == [b["id"]]


def test_select_by_id(shared: Store, widgets: dict[str, int]) -> None:
    alpha = widgets["alpha"]
    assert names(shared, where(cond("id", "eq", alpha))) == ["alpha"]
    assert names(shared, where(cond("id", "in", [alpha, widgets["x_y"]]))) == ["alpha", "x_y"]
    assert len(names(shared, where(cond("id", "gt", alpha)))) == 5
    assert names(shared, where(cond("id", "eq", str(alpha)))) == ["alpha"]  # numeric text, as the original
    with pytest.raises(ValidationError, match="id"):
        shared.select("Widget", where(cond("id", "eq", "one")))


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (cond("nope", "eq", 1), "Widget.*'nope'"),
        (cond("size", "eq", "big"), r"Widget\.size.*integer"),
        (cond("size", "gt", None), "None"),
        (cond("name", "in", "abc"), "list"),
        (cond("size", "icontains", 3), "string"),
        (cond("name", "between", "x"), "operator"),
    ],
)
def test_bad_queries_are_rejected(shared: Store, condition: Condition, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        shared.select("Widget", where(condition))


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "values", "message"),
    [
        ("Widget", {"size": "seven"}, r"Widget\.size: expected an integer"),
        ("Widget", {"size": 1.5}, r"Widget\.size: expected an integer"),
        ("Widget", {"size": True}, r"Widget\.size: expected an integer"),
        ("Widget", {"ratio": "x"}, r"Widget\.ratio: expected a number"),
        ("Widget", {"ratio": float("nan")}, r"Widget\.ratio: NaN"),
        ("Widget", {"active": 1}, r"Widget\.active: expected a boolean"),
        ("Widget", {"name": 5}, r"Widget\.name: expected a string"),
        ("Widget", {"name": "a\x00b"}, r"Widget\.name: NUL"),
        ("Widget", {"owner_id": "3"}, r"Widget\.owner_id: expected an object id"),
        ("Widget", {"active": None}, r"Widget\.active: may not be null"),
        ("Widget", {"color": None}, r"Widget\.color: may not be null"),
        ("Widget", {"name": "x" * 21}, r"Widget\.name: longer than max_length 20"),
        ("Widget", {"color": "green"}, r"Widget\.color: 'green' is not one of the choices"),
        ("Widget", {"size": 2**31}, r"Widget\.size: 2147483648 is out of range for int32"),
        ("Widget", {"size": -(2**31) - 1}, r"Widget\.size: .* out of range for int32"),
        ("Widget", {"weight": -1}, r"Widget\.weight: -1 is out of range for uint32"),
        ("Widget", {"weight": 2**32}, r"Widget\.weight: .* out of range for uint32"),
        ("Widget", {"nope": 1}, r"model Widget has no field 'nope'"),
        ("MyModel", {"first_name": None}, r"MyModel\.first_name: may not be null"),
        ("Nope", {}, r"unknown model 'Nope'"),
    ],
)
def test_invalid_values_are_rejected_naming_model_and_field(
    rejecting: Store, model: str, values: dict[str, Any], message: str
) -> None:
    store = rejecting
    kept = store.create("Widget", {"name": "kept", "size": 1})
    before = store.select("Widget")
    seq = store.last_seq()
    with pytest.raises(ValidationError, match=message):
        store.create(model, values)
    if model == "Widget":
        with pytest.raises(ValidationError, match=message):
            store.update(model, kept["id"], values)
    assert store.select("Widget") == before, "a rejected write changes nothing"
    assert store.last_seq() == seq, "and journals nothing"
    assert isinstance(ValidationError("x"), ValueError)


def test_limits_of_integer_ranges_are_accepted(store: Store) -> None:
    row = store.create("Widget", {"size": 2**31 - 1, "weight": 2**32 - 1})
    assert (row["size"], row["weight"]) == (2**31 - 1, 2**32 - 1)
    store.update("Widget", row["id"], {"size": -(2**31), "weight": 0})
    stored = store.get("Widget", row["id"])
    assert stored is not None and (stored["size"], stored["weight"]) == (-(2**31), 0)


def test_ints_are_widened_for_float_fields(store: Store) -> None:
    row = store.create("Widget", {"ratio": 2})
    stored = store.get("Widget", row["id"])
    assert stored is not None and stored["ratio"] == 2.0 and isinstance(stored["ratio"], float)


def test_check_value_on_its_own() -> None:
    schema = make_schema()
    size = schema.field("Widget", "size")
    assert check_value("Widget", size, 3) == 3
    with pytest.raises(ValidationError, match=r"^Widget\.size: expected an integer, got 'x'$"):
        check_value("Widget", size, "x")


def test_a_failing_multi_table_insert_leaves_no_partial_object(store: Store) -> None:
    service = store.create("MyService", {"name": "svc"})
    kept = store.create("SubInstance", {"name": "kept", "owner_id": service["id"]})
    before = store.select("ServiceInstance")
    seq = store.last_seq()
    with pytest.raises(ValidationError, match=r"SubInstance\.level"):
        store.create("SubInstance", {"name": "x", "owner_id": service["id"], "level": "high"})
    with pytest.raises(ValidationError, match=r"SubInstance\.owner is required"):
        store.create("SubInstance", {"name": "x"})
    # A row left in the middle table makes the second INSERT of a create fail in the database:
    # the first INSERT (into ServiceInstance) must be rolled back with it.
    with store.engine.begin() as conn:
        conn.execute(store.tables.by_model["MyInstance"].insert().values(id=500, flavor="orphan"))
    with pytest.raises(sa.exc.IntegrityError):
        store.create("SubInstance", {"id": 500, "name": "x", "owner_id": service["id"]})
    assert store.select("ServiceInstance") == before
    assert store.get("SubInstance", kept["id"]) == store.select("SubInstance")[0]
    assert store.last_seq() == seq


# -- migration --------------------------------------------------------------------------


def test_reopening_with_a_new_field_adds_the_column_with_its_default(db_url: str) -> None:
    with open_store(db_url) as first:
        a = first.create("Widget", {"name": "a", "size": 1})
        b = first.create("Widget", {"name": "b", "notes": "keep me"})
        first.update("Widget", b["id"], {"enacted": 123.0}, SYNC)
        m = first.create("MyModel", {"first_name": "x", "last_name": "y"})
        seq = first.last_seq()
    with open_store(db_url, make_schema(EXTRA_FIELD)) as second:
        rows = {r["id"]: r for r in second.select("Widget")}
        assert rows[a["id"]]["name"] == "a" and rows[a["id"]]["size"] == 1
        assert rows[b["id"]]["notes"] == "keep me" and rows[b["id"]]["enacted"] == 123.0
        assert all(r["priority"] == 5 and r["label"] == "none" for r in rows.values())
        assert second.last_seq() == seq
        with pytest.raises(ValidationError, match="MyModel"):
            second.get("MyModel", m["id"])  # the model is gone from the schema, its table stays
        c = second.create("Widget", {"name": "c", "priority": 9})
        assert second.get("Widget", c["id"])["priority"] == 9  # type: ignore[index]
        assert ids(second.select("Widget", where(cond("priority", "eq", 5)))) == [a["id"], b["id"]]
    with open_store(db_url) as third:  # the data of the dropped model was kept
        assert third.get("MyModel", m["id"])["first_name"] == "x"  # type: ignore[index]
        assert third.count("Widget") == 3


def test_sqlite_pending_indexes_follow_the_columns_of_the_table(tmp_path: Path) -> None:
    """A table that gains a column gets covering indexes that list it; the old ones are dropped."""
    url = sqlite_url(tmp_path)

    def pending_indexes(store: Store) -> set[str]:
        found = sa.inspect(store.engine).get_indexes("m_widget")
        return {ix["name"] for ix in found if ix["name"] and ix["name"].startswith("ix_m_widget_pending_")}

    with open_store(url) as first:
        first.create("Widget", {"name": "a"})
        before = pending_indexes(first)
        assert len(before) == 4
    with open_store(url, make_schema(EXTRA_FIELD)) as second:
        after = pending_indexes(second)
        assert len(after) == 4 and not after & before
        assert {ix.name for ix in second.tables.by_model["Widget"].indexes} >= after
        [row] = second.pending("Widget", "sync")
        assert row["name"] == "a" and row["priority"] == 5


def test_set_schema_extends_a_live_store(store: Store) -> None:
    old = store.create("Widget", {"name": "old"})
    store.set_schema(make_schema(EXTRA_FIELD + "\nmessage Gadget (XOSBase) { optional string kind = 1; }"))
    assert store.get("Widget", old["id"])["priority"] == 5  # type: ignore[index]
    g = store.create("Gadget", {"kind": "k"})
    assert ids(store.pending("Gadget", "sync")) == [g["id"]]
    assert store.get("Gadget", g["id"])["kind"] == "k"  # type: ignore[index]


def test_set_schema_that_cannot_be_applied_changes_nothing(store: Store) -> None:
    old = store.schema
    with store.engine.begin() as conn:  # a view where the new model's table must go
        conn.exec_driver_sql("CREATE VIEW m_zapper AS SELECT 1 AS id")
    bad = make_schema(EXTRA_FIELD + "\nmessage Zapper (XOSBase) { optional string kind = 1; }")
    with pytest.raises(sa.exc.SQLAlchemyError):
        store.set_schema(bad)
    assert store.schema is old
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("m_widget")}
    assert "priority" not in columns, "the migration is one transaction"
    row = store.create("Widget", {"name": "still works"})
    assert "priority" not in row
    with pytest.raises(ValidationError, match="Zapper"):
        store.create("Zapper", {})


# -- journal and change notices ---------------------------------------------------------


def test_journal_sequence_and_changes_since(store: Store) -> None:
    assert store.last_seq() == 0 and store.changes_since(0) == []
    a = store.create("Widget", {"name": "a"})
    store.update("Widget", a["id"], {"name": "b"}, WriteContext(origin="tester"))
    b = store.create("MyModel", {"first_name": "f", "last_name": "l"})
    store.delete("Widget", a["id"])
    notices = store.changes_since(0)
    assert [(n.model, n.id, n.kind) for n in notices] == [
        ("Widget", a["id"], "create"),
        ("Widget", a["id"], "update"),
        ("MyModel", b["id"], "create"),
        ("Widget", a["id"], "delete"),
        ("Widget", a["id"], "purge"),
    ]
    seqs = [n.seq for n in notices]
    assert seqs == sorted(set(seqs)) and store.last_seq() == seqs[-1]
    assert notices[1].origin == "tester" and notices[0].origin is None
    assert store.changes_since(seqs[2]) == notices[3:]
    assert store.changes_since(0, limit=2) == notices[:2]
    assert all(x.at <= y.at for x, y in itertools.pairwise(notices))


def test_subscribers_get_notices_after_commit_in_order(store: Store) -> None:
    seen: list[tuple[ChangeNotice, Any]] = []

    def on_change(notice: ChangeNotice) -> None:
        # Runs after the commit: the change is visible from any connection.
        seen.append((notice, store.get(notice.model, notice.id)))

    unsubscribe = store.subscribe(on_change)
    a = store.create("Widget", {"name": "a"})
    store.update("Widget", a["id"], {"name": "b"})
    store.update("Widget", a["id"], {"name": "c"})
    unsubscribe()
    store.update("Widget", a["id"], {"name": "d"})
    assert [(n.kind, row["name"]) for n, row in seen] == [("create", "a"), ("update", "b"), ("update", "c")]
    assert [n for n, _ in seen] == store.changes_since(0)[:3]


def test_a_raising_subscriber_does_not_break_writes(store: Store) -> None:
    later: list[int] = []

    def broken(notice: ChangeNotice) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(broken)
    store.subscribe(lambda n: later.append(n.seq))
    a = store.create("Widget", {"name": "a"})
    store.update("Widget", a["id"], {"name": "b"})
    assert store.get("Widget", a["id"])["name"] == "b"  # type: ignore[index]
    assert later == [n.seq for n in store.changes_since(0)]


def test_rejected_writes_publish_nothing(store: Store) -> None:
    seen: list[ChangeNotice] = []
    store.subscribe(seen.append)
    with pytest.raises(ValidationError):
        store.create("Widget", {"size": "x"})
    with pytest.raises(NotFound):
        store.update("Widget", 12345, {"name": "x"})
    assert seen == []


def test_journal_is_pruned_to_journal_keep(tmp_path: Path) -> None:
    with open_store("sqlite://", journal_keep=10) as store:
        row = store.create("Widget", {"name": "w"})
        for i in range(1000):
            store.update("Widget", row["id"], {"size": i})
        kept = store.changes_since(0)
        assert store.last_seq() == 1001
        assert len(kept) <= 10 + 1 and kept[-1].seq == 1001


# -- the four synchronizer queries ------------------------------------------------------


def pending_ids(store: Store, model: str = "Widget") -> dict[str, list[int]]:
    return {which: ids(store.pending(model, which)) for which in PENDING}


def test_the_four_pending_queries_on_examples(store: Store, clock: StepClock) -> None:
    def make(**values: Any) -> int:
        clock.tick()
        return store.create("Widget", {"name": "w", **values})["id"]

    new = make()
    synced = make()
    store.update("Widget", synced, {"enacted": clock.tick(), "policed": clock.t}, SYNC)
    changed = make()
    store.update("Widget", changed, {"enacted": clock.tick(), "policed": clock.t}, SYNC)
    clock.tick()
    store.update("Widget", changed, {"size": 1}, CLIENT)
    by_policy = make()
    store.update("Widget", by_policy, {"enacted": clock.tick(), "policed": clock.t}, SYNC)
    clock.tick()
    store.update("Widget", by_policy, {"size": 2}, POLICY)
    by_step = make()
    store.update("Widget", by_step, {"enacted": clock.tick(), "policed": clock.t}, SYNC)
    clock.tick()
    store.update("Widget", by_step, {"size": 3}, STEP)
    no_sync = make(no_sync=True)
    no_policy = make(no_policy=True)
    blocked = make(lazy_blocked=True)
    gone = make(backend_need_delete=True)
    store.delete("Widget", gone)
    gone_policy = make(backend_need_delete_policy=True, no_sync=True)
    store.delete("Widget", gone_policy)
    reaped = make(backend_need_delete=True, backend_need_delete_policy=True)
    store.delete("Widget", reaped)
    store.update("Widget", reaped, {"backend_need_reap": True}, SYNC)
    got = pending_ids(store)
    assert got == {
        "sync": [new, changed, by_policy, no_policy],
        "sync_deleted": [gone],
        "policy": [new, changed, by_step, no_sync, blocked],
        "policy_deleted": [gone, gone_policy, reaped],
    }
    rows = store.select("Widget")
    for which in PENDING:
        assert [r["id"] for r in rows if row_is_pending(r, which)] == got[which]
    assert ids(store.pending("Widget", Pending.SYNC, limit=2)) == [new, changed]


def test_pending_is_empty_after_success(store: Store, clock: StepClock) -> None:
    a = store.create("Widget", {"name": "w"})["id"]
    store.update("Widget", a, {"name": "v"}, POLICY)
    store.update("Widget", a, {"size": 4}, STEP)
    row = store.get("Widget", a)
    assert row is not None
    store.update(
        "Widget",
        a,
        {"enacted": max(row["updated"], row["changed_by_policy"]), "backend_status": "OK", "backend_code": 1},
        SYNC,
    )
    store.update(
        "Widget", a, {"policed": max(row["updated"], row["changed_by_step"]), "policy_code": 1}, SYNC
    )
    assert pending_ids(store) == {which: [] for which in PENDING}


def test_reads_return_read_only_rows_with_python_types(store: Store) -> None:
    made = store.create("Widget", {"name": "w", "ratio": 0.5, "weight": 2**32 - 1, "active": False})
    read = [store.get("Widget", made["id"]), *store.select("Widget"), *store.pending("Widget", "sync")]
    for row in read:
        assert row is not None
        assert row == made and dict(row) == made  # equal to the dict the create returned
        assert row["active"] is False and row["deleted"] is False  # booleans, on SQLite too
        assert row["ratio"] == 0.5 and row["weight"] == 2**32 - 1 and row.get("missing", 3) == 3
        assert "name" in row and "missing" not in row and sorted(row) == sorted(made)
        with pytest.raises(TypeError):
            row["name"] = "changed"  # type: ignore[index]
        copy = as_dict(row)
        copy["name"] = "changed"
        assert row["name"] == "w"


def test_pending_of_a_model_without_objects_and_bad_kind(store: Store) -> None:
    assert store.pending("MyModel", "sync") == []
    with pytest.raises(ValueError, match="bogus"):
        store.pending("MyModel", "bogus")


# -- SQLite specifics: threads and query plans ------------------------------------------


def test_concurrent_writers_on_an_sqlite_file_lose_nothing(tmp_path: Path) -> None:
    threads_n, per_thread = 8, 40
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)
    with open_store(sqlite_url(tmp_path)) as store:
        seen: list[int] = []
        store.subscribe(lambda n: seen.append(n.seq))

        def writer(t: int) -> None:
            try:
                barrier.wait()
                for i in range(per_thread):
                    row = store.create("MyModel", {"first_name": f"t{t}", "last_name": str(i)})
                    store.update("MyModel", row["id"], {"last_name": f"{i}-done"}, CLIENT)
                    if i % 10 == 0:
                        store.select("MyModel", where(cond("first_name", "eq", f"t{t}")))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        rows = store.select("MyModel")
        assert len(rows) == threads_n * per_thread
        for t in range(threads_n):
            mine = sorted(r["last_name"] for r in rows if r["first_name"] == f"t{t}")
            assert mine == sorted(f"{i}-done" for i in range(per_thread))
        seqs = [n.seq for n in store.changes_since(0, limit=10_000)]
        assert seqs == list(range(1, 2 * threads_n * per_thread + 1))
        assert sorted(seen) == seqs


def test_concurrent_writers_on_two_stores_over_one_file(tmp_path: Path) -> None:
    """Two processes' worth of stores on one file: SQLite's own locking serialises them."""
    url = sqlite_url(tmp_path)
    with open_store(url) as one, open_store(url) as two:

        def writer(store: Store, tag: str) -> None:
            for i in range(30):
                store.create("MyModel", {"first_name": tag, "last_name": str(i)})

        workers = [threading.Thread(target=writer, args=(s, tag)) for s, tag in ((one, "one"), (two, "two"))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert one.count("MyModel", where(cond("first_name", "eq", "two"))) == 30
        assert two.count("MyModel") == 60
        assert len({n.seq for n in one.changes_since(0)}) == 60


@pytest.mark.parametrize("which", PENDING)
@pytest.mark.parametrize("model", ["Widget", "SubInstance"])
def test_sqlite_plans_pending_with_the_partial_index(tmp_path: Path, which: str, model: str) -> None:
    """An index-only scan of the root table's covering partial index (joined to the rest of a chain)."""
    with open_store(sqlite_url(tmp_path)) as store:
        statements: list[str] = []
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        store.pending(model, which)
        select = next(s for s in statements if s.lstrip().upper().startswith("SELECT"))
        root = store.tables.chain(model)[0].name
        with store.engine.connect() as conn:
            plan = " ".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + select).fetchall()
            )
        assert f"USING COVERING INDEX ix_{root}_pending_{which}_" in plan, plan
