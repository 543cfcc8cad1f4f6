"""Schema upload rules: parse uploaded xproto files and merge their models into the schema.

A model already in the schema may be redeclared identically, or with more fields (same
bases, same kind for every existing field); anything else is a conflict naming the model
and the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from actors.logs import get_logger
from actors.models import ModelSpec, Schema, SchemaError, XprotoSyntaxError, parse_xproto

from ._protos import Protos
from ._wire import ApiError, ErrorKind

__all__ = ["merge_models", "parse_files"]

log = get_logger("actors.api")


def _field_key(spec: ModelSpec) -> dict[str, tuple[str, str | None]]:
    return {f.name: (f.kind, f.link.model if f.link else None) for f in spec.fields}


def _same_declaration(a: ModelSpec, b: ModelSpec) -> bool:
    """Equal but for where they were declared."""

    def strip(spec: ModelSpec) -> tuple[Any, ...]:
        return (
            spec.name,
            spec.bases,
            dict(spec.options),
            tuple((f.name, f.kind, f.number, f.modifier, dict(f.options), f.link) for f in spec.fields),
        )

    return strip(a) == strip(b)


def extension_problem(old: ModelSpec, new: ModelSpec) -> str | None:
    """Why ``new`` cannot replace ``old`` (``None`` if it keeps every field and only adds some)."""
    if tuple(old.bases) != tuple(new.bases):
        return f"its bases change from ({', '.join(old.bases)}) to ({', '.join(new.bases)})"
    new_fields = _field_key(new)
    for name, (kind, link) in _field_key(old).items():
        if name not in new_fields:
            return f"field {old.name}.{name} would be removed"
        if new_fields[name] != (kind, link):
            new_kind, new_link = new_fields[name]
            return (
                f"field {old.name}.{name} changes type from {kind}{'->' + link if link else ''} "
                f"to {new_kind}{'->' + new_link if new_link else ''}"
            )
    return None


def merge_models(
    schema: Schema, specs: Iterable[ModelSpec], *, strict: bool
) -> tuple[Schema, list[str], Protos | None]:
    """``schema`` with ``specs`` added: ``(new schema, models added or extended, its descriptors)``.

    A model already in ``schema`` may be redeclared identically, or with more
    fields (same bases, same kind for every existing field). Anything else raises
    ``FAILED_PRECONDITION`` naming the model and field; with ``strict=False``
    such a declaration is skipped instead (and a narrower redeclaration is ignored).
    The descriptors are ``None`` when nothing changed.

    Raises:
        ApiError: ``FAILED_PRECONDITION`` for a conflicting model or a schema that does not resolve.
    """
    out = {spec.name: spec for spec in schema}
    changed: list[str] = []
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        if spec.name in seen and not _same_declaration(seen[spec.name], spec):
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {spec.name} is declared twice ({seen[spec.name].origin} and {spec.origin})",
                ErrorKind.CONFLICT,
            )
        seen[spec.name] = spec
        old = out.get(spec.name)
        if old is not None and _same_declaration(old, spec):
            continue
        problem = None if old is None else extension_problem(old, spec)
        if problem is None:
            out[spec.name] = spec
            changed.append(spec.name)
            continue
        assert old is not None
        if not strict:
            if extension_problem(spec, old) is not None:  # a narrower redeclaration is ignored quietly
                log.warning("uploaded model skipped", model=spec.name, origin=spec.origin, reason=problem)
            continue
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{spec.origin}: model {spec.name} conflicts with its current declaration ({old.origin}): "
            f"{problem}; a model can only be extended with new fields",
            ErrorKind.CONFLICT,
        )
    if not changed:
        return schema, [], None
    try:
        merged = Schema(out.values())
        protos = Protos.from_schema(merged)
    except SchemaError as exc:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(exc), ErrorKind.CONFLICT) from None
    return merged, changed, protos


def parse_files(files: Iterable[tuple[str, str]]) -> list[ModelSpec]:
    """Parse uploaded xproto texts; ``INVALID_ARGUMENT`` naming file, line and column on error."""
    specs: list[ModelSpec] = []
    for name, content in files:
        try:
            specs.extend(parse_xproto(content, name))
        except XprotoSyntaxError as exc:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    return specs
