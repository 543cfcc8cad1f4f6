"""The store's errors, and the URL form they print (password hidden)."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["NotFound", "StoreError", "StoreInUse", "StoreOpenError", "ValidationError", "safe_url"]


class StoreError(Exception):
    """Base of the store's own errors."""


class ValidationError(StoreError, ValueError):
    """A value, field or model that the schema does not allow; the message names it."""


class NotFound(StoreError, LookupError):
    """No object of that model with that id."""


class StoreOpenError(StoreError):
    """The database cannot be opened or used; one line naming the URL (password hidden) and the reason."""


class StoreInUse(StoreOpenError):
    """Another owner holds this SQLite file (see :class:`~actors.store.Store` ``exclusive``)."""


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unprintable URL)"
