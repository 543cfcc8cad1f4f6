"""``Core/Status`` and ``Core/Why``: the synchronizer's actor tree and why an object is not enacted.

The API layer cannot see the runtime: the synchronizer that serves the API in its
process hands the server two callables (:class:`Inspection`), which answer plain
dicts shaped like the JSON of the HTTP endpoint's ``/status`` and ``/why``. A
``core`` without a synchronizer answers ``Status`` with its own state (kind
``core``, no children) and ``Why`` with ``FAILED_PRECONDITION`` "no synchronizer
runs in this process". The client turns the messages back into the same dicts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from ._protos import Protos
from ._wire import ApiError, ErrorKind

__all__ = [
    "NO_SYNCHRONIZER",
    "Inspection",
    "status_from_message",
    "status_message",
    "why_from_message",
    "why_message",
]

#: The ``Why`` answer of a process where no synchronizer runs.
NO_SYNCHRONIZER = "no synchronizer runs in this process"

#: ``status() -> {"name", "state", "children": [...], "load_errors": [...]}``.
StatusSource = Callable[[], Mapping[str, Any]]
#: ``why(model, id) -> {"model", "id", "reason", "message", ...}``; raises ``LookupError`` (not found).
WhySource = Callable[[str, int], Mapping[str, Any]]

_CHILD_FIELDS = ("name", "kind", "state", "restarts", "done", "failed", "queue_depth")
_LOAD_ERROR_FIELDS = ("path", "step", "error")


@dataclass
class Inspection:
    """Where ``Status`` and ``Why`` get their answers: a synchronizer's, or none (a bare core)."""

    status: StatusSource | None = None
    why: WhySource | None = None


def status_message(protos: Protos, inspection: Inspection) -> Any:
    """The ``StatusResponse`` of ``inspection`` (the core's own state when no synchronizer runs)."""
    response = protos.message("StatusResponse")
    if inspection.status is None:
        return response(name="core", kind="core", state="running")
    tree = inspection.status()
    child_cls = protos.message("ChildState")
    error_cls = protos.message("StepLoadError")
    children = []
    for child in tree.get("children", ()):
        msg = child_cls(**{k: child[k] for k in _CHILD_FIELDS if child.get(k) is not None})
        if child.get("last_error") is not None:
            msg.last_error = str(child["last_error"])
        if child.get("busy_for") is not None:
            msg.busy_for = float(child["busy_for"])
        msg.detail_json = json.dumps(child.get("detail") or {}, default=str, sort_keys=True)
        children.append(msg)
    errors = [
        error_cls(**{k: str(e.get(k) or "") for k in _LOAD_ERROR_FIELDS}) for e in tree.get("load_errors", ())
    ]
    return response(
        name=str(tree.get("name") or ""),
        kind="synchronizer",
        state=str(tree.get("state") or ""),
        children=children,
        load_errors=errors,
    )


def why_message(protos: Protos, inspection: Inspection, request: Any) -> Any:
    """The ``WhyResponse`` for a parsed ``WhyRequest``.

    Raises:
        ApiError: ``INVALID_ARGUMENT`` (no model, an id below 1), ``NOT_FOUND`` (no such model or
            object), ``FAILED_PRECONDITION`` (no synchronizer runs in this process).
    """
    if not request.model:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "Why needs a model name (model)")
    if request.id < 1:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"object id {request.id}: expected 1 or more")
    if inspection.why is None:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, NO_SYNCHRONIZER, ErrorKind.NO_SYNCHRONIZER)
    try:
        answer = inspection.why(request.model, request.id)
    except LookupError as exc:
        text = str(exc.args[0] if exc.args else exc)
        raise ApiError(grpc.StatusCode.NOT_FOUND, text, ErrorKind.NOT_FOUND) from None
    msg = protos.message("WhyResponse")(
        model=str(answer["model"]),
        id=int(answer["id"]),
        reason=str(answer["reason"]),
        message=str(answer.get("message") or ""),
        attempts=int(answer.get("attempts") or 0),
        errors=[str(e) for e in answer.get("errors") or ()],
    )
    for name, cast in (("step", str), ("until", float), ("owner", int)):  # optional: unset for None
        if answer.get(name) is not None:
            setattr(msg, name, cast(answer[name]))
    blocked = answer.get("blocked_by")
    if blocked:
        msg.blocked_by.model, msg.blocked_by.id = str(blocked[0]), int(blocked[1])
    return msg


def _optional(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def status_from_message(msg: Any) -> dict[str, Any]:
    """A ``StatusResponse`` as the dict of ``/status`` (plus ``kind``)."""
    children = []
    for c in msg.children:
        child: dict[str, Any] = {k: getattr(c, k) for k in _CHILD_FIELDS}
        child["last_error"] = _optional(c, "last_error")
        child["busy_for"] = _optional(c, "busy_for")
        child["detail"] = json.loads(c.detail_json) if c.detail_json else {}
        children.append(child)
    return {
        "name": msg.name,
        "kind": msg.kind,
        "state": msg.state,
        "children": children,
        "load_errors": [{k: getattr(e, k) for k in _LOAD_ERROR_FIELDS} for e in msg.load_errors],
    }


def why_from_message(msg: Any) -> dict[str, Any]:
    """A ``WhyResponse`` as the dict of ``/why/<model>/<id>``."""
    return {
        "model": msg.model,
        "id": msg.id,
        "reason": msg.reason,
        "message": msg.message,
        "step": _optional(msg, "step"),
        "until": _optional(msg, "until"),
        "attempts": msg.attempts,
        "errors": list(msg.errors),
        "blocked_by": [msg.blocked_by.model, msg.blocked_by.id] if msg.HasField("blocked_by") else None,
        "owner": _optional(msg, "owner"),
    }
