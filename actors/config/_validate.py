"""Validating a mapping against the model, and pydantic's errors as one-line :class:`ConfigError`."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from ._checks import LATE, PROBLEM, Resolve
from ._errors import ConfigError, describe, dotted
from ._model import Settings

S = TypeVar("S", bound=BaseModel)
_SCALARS = {"string": str, "integer": int, "number": float, "boolean": bool}


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
        return section.model_validate(data, context=Resolve(base_dir) if base_dir is not None else None)
    except ValidationError as exc:
        raise _translate(exc, path=path, sources=sources or {}, at=at) from None


def from_problem(exc: PydanticCustomError, at: Sequence[Any], *, path: str | None) -> ConfigError:
    """A :class:`ConfigError` from one of the model's own errors raised outside validation."""
    ctx = exc.context or {}
    return ConfigError(ctx["message"], path=path, key=dotted((*at, *ctx["at"])), expected=ctx["expected"])


def _translate(
    exc: ValidationError, *, path: str | None, sources: Mapping[tuple[Any, ...], str], at: tuple[Any, ...]
) -> ConfigError:
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] != LATE), errors[0])
    parts: tuple[Any, ...] = (*at, *error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] in (PROBLEM, LATE):
        parts = (*parts, *ctx["at"])
        message, expected = str(ctx["message"]), str(ctx["expected"])
    elif error["type"] == "extra_forbidden":
        keys = schema_at(parts[:-1])[0].get("properties", {})
        allowed = sorted(key for key, field in keys.items() if "x-original" not in field)
        close = difflib.get_close_matches(str(parts[-1]), allowed, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        expected = "one of the keys " + ", ".join(allowed)
        message = f"unknown key{hint}; allowed keys: {', '.join(allowed)}"
    elif error["type"] == "missing":
        expected = expected_of(parts) or "a value"
        message = f"missing required key; expected {expected}"
    else:
        expected = expected_of(parts) or error["msg"]
        secret = parts and parts[-1] in ("password", "password_hash", "token")
        message = f"expected {expected}, got {describe(error['input'], secret=bool(secret))}"
    for source_parts, variable in sources.items():
        shorter = min(len(parts), len(source_parts))
        if shorter and tuple(parts[:shorter]) == source_parts[:shorter]:
            message += f" (set by the environment variable {variable})"
            break
    return ConfigError(message, path=path, key=dotted(parts), expected=expected)


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration file, generated from :class:`Settings`."""
    return Settings.model_json_schema()


def default_values() -> dict[str, Any]:
    """The defaults of every key that has one, as a nested mapping (a fresh copy)."""
    values = Settings.model_construct(name="").model_dump(exclude_none=True)
    del values["name"]
    return values


_schema = functools.cache(config_schema)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` followed and, of ``X | None`` (and other unions), the first
    object or array alternative (else the first); the node's own keys (``x-expected``) win."""
    options = [option for option in node.get("anyOf", ()) if option.get("type") != "null"]
    if options:
        nested = [o for o in options if "$ref" in o or o.get("type") in ("object", "array")]
        node = {**_resolve((nested or options)[0]), **{k: v for k, v in node.items() if k != "anyOf"}}
    if "$ref" in node:
        node = {**_schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]], **node}
        del node["$ref"]
    return node


def schema_at(parts: Sequence[Any]) -> tuple[dict[str, Any], bool]:
    """The JSON Schema of the key path ``parts`` in the generated schema, and whether the whole
    path was found (if not: the schema of the last key found, ``{}`` for an unknown top key)."""
    node = _resolve(_schema())
    for depth, part in enumerate(parts):
        if isinstance(part, str) and part in node.get("properties", {}):
            node = node["properties"][part]
        elif node.get("type") == "object" and "properties" not in node:  # a mapping: its values
            node = node["additionalProperties"] if isinstance(node.get("additionalProperties"), dict) else {}
        elif node.get("type") == "array" and isinstance(part, int):
            node = node.get("items", {})
        else:
            return (node if depth else {}), False
        node = _resolve(node)
    return node, True


def expected_of(parts: Sequence[Any]) -> str | None:
    """How a valid value at ``parts`` is worded (``x-expected``, or the keys of a section)."""
    node = schema_at(parts)[0]
    if "x-expected" in node:
        return str(node["x-expected"])
    return "a mapping with the keys " + ", ".join(node["properties"]) if "properties" in node else None


def scalar_type(parts: Sequence[Any]) -> type | None:
    """The one scalar type (``str``, ``int``, ``float``, ``bool``) the key path accepts, else ``None``."""
    node, found = schema_at(parts)
    if not found or "enum" in node or "const" in node:
        return None
    return _SCALARS.get(node.get("type", ""))
