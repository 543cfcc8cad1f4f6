"""What the database said when it refused a query or a value, for callers outside the store."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["database_rejection"]


def database_rejection(exc: BaseException) -> str | None:
    """A one-line reason if ``exc`` is the database (or SQLAlchemy) refusing the request, else ``None``.

    A query that cannot be built says ``cannot build the query: ...``; a value the database
    rejects (a constraint, a type) says ``rejected by the database: ...``.
    """
    if isinstance(exc, sa.exc.ArgumentError):
        return f"cannot build the query: {exc}"
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
        return f"rejected by the database: {exc.orig if exc.orig is not None else exc}"
    return None
