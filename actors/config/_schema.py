"""The JSON Schema (``schema.yaml``): validation, error wording, defaults."""

from __future__ import annotations

import copy
import difflib
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, relevance

from ._errors import ConfigError, dotted

__all__ = [
    "config_schema",
    "default_values",
    "expected_type",
    "lookup",
    "original_keys",
    "schema",
    "validate",
]

_MISSING = object()
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@functools.cache
def schema() -> dict[str, Any]:
    """The configuration JSON Schema, as loaded from ``schema.yaml`` (do not mutate)."""
    text = resources.files(__package__).joinpath("schema.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    Draft202012Validator.check_schema(loaded)
    return loaded


@functools.cache
def original_keys() -> dict[str, str]:
    """Top-level keys of the original framework accepted with a warning: key -> why it does nothing here."""
    return {key: str(sub["x-original"]) for key, sub in schema()["properties"].items() if "x-original" in sub}


def config_schema() -> dict[str, Any]:
    """A copy of the configuration JSON Schema (draft 2020-12), as shipped in ``schema.yaml``."""
    return copy.deepcopy(schema())


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _resolve(node: Mapping[str, Any]) -> dict[str, Any]:
    """Inline a local ``$ref`` (its siblings win over the referenced schema)."""
    if "$ref" not in node:
        return dict(node)
    ref = node["$ref"]
    prefix = "#/$defs/"
    if not ref.startswith(prefix):  # pragma: no cover - the schema only uses local $defs
        raise ValueError(f"unsupported $ref {ref!r}")
    target = _resolve(schema()["$defs"][ref[len(prefix) :]])
    target.update((k, v) for k, v in node.items() if k != "$ref")
    return target


def _matches_type(node: Mapping[str, Any], value: Any) -> bool:
    wanted = node.get("type")
    if wanted is None:
        return False
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    for name in names:
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, _TYPES[name]):
            return True
    return False


def _matching_branch(branches: Sequence[Mapping[str, Any]], value: Any) -> int | None:
    """Index of the first ``anyOf``/``oneOf`` branch whose type fits *value*."""
    for index, branch in enumerate(branches):
        if _matches_type(_resolve(branch), value):
            return index
    return None


