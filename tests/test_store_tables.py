"""Tables from model specs (``actors/store/_tables.py``) and the four pending queries.

No store is opened: the tables are built from a schema and, where rows are needed,
created in an in-memory SQLite database.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from actors.models import FieldSpec
from actors.store import pending_condition, row_is_pending
from actors.store._tables import Tables, column_type, fk_name, pending_index_prefix

from .store_support import make_schema

PENDING = ("sync", "sync_deleted", "policy", "policy_deleted")

#: The WHERE text of each query on SQLite: an existing database's partial indexes were
#: created with this text, and SQLite uses such an index only for a query that repeats it.
SQLITE_TEXT = {
    "sync": "m_mymodel.deleted = 0 AND m_mymodel.no_sync = 0 AND m_mymodel.lazy_blocked = 0 AND "
    "(m_mymodel.enacted IS NULL OR m_mymodel.enacted < m_mymodel.updated OR "
    "m_mymodel.enacted < m_mymodel.changed_by_policy)",
    "sync_deleted": "m_mymodel.deleted = 1 AND m_mymodel.backend_need_delete = 1 AND "
    "m_mymodel.backend_need_reap = 0",
    "policy": "m_mymodel.deleted = 0 AND m_mymodel.no_policy = 0 AND (m_mymodel.policed IS NULL OR "
    "m_mymodel.policed < m_mymodel.updated OR m_mymodel.policed < m_mymodel.changed_by_step)",
    "policy_deleted": "m_mymodel.deleted = 1 AND m_mymodel.no_policy = 0 AND "
    "(m_mymodel.policed IS NULL OR m_mymodel.policed < m_mymodel.updated)",
}


@pytest.fixture(scope="module")
def tables() -> Tables:
    return Tables(make_schema(), covering=False)


def field(kind: str, **options: Any) -> FieldSpec:
    """The spec of field ``f`` of kind ``kind`` of a model declared in xproto."""
    declared = " ".join(f"{k} = {v}" for k, v in options.items())
    text = f"message T (XOSBase) {{ optional {kind} f = 1{f' [{declared}]' if declared else ''}; }}"
    return make_schema(text).field("T", "f")


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        ("string", {"max_length": 30}, sa.String),
        ("string", {}, sa.Text),
        ("text", {}, sa.Text),
        ("int32", {}, sa.Integer),
        ("uint32", {}, sa.BigInteger),
        ("int64", {}, sa.BigInteger),
        ("uint64", {}, sa.BigInteger),
        ("bool", {}, sa.Boolean),
        ("float", {}, sa.Float),
        ("double", {}, sa.Float),
    ],
)
def test_column_type_of_each_kind(kind: str, options: dict[str, Any], expected: type) -> None:
    got = column_type(field(kind, **options))
    assert type(got) is expected
    if kind == "string" and options:
        assert got.length == 30  # type: ignore[attr-defined]


def test_a_link_is_an_integer_column() -> None:
    f = make_schema().field("Widget", "owner")
    assert f.is_link and type(column_type(f)) is sa.Integer


def test_foreign_key_names_stay_under_postgres_limit() -> None:
    assert fk_name("m_widget", "owner_id") == "fk_m_widget_owner_id"
    long = fk_name("m_" + "x" * 60, "owner_id")
    assert len(long) <= 63
    assert long == fk_name("m_" + "x" * 60, "owner_id")  # the same every time
    assert long != fk_name("m_" + "x" * 60, "other_id")


def test_one_table_per_concrete_model_and_derived_tables_hold_their_own_fields(tables: Tables) -> None:
    schema = tables.schema
    assert set(tables.by_model) == {spec.name for spec in schema.concrete()}
    assert "XOSBase" not in tables.by_model  # abstract: no table
    root, mine, sub = tables.chain("SubInstance")
    assert [t.name for t in (root, mine, sub)] == ["m_serviceinstance", "m_myinstance", "m_subinstance"]
    assert {c.name for c in sub.c} == {"id", "level"}
    assert {c.name for c in mine.c} == {"id", "flavor"}
    assert "deleted" in root.c and "deleted" not in mine.c
    assert root.c.id.autoincrement is True and sub.c.id.autoincrement is False
    assert root.dialect_options["sqlite"]["autoincrement"] is True
    owners = tables.column_table("SubInstance")
    assert owners["level"] is sub and owners["flavor"] is mine and owners["deleted"] is root
    assert owners["id"] is root


def test_links_get_deferred_foreign_keys(tables: Tables) -> None:
    widget = tables.by_model["Widget"]
    (fk,) = widget.c.owner_id.foreign_keys
    assert fk.target_fullname == "m_service.id"
    assert fk.name == "fk_m_widget_owner_id"
    assert fk.deferrable and fk.initially == "DEFERRED"
    assert widget.c.owner_id.index  # links are indexed


def test_pending_indexes_on_the_root_table_only(tables: Tables) -> None:
    root = tables.by_model["MyModel"]
    names = sorted(ix.name or "" for ix in root.indexes if (ix.name or "").startswith("ix_m_mymodel_pending"))
    assert names == sorted(f"{pending_index_prefix('m_mymodel')}{which}" for which in PENDING)
    assert not [ix for ix in tables.by_model["MyInstance"].indexes if "pending" in (ix.name or "")]
    assert tables.has_bookkeeping("MyModel") and tables.has_bookkeeping("SubInstance")
    for ix in root.indexes:
        if "pending" in (ix.name or ""):
            assert [c.name for c in ix.columns] == ["id"]


def test_covering_indexes_list_every_column_and_name_them_by_digest() -> None:
    schema = make_schema()
    covering = Tables(schema, covering=True)
    root = covering.by_model["MyModel"]
    pending = [ix for ix in root.indexes if "pending" in (ix.name or "")]
    assert len(pending) == 4
    for ix in pending:
        assert [c.name for c in ix.columns] == [c.name for c in root.c]
    suffixes = {(ix.name or "").rsplit("_", 1)[1] for ix in pending}
    assert len(suffixes) == 1 and len(next(iter(suffixes))) == 8
    wider = Tables(make_schema(schema_text_with_extra_field()), covering=True).by_model["MyModel"]
    assert {ix.name for ix in wider.indexes if "pending" in (ix.name or "")}.isdisjoint(
        {ix.name for ix in pending}
    ), "a table that gains a column gets new index names"


def schema_text_with_extra_field() -> str:
    from .store_support import MODELS

    return MODELS.replace(
        "required string last_name = 2 [null = False, blank = False];",
        "required string last_name = 2 [null = False, blank = False];\n    optional int32 age = 3;",
    )


def test_tables_are_shared_by_equal_schemas() -> None:
    a = Tables.of(make_schema(), covering=True)
    assert Tables.of(make_schema(), covering=True) is a  # another Schema object, the same declarations
    assert Tables.of(make_schema(), covering=False) is not a
    assert Tables.of(make_schema(schema_text_with_extra_field()), covering=True) is not a


def test_tables_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Tables, "CACHED", 2)
    first = Tables.of(make_schema(), covering=True)
    for i in range(Tables.CACHED):
        Tables.of(make_schema(f"message Filler{i} (XOSBase) {{ optional int32 n = 1; }}"), covering=True)
    assert len(Tables._built) <= Tables.CACHED
    assert Tables.of(make_schema(), covering=True) is not first  # pushed out, built again


@pytest.mark.parametrize("which", PENDING)
def test_pending_query_text_is_the_index_text(tables: Tables, which: str) -> None:
    root = tables.by_model["MyModel"]
    where = pending_condition(which, root.c.__getitem__)
    assert str(where.compile(dialect=sqlite.dialect())) == SQLITE_TEXT[which]
    (index,) = [ix for ix in root.indexes if ix.name == f"{pending_index_prefix(root.name)}{which}"]
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        name = dialect.name
        assert str(index.dialect_options[name]["where"].compile(dialect=dialect)) == str(
            where.compile(dialect=dialect)
        )


def test_unknown_pending_query() -> None:
    with pytest.raises(ValueError, match="unknown pending query 'nope'"):
        pending_condition("nope", lambda name: sa.column(name))
    with pytest.raises(ValueError, match="unknown pending query 'nope'"):
        row_is_pending({}, "nope")


#: Values each column the queries read takes in the grid below.
FLAGS = ("deleted", "no_sync", "no_policy", "lazy_blocked", "backend_need_delete", "backend_need_reap")
TIMES = ("enacted", "updated", "policed", "changed_by_policy", "changed_by_step")


def grid() -> list[dict[str, Any]]:
    """Rows over every combination that matters: flags true/false, timestamps NULL/1/2."""
    rows = []
    flag_values = list(itertools.product((False, True), repeat=len(FLAGS)))
    time_values = list(itertools.product((None, 1.0, 2.0), repeat=3))
    for i, (flags, (a, b, c)) in enumerate(itertools.product(flag_values, time_values)):
        row: dict[str, Any] = dict(zip(FLAGS, flags, strict=True))
        # enacted/policed vs updated vs the other side's mark: all orders, NULLs included.
        row.update(enacted=a, policed=a, updated=b, changed_by_policy=c, changed_by_step=c)
        row["id"] = i + 1
        rows.append(row)
    return rows


@pytest.mark.parametrize("which", PENDING)
def test_row_is_pending_agrees_with_the_sql(which: str) -> None:
    table_meta = sa.MetaData()
    table = sa.Table(
        "t",
        table_meta,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(name, sa.Boolean) for name in FLAGS),
        *(sa.Column(name, sa.Float) for name in TIMES),
    )
    engine = sa.create_engine("sqlite://")
    rows = grid()
    with engine.begin() as conn:
        table_meta.create_all(conn)
        conn.execute(table.insert(), rows)
        where = pending_condition(which, table.c.__getitem__)
        by_sql = [r.id for r in conn.execute(sa.select(table.c.id).where(where).order_by(table.c.id))]
    by_python = [row["id"] for row in rows if row_is_pending(row, which)]
    assert by_python == by_sql
    assert 0 < len(by_sql) < len(rows)  # the grid has rows on both sides
    engine.dispose()


def test_row_is_pending_examples() -> None:
    fresh = {"deleted": False, "no_sync": False, "lazy_blocked": False, "enacted": None, "updated": 1.0}
    assert row_is_pending(fresh, "sync")
    assert not row_is_pending({**fresh, "enacted": 1.0}, "sync")
    assert row_is_pending({**fresh, "enacted": 1.0, "changed_by_policy": 2.0}, "sync")
    assert not row_is_pending({**fresh, "no_sync": True}, "sync")
    gone = {"deleted": True, "backend_need_delete": True, "backend_need_reap": False}
    assert row_is_pending(gone, "sync_deleted")
    assert not row_is_pending({**gone, "backend_need_reap": True}, "sync_deleted")
    live = {"deleted": False, "no_policy": False}
    assert row_is_pending({**live, "policed": None}, "policy")
    assert not row_is_pending({**live, "policed": 2.0, "updated": 1.0}, "policy")
    assert row_is_pending({**live, "deleted": True, "policed": 1.0, "updated": 2.0}, "policy_deleted")
