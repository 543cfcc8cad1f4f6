"""The store: model objects in SQL tables, with the bookkeeping rules of the original.

One class serves SQLite (the embedded default, a WAL file) and PostgreSQL, both
through SQLAlchemy Core. Every write runs in one transaction with its journal
entry and is published as a :class:`ChangeNotice` after the commit.
"""

from __future__ import annotations

import operator
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from actors.logs import get_logger
from actors.models import FieldSpec, Schema

from ._cascade import DELETION_STATE, cascade_delete, fill_owner, soft_delete
from ._errors import NotFound, StoreError, ValidationError
from ._integrity import (
    add_postgres_keys,
    dangling_links,
    lock_targets,
    migrate_sqlite,
    purge,
    reap_blocked,
    reap_ready,
    refuse_deleted,
    rules,
    sqlite_reference,
)
from ._listen import CHANNEL, NOTIFY, PostgresListener, notify_payload
from ._notices import ChangeNotice, Notifier, Unsubscribe
from ._open import check_database, claim_file, open_errors
from ._owner import OwnerLock
from ._pending import pending_condition
from ._query import Caller, Condition, Pending, Query, WriteContext, number_from_text
from ._rows import Layout, Row, fetch_records
from ._tables import Tables, pending_index_prefix

__all__ = ["NotFound", "Store", "StoreError", "ValidationError", "check_column", "check_id", "check_value"]

log = get_logger("actors.store")

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**63 - 1),
}


#: How many locally published seqs are remembered (so the PostgreSQL listener does not
#: publish them again), and how many journal entries one catch-up query reads.
SEEN_KEEP = 100_000
CATCH_UP_BATCH = 1000
#: A seq that the journal skipped over may still commit (sequence values are taken
#: before the commit): it is looked up again at every wake for this long, at most
#: GAP_KEEP of them (a rolled-back write leaves a seq that never comes).
GAP_SECONDS = 60.0
GAP_KEEP = 10_000

#: How much of an SQLite file each connection reads through a memory map instead of
#: read() calls. The mapping is the operating system's shared page cache, not memory
#: of ours; a query that visits a thousand scattered rows takes a tenth to a third less.
SQLITE_MMAP_BYTES = 256 * 1024 * 1024


