"""What server and client agree on: value conversions, error kinds, metadata keys, schema JSON."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc

from actors.models import FieldSpec, LinkSpec, ModelSpec, Schema
from actors.store import Caller, ChangeNotice, Condition, Query, Record, WriteContext

__all__ = [
    "DIGEST_KEY",
    "ERROR_KEY",
    "ApiError",
    "ErrorKind",
    "changes_to_message",
    "condition_from_message",
    "message_to_changes",
    "message_values",
    "notice_from_message",
    "notice_to_message",
    "query_to_message",
    "read_pem",
    "row_from_message",
    "row_to_message",
    "schema_from_json",
    "schema_to_json",
    "value_from_message",
    "value_to_message",
    "write_options",
    "write_options_to_message",
]

#: Trailing metadata key naming the kind of an error (see :class:`ErrorKind`).
ERROR_KEY = "x-actors-error"
#: Request metadata key: the digest of the model message the client built its request with.
DIGEST_KEY = "x-actors-model-digest"

#: Longest error message sent in a status (longer ones are cut).
MAX_DETAILS = 2000


class ErrorKind:
    """Values of the ``x-actors-error`` trailing metadata."""

    VALIDATION = "validation"
    NOT_FOUND = "not-found"
    UNKNOWN_MODEL = "unknown-model"
    SCHEMA_CHANGED = "schema-changed"
    CONFLICT = "conflict"
    AUTH = "auth"
    MALFORMED = "malformed"
    INTERNAL = "internal"
    #: ``Core/Why`` of a process where no synchronizer runs.
    NO_SYNCHRONIZER = "no-synchronizer"


class ApiError(Exception):
    """An error with its gRPC status code, raised inside handlers and mapped to a status."""

    def __init__(self, code: grpc.StatusCode, message: str, kind: str = ErrorKind.VALIDATION) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind


def clip(text: str, limit: int = MAX_DETAILS) -> str:
    """``text`` cut to ``limit`` characters (status details travel in a header)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- rows ----------------------------------------------------------------------------


def row_to_message(cls: Any, row: Mapping[str, Any]) -> Any:
    """A model message with every non-null column of ``row`` set (unset means null)."""
    fields = cls.DESCRIPTOR.fields_by_name
    if type(row) is Record:  # the store's rows: one copy in C rather than a lookup per column
        row = row.to_dict()
    return cls(**{c: v for c, v in row.items() if v is not None and c in fields})


def message_values(msg: Any) -> dict[str, Any]:
    """The columns set in a model message, with their values."""
    return {f.name: value for f, value in msg.ListFields()}


def read_pem(value: str | bytes) -> bytes:
    """PEM data given inline, or read from the file ``value`` names."""
    if isinstance(value, bytes):
        return value
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii")
    return Path(value).read_bytes()


def row_from_message(msg: Any, columns: Iterable[str]) -> dict[str, Any]:
    """A full row: every column of ``columns``, ``None`` where the message leaves it unset."""
    values = message_values(msg)
    return {c: values.get(c) for c in columns}


def changes_to_message(cls: Any, changes: Mapping[str, Any]) -> Any:
    """A ``<Model>Changes`` (or ``Write``) message: set fields plus ``null_fields``."""
    msg = cls()
    msg.object.CopyFrom(row_to_message(type(msg.object), changes))
    msg.null_fields.extend(sorted(c for c, v in changes.items() if v is None))
    return msg


def message_to_changes(msg: Any) -> dict[str, Any]:
    values = message_values(msg.object)
    for name in msg.null_fields:
        values[name] = None
    return values


# -- filter values -------------------------------------------------------------------

_INT64 = (-(2**63), 2**63 - 1)


def value_to_message(value_cls: Any, value: Any) -> Any:
    """A Python value as an ``actors.api.v1.Value``; ``TypeError`` for one that has no form."""
    msg = value_cls()
    if value is None:
        msg.null_value = True
    elif isinstance(value, bool):
        msg.bool_value = value
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise TypeError(f"{value} does not fit in 64 bits")
        msg.int_value = value
    elif isinstance(value, float):
        msg.double_value = value
    elif isinstance(value, str):
        msg.string_value = value
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        msg.list_value.SetInParent()
        for item in items:
            msg.list_value.values.append(value_to_message(value_cls, item))
    else:
        raise TypeError(f"cannot send a value of type {type(value).__name__}: {value!r}")
    return msg


def value_from_message(msg: Any, *, depth: int = 0) -> Any:
    kind = msg.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "list_value":
        if depth > 0:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "a list value may not contain lists")
        return [value_from_message(v, depth=depth + 1) for v in msg.list_value.values]
    value = getattr(msg, kind)
    if kind == "double_value" and math.isnan(value):
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "NaN is not a comparable value")
    return value


def condition_to_message(protos_api: Mapping[str, Any], cond: Condition) -> Any:
    return protos_api["Condition"](
        field=cond.column, op=cond.op, value=value_to_message(protos_api["Value"], cond.value)
    )


