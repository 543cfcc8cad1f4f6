"""The write path: create, update and delete, each one transaction with its journal entries.

A write takes the write lock and the write connection (see ``Database``), runs its
statements and journal entries (on PostgreSQL their ``INSERT`` sends the ``NOTIFY``), commits, and then
publishes its notices. The bookkeeping is stamped by ``Bookkeeping``; links are
checked and deletions cascade in ``_integrity`` and ``_cascade``, which work through
this object.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from ._bookkeeping import Bookkeeping, Clock, reap_ready
from ._cascade import cascade_delete, soft_delete
from ._engine import Database
from ._errors import NotFound
from ._feed import ChangeFeed
from ._integrity import lock_targets, purge, reap_blocked, refuse_deleted
from ._journal import Journal
from ._notices import ChangeNotice, Notifier
from ._query import WriteContext
from ._rows import Row
from ._statements import DRIVER_CHUNK, DriverSql, Statements
from ._values import check_id

__all__ = ["BatchWrite", "Writer"]

#: psycopg's transaction status of a connection outside any transaction (``TransactionStatus.IDLE``).
_IDLE = 0

#: One update of a batch: model, id, values and the write's context (see ``Store.write_batch``).
BatchWrite = tuple[str, int, Mapping[str, Any], WriteContext]


class Writer:
    """Writes objects of one schema (a schema change makes a new one)."""

    def __init__(
        self,
        db: Database,
        statements: Statements,
        bookkeeping: Bookkeeping,
        clock: Clock,
        journal: Journal,
        feed: ChangeFeed,
        notifier: Notifier,
    ) -> None:
        self.db = db
        self.dialect = db.dialect
        self.statements = statements
        self.schema = statements.schema
        self.tables = statements.tables
        self.bookkeeping = bookkeeping
        self.clock = clock
        self.journal = journal
        self.feed = feed
        self.notifier = notifier
        self._plain: dict[str, frozenset[str]] = {}
        self._roots: dict[str, sa.Table] = {}
        self._sql: DriverSql | None = None
        self._sql_known = False
        self._by_hand = False  # a batch's BEGIN sent by hand: see _begin_by_hand

    @contextmanager
    def transaction(self) -> Iterator[tuple[sa.Connection, list[ChangeNotice]]]:
        """One write's connection, in a transaction, and the list its notices go to."""
        notices: list[ChangeNotice] = []
        with self.db.write_lock:
            with self.db.write_connection() as conn, conn.begin():
                yield conn, notices
                self.feed.published(notices)  # before the commit: the listener may wake right after it
            self.journal.committed()
        self.notifier.publish(notices)

    def create(self, model: str, values: Mapping[str, Any], ctx: WriteContext) -> dict[str, Any]:
        """Insert an object (``values`` are the caller's, its owner filled); returns every column."""
        row = self.bookkeeping.new_row(model, values)
        now = self.clock.now()
        self.bookkeeping.stamp_create(model, row, ctx, now, set(values))
        with self.transaction() as (conn, notices):
            deleted_targets = lock_targets(self, conn, model, row)
            if not row.get("deleted"):
                refuse_deleted(deleted_targets)
            for table in self.tables.chain(model):
                part = {c.name: row[c.name] for c in table.c if c.name in row}
                result = conn.execute(self.statements.insert(table), part)
                if "id" not in row:
                    key = result.inserted_primary_key
                    assert key is not None
                    row["id"] = int(key[0])
            self.journal.append(conn, notices, model, row["id"], "create", now, ctx.origin)
        return row

    def update(self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext) -> dict[str, Any]:
        """Write ``values`` with the bookkeeping rules; returns the columns written (see ``Store.update``)."""
        model, id, changes = self._changes(model, id, values, ctx)
        with self.transaction() as (conn, notices):
            self._update(conn, notices, model, id, changes, ctx)
        return changes

    def update_many(self, writes: Sequence[BatchWrite]) -> list[Exception | None]:
        """Every update of ``writes`` in one transaction, committed once (see ``Store.write_batch``).

        Updates of plain columns of an object's root table (status fields) are written
        together: one ``SELECT`` of their objects' state, one ``UPDATE`` executed for
        many rows per set of columns written, one ``INSERT`` of their journal entries
        (see :meth:`_update_together`). The others run one by one, as :meth:`update` does.

        One that fails is left out and the others are kept: a value refused fails before
        any statement runs, an object that no longer exists is left out of the statements;
        one that fails later (a link refused) rolls the transaction back, and the others
        are written again without it. When a statement written for many fails, the
        transaction is rolled back and every update runs one by one, which finds the one
        that failed. Failures are rare, and no savepoint is paid for on the way that has none.
        """
        results: list[Exception | None] = [None] * len(writes)
        changes: dict[int, tuple[str, int, dict[str, Any]]] = {}
        for i, (model, id, values, ctx) in enumerate(writes):
            try:
                changes[i] = self._changes(model, id, values, ctx)
            except Exception as exc:  # refused before any statement
                results[i] = exc
        together = True
        while True:
            notices: list[ChangeNotice] = []
            try:
                with self.db.write_lock:
                    with self.db.write_connection() as conn, self._begun_in_pipeline(conn), conn.begin():
                        alone = list(changes)
                        if together:
                            alone = self._update_together(conn, notices, writes, changes, results)
                        for i in alone:
                            model, id, values = changes[i]
                            try:
                                self._update(conn, notices, model, id, dict(values), writes[i][3])
                            except Exception as exc:
                                results[i] = exc
                                del changes[i]
                                raise _Again from exc
                        self.feed.published(notices)
                    self.journal.committed(len(changes))
            except _Together:
                together = False  # rolled back: all again, one by one
                continue
            except _Again:
                continue  # rolled back: the others again, without the one that failed
            break
        self.notifier.publish(notices)
        return results

    def _update_together(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        writes: Sequence[BatchWrite],
        changes: dict[int, tuple[str, int, dict[str, Any]]],
        results: list[Exception | None],
    ) -> list[int]:
        """Write the updates of ``changes`` that can share statements; returns the indexes of the others.

        Shared: an update of columns of the object's root table only, none of them a link
        or ``deleted``, of an object written once in the batch. Per root table and set of
        columns: when every update writes the same values (the ``backend_need_delete``
        mark), one ``UPDATE ... WHERE id IN (...) RETURNING`` the objects' state; otherwise
        the state is read first (one ``SELECT``, locked on PostgreSQL) and one ``UPDATE``
        runs for many rows. An object not found gets :class:`NotFound` in ``results`` and
        is dropped from ``changes``; a deleted one is purged if that was all it owed, as
        after :meth:`update`. Their journal entries are one ``INSERT``. The statements run
        on the driver's cursor (see :class:`DriverSql`). Raises :class:`_Together` when
        one of them fails.
        """
        sql = self._driver_sql()
        if sql is None:
            return list(changes)
        keys: dict[tuple[str, int], int] = {}
        for model, id, _values in changes.values():
            key = (self._root(model).name, id)
            keys[key] = keys.get(key, 0) + 1
        alone: list[int] = []
        # root table -> columns written -> [(index, model, id, values, now)]
        shared: dict[sa.Table, dict[tuple[str, ...], list[tuple[int, str, int, dict[str, Any], float]]]] = {}
        for i, (model, id, values) in changes.items():
            root = self._root(model)
            plain = self._plain_columns(model)
            if not values or keys[(root.name, id)] > 1 or not plain.issuperset(values):
                alone.append(i)
                continue
            now = self.clock.now()
            stamped = dict(values)
            self.bookkeeping.stamp_update(model, stamped, writes[i][3], now)
            if not plain.issuperset(stamped):
                alone.append(i)
                continue
            shared.setdefault(root, {}).setdefault(tuple(sorted(stamped)), []).append(
                (i, model, id, stamped, now)
            )
        if not shared:
            return alone
        entries: list[tuple[str, int, str, float, str | None]] = []
        reaps: list[tuple[str, Row, float, str | None]] = []
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        if sql.arrays:
            try:
                reaps = self._update_arrays(dbapi, sql, notices, shared, writes, changes, results)
            except Exception as exc:
                raise _Together from exc
            return self._reap_together(conn, notices, reaps, alone)
        cursor = dbapi.cursor()
        try:
            for table, groups in shared.items():
                names = sql.state_columns(table)
                varied = {c for c, g in groups.items() if any(x[3] != g[0][3] for x in g)}
                states: dict[int, Row] = {}
                for chunk in _chunks([x[2] for c in varied for x in groups[c]]):
                    cursor.execute(sql.states(table, len(chunk)), chunk)
                    states.update((int(r[0]), dict(zip(names, r, strict=True))) for r in cursor.fetchall())
                for columns, group in groups.items():
                    after: dict[int, Row] = {}
                    if columns in varied:
                        found = [x for x in group if x[2] in states]
                        if found:
                            params = [(*[x[3][c] for c in columns], x[2]) for x in found]
                            cursor.executemany(sql.update(table, columns), params)
                        after = {x[2]: {**states[x[2]], **x[3]} for x in found}
                    else:
                        same = [group[0][3][c] for c in columns]
                        for chunk in _chunks([x[2] for x in group]):
                            cursor.execute(sql.update_in(table, columns, len(chunk)), [*same, *chunk])
                            after.update(
                                (int(r[0]), dict(zip(names, r, strict=True))) for r in cursor.fetchall()
                            )
                    for i, model, id, _values, now in group:
                        state = after.get(id)
                        if state is None:
                            results[i] = NotFound(f"{model} id {id} does not exist")
                            del changes[i]
                            continue
                        leaf = self.leaf(state, model)
                        entries.append((leaf, id, "update", now, writes[i][3].origin))
                        if state.get("deleted"):
                            reaps.append((leaf, state, now, writes[i][3].origin))
            self.journal.append_many(cursor, sql, notices, entries)
        except Exception as exc:
            raise _Together from exc
        finally:
            cursor.close()
        return self._reap_together(conn, notices, reaps, alone)

    def _update_arrays(
        self,
        dbapi: Any,
        sql: DriverSql,
        notices: list[ChangeNotice],
        shared: dict[sa.Table, dict[tuple[str, ...], list[tuple[int, str, int, dict[str, Any], float]]]],
        writes: Sequence[BatchWrite],
        changes: dict[int, tuple[str, int, dict[str, Any]]],
        results: list[Exception | None],
    ) -> list[tuple[str, Row, float, str | None]]:
        """PostgreSQL: each set of columns of ``shared`` in one statement with its journal entries.

        One :meth:`DriverSql.update_journalled` per root table and set of columns, all sent
        together with the transaction's ``BEGIN`` (a pipeline: one round trip, see
        :meth:`_begin_by_hand`); the statement texts do not change with the number of rows, so the
        driver converts each once and the server prepares it. An object the ``UPDATE``
        did not find gets :class:`NotFound` (and no journal entry). Returns the deleted
        objects to reap.
        """
        known = list(self.tables.by_model)
        sent: list[tuple[Any, sa.Table, list[tuple[int, str, int, dict[str, Any], float]]]] = []
        begin = self._begin_by_hand(dbapi)
        with dbapi.pipeline():
            if begin:
                dbapi.execute(begin)
            for table, groups in shared.items():
                for columns, group in groups.items():
                    params: dict[str, Any] = {
                        f"v{n}": [x[3][c] for x in group] for n, c in enumerate(columns)
                    }
                    params["ids"] = [x[2] for x in group]
                    params["models"] = [x[1] for x in group]
                    params["ats"] = [x[4] for x in group]
                    params["origins"] = [writes[x[0]][3].origin for x in group]
                    params["known"] = known
                    cursor = dbapi.cursor()
                    cursor.execute(sql.update_journalled(table, columns, self.journal.table), params)
                    sent.append((cursor, table, group))
        reaps: list[tuple[str, Row, float, str | None]] = []
        for cursor, table, group in sent:
            names = sql.state_columns(table)
            width = len(names)
            deleted = names.index("deleted") if "deleted" in names else None
            found = {int(r[0]): r for r in cursor.fetchall()}
            cursor.close()
            for i, model, id, _values, now in group:
                row = found.get(id)
                if row is None:
                    results[i] = NotFound(f"{model} id {id} does not exist")
                    del changes[i]
                    continue
                leaf, origin = str(row[width + 1]), writes[i][3].origin
                notices.append(ChangeNotice(int(row[width]), leaf, id, "update", now, origin))
                if deleted is not None and row[deleted]:
                    reaps.append((leaf, dict(zip(names, row[:width], strict=True)), now, origin))
        notices.sort(key=lambda n: n.seq)
        return reaps

    def _begin_by_hand(self, dbapi: Any) -> str | None:
        """The ``BEGIN`` to send with the first statements of a batch, the connection in autocommit meanwhile.

        psycopg sends its own ``BEGIN`` before a transaction's first statement and waits
        for its answer, in a pipeline too: one round trip of its own. Sent by hand with
        the batch's statements it costs none; the connection stays in autocommit (the
        server is in the transaction all the same: the later statements and SQLAlchemy's
        ``COMMIT`` or ``ROLLBACK`` run in it) until :meth:`_begun_in_pipeline` puts it back.
        ``None`` when the connection is not idle (a transaction began already).
        """
        if dbapi.autocommit or dbapi.info.transaction_status != _IDLE:
            return None
        level = dbapi.isolation_level
        dbapi.autocommit = True
        self._by_hand = True
        return "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"

    @contextmanager
    def _begun_in_pipeline(self, conn: sa.Connection) -> Iterator[None]:
        """Around a batch's transaction: then the connection out of :meth:`_begin_by_hand`'s autocommit."""
        self._by_hand = False
        try:
            yield
        finally:
            if self._by_hand:
                self._by_hand = False
                try:
                    dbapi: Any = conn.connection.dbapi_connection
                    dbapi.autocommit = False
                except Exception:  # a connection broken meanwhile, or left in a transaction
                    conn.invalidate()

    def _reap_together(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        reaps: list[tuple[str, Row, float, str | None]],
        alone: list[int],
    ) -> list[int]:
        """Purge the deleted objects of a shared write that owe nothing more; ``alone``'s indexes, sorted."""
        try:
            for leaf, state, now, origin in reaps:
                self.reap_if_done(conn, notices, leaf, state, now, origin)
        except Exception as exc:
            raise _Together from exc
        return sorted(alone)

    def _driver_sql(self) -> DriverSql | None:
        """The batch statements for this database (asked once it is connected: SQLite's version decides)."""
        if not self._sql_known:
            self._sql, self._sql_known = DriverSql.of(self.db.engine.dialect), True
        return self._sql

    def _root(self, model: str) -> sa.Table:
        """The root table of ``model``'s chain (it holds the bookkeeping columns)."""
        found = self._roots.get(model)
        if found is None:
            found = self._roots[model] = self.tables.chain(model)[0]
        return found

    def _plain_columns(self, model: str) -> frozenset[str]:
        """The columns of ``model``'s root table an update of many objects may write together."""
        found = self._plain.get(model)
        if found is None:
            root = self._root(model)
            fields = self.schema.fields_by_column(model)
            found = self._plain[model] = frozenset(
                column
                for column, table in self.statements.column_tables(model).items()
                if table is root
                and column not in ("id", "deleted", "leaf_model_name")
                and not (column in fields and fields[column].is_link)
            )
        return found

    def _changes(
        self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext
    ) -> tuple[str, int, dict[str, Any]]:
        self.statements.check_model(model)
        id = check_id(model, id)
        return model, id, self.bookkeeping.changes(model, id, values, ctx)

    def _update(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        model: str,
        id: int,
        changes: dict[str, Any],
        ctx: WriteContext,
    ) -> None:
        """The statements and journal entries of one update, in ``conn``'s transaction."""
        now = self.clock.now()
        self.bookkeeping.stamp_update(model, changes, ctx, now)
        deleted_targets = lock_targets(self, conn, model, changes)
        was_deleted, state = self._apply_update(conn, model, id, changes)
        if not state.get("deleted"):
            refuse_deleted(deleted_targets)
        leaf = self.leaf(state, model)
        self.journal.append(conn, notices, leaf, id, "update", now, ctx.origin)
        if was_deleted:
            self.reap_if_done(conn, notices, leaf, state, now, ctx.origin)

    def delete(self, model: str, id: int, ctx: WriteContext, *, purge: bool) -> None:
        """Soft-delete the object, or purge it (see ``Store.delete``)."""
        self.statements.check_model(model)
        id = check_id(model, id)
        with self.transaction() as (conn, notices):
            current = self.row(conn, model, id, for_update=True)
            if current is None:
                raise NotFound(f"{model} id {id} does not exist")
            leaf = self.leaf(current, model)
            now = self.clock.now()
            if purge or "deleted" not in current:
                self.purge(conn, notices, leaf, id, now, ctx.origin)
                if not current.get("deleted"):
                    cascade_delete(self, conn, notices, leaf, dict(current), now, ctx)
                return
            if current["deleted"]:
                return
            soft_delete(self, conn, notices, leaf, current, now, ctx)
            cascade_delete(self, conn, notices, leaf, dict(current), now, ctx)

    def _apply_update(
        self, conn: sa.Connection, model: str, id: int, changes: dict[str, Any]
    ) -> tuple[bool, Row]:
        """Write ``changes``; returns whether the object was deleted before, and its state after.

        Raises :class:`NotFound`. For a one-table model the UPDATE returns the state
        (``RETURNING``), saving the SELECT that a write would otherwise start with.
        """
        chain = self.tables.chain(model)
        if (
            len(chain) == 1
            and changes
            and "deleted" not in changes
            and self.db.engine.dialect.update_returning
        ):
            stmt = self.statements.update_returning(chain[0])
            state = conn.execute(stmt, {"_id": id, **changes}).mappings().first()
            if state is None:
                raise NotFound(f"{model} id {id} does not exist")
            return bool(state.get("deleted")), dict(state)
        current = self.row(conn, model, id, for_update=True)
        if current is None:
            raise NotFound(f"{model} id {id} does not exist")
        self.write_columns(conn, model, id, changes)
        return bool(current.get("deleted")), {**current, **changes}

    def row(self, conn: sa.Connection, model: str, id: int, *, for_update: bool = False) -> Row | None:
        """Object ``model`` ``id`` as ``conn`` sees it (locked until the commit with ``for_update``)."""
        stmt = self.statements.select_by_id(model, for_update=for_update)
        rows = self.statements.records(model, conn.execute(stmt, {"_id": id}))
        return rows[0] if rows else None

    def leaf(self, row: Row, model: str) -> str:
        """The most derived model of a stored object (its rows span that model's chain)."""
        leaf = row.get("leaf_model_name")
        return leaf if isinstance(leaf, str) and leaf in self.tables.by_model else model

    def write_columns(self, conn: sa.Connection, model: str, id: int, changes: Mapping[str, Any]) -> None:
        """``UPDATE`` each table of ``model``'s chain that stores one of ``changes``."""
        by_table: dict[str, dict[str, Any]] = {}
        owner = self.statements.column_tables(model)
        for column, value in changes.items():
            by_table.setdefault(owner[column].name, {})[column] = value
        for table in self.tables.chain(model):
            part = by_table.get(table.name)
            if part:
                conn.execute(self.statements.update(table), {"_id": id, **part})

    def reap_if_done(
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
            self.purge(conn, notices, model, row["id"], now, origin)

    def purge(
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

    def delete_rows(
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
        self.journal.append(conn, notices, model, id, "purge", now, origin)


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    """``ids`` in pieces of at most :data:`DRIVER_CHUNK`."""
    for start in range(0, len(ids), DRIVER_CHUNK):
        yield ids[start : start + DRIVER_CHUNK]


class _Together(Exception):
    """A statement written for many updates of a batch failed: the batch runs again, one by one."""


class _Again(Exception):
    """One write of a batch failed after its statements began: the batch is rolled back and run again."""
