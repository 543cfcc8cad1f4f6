"""Tables from model specs: one table per concrete model, joined on ``id``.

The root of each inheritance chain (the first concrete model under the abstract
``XOSBase``) holds the bookkeeping columns; a derived model's table holds ``id``
and the fields its parent chain does not store. The four synchronizer queries
are partial indexes on the root table, so each is an index scan of just the
rows it returns. On SQLite those indexes are *covering*: they hold every column
of the root table (for the few rows they index), so the query reads its rows from
the index alone instead of looking each one up in the table.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa

from actors.models import FieldSpec, Schema

from ._pending import BOOKKEEPING, PENDING

__all__ = ["Tables", "column_type", "fk_name", "link_target", "pending_index_prefix"]

JOURNAL = "actors_changes"


def column_type(f: FieldSpec) -> sa.types.TypeEngine[Any]:
    if f.is_link:
        return sa.Integer()
    kind = f.kind
    if kind == "string":
        return sa.String(f.max_length) if f.max_length else sa.Text()
    if kind == "text":
        return sa.Text()
    if kind == "int32":
        return sa.Integer()
    if kind in ("uint32", "int64", "uint64"):  # uint32 goes past PostgreSQL's signed INTEGER
        return sa.BigInteger()
    if kind == "bool":
        return sa.Boolean(create_constraint=False)
    if kind in ("float", "double"):
        return sa.Float()
    raise ValueError(f"field {f.name}: no column type for {kind!r}")


class Tables:
    """SQLAlchemy ``Table`` objects for every concrete model of a schema.

    ``covering``: the pending indexes list every column of the root table (SQLite's
    way to an index-only scan). Their names end with a digest of those columns, so
    a table that gains a column gets a new index (see ``Store.migrate``).
    """

    #: Tables built for recent schemas, by what decides the tables (see :meth:`of`).
    _built: OrderedDict[tuple[str, bool], Tables] = OrderedDict()
    _built_lock = threading.Lock()
    CACHED = 16

    @classmethod
    def of(cls, schema: Schema, *, covering: bool = False) -> Tables:
        """``Tables(schema, covering=...)``, shared by every schema with the same declarations.

        Building the SQLAlchemy tables of the ~35 built-in models costs about as much as
        creating them in SQLite, and every store (every test, every ``set_schema``) used
        to build its own. The objects are never changed once built, so stores share them.
        """
        key = (_fingerprint(schema), covering)
        with cls._built_lock:
            tables = cls._built.get(key)
            if tables is not None:
                cls._built.move_to_end(key)
                return tables
        tables = cls(schema, covering=covering)
        with cls._built_lock:
            cls._built[key] = tables
            while len(cls._built) > cls.CACHED:
                cls._built.popitem(last=False)
        return tables

    def __init__(self, schema: Schema, *, covering: bool = False) -> None:
        self.schema = schema
        self.covering = covering
        self.metadata = sa.MetaData()
        self.journal = sa.Table(
            JOURNAL,
            self.metadata,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("model", sa.String(255), nullable=False),
            sa.Column("object_id", sa.Integer, nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("origin", sa.String(255), nullable=True),
        )
        self.by_model = {spec.name: self._table(spec.name) for spec in schema.concrete()}

    @staticmethod
    def table_name(model: str) -> str:
        return f"m_{model.lower()}"

    def _table(self, model: str) -> sa.Table:
        schema = self.schema
        is_root = schema.parent(model) is None
        name = self.table_name(model)
        columns: list[sa.schema.SchemaItem] = [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=is_root)
        ]
        for f in schema.own_fields(model):
            columns.append(
                sa.Column(
                    f.column,
                    column_type(f),
                    *self._foreign_key(name, f),
                    nullable=True,
                    index=bool(f.options.get("db_index")) or f.is_link,
                )
            )
        # AUTOINCREMENT: SQLite never gives a purged object's id again (PostgreSQL's sequences never do).
        table = sa.Table(name, self.metadata, *columns, sqlite_autoincrement=is_root)
        if is_root and all(name in table.c for name in BOOKKEEPING):
            indexed, suffix = [table.c.id], ""
            if self.covering:
                indexed = list(table.c)
                suffix = f"_{zlib.crc32(' '.join(c.name for c in indexed).encode()):08x}"
            for which, query in PENDING.items():
                where = query.condition(table.c.__getitem__)
                sa.Index(
                    f"{pending_index_prefix(table.name)}{which}{suffix}",
                    *indexed,
                    sqlite_where=where,
                    postgresql_where=where,
                )
        return table

    def _foreign_key(self, table: str, f: FieldSpec) -> list[sa.ForeignKey]:
        """The foreign key of link ``f`` (none for a link to an abstract model, which has no table).

        Deferred to the commit, so the writes of one transaction may come in any order;
        ``use_alter``: SQLite writes it into ``CREATE TABLE``, PostgreSQL gets it from
        ``ALTER TABLE`` once every table exists (see ``add_postgres_keys``).
        """
        model = link_target(self.schema, f)
        if model is None:
            return []
        target = f"{self.table_name(model)}.id"
        name = fk_name(table, f.column)
        return [sa.ForeignKey(target, name=name, deferrable=True, initially="DEFERRED", use_alter=True)]

    def has_bookkeeping(self, model: str) -> bool:
        root = self.by_model[self.schema.root(model)]
        return all(name in root.c for name in BOOKKEEPING)

    def chain(self, model: str) -> list[sa.Table]:
        return [self.by_model[m] for m in self.schema.chain(model)]

    def joined(self, model: str) -> tuple[sa.FromClause, dict[str, sa.ColumnElement[Any]]]:
        """``model``'s chain of tables joined on ``id``, and its columns by name (``id`` is the root's)."""
        chain = self.chain(model)
        root = chain[0]
        joined: sa.FromClause = root
        columns: dict[str, sa.ColumnElement[Any]] = {}
        for table in chain:
            if table is not root:
                joined = joined.join(table, table.c.id == root.c.id)
            for col in table.c:
                columns.setdefault(col.name, col)
        return joined, columns

    def column_table(self, model: str) -> dict[str, sa.Table]:
        """Column name -> the table of ``model``'s chain that stores it (the root's ``id``)."""
        return {col.name: table for table in reversed(self.chain(model)) for col in table.c}


def _fingerprint(schema: Schema) -> str:
    """Every declaration of ``schema`` that tables depend on (not where it was declared)."""
    return repr(
        [
            (
                spec.name,
                spec.bases,
                sorted(spec.options.items(), key=repr),
                [
                    (f.name, f.kind, f.modifier, sorted(f.options.items(), key=repr), f.link)
                    for f in spec.fields
                ],
            )
            for spec in schema
        ]
    )


def link_target(schema: Schema, f: FieldSpec) -> str | None:
    """The model link ``f`` names if it has a table (an abstract one has none); ``None`` for other fields."""
    link = f.link
    if link is None or link.model not in schema or schema[link.model].abstract:
        return None
    return link.model


def fk_name(table: str, column: str) -> str:
    """A foreign key's name: ``fk_<table>_<column>``, shortened under PostgreSQL's 63 characters."""
    name = f"fk_{table}_{column}"
    if len(name) > 63:
        name = f"{name[:54]}_{zlib.crc32(name.encode()):08x}"
    return name


def pending_index_prefix(table: str) -> str:
    """What the names of ``table``'s pending indexes start with."""
    return f"ix_{table}_pending_"
