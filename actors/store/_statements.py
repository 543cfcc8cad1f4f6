"""The statements a store runs, each built once: the one cache of a store's schema.

Building an SQLAlchemy statement costs far more than running it, so every statement
(select by id, insert and update per table, the pending queries, one per query shape)
and every row layout is built on first use and kept here. A schema change replaces the
whole object (see ``Store.set_schema``): nothing is reset piece by piece.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from actors.models import Schema

from ._bookkeeping import DELETION_STATE
from ._compile import finish, order_terms, where_terms
from ._errors import ValidationError
from ._pending import PENDING
from ._query import Query
from ._rows import Layout, Row, fetch_records
from ._tables import Tables

__all__ = ["DRIVER_CHUNK", "QUERY_SHAPES", "DriverSql", "Statements"]

#: At most this many query shapes are kept; shapes come from code, so this is a safety net.
QUERY_SHAPES = 4096
#: At most this many objects per batch statement (SQLite allows 32,766 parameters per statement).
DRIVER_CHUNK = 500


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
        return fetch_records(result, self.layout(model, tuple(result.keys())))

    def layout(self, model: str, keys: tuple[str, ...]) -> Layout:
        """The layout of rows of ``model``'s columns ``keys``, in that order."""
        key = ("layout", model, keys)
        layout = self._built.get(key)
        if layout is None:
            # SQLite stores booleans as 0/1; the other column types come back as they went in.
            fields = self.schema.fields_by_column(model) if self.dialect == "sqlite" else {}
            convert = [bool if k in fields and fields[k].kind == "bool" else None for k in keys]
            layout = self._built[key] = Layout(keys, convert)
        return layout

    def by_ids(self, model: str, dialect: sa.Dialect) -> tuple[str, Layout]:
        """PostgreSQL: the driver's SQL of ``SELECT <the columns> WHERE id = ANY(%(ids)s)``; the layout."""
        key = ("by ids", model)
        found = self._built.get(key)
        if found is None:
            ids = sa.bindparam("ids", type_=postgresql.ARRAY(sa.Integer))
            stmt = self.select_all(model).where(self.join(model)[1]["id"] == sa.any_(ids))
            layout = self.layout(model, tuple(stmt.selected_columns.keys()))
            found = self._built[key] = (str(stmt.compile(dialect=dialect)), layout)
        return found


