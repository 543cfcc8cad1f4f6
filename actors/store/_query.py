"""Backend-neutral query values shared by the store, the ORM and the gRPC API."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "OPERATORS",
    "Caller",
    "Condition",
    "Pending",
    "Query",
    "WriteContext",
    "parse_lookup",
]

#: Django-style lookup suffixes understood everywhere (``name__icontains="x"``).
OPERATORS = frozenset({"eq", "gt", "gte", "lt", "lte", "iexact", "contains", "icontains", "in", "isnull"})


@dataclass(frozen=True)
class Condition:
    """``column <op> value``; the column is the stored name (``owner_id``)."""

    column: str
    op: str
    value: Any


@dataclass(frozen=True)
class Query:
    """All conditions are ANDed; ``exclude`` conditions are each negated."""

    where: tuple[Condition, ...] = ()
    exclude: tuple[Condition, ...] = ()
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0


class Pending(StrEnum):
    """The four synchronizer queries of ``docs/semantics.md``."""

    SYNC = "sync"
    SYNC_DELETED = "sync_deleted"
    POLICY = "policy"
    POLICY_DELETED = "policy_deleted"


class Caller(StrEnum):
    """Who writes: decides the bookkeeping (``updated``, ``changed_by_*``)."""

    CLIENT = "client"
    SYNCHRONIZER = "synchronizer"
    STEP = "step"
    POLICY = "policy"


@dataclass(frozen=True)
class WriteContext:
    caller: Caller = Caller.CLIENT
    always_update_timestamp: bool = False
    #: When set, only these columns are written (``save(update_fields=...)``).
    update_fields: tuple[str, ...] | None = field(default=None)
    #: A name for the writer, carried into the change notice (see ``ChangeNotice.origin``).
    origin: str | None = None


def parse_lookup(key: str) -> tuple[str, str]:
    """``"name__icontains"`` -> ``("name", "icontains")``; ``"name"`` -> ``("name", "eq")``."""
    name, sep, op = key.rpartition("__")
    if sep and op in OPERATORS:
        return name, op
    return key, "eq"
