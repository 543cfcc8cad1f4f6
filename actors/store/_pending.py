"""The four synchronizer queries, each defined once: as SQL and as a test on one row.

A query is a few flags that must be true, a few that must be false, and optionally a
*stale* mark: ``enacted`` (or ``policed``) that is NULL or older than one of the
columns that a newer change writes. :meth:`PendingQuery.condition` writes it as the
WHERE clause of the query and of its partial index (see ``Tables``);
:meth:`PendingQuery.matches` tests a row in hand the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

__all__ = ["BOOKKEEPING", "PENDING", "pending_condition", "row_is_pending"]


@dataclass(frozen=True)
class PendingQuery:
    """``true`` columns set, ``false`` columns unset, and ``stale`` NULL or older than one of ``newer``."""

    true: tuple[str, ...] = ()
    false: tuple[str, ...] = ()
    stale: str | None = None
    newer: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the query reads."""
        return (*self.true, *self.false, *((self.stale,) if self.stale else ()), *self.newer)

    def condition(self, c: Callable[[str], sa.ColumnElement[Any]]) -> sa.ColumnElement[bool]:
        """The WHERE clause, without bound values (``c(name)`` is the column).

        Written only with NOT / IS NULL / column comparisons, so the query text equals
        the partial index's text and both SQLite and PostgreSQL plan an index scan.
        """
        terms = [c(name) for name in self.true] + [sa.not_(c(name)) for name in self.false]
        if self.stale is not None:
            mark = c(self.stale)
            terms.append(sa.or_(mark.is_(None), *(mark < c(name) for name in self.newer)))
        return sa.and_(*terms)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """The same test as :meth:`condition`, on one row (SQL's ``NULL < x`` is false)."""
        get = row.get
        for name in self.true:
            if not get(name):
                return False
        for name in self.false:
            if get(name):
                return False
        if self.stale is None:
            return True
        mark = get(self.stale)
        if mark is None:
            return True
        for name in self.newer:
            newer = get(name)
            if newer is not None and mark < newer:
                return True
        return False


#: The four queries of ``docs/store.md``, by name (the values of ``Pending``).
PENDING: dict[str, PendingQuery] = {
    "sync": PendingQuery(
        false=("deleted", "no_sync", "lazy_blocked"), stale="enacted", newer=("updated", "changed_by_policy")
    ),
    "sync_deleted": PendingQuery(true=("deleted", "backend_need_delete"), false=("backend_need_reap",)),
    "policy": PendingQuery(
        false=("deleted", "no_policy"), stale="policed", newer=("updated", "changed_by_step")
    ),
    "policy_deleted": PendingQuery(
        true=("deleted",), false=("no_policy",), stale="policed", newer=("updated",)
    ),
}

#: Columns the four queries read; a root table without all of them has no pending rows.
BOOKKEEPING = tuple(dict.fromkeys(name for query in PENDING.values() for name in query.columns))


def _query(which: str) -> PendingQuery:
    query = PENDING.get(which)
    if query is None:
        raise ValueError(f"unknown pending query {which!r}")
    return query


def pending_condition(which: str, c: Callable[[str], sa.ColumnElement[Any]]) -> sa.ColumnElement[bool]:
    """The WHERE clause of pending query ``which`` (see :meth:`PendingQuery.condition`)."""
    return _query(which).condition(c)


def row_is_pending(row: Mapping[str, Any], which: str) -> bool:
    """Whether pending query ``which`` selects ``row`` (see :meth:`PendingQuery.matches`)."""
    return _query(which).matches(row)
