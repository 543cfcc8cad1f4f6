"""Value checks: every value written or filtered on is checked against its field first.

A wrong value is a :class:`ValidationError` naming the model, the column and the
problem (``Widget.size: expected an integer, got 'x'``); nothing reaches the database.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from actors.models import FieldSpec, Schema

from ._errors import ValidationError

__all__ = ["check_column", "check_id", "check_value", "coerce_lookup"]

#: The range of each integer kind (``uint64`` stops where a signed BIGINT does).
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**63 - 1),
}


def check_column(schema: Schema, model: str, column: str, value: Any) -> Any:
    """``value`` checked against ``model.column`` of ``schema`` (``id`` may be ``None``: not assigned yet)."""
    if column == "id":
        return value if value is None else check_id(model, value)
    f = schema.fields_by_column(model).get(column)
    if f is None:
        raise ValidationError(f"model {model} has no field {column!r}")
    return check_value(model, f, value)


def coerce_lookup(schema: Schema, model: str, column: str, value: Any) -> Any:
    """A filter value checked against ``model.column``; a numeric string counts as its number."""
    if isinstance(value, str):
        f = schema.fields_by_column(model).get(column)
        integer = column == "id" or (f is not None and (f.is_link or f.kind in INT_RANGES))
        if integer or (f is not None and f.kind in ("float", "double")):
            number = number_from_text(value, integer=integer)
            value = value if number is None else number
    return check_column(schema, model, column, value)


_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def number_from_text(text: str, *, integer: bool) -> int | float | None:
    """The number a filter value such as ``"1"`` spells, or ``None`` if it spells none.

    Events carry numbers as text (``portId="1"``); the original's ORM converted
    them when filtering a numeric field, and so do lookups here. ``integer``:
    only whole numbers (``"1.5"`` is not an integer).
    """
    if integer:
        return int(text) if _INTEGER_TEXT.fullmatch(text) else None
    return float(text) if _NUMBER_TEXT.fullmatch(text) else None


def check_id(model: str, value: Any) -> int:
    """``value`` as an object id of ``model``; :class:`ValidationError` if it is not an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{model}.id: expected an integer, got {value!r}")
    return value


def check_value(model: str, f: FieldSpec, value: Any) -> Any:
    """``value`` checked (and ints widened to float) for field ``f``; :class:`ValidationError` if not."""
    # Called for every value written: the common path avoids building strings and parsing options.
    if value is None:
        if f.nullable:
            return None
        raise ValidationError(f"{model}.{f.column}: may not be null")
    if f.is_link:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{model}.{f.column}: expected an object id (integer), got {value!r}")
        return value
    kind = f.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValidationError(f"{model}.{f.column}: expected a boolean, got {value!r}")
        return value
    if kind in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{model}.{f.column}: expected an integer, got {value!r}")
        low, high = INT_RANGES[kind]
        if not low <= value <= high:
            raise ValidationError(f"{model}.{f.column}: {value} is out of range for {kind}")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{model}.{f.column}: expected a number, got {value!r}")
        value = float(value)
        if value != value:  # SQLite would store NaN as NULL
            raise ValidationError(f"{model}.{f.column}: NaN is not allowed")
    elif kind in ("string", "text"):
        if not isinstance(value, str):
            raise ValidationError(f"{model}.{f.column}: expected a string, got {value!r}")
        max_length = f.max_length
        if max_length is not None and len(value) > max_length:
            raise ValidationError(
                f"{model}.{f.column}: longer than max_length {max_length} ({len(value)} characters)"
            )
        if "\x00" in value:
            raise ValidationError(f"{model}.{f.column}: NUL characters are not allowed")
    options = f.options
    if "min_value" in options or "max_value" in options:
        for bound, ok in (("min_value", operator.ge), ("max_value", operator.le)):
            limit = options.get(bound)
            if isinstance(limit, int | float) and not isinstance(limit, bool) and not ok(value, limit):
                raise ValidationError(f"{model}.{f.column}: {value!r} is outside {bound} {limit}")
    if "choices" in options:
        choices = f.choices
        if choices and value not in f.choice_values and value != f.default:
            allowed = ", ".join(repr(c[0]) for c in choices)
            raise ValidationError(f"{model}.{f.column}: {value!r} is not one of the choices ({allowed})")
    return value
