"""Query compilation: a :class:`Query` into the terms of a SELECT, its values bound as parameters.

A query's *shape* (model, columns, operators, order) decides the statement; its values
are checked (see ``_values``) and go to the parameters. ``Statements.query`` keeps one
statement per shape: building one costs far more than running it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from actors.models import Schema

from ._errors import ValidationError
from ._query import Condition, Query
from ._values import coerce_lookup

__all__ = ["finish", "order_terms", "where_terms"]

#: Builds one term of a WHERE clause (called once per shape, when its statement is built).
Term = Callable[[], sa.ColumnElement[bool]]

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def column_of(
    schema: Schema, model: str, columns: Mapping[str, sa.ColumnElement[Any]], name: str
) -> sa.ColumnElement[Any]:
    """The column of ``model`` that ``name`` (a column or a field name) names; ``ValidationError`` if none."""
    col = columns.get(name)
    if col is None:
        f = schema.fields(model).get(name)
        col = columns.get(f.column) if f is not None else None
    if col is None:
        raise ValidationError(f"model {model} has no field {name!r}")
    return col


def order_terms(
    schema: Schema, model: str, columns: Mapping[str, sa.ColumnElement[Any]], query: Query
) -> tuple[tuple[str, bool], ...]:
    """``(column, descending)`` of each ``order_by`` key (``id`` when there is none)."""
    return tuple(
        (column_of(schema, model, columns, key.lstrip("-")).name, key.startswith("-"))
        for key in query.order_by or ("id",)
    )


def where_terms(
    schema: Schema,
    dialect: str,
    model: str,
    query: Query,
    columns: Mapping[str, sa.ColumnElement[Any]],
    params: dict[str, Any],
) -> tuple[tuple[Any, ...], list[Term]]:
    """The shape of the WHERE clause, and builders of its terms; fills ``params``."""
    key: list[Any] = []
    builders: list[Term] = []
    for i, c in enumerate(query.where):
        part, build = _condition(schema, dialect, model, columns, c, f"w{i}", params)
        key.append(part)
        builders.append(build)
    for i, c in enumerate(query.exclude):
        part, build = _condition(schema, dialect, model, columns, c, f"x{i}", params)
        key.append(("exclude", *part))
        builders.append(_excluding(build, columns[part[0]], null_test=part[1] == "isnull"))
    return tuple(key), builders


def finish(
    base: sa.Select[Any],
    builders: list[Term],
    order: tuple[tuple[str, bool], ...],
    columns: Mapping[str, sa.ColumnElement[Any]],
    *,
    limit: bool,
    offset: bool,
) -> sa.Select[Any]:
    """``base`` with the WHERE terms, the order and (as parameters) the limit and offset."""
    stmt = base.where(*(build() for build in builders))
    if order:
        stmt = stmt.order_by(*(columns[name].desc() if desc else columns[name].asc() for name, desc in order))
    if limit:
        stmt = stmt.limit(sa.bindparam("_limit", type_=sa.Integer()))
    if offset:
        stmt = stmt.offset(sa.bindparam("_offset", type_=sa.Integer()))
    return stmt


def _condition(
    schema: Schema,
    dialect: str,
    model: str,
    columns: Mapping[str, sa.ColumnElement[Any]],
    cond: Condition,
    name: str,
    params: dict[str, Any],
) -> tuple[tuple[Any, ...], Term]:
    """``(shape, build)`` of one condition; its value (checked) goes to ``params[name]``."""
    col = column_of(schema, model, columns, cond.column)
    op, value = cond.op, cond.value
    if op == "isnull" or (op == "eq" and value is None):
        is_null = bool(value) if op == "isnull" else True
        return (col.name, "isnull", is_null), lambda: col.is_(None) if is_null else col.is_not(None)
    if op == "in":
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValidationError(f"{model}.{cond.column}__in: expected a list, got {value!r}")
        params[name] = [coerce_lookup(schema, model, col.name, v) for v in value]
        return (col.name, op), lambda: col.in_(sa.bindparam(name, expanding=True))
    if op in ("iexact", "contains", "icontains"):
        if not isinstance(value, str):
            raise ValidationError(f"{model}.{cond.column}__{op}: expected a string, got {value!r}")
        text = sa.bindparam(name, type_=sa.String())
        if op == "iexact":
            params[name] = value.lower()
            return (col.name, op), lambda: sa.func.lower(col) == text
        if op == "contains" and dialect == "sqlite":
            params[name] = value  # SQLite's LIKE ignores case: instr() keeps it
            return (col.name, op), lambda: sa.func.instr(col, text) > 0
        params[name] = f"%{_escape_like(value)}%"
        if op == "contains":
            return (col.name, op), lambda: col.like(text, escape="/")
        return (col.name, op), lambda: sa.func.lower(col).like(sa.func.lower(text), escape="/")
    if value is None:
        raise ValidationError(f"{model}.{cond.column}__{op}: cannot compare with None")
    value = coerce_lookup(schema, model, col.name, value)
    compare = _COMPARISONS.get(op)
    if compare is None:
        raise ValidationError(f"unknown lookup operator {op!r}")
    params[name] = value
    return (col.name, op), lambda: compare(col, sa.bindparam(name))


def _escape_like(value: str) -> str:
    """``value`` as a literal inside a LIKE pattern with ``ESCAPE '/'``."""
    return value.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _excluding(build: Term, col: sa.ColumnElement[Any], *, null_test: bool) -> Term:
    """The negation of a condition; like Django, ``exclude(x=v)`` keeps rows where x is NULL."""
    if null_test:
        return lambda: sa.not_(build())
    return lambda: sa.or_(sa.not_(build()), col.is_(None))