class Store:
    """Model objects for one :class:`~actors.models.Schema` in one database.

    ``url`` is an SQLAlchemy URL: ``sqlite:///path/to/file.db`` (the folder is
    created), ``sqlite://`` (memory, for tests) or ``postgresql+psycopg://...``.
    ``clock`` gives the timestamps written into bookkeeping fields.
    ``exclusive`` makes this store the file's one owner (synchronizers and cores
    open theirs so): another exclusive opener of the same SQLite file, in any
    process, gets :class:`StoreInUse` until this one is closed or its process ends.
    A database that cannot be opened or used raises :class:`StoreOpenError`.
    """

    def __init__(
        self,
        url: str,
        schema: Schema,
        *,
        clock: Callable[[], float] = time.time,
        journal_keep: int = 100_000,
        exclusive: bool = False,
    ) -> None:
        rules(schema)  # a link's on_delete the store cannot honour fails before anything is opened
        self.url = url
        self._clock = clock
        self._last_now = 0.0
        self._journal_keep = journal_keep
        self._writes = 0
        self._notifier = Notifier()
        self._write_lock = threading.RLock()
        self._writer: sa.Connection | None = None  # see _write_connection
        self._owner: OwnerLock | None = None
        with open_errors(url, on_error=self._release_owner):
            self._owner = claim_file(url, exclusive=exclusive)
            self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        self._shared_connection = isinstance(self.engine.pool, StaticPool)
        self._listener: PostgresListener | None = None
        self._cursor = 0
        self._gaps: dict[int, float] = {}  # seq -> when to stop looking for it
        self._catch_up_lock = threading.Lock()
        self._me: int | None = None  # this process's replica id; see replicas()
        self._groups: Counter[str] = Counter()
        self._members: dict[str, frozenset[int]] = {}
        self._before: dict[str, frozenset[int]] = {}  # each group's replicas before its last change
        self._claimers: list[sa.Connection] = []  # see claim()
        self._claimers_lock = threading.Lock()
        #: Grows by one whenever the replicas of a group (see :meth:`spread`) change.
        self.replicas_epoch = 0
        self._seen_lock = threading.Lock()
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._set_schema(schema)
        with open_errors(url, on_error=self.close):
            check_database(url, self.engine)
            self.migrate()

    # -- schema ---------------------------------------------------------------
    def _set_schema(self, schema: Schema) -> None:
        rules(schema)  # every link's on_delete is one the store knows
        self.schema = schema
        self.tables = Tables.of(schema, covering=self.dialect == "sqlite")
        self._joins: dict[str, tuple[sa.FromClause, dict[str, sa.ColumnElement]]] = {}
        self._by_id: dict[tuple[str, bool], sa.Select[Any]] = {}
        self._updates: dict[str, sa.Update] = {}
        self._inserts: dict[str, sa.Insert] = {}
        self._selects: dict[str, sa.Select[Any]] = {}
        self._pending: dict[tuple[str, str], sa.Select[Any]] = {}
        self._layouts: dict[tuple[str, tuple[str, ...]], Layout] = {}
        self._default_values: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, dict[str, sa.Table]] = {}
        #: select/count statements by query shape; values are bound parameters.
        self._queries: dict[tuple[Any, ...], sa.Select[Any]] = {}
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
        """Create missing tables, add missing columns (filled with their default), create indexes.

        A pending index that no longer lists the table's columns (it gained one) is
        replaced: the new one is created, the old one dropped. Links get their foreign
        keys (SQLite tables made before them are rebuilt, see ``migrate_sqlite``).
        """
        if self.dialect == "sqlite":
            with self._write_lock:
                migrate_sqlite(self)
        with self._write_lock, self.engine.begin() as conn:
            if self.dialect == "postgresql":  # one process at a time changes the tables
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(b"actors migrate")}
                )
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
                    if self.dialect == "sqlite":
                        ddl += sqlite_reference(col)
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" {ddl}')
                    default = self._default_for_column(table, col.name)
                    if default is not None:
                        conn.execute(table.update().values({col.name: default}))
                    log.info("column added", table=table.name, column=col.name)
                indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
                for index in table.indexes:
                    if index.name not in indexes:
                        index.create(conn)
                stale = indexes - {index.name for index in table.indexes}
                for name in stale:
                    if name and name.startswith(pending_index_prefix(table.name)):
                        conn.exec_driver_sql(f'DROP INDEX "{name}"')
            if self.dialect == "postgresql":
                add_postgres_keys(self, conn)

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
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        with self._claimers_lock:
            for conn in self._claimers:
                conn.close()
            self._claimers.clear()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()
        self._release_owner()

    def _release_owner(self) -> None:
        if self._owner is not None:
            self._owner.release()
            self._owner = None

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
            stmt = self._select_all(model).where(self._join(model)[1]["id"] == sa.bindparam("_id"))
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

    def _records(self, model: str, result: sa.CursorResult[Any]) -> list[Row]:
        """The rows of a SELECT over ``model``'s columns, as read-only records."""
        keys = tuple(result.keys())
        layout = self._layouts.get((model, keys))
        if layout is None:
            # SQLite stores booleans as 0/1; the other column types come back as they went in.
            fields = self.schema.fields_by_column(model) if self.dialect == "sqlite" else {}
            convert = [bool if key in fields and fields[key].kind == "bool" else None for key in keys]
            layout = self._layouts[(model, keys)] = Layout(keys, convert)
        return fetch_records(result, layout)

    def _defaults(self, model: str) -> dict[str, Any]:
        """Column -> default value of every field of ``model``, built once per model."""
        defaults = self._default_values.get(model)
        if defaults is None:
            defaults = self._default_values[model] = {
                column: f.default for column, f in self.schema.fields_by_column(model).items()
            }
        return defaults

    def _select_all(self, model: str) -> sa.Select[Any]:
        """``SELECT <model's columns> FROM <its tables>``, built once per model."""
        stmt = self._selects.get(model)
        if stmt is None:
            joined, columns = self._join(model)
            stmt = self._selects[model] = sa.select(*columns.values()).select_from(joined)
        return stmt

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        # One in-memory database is one shared connection: its users take turns.
        lock = self._write_lock if self._shared_connection else nullcontext()
        with lock, self.engine.connect().execution_options(actors_read=True) as conn:
            yield conn

    @contextmanager
    def _write_connection(self) -> Iterator[sa.Connection]:
        """The connection of one write; the caller holds the write lock.

        On an SQLite file, writes take turns anyway (one writer at a time), so one
        connection is kept for all of them: a pool checkout per write cost as much as
        the INSERT. Elsewhere each write checks one out of the pool.
        """
        if self.dialect != "sqlite" or self._shared_connection:
            with self.engine.connect().execution_options(actors_immediate=True) as conn:
                yield conn
            return
        if self._writer is None or self._writer.closed or self._writer.invalidated:
            self._writer = self.engine.connect().execution_options(actors_immediate=True)
        yield self._writer

    @contextmanager
    def _write(self) -> Iterator[tuple[sa.Connection, list[ChangeNotice]]]:
        notices: list[ChangeNotice] = []
        with self._write_lock:
            with self._write_connection() as conn, conn.begin():
                yield conn, notices
                self._remember(notices)  # before the commit: the listener may wake right after it
                if self.shared and notices:
                    conn.exec_driver_sql(NOTIFY, (CHANNEL, notify_payload(notices)))
            self._writes += 1
            if self._writes % 1000 == 0:
                self._prune_journal()
        self._notifier.publish(notices)

    def _remember(self, notices: list[ChangeNotice]) -> None:
        """Seqs published from this process, so the listener does not publish them twice."""
        if self._listener is not None:
            with self._seen_lock:
                for notice in notices:
                    self._seen.add(notice.seq)
                    self._seen_order.append(notice.seq)
                while len(self._seen_order) > SEEN_KEEP:
                    self._seen.discard(self._seen_order.popleft())

    def _catch_up(self, delivered: list[ChangeNotice] | None = None) -> None:
        """Publish the journal entries other processes wrote since the last look (PostgreSQL only).

        The cursor is the highest seq read, this process's own entries included, so a
        look reads only entries after it, in batches of :data:`CATCH_UP_BATCH`. Sequence
        values can commit out of order (a writer takes its seq before it commits): a seq
        passed over is a gap, looked up again at each wake for :data:`GAP_SECONDS`.
        ``delivered``: the entries that committed since the last wake, as the listener
        got them (``NOTIFY`` payloads, in commit order); then nothing is read, and a gap
        is filled when its own payload comes.
        """
        journal = self.tables.journal
        with self._catch_up_lock:
            if delivered is not None:
                for notice in delivered:
                    self._gaps.pop(notice.seq, None)
                self._advance(sorted(delivered, key=lambda n: n.seq), time.monotonic())
                with self._seen_lock:
                    news = [n for n in delivered if n.seq not in self._seen]
                self._remember(news)
                self._notifier.publish(news)
                return
            now = time.monotonic()
            for seq in [seq for seq, until in self._gaps.items() if until <= now]:
                del self._gaps[seq]
            fresh: list[ChangeNotice] = []
            while True:
                after = journal.c.seq > self._cursor
                where = sa.or_(after, journal.c.seq.in_(list(self._gaps))) if self._gaps else after
                stmt = sa.select(journal).where(where).order_by(journal.c.seq).limit(CATCH_UP_BATCH)
                with self._read() as conn:
                    read = [
                        ChangeNotice(r.seq, r.model, r.object_id, r.kind, r.at, r.origin)
                        for r in conn.execute(stmt)
                    ]
                for notice in read:
                    self._gaps.pop(notice.seq, None)
                self._advance(read, now)
                fresh.extend(read)
                if len(read) < CATCH_UP_BATCH:
                    break
            with self._seen_lock:
                fresh = [n for n in fresh if n.seq not in self._seen]
            self._remember(fresh)
            self._notifier.publish(fresh)

    def _advance(self, read: list[ChangeNotice], now: float) -> None:
        """Move the cursor to the last seq of ``read``; the seqs it skips that are not ours are gaps."""
        if not read or read[-1].seq <= self._cursor:
            return
        top = read[-1].seq
        got = {n.seq for n in read}
        with self._seen_lock:
            for seq in range(max(self._cursor + 1, top - GAP_KEEP), top):
                if seq not in got and seq not in self._seen:
                    self._gaps[seq] = now + GAP_SECONDS
        while len(self._gaps) > GAP_KEEP:
            del self._gaps[next(iter(self._gaps))]
        self._cursor = top

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
        return check_column(self.schema, model, column, value)

    def coerce_lookup(self, model: str, column: str, value: Any) -> Any:
        """A filter value checked against ``model.column``; a numeric string counts as its number."""
        if isinstance(value, str):
            f = self.schema.fields_by_column(model).get(column)
            integer = column == "id" or (f is not None and (f.is_link or f.kind in _INT_RANGES))
            if integer or (f is not None and f.kind in ("float", "double")):
                number = number_from_text(value, integer=integer)
                value = value if number is None else number
        return check_column(self.schema, model, column, value)

    # -- reads ----------------------------------------------------------------
    def get(self, model: str, id: int) -> Row | None:
        """The object (deleted or not) or ``None``."""
        stmt = self._select_by_id(model)
        with self._read() as conn:
            rows = self._records(model, conn.execute(stmt, {"_id": id}))
        return rows[0] if rows else None

    def select(self, model: str, query: Query = Query()) -> list[Row]:
        stmt, params = self._query_statement("select", model, query)
        with self._read() as conn:
            return self._records(model, conn.execute(stmt, params))

    def count(self, model: str, query: Query = Query()) -> int:
        stmt, params = self._query_statement("count", model, query)
        with self._read() as conn:
            return int(conn.execute(stmt, params).scalar_one())

    def _query_statement(self, kind: str, model: str, query: Query) -> tuple[sa.Select[Any], dict[str, Any]]:
        """The statement for ``query`` and its parameters.

        Values are checked here and bound as parameters; the statement is built once per
        query shape (model, columns, operators, order) -- building one costs far more
        than running it.
        """
        joined, columns = self._join(model)
        params: dict[str, Any] = {}
        where_key, builders = self._where(model, query, columns, params)
        order: tuple[tuple[str, bool], ...] = ()
        if kind == "select":
            order = tuple(
                (self._column(model, columns, key.lstrip("-")).name, key.startswith("-"))
                for key in query.order_by or ("id",)
            )
            if query.limit is not None:
                params["_limit"] = query.limit
            if query.offset:
                params["_offset"] = query.offset
        key = (kind, model, where_key, order, "_limit" in params, "_offset" in params)
        stmt = self._queries.get(key)
        if stmt is None:
            base = (
                self._select_all(model)
                if kind == "select"
                else sa.select(sa.func.count()).select_from(joined)
            )
            stmt = base.where(*(build() for build in builders))
            if order:
                stmt = stmt.order_by(
                    *(columns[name].desc() if desc else columns[name].asc() for name, desc in order)
                )
            if "_limit" in params:
                stmt = stmt.limit(sa.bindparam("_limit", type_=sa.Integer()))
            if "_offset" in params:
                stmt = stmt.offset(sa.bindparam("_offset", type_=sa.Integer()))
            if len(self._queries) >= 4096:  # shapes come from code, so this is a safety net
                self._queries.clear()
            self._queries[key] = stmt
        return stmt, params

    def pending(self, model: str, which: Pending | str, *, limit: int | None = None) -> list[Row]:
        """Objects of ``model`` (and models derived from it) that one of the four queries selects."""
        which = Pending(which).value
        stmt = self._pending.get((model, which))
        if stmt is None:
            self._join(model)
            if not self.tables.has_bookkeeping(model):
                return []
            root = self.tables.chain(model)[0]
            cond = pending_condition(which, lambda n: root.c[n])
            stmt = self._pending[(model, which)] = self._select_all(model).where(cond).order_by(root.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return self._records(model, conn.execute(stmt))

    def _column(self, model: str, columns: Mapping[str, sa.ColumnElement], name: str) -> sa.ColumnElement:
        col = columns.get(name)
        if col is None:
            f = self.schema.fields(model).get(name)
            col = columns.get(f.column) if f is not None else None
        if col is None:
            raise ValidationError(f"model {model} has no field {name!r}")
        return col

    def _where(
        self, model: str, query: Query, columns: Mapping[str, sa.ColumnElement], params: dict[str, Any]
    ) -> tuple[tuple[Any, ...], list[Callable[[], sa.ColumnElement[bool]]]]:
        """The shape of the WHERE clause, and builders of its terms; fills ``params``."""
        key: list[Any] = []
        builders: list[Callable[[], sa.ColumnElement[bool]]] = []
        for i, c in enumerate(query.where):
            part, build = self._condition(model, columns, c, f"w{i}", params)
            key.append(part)
            builders.append(build)
        for i, c in enumerate(query.exclude):
            part, build = self._condition(model, columns, c, f"x{i}", params)
            key.append(("exclude", *part))
            builders.append(_excluding(build, columns[part[0]], null_test=part[1] == "isnull"))
        return tuple(key), builders

    def _condition(
        self,
        model: str,
        columns: Mapping[str, sa.ColumnElement],
        cond: Condition,
        name: str,
        params: dict[str, Any],
    ) -> tuple[tuple[Any, ...], Callable[[], sa.ColumnElement[bool]]]:
        """``(shape, build)`` of one condition; its value (checked) goes to ``params[name]``."""
        col = self._column(model, columns, cond.column)
        op, value = cond.op, cond.value
        if op == "isnull" or (op == "eq" and value is None):
            is_null = bool(value) if op == "isnull" else True
            return (col.name, "isnull", is_null), lambda: col.is_(None) if is_null else col.is_not(None)
        if op == "in":
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ValidationError(f"{model}.{cond.column}__in: expected a list, got {value!r}")
            params[name] = [self.coerce_lookup(model, col.name, v) for v in value]
            return (col.name, op), lambda: col.in_(sa.bindparam(name, expanding=True))
        if op in ("iexact", "contains", "icontains"):
            if not isinstance(value, str):
                raise ValidationError(f"{model}.{cond.column}__{op}: expected a string, got {value!r}")
            text = sa.bindparam(name, type_=sa.String())
            if op == "iexact":
                params[name] = value.lower()
                return (col.name, op), lambda: sa.func.lower(col) == text
            if op == "contains" and self.dialect == "sqlite":
                params[name] = value  # SQLite's LIKE ignores case: instr() keeps it
                return (col.name, op), lambda: sa.func.instr(col, text) > 0
            params[name] = f"%{_escape_like(value)}%"
            if op == "contains":
                return (col.name, op), lambda: col.like(text, escape="/")
            return (col.name, op), lambda: sa.func.lower(col).like(sa.func.lower(text), escape="/")
        if value is None:
            raise ValidationError(f"{model}.{cond.column}__{op}: cannot compare with None")
        value = self.coerce_lookup(model, col.name, value)
        compare = _COMPARISONS.get(op)
        if compare is None:
            raise ValidationError(f"unknown lookup operator {op!r}")
        params[name] = value
        return (col.name, op), lambda: compare(col, sa.bindparam(name))

    # -- writes ---------------------------------------------------------------
    def create(
        self, model: str, values: Mapping[str, Any], ctx: WriteContext = WriteContext()
    ) -> dict[str, Any]:
        """Insert an object; returns every column of it, ``id`` included."""
        self._check_model(model)
        values = fill_owner(self, model, values)
        fields = self.schema.fields_by_column(model)
        row: dict[str, Any] = {}
        for column, value in values.items():
            if column == "id" and value is None:
                continue
            row[column] = self.coerce(model, column, value)
        for column, default in self._defaults(model).items():
            if column not in row:
                row[column] = default
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
            deleted_targets = lock_targets(self, conn, model, row)
            if not row.get("deleted"):
                refuse_deleted(deleted_targets)
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
    ) -> dict[str, Any]:
        """Write ``values`` (or only ``ctx.update_fields`` of them); returns the columns written.

        The bookkeeping rules apply: a client write bumps ``updated``; a synchronizer
        write does not unless ``ctx.always_update_timestamp``; a step's write of a
        non-bookkeeping field sets ``changed_by_step``, a policy's ``changed_by_policy``.
        A deleted object whose deletion is complete is purged.
        """
        self._check_model(model)
        id = check_id(model, id)
        if ctx.update_fields is not None:
            for name in ctx.update_fields:
                if name not in self.schema.fields_by_column(model):
                    raise ValidationError(f"model {model} has no field {name!r}")
            values = {k: v for k, v in values.items() if k in ctx.update_fields}
        changes: dict[str, Any] = {}
        for column, value in values.items():
            if column == "id":
                if value is not None and value != id:
                    raise ValidationError(f"{model}.id cannot be changed")
                continue
            changes[column] = self.coerce(model, column, value)
        changes.pop("leaf_model_name", None)
        with self._write() as (conn, notices):
            now = self.now()
            if "updated" in self.schema.fields_by_column(model) and (
                ctx.caller is Caller.CLIENT or ctx.always_update_timestamp
            ):
                changes["updated"] = now
            self._stamp(model, changes, ctx, now, set(changes))
            deleted_targets = lock_targets(self, conn, model, changes)
            was_deleted, state = self._apply_update(conn, model, id, changes)
            if not state.get("deleted"):
                refuse_deleted(deleted_targets)
            leaf = self._leaf(state, model)
            self._journal(conn, notices, leaf, id, "update", now, ctx.origin)
            if was_deleted:
                self._reap_if_done(conn, notices, leaf, state, now, ctx.origin)
        return changes

    def _apply_update(
        self, conn: sa.Connection, model: str, id: int, changes: dict[str, Any]
    ) -> tuple[bool, Row]:
        """Write ``changes``; returns whether the object was deleted before, and its state after.

        Raises :class:`NotFound`. For a one-table model the UPDATE returns the state
        (``RETURNING``), saving the SELECT that a write would otherwise start with.
        """
        chain = self.tables.chain(model)
        if len(chain) == 1 and changes and "deleted" not in changes and self.engine.dialect.update_returning:
            state = conn.execute(self._update_returning(chain[0]), {"_id": id, **changes}).mappings().first()
            if state is None:
                raise NotFound(f"{model} id {id} does not exist")
            return bool(state.get("deleted")), dict(state)
        current = self._locked_row(conn, model, id)
        self._write_columns(conn, model, id, changes)
        return bool(current.get("deleted")), {**current, **changes}

    def _update_returning(self, table: sa.Table) -> sa.Update:
        """``UPDATE table SET <given columns> WHERE id = :_id RETURNING <what a write needs next>``."""
        key = f"{table.name} returning"
        stmt = self._updates.get(key)
        if stmt is None:
            wanted = [table.c[name] for name in DELETION_STATE if name in table.c]
            stmt = table.update().where(table.c.id == sa.bindparam("_id")).returning(*wanted)
            self._updates[key] = stmt
        return stmt

    def _column_tables(self, model: str) -> dict[str, sa.Table]:
        owners = self._owners.get(model)
        if owners is None:
            owners = self._owners[model] = self.tables.column_table(model)
        return owners

    def delete(self, model: str, id: int, ctx: WriteContext = WriteContext(), *, purge: bool = False) -> None:
        """Soft-delete (``deleted = True``), or remove the rows at once with ``purge=True``.

        An object that never reached the backend and has no pending delete policy
        is purged at once.
        """
        self._check_model(model)
        id = check_id(model, id)
        with self._write() as (conn, notices):
            current = self._locked_row(conn, model, id)
            leaf = self._leaf(current, model)
            now = self.now()
            if purge or "deleted" not in current:
                self._purge(conn, notices, leaf, id, now, ctx.origin)
                if not current.get("deleted"):
                    cascade_delete(self, conn, notices, leaf, dict(current), now, ctx)
                return
            if current["deleted"]:
                return
            soft_delete(self, conn, notices, leaf, current, now, ctx)
            cascade_delete(self, conn, notices, leaf, dict(current), now, ctx)

    def dangling_links(self) -> list[str]:
        """One line per stored link that names no object (data from before the foreign keys).

        ``MyInstance 4: owner_id = 999, no Service with that id``. Such rows are kept
        when a store is migrated, and logged at its start.
        """
        return dangling_links(self)

    def _leaf(self, row: Row, model: str) -> str:
        """The most derived model of a stored object (its rows span that model's chain)."""
        leaf = row.get("leaf_model_name")
        return leaf if isinstance(leaf, str) and leaf in self.tables.by_model else model

    def _locked_row(self, conn: sa.Connection, model: str, id: int) -> Row:
        rows = self._records(model, conn.execute(self._select_by_id(model, for_update=True), {"_id": id}))
        if not rows:
            raise NotFound(f"{model} id {id} does not exist")
        return rows[0]

    def _write_columns(self, conn: sa.Connection, model: str, id: int, changes: Mapping[str, Any]) -> None:
        by_table: dict[str, dict[str, Any]] = {}
        owner = self._column_tables(model)
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
        """Purge a deleted object once its backend delete and delete policy (if owed) are done.

        It waits while objects still link to it (through a ``CASCADE`` or ``PROTECT``
        link): the purge of the last of them purges it (see ``purge``).
        """
        if reap_ready(row) and not reap_blocked(self, conn, model, row["id"]):
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
        """Remove the object, with what the ``on_delete`` of links to it asks (see ``purge``)."""
        purge(self, conn, notices, model, id, now, origin)

    def _delete_rows(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        model: str,
        id: int,
        now: float,
        origin: str | None = None,
    ) -> None:
        """Delete the object's rows (one per table of its chain) and journal the purge."""
        for table in reversed(self.tables.chain(model)):
            conn.execute(table.delete().where(table.c.id == id))
        self._journal(conn, notices, model, id, "purge", now, origin)

    def _stamp(
        self, model: str, row: dict[str, Any], ctx: WriteContext, now: float, written: set[str]
    ) -> None:
        if ctx.caller not in (Caller.STEP, Caller.POLICY):
            return
        if not written - self._bookkeeping.get(model, set()) - {"id"}:
            return
        column = "changed_by_step" if ctx.caller is Caller.STEP else "changed_by_policy"
        if column in self.schema.fields_by_column(model):
            row[column] = now

    @staticmethod
    def _check_required(model: str, row: Mapping[str, Any], fields: Mapping[str, FieldSpec]) -> None:
        for column, f in fields.items():
            if row.get(column) is None and not f.nullable:
                raise ValidationError(f"{model}.{f.name} is required")

    # -- notices --------------------------------------------------------------
    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe:
        """Call ``callback(notice)`` after every committed write, in the writer's thread.

        On PostgreSQL, writes committed by other processes on the same database are
        published too (from a listener thread), shortly after their commit.
        """
        self._listen()
        return self._notifier.subscribe(callback)

    def _listen(self) -> None:
        if self.shared and self._listener is None:
            with self._catch_up_lock:
                if self._listener is None:
                    self._cursor = self.last_seq()
                    self._listener = PostgresListener(
                        self.engine, self._catch_up, groups=self._wanted, on_members=self._on_members
                    )

    # -- replicas ---------------------------------------------------------------
    def join(self, group: str) -> None:
        """Take part in sharing ``group``'s work (a sync step's name) with the other replicas.

        On PostgreSQL the listener connection holds a replica lock for the group (a
        session advisory lock keyed by the store's schema, the group and its backend
        pid) and looks at the others' every half second (see :meth:`replicas`).
        Joins are counted; :meth:`leave` undoes one. Nothing happens elsewhere.
        """
        if not self.shared:
            return
        with self._catch_up_lock:
            self._groups[group] += 1
        self._listen()

    def leave(self, group: str) -> None:
        """Undo one :meth:`join`; the last one gives the group's replica lock back."""
        with self._catch_up_lock:
            self._groups[group] -= 1
            if self._groups[group] <= 0:
                del self._groups[group]

    def _wanted(self) -> frozenset[str]:
        with self._catch_up_lock:
            return frozenset(self._groups)

    def _on_members(self, me: int | None, members: dict[str, frozenset[int]]) -> None:
        for group in set(members) | set(self._members):
            if members.get(group) != self._members.get(group):
                self._before[group] = self._members.get(group, frozenset())
        self._me, self._members = me, members
        self.replicas_epoch += 1
        log.info("replicas", me=me, groups={group: len(ids) for group, ids in members.items()})

    def replicas(self, group: str) -> tuple[int | None, frozenset[int]]:
        """This process's replica id and the ids of the replicas in ``group``, itself included.

        ``(None, frozenset())`` on SQLite, before the first look (half a second after
        :meth:`join`) and while the listener reconnects.
        """
        return self._me, self._members.get(group, frozenset())

    def spread(self, group: str, ids: Iterable[int]) -> tuple[list[int], list[int]]:
        """``ids`` of ``group``'s objects in the order this replica should work on them: its own, the others'.

        Each id belongs to one of the group's replicas (:meth:`replicas`), the one whose
        rendezvous hash of (replica, id) is highest; a replica gone, its ids go to the
        others, and no other id moves. This replica's own ids come first, ascending,
        those it took over from a replica that has just gone before the rest (so the
        one that replica held when it died is among the first); then the others',
        descending, so a replica that has run out of its own work takes the others'
        from the end their owners reach last. With one replica, or none known, every
        id is its own.
        """
        ordered = sorted(ids)
        me, members = self.replicas(group)
        departed = self._before.get(group, frozenset()) - members
        if me is None or (len(members) < 2 and not departed):
            return ordered, []
        seeds = [(_mix(m), m) for m in members]
        before = [(_mix(m), m) for m in self._before.get(group, ())]
        inherited: list[int] = []
        mine: list[int] = []
        theirs: list[int] = []
        for id in ordered:
            if _owner(seeds, id) != me:
                theirs.append(id)
            elif departed and _owner(before, id) in departed:
                inherited.append(id)
            else:
                mine.append(id)
        theirs.reverse()
        return inherited + mine, theirs

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

    @property
    def shared(self) -> bool:
        """True when other processes may work on the same objects (PostgreSQL): see :meth:`claim`."""
        return self.dialect == "postgresql"

    @contextmanager
    def claim(self, model: str, id: int) -> Iterator[bool]:
        """Hold object ``(model, id)`` against other processes while it is synced.

        Yields ``False`` at once if another process holds it. On PostgreSQL this is
        a session advisory lock keyed by the object's root model and id, held on a
        connection of its own (no transaction stays open); elsewhere there is only
        one process per store and it always yields ``True``.
        """
        if not self.shared:
            yield True
            return
        key = {"k": zlib.crc32(self.schema.root(model).encode()) & 0x7FFFFFFF, "i": id}
        conn, held = self._try_claim(key)
        try:
            yield held
        finally:
            try:
                if held:
                    conn.execute(_UNLOCK, key)
            except Exception:
                conn.close()  # the session ends, and its locks with it
                raise
            with self._claimers_lock:
                self._claimers.append(conn)

    def _try_claim(self, key: dict[str, int]) -> tuple[sa.Connection, bool]:
        """A claim connection (an idle one if there is one) and whether it got the lock ``key``.

        Claim connections stay checked out of the pool, in autocommit mode, so a claim
        costs two statements and no pool checkout; one that fails is closed, and the
        claim tried once more on a new connection.
        """
        with self._claimers_lock:
            conn = self._claimers.pop() if self._claimers else None
        if conn is not None:
            try:
                return conn, bool(conn.execute(_TRY_LOCK, key).scalar())
            except sa.exc.DBAPIError:
                conn.close()
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            return conn, bool(conn.execute(_TRY_LOCK, key).scalar())
        except Exception:
            conn.close()
            raise


