"""The store: model objects in SQL tables, with the bookkeeping rules of the original.

One class serves SQLite (the embedded default, a WAL file) and PostgreSQL, both
through SQLAlchemy Core. Every write runs in one transaction with its journal
entry and is published as a :class:`ChangeNotice` after the commit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.pool import StaticPool

from actors.models import FieldSpec, Schema

from ._notices import ChangeNotice, Notifier, Unsubscribe
from ._query import Caller, Condition, Pending, Query, WriteContext
from ._tables import Tables, pending_condition

__all__ = ["NotFound", "Row", "Store", "StoreError", "ValidationError", "check_value"]

log = structlog.get_logger("actors.store")

Row = dict[str, Any]

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**63 - 1),
}


class StoreError(Exception):
    """Base of the store's own errors."""


class ValidationError(StoreError, ValueError):
    """A value, field or model that the schema does not allow; the message names it."""


class NotFound(StoreError, LookupError):
    """No object of that model with that id."""


class Store:
    """Model objects for one :class:`~actors.models.Schema` in one database.

    ``url`` is an SQLAlchemy URL: ``sqlite:///path/to/file.db`` (the folder is
    created), ``sqlite://`` (memory, for tests) or ``postgresql+psycopg://...``.
    ``clock`` gives the timestamps written into bookkeeping fields.
    """

    def __init__(
        self,
        url: str,
        schema: Schema,
        *,
        clock: Callable[[], float] = time.time,
        journal_keep: int = 100_000,
    ) -> None:
        self.url = url
        self._clock = clock
        self._last_now = 0.0
        self._journal_keep = journal_keep
        self._writes = 0
        self._notifier = Notifier()
        self._write_lock = threading.RLock()
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        self._shared_connection = isinstance(self.engine.pool, StaticPool)
        self._set_schema(schema)
        self.migrate()

    # -- schema ---------------------------------------------------------------
    def _set_schema(self, schema: Schema) -> None:
        self.schema = schema
        self.tables = Tables(schema)
        self._joins: dict[str, tuple[sa.FromClause, dict[str, sa.ColumnElement]]] = {}
        self._by_id: dict[tuple[str, bool], sa.Select[Any]] = {}
        self._updates: dict[str, sa.Update] = {}
        self._inserts: dict[str, sa.Insert] = {}
        self._journal_insert = self.tables.journal.insert()
        self._bookkeeping = {
            m.name: {
                f.column
                for f in schema.fields(m.name).values()
                if f.options.get("bookkeeping_state") or f.options.get("feedback_state")
            }
            for m in schema.concrete()
        }

    def migrate(self) -> None:
        """Create missing tables, add missing columns (filled with their default), create indexes."""
        with self._write_lock, self.engine.begin() as conn:
            inspector = sa.inspect(conn)
            existing = set(inspector.get_table_names())
            for table in self.tables.metadata.sorted_tables:
                if table.name not in existing:
                    table.create(conn)
                    continue
                have = {c["name"] for c in inspector.get_columns(table.name)}
                for col in table.c:
                    if col.name in have:
                        continue
                    ddl = col.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" {ddl}')
                    default = self._default_for_column(table, col.name)
                    if default is not None:
                        conn.execute(table.update().values({col.name: default}))
                    log.info("column added", table=table.name, column=col.name)
                indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
                for index in table.indexes:
                    if index.name not in indexes:
                        index.create(conn)

    def _default_for_column(self, table: sa.Table, column: str) -> Any:
        for spec in self.schema.concrete():
            if self.tables.by_model.get(spec.name) is table:
                for f in self.schema.own_fields(spec.name):
                    if f.column == column:
                        return f.default
        return None

    def set_schema(self, schema: Schema) -> None:
        """Switch to a schema that adds models or fields; tables are extended, nothing is dropped."""
        with self._write_lock:
            old = self.schema
            self._set_schema(schema)
            try:
                self.migrate()
            except Exception:
                self._set_schema(old)
                raise

    def close(self) -> None:
        self.engine.dispose()

    # -- helpers --------------------------------------------------------------
    def now(self) -> float:
        """A timestamp from the clock, strictly greater than every one given before."""
        with self._write_lock:
            now = max(self._clock(), self._last_now + 1e-6)
            self._last_now = now
            return now

    def _check_model(self, model: str) -> None:
        if model not in self.tables.by_model:
            if model in self.schema:
                raise ValidationError(f"model {model} is abstract and has no objects")
            raise ValidationError(f"unknown model {model!r}")

    def _join(self, model: str) -> tuple[sa.FromClause, dict[str, sa.ColumnElement]]:
        cached = self._joins.get(model)
        if cached is not None:
            return cached
        self._check_model(model)
        chain = self.tables.chain(model)
        root = chain[0]
        joined: sa.FromClause = root
        columns: dict[str, sa.ColumnElement] = {}
        for table in chain:
            if table is not root:
                joined = joined.join(table, table.c.id == root.c.id)
            for col in table.c:
                columns.setdefault(col.name, col)
        self._joins[model] = (joined, columns)
        return joined, columns

    def _select_by_id(self, model: str, *, for_update: bool = False) -> sa.Select[Any]:
        """``SELECT <model's columns> WHERE id = :_id``, built once (statement building is costly)."""
        key = (model, for_update)
        stmt = self._by_id.get(key)
        if stmt is None:
            joined, columns = self._join(model)
            stmt = (
                sa.select(*columns.values()).select_from(joined).where(columns["id"] == sa.bindparam("_id"))
            )
            if for_update and self.dialect == "postgresql":
                stmt = stmt.with_for_update()
            self._by_id[key] = stmt
        return stmt

    def _update_stmt(self, table: sa.Table) -> sa.Update:
        """``UPDATE table SET <the given columns> WHERE id = :_id``, built once per table."""
        stmt = self._updates.get(table.name)
        if stmt is None:
            stmt = self._updates[table.name] = table.update().where(table.c.id == sa.bindparam("_id"))
        return stmt

    def _insert_stmt(self, table: sa.Table) -> sa.Insert:
        stmt = self._inserts.get(table.name)
        if stmt is None:
            stmt = self._inserts[table.name] = table.insert()
        return stmt

    def _fields_by_column(self, model: str) -> dict[str, FieldSpec]:
        return {f.column: f for f in self.schema.fields(model).values()}

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        # One in-memory database is one shared connection: its users take turns.
        lock = self._write_lock if self._shared_connection else nullcontext()
        with lock, self.engine.connect().execution_options(actors_read=True) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[tuple[sa.Connection, list[ChangeNotice]]]:
        notices: list[ChangeNotice] = []
        with self._write_lock:
            with self.engine.connect().execution_options(actors_immediate=True) as conn, conn.begin():
                yield conn, notices
            self._writes += 1
            if self._writes % 1000 == 0:
                self._prune_journal()
        self._notifier.publish(notices)

    def _journal(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        model: str,
        id: int,
        kind: str,
        at: float,
        origin: str | None = None,
    ) -> None:
        result = conn.execute(
            self._journal_insert, {"model": model, "object_id": id, "kind": kind, "at": at, "origin": origin}
        )
        seq = result.inserted_primary_key[0] if result.inserted_primary_key else 0
        notices.append(ChangeNotice(seq=int(seq), model=model, id=id, kind=kind, at=at, origin=origin))

    def _prune_journal(self) -> None:
        journal = self.tables.journal
        with self.engine.begin() as conn:
            last = conn.execute(sa.select(sa.func.max(journal.c.seq))).scalar() or 0
            conn.execute(journal.delete().where(journal.c.seq <= last - self._journal_keep))

    # -- validation -----------------------------------------------------------
    def coerce(self, model: str, column: str, value: Any) -> Any:
        """``value`` checked against ``model.column``; raises :class:`ValidationError`."""
        f = self._fields_by_column(model).get(column)
        if f is None:
            if column == "id":
                if value is None or (isinstance(value, int) and not isinstance(value, bool)):
                    return value
                raise ValidationError(f"{model}.id: expected an integer, got {value!r}")
            raise ValidationError(f"model {model} has no field {column!r}")
        return check_value(model, f, value)

    # -- reads ----------------------------------------------------------------
    def get(self, model: str, id: int) -> Row | None:
        """The object (deleted or not) or ``None``."""
        stmt = self._select_by_id(model)
        with self._read() as conn:
            row = conn.execute(stmt, {"_id": id}).mappings().first()
        return dict(row) if row is not None else None

    def select(self, model: str, query: Query = Query()) -> list[Row]:
        joined, columns = self._join(model)
        stmt = sa.select(*columns.values()).select_from(joined).where(*self._where(model, query, columns))
        order = []
        for key in query.order_by or ("id",):
            desc = key.startswith("-")
            name = key.lstrip("-")
            col = self._column(model, columns, name)
            order.append(col.desc() if desc else col.asc())
        stmt = stmt.order_by(*order)
        if query.limit is not None:
            stmt = stmt.limit(query.limit)
        if query.offset:
            stmt = stmt.offset(query.offset)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def count(self, model: str, query: Query = Query()) -> int:
        joined, columns = self._join(model)
        stmt = sa.select(sa.func.count()).select_from(joined).where(*self._where(model, query, columns))
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def pending(self, model: str, which: Pending | str, *, limit: int | None = None) -> list[Row]:
        """Objects of ``model`` (and models derived from it) that one of the four queries selects."""
        joined, columns = self._join(model)
        if not self.tables.has_bookkeeping(model):
            return []
        root = self.tables.chain(model)[0]
        cond = pending_condition(Pending(which).value, lambda n: root.c[n])
        stmt = sa.select(*columns.values()).select_from(joined).where(cond).order_by(root.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def _column(self, model: str, columns: Mapping[str, sa.ColumnElement], name: str) -> sa.ColumnElement:
        col = columns.get(name)
        if col is None:
            f = self.schema.fields(model).get(name)
            col = columns.get(f.column) if f is not None else None
        if col is None:
            raise ValidationError(f"model {model} has no field {name!r}")
        return col

    def _where(
        self, model: str, query: Query, columns: Mapping[str, sa.ColumnElement]
    ) -> list[sa.ColumnElement[bool]]:
        out = [self._condition(model, columns, c) for c in query.where]
        for c in query.exclude:
            cond = self._condition(model, columns, c)
            col = self._column(model, columns, c.column)
            # Like Django, ``exclude(x=v)`` keeps rows where x is NULL; excluding NULL itself does not.
            is_null_test = c.op == "isnull" or (c.op == "eq" and c.value is None)
            out.append(sa.not_(cond) if is_null_test else sa.or_(sa.not_(cond), col.is_(None)))
        return out

    def _condition(
        self, model: str, columns: Mapping[str, sa.ColumnElement], cond: Condition
    ) -> sa.ColumnElement[bool]:
        col = self._column(model, columns, cond.column)
        op, value = cond.op, cond.value
        if op == "isnull":
            return col.is_(None) if value else col.is_not(None)
        if op == "in":
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ValidationError(f"{model}.{cond.column}__in: expected a list, got {value!r}")
            values = [self.coerce(model, col.name, v) for v in value]
            return col.in_(values)
        if op in ("iexact", "contains", "icontains"):
            if not isinstance(value, str):
                raise ValidationError(f"{model}.{cond.column}__{op}: expected a string, got {value!r}")
            if op == "iexact":
                return sa.func.lower(col) == value.lower()
            if op == "contains":
                if self.dialect == "sqlite":  # SQLite's LIKE ignores case: use instr() to keep it
                    return sa.func.instr(col, value) > 0
                return col.contains(value, autoescape=True)
            return col.icontains(value, autoescape=True)
        if value is None:
            if op != "eq":
                raise ValidationError(f"{model}.{cond.column}__{op}: cannot compare with None")
            return col.is_(None)
        value = self.coerce(model, col.name, value) if col.name != "id" else _as_id(model, value)
        if op == "eq":
            return col == value
        if op == "gt":
            return col > value
        if op == "gte":
            return col >= value
        if op == "lt":
            return col < value
        if op == "lte":
            return col <= value
        raise ValidationError(f"unknown lookup operator {op!r}")

    # -- writes ---------------------------------------------------------------
    def create(self, model: str, values: Mapping[str, Any], ctx: WriteContext = WriteContext()) -> Row:
        """Insert an object; returns every column of it, ``id`` included."""
        self._check_model(model)
        fields = self._fields_by_column(model)
        row: Row = {}
        for column, value in values.items():
            if column == "id" and value is None:
                continue
            row[column] = self.coerce(model, column, value)
        for column, f in fields.items():
            if column not in row:
                row[column] = f.default
        self._check_required(model, row, fields)
        now = self.now()
        if "created" in fields:
            row["created"] = now
        if "updated" in fields:
            row["updated"] = now
        if "leaf_model_name" in fields:
            row["leaf_model_name"] = model
        self._stamp(model, row, ctx, now, set(values))
        with self._write() as (conn, notices):
            for table in self.tables.chain(model):
                part = {c.name: row[c.name] for c in table.c if c.name in row}
                result = conn.execute(self._insert_stmt(table), part)
                if "id" not in row:
                    key = result.inserted_primary_key
                    assert key is not None
                    row["id"] = int(key[0])
            self._journal(conn, notices, model, row["id"], "create", now, ctx.origin)
        return row

    def update(
        self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext = WriteContext()
    ) -> Row:
        """Write ``values`` (or only ``ctx.update_fields`` of them); returns the columns written.

        The bookkeeping rules apply: a client write bumps ``updated``; a synchronizer
        write does not unless ``ctx.always_update_timestamp``; a step's write of a
        non-bookkeeping field sets ``changed_by_step``, a policy's ``changed_by_policy``.
        A deleted object whose deletion is complete is purged.
        """
        self._check_model(model)
        id = _as_id(model, id)
        if ctx.update_fields is not None:
            for name in ctx.update_fields:
                if name not in self._fields_by_column(model):
                    raise ValidationError(f"model {model} has no field {name!r}")
            values = {k: v for k, v in values.items() if k in ctx.update_fields}
        changes: Row = {}
        for column, value in values.items():
            if column == "id":
                if value is not None and value != id:
                    raise ValidationError(f"{model}.id cannot be changed")
                continue
            changes[column] = self.coerce(model, column, value)
        changes.pop("leaf_model_name", None)
        with self._write() as (conn, notices):
            current = self._locked_row(conn, model, id)
            now = self.now()
            if "updated" in current and (ctx.caller is Caller.CLIENT or ctx.always_update_timestamp):
                changes["updated"] = now
            self._stamp(model, changes, ctx, now, set(changes))
            self._write_columns(conn, model, id, changes)
            self._journal(conn, notices, self._leaf(current, model), id, "update", now, ctx.origin)
            if current.get("deleted"):
                self._reap_if_done(
                    conn, notices, self._leaf(current, model), {**current, **changes}, now, ctx.origin
                )
        return changes

    def delete(self, model: str, id: int, ctx: WriteContext = WriteContext(), *, purge: bool = False) -> None:
        """Soft-delete (``deleted = True``), or remove the rows at once with ``purge=True``.

        An object that never reached the backend and has no pending delete policy
        is purged at once.
        """
        self._check_model(model)
        id = _as_id(model, id)
        with self._write() as (conn, notices):
            current = self._locked_row(conn, model, id)
            leaf = self._leaf(current, model)
            now = self.now()
            if purge or "deleted" not in current:
                self._purge(conn, notices, leaf, id, now, ctx.origin)
                return
            if current["deleted"]:
                return
            changes: Row = {"deleted": True, "enacted": None, "policed": None}
            if ctx.caller is Caller.CLIENT or ctx.always_update_timestamp:
                changes["updated"] = now
            self._write_columns(conn, model, id, changes)
            self._journal(conn, notices, leaf, id, "delete", now, ctx.origin)
            self._reap_if_done(conn, notices, leaf, {**current, **changes}, now, ctx.origin)

    def _leaf(self, row: Row, model: str) -> str:
        """The most derived model of a stored object (its rows span that model's chain)."""
        leaf = row.get("leaf_model_name")
        return leaf if isinstance(leaf, str) and leaf in self.tables.by_model else model

    def _locked_row(self, conn: sa.Connection, model: str, id: int) -> Row:
        row = conn.execute(self._select_by_id(model, for_update=True), {"_id": id}).mappings().first()
        if row is None:
            raise NotFound(f"{model} id {id} does not exist")
        return dict(row)

    def _write_columns(self, conn: sa.Connection, model: str, id: int, changes: Mapping[str, Any]) -> None:
        by_table: dict[str, dict[str, Any]] = {}
        owner = self.tables.column_table(model)
        for column, value in changes.items():
            by_table.setdefault(owner[column].name, {})[column] = value
        for table in self.tables.chain(model):
            part = by_table.get(table.name)
            if part:
                conn.execute(self._update_stmt(table), {"_id": id, **part})

    def _reap_if_done(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        model: str,
        row: Row,
        now: float,
        origin: str | None,
    ) -> None:
        """Purge a deleted object once its backend delete and delete policy (if owed) are done."""
        synced_away = not row.get("backend_need_delete") or row.get("backend_need_reap")
        policed_away = not row.get("backend_need_delete_policy") or row.get("policed") is not None
        if synced_away and policed_away:
            self._purge(conn, notices, model, row["id"], now, origin)

    def _purge(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        model: str,
        id: int,
        now: float,
        origin: str | None = None,
    ) -> None:
        for table in reversed(self.tables.chain(model)):
            conn.execute(table.delete().where(table.c.id == id))
        self._journal(conn, notices, model, id, "purge", now, origin)

    def _stamp(self, model: str, row: Row, ctx: WriteContext, now: float, written: set[str]) -> None:
        if ctx.caller not in (Caller.STEP, Caller.POLICY):
            return
        if not written - self._bookkeeping.get(model, set()) - {"id"}:
            return
        column = "changed_by_step" if ctx.caller is Caller.STEP else "changed_by_policy"
        if column in self._fields_by_column(model):
            row[column] = now

    @staticmethod
    def _check_required(model: str, row: Mapping[str, Any], fields: Mapping[str, FieldSpec]) -> None:
        for column, f in fields.items():
            if row.get(column) is None and not f.nullable:
                raise ValidationError(f"{model}.{f.name} is required")

    # -- notices --------------------------------------------------------------
    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe:
        """Call ``callback(notice)`` after every committed write, in the writer's thread."""
        return self._notifier.subscribe(callback)

    def changes_since(self, seq: int, limit: int = 1000) -> list[ChangeNotice]:
        """Journal entries after ``seq``, oldest first (at most ``limit``)."""
        journal = self.tables.journal
        stmt = sa.select(journal).where(journal.c.seq > seq).order_by(journal.c.seq).limit(limit)
        with self._read() as conn:
            return [
                ChangeNotice(seq=r.seq, model=r.model, id=r.object_id, kind=r.kind, at=r.at, origin=r.origin)
                for r in conn.execute(stmt)
            ]

    def last_seq(self) -> int:
        journal = self.tables.journal
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(journal.c.seq))).scalar() or 0)


