"""The status fields written after a sync or policy run, as pure functions of the row."""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Mapping
from typing import Any

from actors.steps import DeferredException, InnocuousException
from actors.store import BackendCode, register_of

__all__ = [
    "BACKOFF_CAP",
    "DEFERRED_RETRY",
    "blocked_fields",
    "error_text",
    "failure_fields",
    "policy_failure_fields",
    "policy_success_fields",
    "success_fields",
    "xos_backoff",
]

#: Backoff never waits longer than this (seconds).
BACKOFF_CAP = 8 * 3600.0
#: A deferred object is tried again this many seconds after each attempt (no backoff, no busy loop).
DEFERRED_RETRY = 1.0
SEPARATOR = " // "
#: Seconds per unit of the backoff exponent: an innocuous error, any other error.
INNOCUOUS_STEP = 60.0
ERROR_STEP = 600.0
#: Frames of files under this folder are the framework's, not the policy's.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def xos_backoff(failures: int, exponent: int, innocuous: bool) -> float:
    """The original's sync backoff, in seconds, after ``failures`` earlier failures.

    The first failure retries at once; each later one waits ``exponent x 60 s``
    (innocuous) or ``exponent x 600 s`` (any other error), at most 8 hours. It grows
    linearly in the exponent, not by a factor, so it is not an
    :class:`~actors._backoff.Backoff`.
    """
    if failures == 0:
        return 0.0
    return min(exponent * (INNOCUOUS_STEP if innocuous else ERROR_STEP), BACKOFF_CAP)


def error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def success_fields(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    """After ``sync_record`` returned: enacted, OK, and a clean register."""
    enacted = max(row.get("updated") or 0.0, row.get("changed_by_policy") or 0.0)
    register = {"next_run": 0, "exponent": 0, "last_success": now, "failures": 0}
    return {
        "enacted": enacted,
        "backend_status": "OK",
        "backend_code": BackendCode.OK.value,
        "backend_register": json.dumps(register),
    }


def failure_fields(
    row: Mapping[str, Any], exc: BaseException, now: float, backoff_disabled: bool = False
) -> tuple[dict[str, Any], float]:
    """After ``sync_record`` raised: the status fields and when to try again.

    The last two distinct errors are kept; the wait is :func:`xos_backoff`'s. A
    ``DeferredException`` is not an error (as in the original): no backoff, the object
    is tried again ``DEFERRED_RETRY`` seconds after each attempt and the exponent is kept.
    """
    error = error_text(exc)
    register = register_of(row)
    failures = int(register.get("failures") or 0)
    exponent = int(register.get("exponent") or 0)
    deferred = isinstance(exc, DeferredException)
    innocuous = isinstance(exc, InnocuousException)
    if deferred:
        delay = DEFERRED_RETRY
    elif backoff_disabled:
        delay = 0.0
    else:
        delay = xos_backoff(failures, exponent, innocuous)
    next_run = now + delay
    previous = str(row.get("backend_status") or "").split(SEPARATOR) if failures else []
    errors = [*[e for e in previous if e and e != error][-1:], error]
    register = {
        "next_run": next_run,
        "exponent": exponent if deferred else exponent + 1,
        "last_success": register.get("last_success"),
        "failures": failures + 1,
    }
    code = BackendCode.PENDING if deferred else BackendCode.OK if innocuous else BackendCode.ERROR
    fields = {
        "backend_status": SEPARATOR.join(errors)[:1024],
        "backend_code": code.value,
        "backend_register": json.dumps(register),
    }
    return fields, next_run


def blocked_fields(model: str, id: int, error: str) -> dict[str, Any]:
    """An object not synced because an object it depends on failed."""
    return {
        "backend_status": f"Failed due to error in model {model} id {id}: {error}"[:1024],
        "backend_code": BackendCode.ERROR.value,
    }


def policy_success_fields(row: Mapping[str, Any], needs_delete_policy: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "policed": max(row.get("updated") or 0.0, row.get("changed_by_step") or 0.0),
        "policy_status": "done",
        "policy_code": BackendCode.OK.value,
    }
    if needs_delete_policy and not row.get("deleted") and not row.get("backend_need_delete_policy"):
        fields["backend_need_delete_policy"] = True
    return fields


def policy_failure_fields(exc: BaseException) -> dict[str, Any]:
    """The exception with a one-frame traceback, in the form the original wrote (``format_exc(limit=1)``).

    The frame is the first one outside this package (the line of the policy that
    raised or called what raised), else the innermost; the original showed the
    line of its own loop that called the policy, which says less. An exception
    without a traceback gives the last line alone.
    """
    stack = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in stack if not f.filename.startswith(_PACKAGE)] or stack[-1:]
    text = "".join(traceback.format_exception_only(type(exc), exc))
    if frames:
        frame = "".join(traceback.StackSummary.from_list(frames[:1]).format())
        text = f"Traceback (most recent call last):\n{frame}{text}"
    return {"policy_status": text[:1024], "policy_code": BackendCode.ERROR.value}
