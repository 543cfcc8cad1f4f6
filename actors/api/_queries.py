"""Requests to store queries: paging, ``FilterRequest`` conditions and the checks on their lookups."""

from __future__ import annotations

from typing import Any

import grpc

from actors.models import FieldSpec, Schema
from actors.store import OPERATORS, Condition, Pending, Query, ValidationError

from ._wire import ApiError, condition_from_message

__all__ = ["filter_query", "paging"]

#: Lookups that only apply to text columns.
_TEXT_OPERATORS = frozenset({"iexact", "contains", "icontains"})
#: Lookups that order values (not for booleans).
_ORDER_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})


def paging(req: Any) -> tuple[int | None, int]:
    """``(limit, offset)`` of a request with ``optional limit`` and ``offset``; both must be >= 0."""
    limit = req.limit if req.HasField("limit") else None
    if limit is not None and limit < 0:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be >= 0, got {limit}")
    if req.offset < 0:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"offset must be >= 0, got {req.offset}")
    return limit, req.offset


def _pending(req: Any, limit: int | None, offset: int) -> tuple[Query, Pending]:
    try:
        which = Pending(req.pending)
    except ValueError:
        allowed = ", ".join(p.value for p in Pending)
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown pending query {req.pending!r} (expected one of {allowed})",
        ) from None
    if req.where or req.exclude or req.order_by or offset:
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "pending cannot be combined with where, exclude, order_by or offset (only limit)",
        )
    return Query(limit=limit), which


def _check_lookup(model: str, cond: Condition, f: FieldSpec | None) -> None:
    """Refuse lookups the database cannot run, with a message naming the field."""
    where = f"{model}.{cond.column}__{cond.op}"
    if cond.op == "isnull" and not isinstance(cond.value, bool):
        raise ValidationError(f"{where}: expected true or false, got {cond.value!r}")
    if f is not None:
        kind = "link" if f.is_link else f.kind
        if cond.op in _TEXT_OPERATORS and kind not in ("string", "text"):
            raise ValidationError(f"{where}: only string fields take {cond.op} ({cond.column} is {kind})")
        if cond.op in _ORDER_OPERATORS and kind == "bool":
            raise ValidationError(f"{where}: a boolean field cannot be compared with {cond.op}")
    if cond.op not in OPERATORS:
        allowed = ", ".join(sorted(OPERATORS))
        raise ValidationError(
            f"{model}.{cond.column}: unknown lookup operator {cond.op!r} (expected one of {allowed})"
        )


def filter_query(schema: Schema, model: str, req: Any) -> tuple[Query, Pending | None]:
    """The query of a ``FilterRequest``, or its pending query (then only ``limit`` is set)."""
    limit, offset = paging(req)
    if req.pending:
        return _pending(req, limit, offset)
    known = model in schema  # a model the schema lacks has no fields to check
    fields = schema.fields(model) if known else {}
    by_column = schema.fields_by_column(model) if known else {}
    conditions = []
    for group in (req.where, req.exclude):
        out = []
        for c in group:
            cond = condition_from_message(c)
            _check_lookup(model, cond, fields.get(cond.column) or by_column.get(cond.column))
            out.append(cond)
        conditions.append(tuple(out))
    return Query(conditions[0], conditions[1], tuple(req.order_by), limit, offset), None