_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:k, :i)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:k, :i)")
_MASK64 = 2**64 - 1


def _owner(seeds: list[tuple[int, int]], id: int) -> int:
    """The replica of ``seeds`` (``(_mix(replica), replica)`` pairs) that ``id`` belongs to."""
    return max(seeds, key=lambda seed: _mix(seed[0] ^ id))[1]


def _mix(x: int) -> int:
    """A 64-bit integer hash (splitmix64's finaliser): every bit of ``x`` moves every bit out."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _escape_like(value: str) -> str:
    """``value`` as a literal inside a LIKE pattern with ``ESCAPE '/'``."""
    return value.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _excluding(
    build: Callable[[], sa.ColumnElement[bool]], col: sa.ColumnElement, *, null_test: bool
) -> Callable[[], sa.ColumnElement[bool]]:
    """The negation of a condition; like Django, ``exclude(x=v)`` keeps rows where x is NULL."""
    if null_test:
        return lambda: sa.not_(build())
    return lambda: sa.or_(sa.not_(build()), col.is_(None))


def check_column(schema: Schema, model: str, column: str, value: Any) -> Any:
    """``value`` checked against ``model.column`` of ``schema`` (``id`` may be ``None``: not assigned yet)."""
    if column == "id":
        return value if value is None else check_id(model, value)
    f = schema.fields_by_column(model).get(column)
    if f is None:
        raise ValidationError(f"model {model} has no field {column!r}")
    return check_value(model, f, value)


def check_id(model: str, value: Any) -> int:
    """``value`` as an object id of ``model``; :class:`ValidationError` if it is not an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{model}.id: expected an integer, got {value!r}")
    return value


