"""The journal: one row per committed write (``actors_changes``), the source of change notices.

Every write appends its entries in its own transaction (so a notice exists only for a
commit); readers resume after the last ``seq`` they saw. Every thousandth write prunes
what is older than the last ``keep`` entries.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ._engine import Database
from ._notices import ChangeNotice
from ._statements import DRIVER_CHUNK, DriverSql

__all__ = ["PRUNE_EVERY", "Journal"]

#: Writes between two prunes of the journal.
PRUNE_EVERY = 1000
#: The columns an entry is written with (``seq`` is the database's).
_COLUMNS = ("model", "object_id", "kind", "at", "origin")


class Journal:
    """Appends to and reads the journal table of the store's tables (given by :meth:`use`)."""

    table: sa.Table

    def __init__(self, db: Database, *, keep: int) -> None:
        self._db = db
        self._keep = keep
        self._writes = 0

    def use(self, table: sa.Table) -> None:
        """Work on ``table`` (the journal of a new schema's tables: the same table, another object)."""
        self.table = table
        self._insert = table.insert()

    def append(
        self,
        conn: sa.Connection,
        notices: list[ChangeNotice],
        model: str,
        id: int,
        kind: str,
        at: float,
        origin: str | None = None,
    ) -> None:
        """Write one entry in ``conn``'s transaction; its notice goes to ``notices``."""
        result = conn.execute(
            self._insert, {"model": model, "object_id": id, "kind": kind, "at": at, "origin": origin}
        )
        seq = result.inserted_primary_key[0] if result.inserted_primary_key else 0
        notices.append(ChangeNotice(seq=int(seq), model=model, id=id, kind=kind, at=at, origin=origin))

    def append_many(
        self,
        cursor: Any,
        sql: DriverSql,
        notices: list[ChangeNotice],
        entries: list[tuple[str, int, str, float, str | None]],
    ) -> None:
        """Write entries ``(model, id, kind, at, origin)`` on the driver's ``cursor``, notices to ``notices``.

        One ``INSERT ... VALUES (...), (...) RETURNING seq, at`` per :data:`DRIVER_CHUNK`
        entries. Each entry is known by its ``at`` (the store's clock never gives one
        twice), so the order the database returns the rows in does not matter; the
        notices go out in ``seq`` order.
        """
        by_at = {entry[3]: entry for entry in entries}
        if len(by_at) < len(entries):
            raise ValueError("journal entries of one batch must have distinct times")
        for start in range(0, len(entries), DRIVER_CHUNK):
            chunk = entries[start : start + DRIVER_CHUNK]
            cursor.execute(
                sql.insert(self.table, _COLUMNS, len(chunk), ("seq", "at")),
                [value for model, id, kind, at, origin in chunk for value in (model, id, kind, at, origin)],
            )
            for seq, at in sorted(cursor.fetchall(), key=lambda r: int(r[0])):
                model, id, kind, _at, origin = by_at[at]
                notices.append(
                    ChangeNotice(seq=int(seq), model=model, id=id, kind=kind, at=at, origin=origin)
                )

    def committed(self, writes: int = 1) -> None:
        """Count ``writes`` committed writes; every :data:`PRUNE_EVERY` th prunes the journal."""
        before, self._writes = self._writes, self._writes + writes
        if self._writes // PRUNE_EVERY > before // PRUNE_EVERY:
            last = sa.select(sa.func.max(self.table.c.seq)).scalar_subquery()
            with self._db.engine.begin() as conn:  # one statement: on PostgreSQL one round trip fewer
                conn.execute(self.table.delete().where(self.table.c.seq <= last - self._keep))

    def read(self, where: sa.ColumnElement[bool], limit: int) -> list[ChangeNotice]:
        """The entries ``where`` selects, oldest first (at most ``limit``)."""
        journal = self.table
        stmt = sa.select(journal).where(where).order_by(journal.c.seq).limit(limit)
        with self._db.read() as conn:
            return [_notice(r) for r in conn.execute(stmt)]

    def since(self, seq: int, limit: int = 1000) -> list[ChangeNotice]:
        """Entries after ``seq``, oldest first (at most ``limit``)."""
        return self.read(self.table.c.seq > seq, limit)

    def of_object(self, model: str, id: int, limit: int) -> list[ChangeNotice]:
        """The newest ``limit`` entries of one object, newest first."""
        journal = self.table
        stmt = (
            sa.select(journal)
            .where(journal.c.model == model, journal.c.object_id == id)
            .order_by(journal.c.seq.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            return [_notice(r) for r in conn.execute(stmt)]

    def last_seq(self) -> int:
        """The highest ``seq`` written (0 for an empty journal)."""
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(self.table.c.seq))).scalar() or 0)


def _notice(r: Any) -> ChangeNotice:
    return ChangeNotice(seq=r.seq, model=r.model, id=r.object_id, kind=r.kind, at=r.at, origin=r.origin)
