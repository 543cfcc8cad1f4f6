"""Rows as read-only mappings over the database driver's tuples.

A read returns :class:`Record` objects: each holds the tuple the driver produced and a
:class:`Layout` shared by every row of that statement (column names, their positions,
and the conversion a column needs, such as SQLite's ``0``/``1`` to ``bool``). No dict is
built per row and no value is converted until it is read, so a query that returns a
thousand objects costs little more than the driver's own fetch, and a queued row takes
a third of the memory of a dict. ``as_dict`` copies one into a plain dict when a
caller needs to change it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any

import sqlalchemy as sa

__all__ = ["BackendCode", "Layout", "Record", "Row", "as_dict", "fetch_records", "register_of"]

#: What every read of the store returns for one object: column name -> value.
Row = Mapping[str, Any]


class BackendCode(IntEnum):
    """``backend_code`` as stored (the original's values): how the last sync of the object went;
    ``policy_code`` takes the same values for its last policy run (``PENDING``: none yet)."""

    #: Not synced yet, or deferred (waiting for something else: not an error).
    PENDING = 0
    #: Synced, or failed with an innocuous error.
    OK = 1
    #: Failed (or blocked by a failed dependency).
    ERROR = 2


def register_of(row: Row) -> dict[str, Any]:
    """``backend_register`` (the sync bookkeeping JSON) parsed; a malformed one reads as empty."""
    raw = row.get("backend_register")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


Converter = Callable[[Any], Any] | None


class Layout:
    """The columns of one statement's rows: names, positions and conversions (built once per shape)."""

    __slots__ = ("convert", "converting", "index", "keys")

    def __init__(self, keys: Sequence[str], convert: Sequence[Converter]) -> None:
        self.keys = tuple(keys)
        self.index = {key: i for i, key in enumerate(self.keys)}
        self.convert = tuple(convert)
        self.converting = any(self.convert)


class Record(Mapping[str, Any]):
    """One row: a read-only mapping of column name to value, over the driver's tuple."""

    __slots__ = ("_layout", "_values")

    def __init__(self, layout: Layout, values: Sequence[Any]) -> None:
        self._layout = layout
        self._values = values

    def __getitem__(self, key: str) -> Any:
        i = self._layout.index[key]
        value = self._values[i]
        convert = self._layout.convert[i]
        return value if convert is None or value is None else convert(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.keys)

    def __len__(self) -> int:
        return len(self._layout.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._layout.index

    def to_dict(self) -> dict[str, Any]:
        """A new dict with the same items (faster than ``dict(record)``)."""
        layout = self._layout
        values = self._values
        if layout.converting:
            pairs = zip(values, layout.convert, strict=True)
            values = [v if c is None or v is None else c(v) for v, c in pairs]
        return dict(zip(layout.keys, values, strict=True))

    def __repr__(self) -> str:
        return f"Record({self.to_dict()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self.to_dict(),))


def as_dict(row: Row) -> dict[str, Any]:
    """A mutable copy of ``row``."""
    return row.to_dict() if type(row) is Record else dict(row)


def fetch_records(result: sa.CursorResult[Any], layout: Layout) -> list[Row]:
    """Every row of a SELECT's ``result`` as :class:`Record` objects; closes the result.

    The rows are taken from the driver's cursor, skipping SQLAlchemy's per-row result
    processing; ``layout`` (whose keys are the result's) carries the conversions that
    processing would have made (only SQLite's booleans need one for the store's types).
    """
    values = result.cursor.fetchall()
    result.close()
    return [Record(layout, v) for v in values]
