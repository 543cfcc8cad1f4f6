"""Validating a mapping against the model, and pydantic's errors as one-line :class:`ConfigError`."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ._checks import LATE, PROBLEM, Resolve
from ._errors import ConfigError, dotted
from ._model import Settings

S = TypeVar("S", bound=BaseModel)


def validate(
    data: Mapping[str, Any],
    *,
    path: str | None,
    base_dir: Path | None,
    sources: Mapping[tuple[Any, ...], str] | None = None,
) -> Settings:
    """The :class:`Settings` of ``data``; paths resolved against ``base_dir`` (``None``: left as given).

    Raises:
        ConfigError: for the first problem, shape problems before those of paths and files.
    """
    try:
        return Settings.model_validate(data, context=Resolve(base_dir) if base_dir is not None else None)
    except ValidationError as exc:
        raise _translate(exc, path=path, sources=sources or {}) from None


def validate_section(section: type[S], data: Mapping[str, Any], *, at: tuple[Any, ...]) -> S:
    """Check one section given by code (not a file), such as ``event_bus`` at ``("event_bus",)``.

    Raises:
        ConfigError: for the first problem, its key starting with ``at``.
    """
    try:
        return section.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, path=None, sources={}, at=at) from None


def from_problem(exc: PydanticCustomError, at: Sequence[Any], *, path: str | None) -> ConfigError:
    """A :class:`ConfigError` from one of the model's own errors raised outside validation."""
    ctx = exc.context or {}
    return ConfigError(ctx["message"], path=path, key=dotted((*at, *ctx["at"])), expected=ctx["expected"])


def _translate(
    exc: ValidationError,
    *,
    path: str | None,
    sources: Mapping[tuple[Any, ...], str],
    at: tuple[Any, ...] = (),
) -> ConfigError:
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] != LATE), errors[0])
    parts: tuple[Any, ...] = (*at, *error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] in (PROBLEM, LATE):
        parts = (*parts, *ctx["at"])
        message, expected = str(ctx["message"]), str(ctx["expected"])
    elif error["type"] == "extra_forbidden":
        holder = walk(parts[:-1])[1]
        fields = holder.model_fields if isinstance(holder, type) and issubclass(holder, BaseModel) else {}
        allowed = sorted(k for k, f in fields.items() if "x-original" not in _extra(f))
        close = difflib.get_close_matches(str(parts[-1]), allowed, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        expected = "one of the keys " + ", ".join(allowed)
        message = f"unknown key{hint}; allowed keys: {', '.join(allowed)}"
    elif error["type"] == "missing":
        expected = expected_of(parts) or "a value"
        message = f"missing required key; expected {expected}"
    else:
        expected = expected_of(parts) or error["msg"]
        message = ConfigError.wrong_value(dotted(parts), expected, error["input"]).message
    for source_parts, variable in sources.items():
        shorter = min(len(parts), len(source_parts))
        if shorter and tuple(parts[:shorter]) == source_parts[:shorter]:
            message += f" (set by the environment variable {variable})"
            break
    return ConfigError(message, path=path, key=dotted(parts), expected=expected)


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _unwrap(annotation: Any) -> tuple[Any, str | None]:
    """The type under ``Annotated`` and ``| None`` (of other unions: the first model, list or
    mapping alternative), and the ``x-expected`` wording found in ``Annotated`` on the way."""
    said = None
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            for meta in annotation.__metadata__:
                if isinstance(meta, FieldInfo) and "x-expected" in _extra(meta):
                    said = str(_extra(meta)["x-expected"])
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            nested = [a for a in options if get_origin(a) in (list, dict) or _is_model(a)]
            annotation = (nested or options)[0]
        else:
            return annotation, said


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def walk(parts: Sequence[Any]) -> tuple[FieldInfo | None, Any, str | None]:
    """Follow the key path ``parts`` through the model.

    Returns:
        The last field passed (``None`` at the top, or after a list or mapping
        item), the type found at the end (``None`` below a free-form value or for an
        unknown key), and the wording of a valid value there from ``Annotated`` types.
    """
    info: FieldInfo | None = None
    annotation: Any = Settings
    said: str | None = None
    for part in parts:
        annotation, said = _unwrap(annotation)
        if get_origin(annotation) in (list, dict):
            annotation, info = get_args(annotation)[-1], None
        elif _is_model(annotation) and isinstance(part, str) and part in annotation.model_fields:
            info = annotation.model_fields[part]
            annotation = info.annotation
        else:
            return info, None, None
    annotation, said = _unwrap(annotation)
    return info, annotation, said


def expected_of(parts: Sequence[Any]) -> str | None:
    """How a valid value at ``parts`` is worded (``x-expected`` of the field or its type)."""
    info, annotation, said = walk(parts)
    wording = _extra(info).get("x-expected") if info is not None else None
    if wording is None and said is None and _is_model(annotation):
        said = "a mapping with the keys " + ", ".join(annotation.model_fields)
    return str(wording) if wording is not None else said


def scalar_type(parts: Sequence[Any]) -> type | None:
    """The one scalar type (``str``, ``int``, ``float``, ``bool``) the key path accepts, else ``None``."""
    annotation = walk(parts)[1]
    return annotation if annotation in (str, int, float, bool) else None