def check_value(model: str, f: FieldSpec, value: Any) -> Any:
    """``value`` checked (and ints widened to float) for field ``f``; :class:`ValidationError` if not."""
    # Called for every value written: the common path avoids building strings and parsing options.
    if value is None:
        if f.nullable:
            return None
        raise ValidationError(f"{model}.{f.column}: may not be null")
    if f.is_link:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{model}.{f.column}: expected an object id (integer), got {value!r}")
        return value
    kind = f.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValidationError(f"{model}.{f.column}: expected a boolean, got {value!r}")
        return value
    if kind in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{model}.{f.column}: expected an integer, got {value!r}")
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise ValidationError(f"{model}.{f.column}: {value} is out of range for {kind}")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{model}.{f.column}: expected a number, got {value!r}")
        value = float(value)
        if value != value:  # SQLite would store NaN as NULL
            raise ValidationError(f"{model}.{f.column}: NaN is not allowed")
    elif kind in ("string", "text"):
        if not isinstance(value, str):
            raise ValidationError(f"{model}.{f.column}: expected a string, got {value!r}")
        max_length = f.max_length
        if max_length is not None and len(value) > max_length:
            raise ValidationError(
                f"{model}.{f.column}: longer than max_length {max_length} ({len(value)} characters)"
            )
        if "\x00" in value:
            raise ValidationError(f"{model}.{f.column}: NUL characters are not allowed")
    options = f.options
    if "min_value" in options or "max_value" in options:
        for bound, ok in (("min_value", operator.ge), ("max_value", operator.le)):
            limit = options.get(bound)
            if isinstance(limit, int | float) and not isinstance(limit, bool) and not ok(value, limit):
                raise ValidationError(f"{model}.{f.column}: {value!r} is outside {bound} {limit}")
    if "choices" in options:
        choices = f.choices
        if choices and value not in f.choice_values and value != f.default:
            allowed = ", ".join(repr(c[0]) for c in choices)
            raise ValidationError(f"{model}.{f.column}: {value!r} is not one of the choices ({allowed})")
    return value


def _make_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, future=True)
    database = parsed.database
    memory = not database or database == ":memory:"
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
            cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("actors_read"):
            return  # one SELECT needs no transaction
        # Straight to the driver: exec_driver_sql would cost a full statement execution per write.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.execute("BEGIN IMMEDIATE" if options.get("actors_immediate") and not memory else "BEGIN")

    return engine
