"""The one exception raised for every configuration problem, and value wording."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_MAX_SHOWN = 60


class ConfigError(Exception):
    """A configuration file, mapping or override is invalid.

    ``str()`` is one line, ``<path>[:<line>:<column>]: [<key>: ]<message>``: ``config.yaml:
    event_bus.endpoint: expected a string like "host:port" or a list of them, got 5``. *path* is the
    file as given (``None`` for a mapping), *key* the dotted key (list items by index:
    ``api.users.0.role``; ``None`` for the file as a whole), *expected* a valid value in words,
    *line* and *column* (1-based) the place of a YAML syntax error.
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        key: str | None = None,
        expected: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        # All in args, so that the error pickles (process isolation sends it between processes).
        super().__init__(message, path, key, expected, line, column)
        self.message = " ".join(message.split())
        self.path, self.key, self.expected, self.line, self.column = path, key, expected, line, column

    def __str__(self) -> str:
        where = self.path or ""
        if where and self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return ": ".join([*(part for part in (where, self.key) if part), self.message])


def dotted(parts: Sequence[Any]) -> str | None:
    """Join key path parts with dots (``None`` for the top level)."""
    return ".".join(str(p) for p in parts) or None


def describe(value: Any, *, secret: bool = False) -> str:
    """Describe *value* for an error message, briefly and without secrets."""
    if isinstance(value, Mapping):
        if not value:
            return "an empty mapping"
        keys = ", ".join(str(k) for k in value)
        return f"a mapping with the keys {_shorten(keys)}"
    if isinstance(value, list | tuple):
        return "an empty list" if not value else f"a list of {len(value)} item{'s' * (len(value) != 1)}"
    if value is None:
        return "nothing (null)"
    if secret:
        return f"a {_kind(value)} (value hidden)"
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = f"{value!s} ({_kind(value)})"
    return _shorten(shown)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
