"""The store: model objects in SQL tables, with the bookkeeping rules of the original.

One class serves SQLite (the embedded default, a WAL file) and PostgreSQL, both
through SQLAlchemy Core. Every write runs in one transaction with its journal
entry and is published as a :class:`ChangeNotice` after the commit. :class:`Store`
is the face of the parts that do the work (see "Internals" in ``docs/store.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from actors.models import Schema

from ._bookkeeping import Bookkeeping, Clock
from ._cascade import fill_owner
from ._engine import Database, make_engine
from ._feed import ChangeFeed
from ._integrity import rules
from ._journal import Journal
from ._locks import Claims
from ._migrate import dangling_links, migrate
from ._notices import ChangeNotice, Notifier, Unsubscribe
from ._open import OwnerLock, check_database, claim_file, open_errors
from ._query import Condition, Pending, Query, WriteContext
from ._replicas import Replicas
from ._rows import Record, Row
from ._statements import Statements
from ._tables import Tables
from ._values import check_column, coerce_lookup
from ._write import BatchWrite, Writer

__all__ = ["Store"]


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
        self._clock = Clock(clock)
        self._owner: OwnerLock | None = None
        with open_errors(url, on_error=self._release_owner):
            self._owner = claim_file(url, exclusive=exclusive)
            self.engine = make_engine(url)
        self._db = Database(self.engine)
        self.dialect = self._db.dialect
        self._notifier = Notifier()
        self._replicas = Replicas()
        self._claims = Claims(self.engine)
        self._journal = Journal(self._db, keep=journal_keep)
        self._feed = ChangeFeed(self._journal, self._notifier)
        self._set_schema(schema)
        with open_errors(url, on_error=self.close):
            check_database(url, self.engine)
            self.migrate()

    # -- schema ---------------------------------------------------------------
    def _set_schema(self, schema: Schema) -> None:
        rules(schema)  # every link's on_delete is one the store knows
        self.schema = schema
        self.tables = Tables.of(schema, covering=self.dialect == "sqlite")
        self._statements = Statements(schema, self.tables, self.dialect)
        self._journal.use(self.tables.journal)
        bookkeeping = Bookkeeping.of(schema)
        self._writer = Writer(
            self._db, self._statements, bookkeeping, self._clock, self._journal, self._feed, self._notifier
        )

    def migrate(self) -> None:
        """Create missing tables, add missing columns (filled with their default), create indexes.

        A pending index that no longer lists the table's columns (it gained one) is
        replaced: the new one is created, the old one dropped. Links get their foreign
        keys (SQLite tables made before them are rebuilt, keeping every row).
        """
        migrate(self.url, self._db, self.tables)

    def set_schema(self, schema: Schema) -> None:
        """Switch to a schema that adds models or fields; tables are extended, nothing is dropped."""
        with self._db.write_lock:
            old = self.schema
            self._set_schema(schema)
            try:
                self.migrate()
            except Exception:
                self._set_schema(old)
                raise

    def close(self) -> None:
        """Stop the listener, close every connection and give the owner lock back."""
        self._feed.stop()
        self._claims.close()
        self._db.close()
        self._release_owner()

    def _release_owner(self) -> None:
        if self._owner is not None:
            self._owner.release()
            self._owner = None

    def now(self) -> float:
        """A timestamp from the clock, strictly greater than every one given before."""
        return self._clock.now()

    # -- validation -----------------------------------------------------------
    def coerce(self, model: str, column: str, value: Any) -> Any:
        """``value`` checked against ``model.column``; raises :class:`ValidationError`."""
        return check_column(self.schema, model, column, value)

    def coerce_lookup(self, model: str, column: str, value: Any) -> Any:
        """A filter value checked against ``model.column``; a numeric string counts as its number."""
        return coerce_lookup(self.schema, model, column, value)

    # -- reads ----------------------------------------------------------------
    def get(self, model: str, id: int) -> Row | None:
        """The object (deleted or not) or ``None``."""
        statements = self._statements
        stmt = statements.select_by_id(model)
        with self._db.read() as conn:
            rows = statements.records(model, conn.execute(stmt, {"_id": id}))
        return rows[0] if rows else None

    def select(self, model: str, query: Query = Query()) -> list[Row]:
        """The objects of ``model`` (and of the models derived from it) that ``query`` selects."""
        statements = self._statements
        stmt, params = statements.query("select", model, query)
        with self._db.read() as conn:
            return statements.records(model, conn.execute(stmt, params))

    def count(self, model: str, query: Query = Query()) -> int:
        """How many objects :meth:`select` would return, without its limit and offset."""
        stmt, params = self._statements.query("count", model, query)
        with self._db.read() as conn:
            return int(conn.execute(stmt, params).scalar_one())

    def pending(self, model: str, which: Pending | str, *, limit: int | None = None) -> list[Row]:
        """Objects of ``model`` (and models derived from it) that one of the four queries selects."""
        statements = self._statements
        stmt = statements.pending(model, Pending(which).value)
        if stmt is None:
            return []
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._db.read() as conn:
            return statements.records(model, conn.execute(stmt))

    # -- writes ---------------------------------------------------------------
    def create(
        self, model: str, values: Mapping[str, Any], ctx: WriteContext = WriteContext()
    ) -> dict[str, Any]:
        """Insert an object; returns every column of it, ``id`` included."""
        self._statements.check_model(model)
        return self._writer.create(model, fill_owner(self, model, values), ctx)

    def update(
        self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext = WriteContext()
    ) -> dict[str, Any]:
        """Write ``values`` (or only ``ctx.update_fields`` of them); returns the columns written.

        The bookkeeping rules apply: a client write bumps ``updated``; a synchronizer
        write does not unless ``ctx.always_update_timestamp``; a step's write of a
        non-bookkeeping field sets ``changed_by_step``, a policy's ``changed_by_policy``.
        A deleted object whose deletion is complete is purged.
        """
        return self._writer.update(model, id, values, ctx)

    def write_batch(self, writes: Sequence[BatchWrite]) -> list[Exception | None]:
        """Several :meth:`update` s, ``(model, id, values, ctx)`` each, in one transaction: one commit.

        Group commit, for the synchronizer's status writes (a drain batch of a sync step
        or of the policies): none is durable before the batch returns, and all that
        succeeded are then. One that fails (its object purged meanwhile, a value refused)
        is undone alone and the others are kept: the result has, per write in order,
        ``None`` or the exception it raised. If the commit itself fails it raises, and none
        is stored. Writes of plain columns of their objects' root table share their
        statements (see "Group commit" in ``docs/store.md``). Notices are published after
        the commit, as for a single write. A client's save never waits in a batch:
        :meth:`update`, :meth:`create` and :meth:`delete` commit before they return.
        """
        return self._writer.update_many(writes)

    def delete(self, model: str, id: int, ctx: WriteContext = WriteContext(), *, purge: bool = False) -> None:
        """Soft-delete (``deleted = True``), or remove the rows at once with ``purge=True``.

        An object that never reached the backend and has no pending delete policy
        is purged at once.
        """
        self._writer.delete(model, id, ctx, purge=purge)

    def dangling_links(self) -> list[str]:
        """One line per stored link that names no object (data from before the foreign keys).

        ``MyInstance 4: owner_id = 999, no Service with that id``. Such rows are kept
        when a store is migrated, and logged at its start.
        """
        with self._db.read() as conn:
            return dangling_links(self.tables, conn)

    # -- notices --------------------------------------------------------------
    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe:
        """Call ``callback(notice)`` after every committed write, in the writer's thread.

        On PostgreSQL, writes committed by other processes on the same database are
        published too (from a listener thread), shortly after their commit.
        """
        self._listen()
        return self._notifier.subscribe(callback)

    def _listen(self) -> None:
        if self.shared:
            self._feed.listen(
                self.engine, self._replicas.wanted, self._replicas.on_members, lambda: self._db.write_sessions
            )

    def changes_since(self, seq: int, limit: int = 1000) -> list[ChangeNotice]:
        """Journal entries after ``seq``, oldest first (at most ``limit``)."""
        return self._journal.since(seq, limit)

    def journal_of(self, model: str, id: int, limit: int = 100) -> list[ChangeNotice]:
        """The journal entries of one object (``model`` its leaf model), newest first."""
        return self._journal.of_object(model, id, limit)

    def last_seq(self) -> int:
        """The highest ``seq`` in the journal (0 when it is empty)."""
        return self._journal.last_seq()

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
        self._replicas.join(group)
        self._listen()

    def leave(self, group: str) -> None:
        """Undo one :meth:`join`; the last one gives the group's replica lock back."""
        self._replicas.leave(group)

    def replicas(self, group: str) -> tuple[int | None, frozenset[int]]:
        """This process's replica id and the ids of the replicas in ``group``, itself included.

        ``(None, frozenset())`` on SQLite, before the first look (half a second after
        :meth:`join`) and while the listener reconnects.
        """
        return self._replicas.of(group)

    @property
    def replicas_epoch(self) -> int:
        """Grows by one whenever the replicas of a group (see :meth:`spread`) change."""
        return self._replicas.epoch

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
        return self._replicas.spread(group, ids)

    @property
    def shared(self) -> bool:
        """True when other processes may work on the same objects (PostgreSQL): see :meth:`claim`."""
        return self.dialect == "postgresql"

    @contextmanager
    def claim(self, model: str, id: int) -> Iterator[bool]:
        """Hold object ``(model, id)`` against other processes while it is synced.

        Yields ``False`` at once if another process holds it. On PostgreSQL this is
        a session advisory lock keyed by the object's root model and id, held on the
        store's claim connection (no transaction stays open); claims of one object
        within the store are counted, and the lock goes with the last (inside a
        process, the supervisor's object locks keep handlers apart). Elsewhere there
        is only one process per store and it always yields ``True``.
        """
        if not self.shared:
            yield True
            return
        with self._claims.claim(self.schema.root(model), id) as held:
            yield held

    def claim_many(self, model: str, ids: Iterable[int]) -> list[int]:
        """Claim the objects ``(model, id)`` of ``ids`` at once (one statement); the ids claimed.

        As :meth:`claim`, for objects to be let go later with :meth:`release_many`
        (each id claimed once): an object another process holds is left out.
        Elsewhere than on PostgreSQL every id is claimed and nothing is held.
        """
        if not self.shared:
            return list(ids)
        return self._claims.take(self.schema.root(model), ids)

    def claim_read(self, model: str, ids: Iterable[int]) -> dict[int, Row | None]:
        """Claim the objects ``(model, id)`` of ``ids`` and read the claimed ones afresh: id -> row.

        As :meth:`claim_many` (the ids claimed are the keys; ``None``: the object is
        gone), with the rows read after the claim was taken, so they are at least as new
        as the last status write of whoever held the claim before. On PostgreSQL the claim
        and the read are sent together: one round trip. Elsewhere every object is claimed.
        """
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        if not self.shared:
            rows = {
                row["id"]: row
                for row in self.select(model, Query(where=(Condition("id", "in", tuple(wanted)),)))
            }
            return {id: rows.get(id) for id in wanted}
        sql, layout = self._statements.by_ids(model, self.engine.dialect)
        got, read = self._claims.take_reading(self.schema.root(model), wanted, sql)
        at = layout.index["id"]
        found = {int(values[at]): Record(layout, values) for values in read}
        return {id: found.get(id) for id in got}

    def release_many(self, model: str, ids: Iterable[int]) -> None:
        """Let go the claims of :meth:`claim_many` (one statement; ids not held are passed over)."""
        if self.shared:
            self._claims.release(self.schema.root(model), ids)