def condition_from_message(msg: Any) -> Condition:
    return Condition(msg.field, msg.op or "eq", value_from_message(msg.value))


def query_to_message(protos_api: Mapping[str, Any], query: Query) -> Any:
    req = protos_api["FilterRequest"](
        where=[condition_to_message(protos_api, c) for c in query.where],
        exclude=[condition_to_message(protos_api, c) for c in query.exclude],
        order_by=list(query.order_by),
        offset=query.offset,
    )
    if query.limit is not None:
        req.limit = query.limit
    return req


# -- write options -------------------------------------------------------------------


def write_options_to_message(cls: Any, ctx: WriteContext) -> Any:
    msg = cls(caller=ctx.caller.value, always_update_timestamp=ctx.always_update_timestamp)
    if ctx.update_fields is not None:
        msg.update_fields.SetInParent()
        msg.update_fields.names.extend(ctx.update_fields)
    if ctx.origin is not None:
        msg.origin = ctx.origin
    return msg


def write_options(msg: Any) -> WriteContext:
    """The :class:`WriteContext` of a ``WriteOptions`` message; ``ApiError`` for an unknown caller."""
    try:
        caller = Caller(msg.caller) if msg.caller else Caller.CLIENT
    except ValueError:
        allowed = ", ".join(c.value for c in Caller)
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT, f"unknown caller {msg.caller!r} (expected one of {allowed})"
        ) from None
    fields = tuple(msg.update_fields.names) if msg.HasField("update_fields") else None
    origin = msg.origin if msg.HasField("origin") else None
    return WriteContext(caller, msg.always_update_timestamp, fields, origin)


# -- notices -------------------------------------------------------------------------


def notice_to_message(cls: Any, notice: ChangeNotice) -> Any:
    msg = cls(seq=notice.seq, model=notice.model, id=notice.id, kind=notice.kind, at=notice.at)
    if notice.origin is not None:
        msg.origin = notice.origin
    return msg


def notice_from_message(msg: Any) -> ChangeNotice:
    origin = msg.origin if msg.HasField("origin") else None
    return ChangeNotice(seq=msg.seq, model=msg.model, id=msg.id, kind=msg.kind, at=msg.at, origin=origin)


# -- schema as JSON ------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def file_name_origin(origin: str) -> str:
    """``origin`` (``path:line``) with the folders of its path left out: ``core.xproto:16``."""
    return re.split(r"[/\\]", origin)[-1]


def _field_json(f: FieldSpec, full_paths: bool = True) -> dict[str, Any]:
    return {
        "name": f.name,
        "kind": f.kind,
        "number": f.number,
        "modifier": f.modifier,
        "options": _jsonable(dict(f.options)),
        "link": (
            {"model": f.link.model, "reverse": f.link.reverse, "reverse_number": f.link.reverse_number}
            | ({"through": f.link.through} if f.link.through else {})
            if f.link is not None
            else None
        ),
        "origin": f.origin if full_paths else file_name_origin(f.origin),
    }


def model_to_json(spec: ModelSpec, full_paths: bool = True) -> dict[str, Any]:
    """One model as JSON; without ``full_paths`` its origins keep only file names and lines."""
    return {
        "name": spec.name,
        "bases": list(spec.bases),
        "options": _jsonable(dict(spec.options)),
        "origin": spec.origin if full_paths else file_name_origin(spec.origin),
        "fields": [_field_json(f, full_paths) for f in (*spec.fields, *spec.manytomany)],
    }


def schema_to_json(schema: Schema, *, full_paths: bool = True) -> str:
    """Every model of ``schema`` (abstract ones too) as JSON, in declaration order.

    With ``full_paths`` false the origins name the xproto file without its folders
    (``core.xproto:16``), for callers who need not know where the server keeps files.
    """
    return json.dumps({"models": [model_to_json(spec, full_paths) for spec in schema]}, separators=(",", ":"))


def schema_from_json(text: str) -> Schema:
    """The inverse of :func:`schema_to_json`."""
    data = json.loads(text)
    specs = []
    for m in data["models"]:
        fields = tuple(
            FieldSpec(
                name=f["name"],
                kind=f["kind"],
                number=f.get("number", 0),
                modifier=f.get("modifier", "optional"),
                options=f.get("options") or {},
                link=LinkSpec(**f["link"]) if f.get("link") else None,
                origin=f.get("origin", ""),
            )
            for f in m["fields"]
        )
        specs.append(
            ModelSpec(
                name=m["name"],
                bases=tuple(m.get("bases", ())),
                fields=tuple(f for f in fields if f.kind != "manytomany"),
                manytomany=tuple(f for f in fields if f.kind == "manytomany"),
                options=m.get("options") or {},
                origin=m.get("origin", ""),
            )
        )
    return Schema(specs)
