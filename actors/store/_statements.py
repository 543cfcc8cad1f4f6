"""The statements a store runs, each built once: the one cache of a store's schema.

Building an SQLAlchemy statement costs far more than running it, so every statement
(select by id, insert and update per table, the pending queries, one per query shape)
and every row layout is built on first use and kept here. A schema change replaces the
whole object (see ``Store.set_schema``): nothing is reset piece by piece.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from actors.models import Schema

from ._bookkeeping import DELETION_STATE
from ._compile import finish, order_terms, where_terms
from ._errors import ValidationError
from ._pending import PENDING
from ._query import Query
from ._rows import Layout, Row, fetch_records
from ._tables import Tables

__all__ = ["QUERY_SHAPES", "Statements"]

#: At most this many query shapes are kept; shapes come from code, so this is a safety net.
QUERY_SHAPES = 4096


class Statements:
    """Statements and row layouts over ``tables`` for ``dialect``, built on first use."""

    def __init__(self, schema: Schema, tables: Tables, dialect: str) -> None:
        self.schema = schema
        self.tables = tables
        self.dialect = dialect
        self._built: dict[tuple[Any, ...], Any] = {}
        self._shapes = 0

    def check_model(self, model: str) -> None:
        """``ValidationError`` unless ``model`` is a concrete model of the schema."""
        if model not in self.tables.by_model:
            if model in self.schema:
                raise ValidationError(f"model {model} is abstract and has no objects")
            raise ValidationError(f"unknown model {model!r}")

    def join(self, model: str) -> tuple[sa.FromClause, dict[str, sa.ColumnElement[Any]]]:
        """``model``'s tables joined, and its columns by name (see ``Tables.joined``)."""
        key = ("join", model)
        found = self._built.get(key)
        if found is None:
            self.check_model(model)
            found = self._built[key] = self.tables.joined(model)
        return found

    def select_all(self, model: str) -> sa.Select[Any]:
        """``SELECT <model's columns> FROM <its tables>``."""
        key = ("select", model)
        stmt = self._built.get(key)
        if stmt is None:
            joined, columns = self.join(model)
            stmt = self._built[key] = sa.select(*columns.values()).select_from(joined)
        return stmt

    def select_by_id(self, model: str, *, for_update: bool = False) -> sa.Select[Any]:
        """``SELECT <model's columns> WHERE id = :_id`` (``FOR UPDATE`` on PostgreSQL with ``for_update``)."""
        key = ("by id", model, for_update)
        stmt = self._built.get(key)
        if stmt is None:
            stmt = self.select_all(model).where(self.join(model)[1]["id"] == sa.bindparam("_id"))
            if for_update and self.dialect == "postgresql":
                stmt = stmt.with_for_update()
            self._built[key] = stmt
        return stmt

    def insert(self, table: sa.Table) -> sa.Insert:
        """``INSERT INTO table``."""
        key = ("insert", table.name)
        stmt = self._built.get(key)
        if stmt is None:
            stmt = self._built[key] = table.insert()
        return stmt

    def update(self, table: sa.Table) -> sa.Update:
        """``UPDATE table SET <the given columns> WHERE id = :_id``."""
        key = ("update", table.name)
        stmt = self._built.get(key)
        if stmt is None:
            stmt = self._built[key] = table.update().where(table.c.id == sa.bindparam("_id"))
        return stmt

    def update_returning(self, table: sa.Table) -> sa.Update:
        """``UPDATE table SET <given columns> WHERE id = :_id RETURNING <what a write needs next>``."""
        key = ("update returning", table.name)
        stmt = self._built.get(key)
        if stmt is None:
            wanted = [table.c[name] for name in DELETION_STATE if name in table.c]
            stmt = table.update().where(table.c.id == sa.bindparam("_id")).returning(*wanted)
            self._built[key] = stmt
        return stmt

    def update_in(self, table: sa.Table) -> sa.Update:
        """``UPDATE table SET <given columns> WHERE id IN :_ids RETURNING <what a write needs next>``.

        Many objects given the same values in one statement (the ``backend_need_delete`` mark of a batch).
        """
        key = ("update in", table.name)
        stmt = self._built.get(key)
        if stmt is None:
            wanted = [table.c[name] for name in DELETION_STATE if name in table.c]
            stmt = table.update().where(table.c.id.in_(sa.bindparam("_ids", expanding=True)))
            stmt = self._built[key] = stmt.returning(*wanted)
        return stmt

    def states(self, table: sa.Table) -> sa.Select[Any]:
        """``SELECT <what a write needs next> FROM table WHERE id IN :_ids`` (``FOR UPDATE`` on PostgreSQL).

        The batch form of :meth:`update_returning`'s ``RETURNING``: a batch of updates
        reads the state of its objects with it, before it writes them.
        """
        key = ("states", table.name)
        stmt = self._built.get(key)
        if stmt is None:
            wanted = [table.c[name] for name in DELETION_STATE if name in table.c]
            stmt = sa.select(*wanted).where(table.c.id.in_(sa.bindparam("_ids", expanding=True)))
            if self.dialect == "postgresql":
                stmt = stmt.with_for_update()
            self._built[key] = stmt
        return stmt

    def column_tables(self, model: str) -> dict[str, sa.Table]:
        """Column -> the table of ``model``'s chain that stores it."""
        key = ("column tables", model)
        owners = self._built.get(key)
        if owners is None:
            owners = self._built[key] = self.tables.column_table(model)
        return owners

    def pending(self, model: str, which: str) -> sa.Select[Any] | None:
        """Pending query ``which`` over ``model`` (by id); ``None`` for a model without bookkeeping."""
        key = ("pending", model, which)
        stmt = self._built.get(key)
        if stmt is None:
            self.join(model)
            if not self.tables.has_bookkeeping(model):
                return None
            root = self.tables.chain(model)[0]
            cond = PENDING[which].condition(root.c.__getitem__)
            stmt = self._built[key] = self.select_all(model).where(cond).order_by(root.c.id)
        return stmt

    def query(self, kind: str, model: str, query: Query) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The ``select`` (or ``count``) statement for ``query`` and its parameters (values checked)."""
        joined, columns = self.join(model)
        params: dict[str, Any] = {}
        shape, builders = where_terms(self.schema, self.dialect, model, query, columns, params)
        order: tuple[tuple[str, bool], ...] = ()
        if kind == "select":
            order = order_terms(self.schema, model, columns, query)
            if query.limit is not None:
                params["_limit"] = query.limit
            if query.offset:
                params["_offset"] = query.offset
        key = ("query", kind, model, shape, order, "_limit" in params, "_offset" in params)
        stmt = self._built.get(key)
        if stmt is None:
            base = (
                self.select_all(model) if kind == "select" else sa.select(sa.func.count()).select_from(joined)
            )
            stmt = finish(
                base, builders, order, columns, limit="_limit" in params, offset="_offset" in params
            )
            if self._shapes >= QUERY_SHAPES:
                self._built = {k: v for k, v in self._built.items() if k[0] != "query"}
                self._shapes = 0
            self._built[key] = stmt
            self._shapes += 1
        return stmt, params

    def records(self, model: str, result: sa.CursorResult[Any]) -> list[Row]:
        """The rows of a SELECT over ``model``'s columns, as read-only records."""
        keys = tuple(result.keys())
        key = ("layout", model, keys)
        layout = self._built.get(key)
        if layout is None:
            # SQLite stores booleans as 0/1; the other column types come back as they went in.
            fields = self.schema.fields_by_column(model) if self.dialect == "sqlite" else {}
            convert = [bool if k in fields and fields[k].kind == "bool" else None for k in keys]
            layout = self._built[key] = Layout(keys, convert)
        return fetch_records(result, layout)