def _as_id(model: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{model}.id: expected an integer, got {value!r}")
    return value


def check_value(model: str, f: FieldSpec, value: Any) -> Any:
    """``value`` checked (and ints widened to float) for field ``f``; :class:`ValidationError` if not."""
    where = f"{model}.{f.column}"
    if value is None:
        if f.nullable:
            return None
        raise ValidationError(f"{where}: may not be null")
    if f.is_link:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where}: expected an object id (integer), got {value!r}")
        return value
    kind = f.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValidationError(f"{where}: expected a boolean, got {value!r}")
        return value
    if kind in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{where}: expected an integer, got {value!r}")
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise ValidationError(f"{where}: {value} is out of range for {kind}")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if value != value:  # SQLite would store NaN as NULL
            raise ValidationError(f"{where}: NaN is not allowed")
    elif kind in ("string", "text"):
        if not isinstance(value, str):
            raise ValidationError(f"{where}: expected a string, got {value!r}")
        if f.max_length is not None and len(value) > f.max_length:
            raise ValidationError(f"{where}: longer than max_length {f.max_length} ({len(value)} characters)")
        if "\x00" in value:
            raise ValidationError(f"{where}: NUL characters are not allowed")
    for bound, check in (("min_value", lambda v, b: v >= b), ("max_value", lambda v, b: v <= b)):
        limit = f.options.get(bound)
        if isinstance(limit, int | float) and not isinstance(limit, bool) and not check(value, limit):
            raise ValidationError(f"{where}: {value!r} is outside {bound} {limit}")
    choices = f.choices
    if choices and value not in {c[0] for c in choices} and value != f.default:
        allowed = ", ".join(repr(c[0]) for c in choices)
        raise ValidationError(f"{where}: {value!r} is not one of the choices ({allowed})")
    return value


def _make_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, future=True)
    database = parsed.database
    memory = not database or database == ":memory:"
    if not memory:
        folder = os.path.dirname(os.path.abspath(database or ""))
        os.makedirs(folder, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("actors_read"):
            return  # one SELECT needs no transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("actors_immediate") and not memory else "BEGIN")

    return engine