class DriverSql:
    """The statements of a batch of writes as the driver's own SQL text, built once per shape.

    ``Store.write_batch`` runs them on the driver's cursor: through SQLAlchemy's execution
    path a ``SELECT`` of 32 rows by id cost 260 us of CPU, on the cursor 31 us (parameter
    processing, one ``fetchone`` per row, the expansion of ``IN``). Their values are the
    driver's own types (checked by the store before), their rows plain tuples. Only for
    SQLite (with ``RETURNING``, 3.35 and later) and PostgreSQL: see :meth:`of`.
    """

    @staticmethod
    def of(dialect: sa.Dialect) -> DriverSql | None:
        """The statements for ``dialect``, or ``None`` where the store writes one by one."""
        if dialect.name == "sqlite" and dialect.paramstyle == "qmark" and dialect.update_returning:
            return DriverSql(dialect, "?")
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            return DriverSql(dialect, "%s")
        return None

    def __init__(self, dialect: sa.Dialect, mark: str) -> None:
        self.mark = mark
        #: PostgreSQL: a batch's update of one set of columns and its journal entries are one
        #: statement over arrays (:meth:`update_journalled`), its text the same for any number of rows.
        self.arrays = dialect.name == "postgresql"
        self._dialect = dialect
        self._quote = dialect.identifier_preparer.quote
        self._lock_rows = " FOR UPDATE" if dialect.name == "postgresql" else ""
        self._built: dict[tuple[Any, ...], str] = {}

    def state_columns(self, table: sa.Table) -> tuple[str, ...]:
        """The columns of ``table`` a write reads back (``DELETION_STATE``), in the order of their rows."""
        return tuple(name for name in DELETION_STATE if name in table.c)

    def states(self, table: sa.Table, n: int) -> str:
        """``SELECT <state columns> FROM table WHERE id IN (n ids)`` (locked on PostgreSQL)."""
        return self._sql(
            ("states", table.name, n),
            lambda: (
                f"SELECT {self._names(self.state_columns(table))} FROM {self._quote(table.name)}"
                f" WHERE id IN ({self._marks(n)}){self._lock_rows}"
            ),
        )

    def update(self, table: sa.Table, columns: tuple[str, ...]) -> str:
        """``UPDATE table SET <columns> WHERE id = ?``: parameters are the values, then the id."""
        return self._sql(
            ("update", table.name, columns),
            lambda: f"UPDATE {self._quote(table.name)} SET {self._sets(columns)} WHERE id = {self.mark}",
        )

    def update_in(self, table: sa.Table, columns: tuple[str, ...], n: int) -> str:
        """``UPDATE table SET <columns> WHERE id IN (n ids) RETURNING <state columns>``: values, then ids."""
        return self._sql(
            ("update in", table.name, columns, n),
            lambda: (
                f"UPDATE {self._quote(table.name)} SET {self._sets(columns)}"
                f" WHERE id IN ({self._marks(n)}) RETURNING {self._names(self.state_columns(table))}"
            ),
        )

    def insert(self, table: sa.Table, columns: tuple[str, ...], n: int, returning: tuple[str, ...]) -> str:
        """``INSERT INTO table (<columns>) VALUES (...) x n RETURNING <returning>``."""
        row = f"({self._marks(len(columns))})"
        return self._sql(
            ("insert", table.name, columns, n, returning),
            lambda: (
                f"INSERT INTO {self._quote(table.name)} ({self._names(columns)})"
                f" VALUES {', '.join([row] * n)} RETURNING {self._names(returning)}"
            ),
        )

    def update_journalled(self, table: sa.Table, columns: tuple[str, ...], journal: sa.Table) -> str:
        """PostgreSQL: the rows' ``UPDATE`` and their journal ``INSERT`` in one statement, over arrays.

        Parameters by name (sent in binary: psycopg's text form of an array costs five
        times more), each an array with one item per row: ``v0``, ``v1``... the
        values of ``columns``; ``ids``, ``models``, ``ats`` and ``origins``, the objects and
        their entries; and ``known``, the names of the schema's models. Rows: the updated
        objects' state (:meth:`state_columns`), then their entry's ``seq`` and model (the
        row's ``leaf_model_name`` when it is one of ``known``, else the model the write
        named: see ``Writer.leaf``). The ids are matched twice, the second time with
        ``= ANY``: without it the planner joins the arrays to the whole table.
        """

        def build() -> str:
            name = self._quote(table.name)
            state = self.state_columns(table)
            id_type = self._array_type(table.c.id)
            arrays = [f"CAST(%(v{i})b AS {self._array_type(table.c[c])})" for i, c in enumerate(columns)]
            arrays += [f"CAST(%(ids)b AS {id_type})", "CAST(%(models)b AS VARCHAR[])"]
            arrays += ["CAST(%(ats)b AS FLOAT[])", "CAST(%(origins)b AS VARCHAR[])"]
            names = [self._quote(c) for c in columns] + [
                "actors_id",
                "actors_model",
                "actors_at",
                "actors_origin",
            ]
            sets = ", ".join(f"{self._quote(c)} = actors_v.{self._quote(c)}" for c in columns)
            leaf = "actors_u.actors_model"
            if "leaf_model_name" in state:
                leaf = (
                    "CASE WHEN actors_u.leaf_model_name = ANY(CAST(%(known)b AS VARCHAR[]))"
                    " THEN actors_u.leaf_model_name ELSE actors_u.actors_model END"
                )
            return (
                f"WITH actors_u AS (UPDATE {name} SET {sets}"
                f" FROM unnest({', '.join(arrays)}) AS actors_v({', '.join(names)})"
                f" WHERE {name}.id = actors_v.actors_id AND {name}.id = ANY(CAST(%(ids)b AS {id_type}))"
                f" RETURNING {', '.join(f'{name}.{self._quote(c)}' for c in state)},"
                " actors_v.actors_model, actors_v.actors_at, actors_v.actors_origin),"
                f" actors_j AS (INSERT INTO {self._quote(journal.name)} (model, object_id, kind, at, origin)"
                f" SELECT {leaf}, actors_u.id, 'update', actors_u.actors_at, actors_u.actors_origin"
                " FROM actors_u RETURNING seq, object_id, model)"
                f" SELECT {', '.join(f'actors_u.{self._quote(c)}' for c in state)},"
                " actors_j.seq, actors_j.model"
                " FROM actors_u JOIN actors_j ON actors_j.object_id = actors_u.id"
            )

        return self._sql(("update journalled", table.name, columns, journal.name), build)

    def _array_type(self, column: sa.Column[Any]) -> str:
        """The SQL type of an array of ``column``'s values (strings: no length, ``SET`` checks it)."""
        if isinstance(column.type, sa.String):
            return "VARCHAR[]"  # an explicit cast to VARCHAR(n) would cut a longer value short
        return f"{column.type.compile(dialect=self._dialect)}[]"

    def _sql(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        """The SQL text of ``key``, built once."""
        sql = self._built.get(key)
        if sql is None:
            sql = self._built[key] = build()
        return sql

    def _names(self, columns: tuple[str, ...]) -> str:
        return ", ".join(self._quote(c) for c in columns)

    def _sets(self, columns: tuple[str, ...]) -> str:
        return ", ".join(f"{self._quote(c)} = {self.mark}" for c in columns)

    def _marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)