def _child(value: Any, part: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(part, _MISSING)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return _MISSING


def lookup(parts: Sequence[Any], instance: Any = _MISSING) -> dict[str, Any] | None:
    """The (resolved) subschema of the key path *parts*, or ``None`` if unknown.

    *instance* is the whole document; where a key accepts alternatives
    (``anyOf``), it picks the alternative to descend into.
    """
    node = _resolve(schema())
    value = instance
    for part in parts:
        for combinator in ("anyOf", "oneOf"):
            if combinator in node:
                index = _matching_branch(node[combinator], value)
                if index is not None:
                    node = _resolve(node[combinator][index])
        sub: Any
        if isinstance(part, int):
            prefix = node.get("prefixItems") or []
            sub = prefix[part] if part < len(prefix) else node.get("items")
        elif part in node.get("properties", {}):
            sub = node["properties"][part]
        else:
            sub = node.get("additionalProperties")
        if not isinstance(sub, Mapping):
            return None
        node = _resolve(sub)
        value = _child(value, part) if value is not _MISSING else _MISSING
    return node


def expected_type(parts: Sequence[Any]) -> str | None:
    """The one JSON type the key path *parts* accepts (``"string"``...), else ``None``."""
    node = lookup(parts)
    wanted = node.get("type") if node is not None else None
    return wanted if isinstance(wanted, str) else None


def default_values() -> dict[str, Any]:
    """The defaults declared in the schema, as a nested mapping (a fresh copy)."""
    return _defaults_of(_resolve(schema()))


def _defaults_of(node: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub)
        if "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        elif sub.get("type") == "object":
            nested = _defaults_of(sub)
            if nested:
                result[key] = nested
    return result


def validate(
    instance: Any,
    *,
    path: str | None,
    at: Sequence[str] = (),
    sources: Mapping[tuple[Any, ...], str] | None = None,
    note: str = "",
) -> None:
    """Validate *instance* (the document, or the value at key path *at*).

    Raises:
        ConfigError: for the most relevant problem found, worded for people.
    """
    if at:
        node = lookup(at)
        if node is None:  # pragma: no cover - callers pass known keys
            raise ValueError(f"unknown key path {at!r}")
        validator = Draft202012Validator({**node, "$defs": schema()["$defs"]})
        root: Any = _nest(at, instance)
    else:
        validator = _validator()
        root = instance
    errors = list(validator.iter_errors(instance))
    if errors:
        best = _select(errors)
        raise _translate(best, root=root, at=tuple(at), path=path, sources=sources or {}, note=note)


def _nest(parts: Sequence[str], value: Any) -> Any:
    for part in reversed(parts):
        value = {part: value}
    return value


def _select(errors: Iterable[ValidationError]) -> ValidationError:
    """Pick one error: the most relevant, then inside the alternative that fits."""
    best = max(errors, key=relevance)
    while best.validator in ("anyOf", "oneOf") and best.context:
        branches: Any = best.validator_value
        index = _matching_branch(branches, best.instance)
        inside = [e for e in best.context if e.relative_schema_path and e.relative_schema_path[0] == index]
        if index is None or not inside:
            break
        best = max(inside, key=relevance)
    return best


def _translate(
    error: ValidationError,
    *,
    root: Any,
    at: tuple[str, ...],
    path: str | None,
    sources: Mapping[tuple[Any, ...], str],
    note: str,
) -> ConfigError:
    parts = (*at, *error.absolute_path)
    instance = error.instance
    wanted: Any = error.validator_value
    subschema = error.schema if isinstance(error.schema, Mapping) else {}

    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        allowed = [k for k, sub in subschema.get("properties", {}).items() if "x-original" not in sub]
        unknown = next((k for k in instance if k not in allowed), None)
        key_parts = (*parts, unknown)
        close = difflib.get_close_matches(str(unknown), allowed, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        expected = "one of the keys " + ", ".join(sorted(allowed))
        message = f"unknown key{hint}; allowed keys: {', '.join(sorted(allowed))}"
        return _error(message, key_parts, expected, path, sources, note)

    if error.validator in ("required", "dependentRequired") and isinstance(instance, Mapping):
        why = subschema.get("x-why")
        if error.validator == "required":
            missing = next((k for k in wanted if k not in instance), None)
        else:
            missing = None
            for trigger, needed in wanted.items():
                if trigger in instance:
                    missing = next((k for k in needed if k not in instance), None)
                    if missing is not None:
                        why = f"needed with {trigger}"
                        break
        key_parts = (*parts, missing)
        expected = _expected(key_parts, root) or "a value"
        message = f"missing required key{f' ({why})' if why else ''}; expected {expected}"
        return _error(message, key_parts, expected, path, sources, note)

    expected = _expected(parts, root) or _fallback(error)
    built = ConfigError.wrong_value(dotted(parts), expected, instance, path=path)
    return _error(built.message, parts, expected, path, sources, note)


def _error(
    message: str,
    parts: Sequence[Any],
    expected: str,
    path: str | None,
    sources: Mapping[tuple[Any, ...], str],
    note: str,
) -> ConfigError:
    for source_parts, variable in sources.items():
        shorter = min(len(parts), len(source_parts))
        if shorter and tuple(parts[:shorter]) == source_parts[:shorter]:
            message += f" (set by the environment variable {variable})"
            break
    return ConfigError(message + note, path=path, key=dotted(parts), expected=expected)


def _expected(parts: Sequence[Any], root: Any) -> str | None:
    node = lookup(parts, root)
    if node is None:
        return None
    wording = node.get("x-expected")
    return str(wording) if wording is not None else None


def _fallback(error: ValidationError) -> str:
    """Describe what the failing keyword wanted, for nodes without ``x-expected``."""
    value: Any = error.validator_value
    match error.validator:
        case "type":
            names = [value] if isinstance(value, str) else list(value)
            return " or ".join(_TYPE_WORDS.get(n, n) for n in names)
        case "enum":
            return "one of " + ", ".join(json.dumps(v) for v in value)
        case "const":
            return json.dumps(value)
        case "minimum":
            return f"a number >= {value}"
        case "exclusiveMinimum":
            return f"a number > {value}"
        case "maximum":
            return f"a number <= {value}"
        case "exclusiveMaximum":
            return f"a number < {value}"
        case "minLength":
            return "a non-empty string" if value == 1 else f"a string of at least {value} characters"
        case "pattern":
            return f"a string matching {value}"
        case _:
            return error.message
