"""The xproto files clients uploaded through the API, kept in the store's database for restarts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["UploadLog"]


class UploadLog:
    """The xproto files clients uploaded, kept in the store's database for restarts.

    Table ``actors_api_xproto``: one row per distinct text (``digest``, the
    ``name`` the client gave, ``content``, ``uploaded_at``). On start the core
    merges them again in upload order; a declaration narrower than one already
    loaded is ignored, so older versions of a file do no harm.

    The table lives in ``store``'s database and is created there if missing.
    """

    TABLE = "actors_api_xproto"

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._meta = sa.MetaData()
        self._table = sa.Table(
            self.TABLE,
            self._meta,
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(1024), nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("uploaded_at", sa.Float, nullable=False),
        )
        self._meta.create_all(self._engine)

    def files(self) -> list[tuple[str, str]]:
        """``(name, content)`` of every stored file, oldest first."""
        table = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.content).order_by(table.c.uploaded_at))
            return [(r.name, r.content) for r in rows]

    def save(self, files: Iterable[tuple[str, str]]) -> None:
        """Keep ``(name, content)`` files; a text already kept moves to the end under its new name."""
        table = self._table
        now = time.time()
        with self._engine.begin() as conn:
            for name, content in files:
                digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
                conn.execute(table.delete().where(table.c.digest == digest))
                conn.execute(
                    table.insert().values(digest=digest, name=name, content=content, uploaded_at=now)
                )
