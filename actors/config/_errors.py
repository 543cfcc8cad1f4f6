"""The one exception of every configuration problem, how problems are worded, and validating a
section, its first problem raised as that exception."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

#: Error types of the model's own checks: problems; (``LATE``) problems found while resolving
#: paths and files, reported only when the shape is right; (``SHAPE``) a section given a value
#: that is no mapping, worded by the type around it where that type has a wording.
PROBLEM, LATE, SHAPE = "actors_config", "actors_config_late", "actors_config_shape"
_KINDS = {bool: "boolean", int: "number", float: "number", str: "string"}
_MAX_SHOWN = 60
S = TypeVar("S", bound=BaseModel)


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


def problem(
    message: str, expected: str, at: tuple[Any, ...] = (), *, kind: str = PROBLEM
) -> PydanticCustomError:
    """An error of the model's own checks (``kind``): ``message`` at ``at`` below the field's location."""
    return PydanticCustomError(kind, "{message}", {"message": message, "expected": expected, "at": at})


def wrong(
    expected: str, value: Any, at: tuple[Any, ...] = (), *, note: str = "", secret: bool = False
) -> Any:
    """The :func:`problem` "expected <expected>, got <value><note>" (``secret``: the value not shown)."""
    return problem(f"expected {expected}, got {describe(value, secret=secret)}{note}", expected, at)


def validate_section(
    section: type[S],
    data: Mapping[str, Any],
    *,
    at: tuple[Any, ...] = (),
    path: str | None = None,
    base_dir: Path | None = None,
    sources: Mapping[tuple[Any, ...], str] | None = None,
) -> S:
    """Check *data* as *section* (found at the key path *at*: ``event_bus`` at ``("event_bus",)``), its
    paths resolved against *base_dir* (``None``: left as given); *sources* name the environment
    variables that set keys. Raises :class:`ConfigError` for the first problem (shape before paths)."""
    try:
        return section.model_validate(data, context=base_dir)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] != LATE), errors[0])
    ctx = error.get("ctx") or {}
    parts: tuple[Any, ...] = (*at, *error["loc"], *ctx.get("at", ()))
    if error["type"].startswith(PROBLEM):
        message, expected = str(ctx["message"]), str(ctx["expected"])
    else:  # a check no type of the model words (a mapping's key that is not a string)
        message, expected = f"{error['msg']}, got {describe(error['input'])}", error["msg"]
    set_by = [
        v for source, v in (sources or {}).items() if parts and source[: len(parts)] == parts[: len(source)]
    ]
    message += f" (set by the environment variable {set_by[0]})" if set_by else ""
    raise ConfigError(message, path=path, key=dotted(parts), expected=expected)


def dotted(parts: Sequence[Any]) -> str | None:
    """Join key path parts with dots (``None`` for the top level)."""
    return ".".join(str(p) for p in parts) or None


def describe(value: Any, *, secret: bool = False) -> str:
    """Describe *value* for an error message, briefly and without secrets."""
    if isinstance(value, Mapping):
        return (
            f"a mapping with the keys {_shorten(', '.join(map(str, value)))}" if value else "an empty mapping"
        )
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' * (len(value) != 1)}" if value else "an empty list"
    if value is None:
        return "nothing (null)"
    kind = next((name for cls, name in _KINDS.items() if isinstance(value, cls)), type(value).__name__)
    if secret:
        return f"a {kind} (value hidden)"
    try:
        return _shorten(json.dumps(value))
    except (TypeError, ValueError):
        return _shorten(f"{value!s} ({kind})")


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
