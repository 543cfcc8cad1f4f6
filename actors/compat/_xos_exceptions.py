"""``xos.exceptions``: the errors the XOS core's model code (a service's ``models.py``) raises."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from actors.store import ValidationError

__all__ = ["EXCEPTIONS", "APIException", "XOSNotFound", "XOSValidationError"]


class APIException(Exception):
    """Base of the XOS API errors: ``detail`` is ``{"error", "specific_error", "fields"}``.

    ``str()`` is the one-line reason (the original showed the whole ``detail`` dict).
    """

    status_code: ClassVar[int] = 500
    default_why: ClassVar[str] = "error"

    def __init__(self, why: str | None = None, fields: dict[str, Any] | None = None) -> None:
        self.why = why if why is not None else self.default_why
        self.fields = dict(fields or {})
        self.detail = {"error": type(self).__name__, "specific_error": self.why, "fields": self.fields}
        self.raw_detail = self.detail
        self.json_detail = json.dumps(self.detail, default=str)
        super().__init__(self.why)

    def __str__(self) -> str:
        return self.why


def _error(name: str, status: int, why: str, *bases: type) -> type[APIException]:
    return type(
        name,
        (APIException, *bases),
        {"status_code": status, "default_why": why, "__module__": "xos.exceptions", "__doc__": f"{why}."},
    )


class XOSValidationError(APIException, ValidationError):
    """A value the model's code does not accept; also an ``actors.store.ValidationError``."""

    status_code = 403
    default_why = "validation error"


class XOSNotFound(APIException, LookupError):
    """An object the model's code looked for does not exist."""

    status_code = 404
    default_why = "object not found"


XOSValidationError.__module__ = XOSNotFound.__module__ = "xos.exceptions"

#: The names of ``xos.exceptions``.
EXCEPTIONS: dict[str, type[APIException]] = {
    "APIException": APIException,
    "XOSValidationError": XOSValidationError,
    "XOSNotFound": XOSNotFound,
    "XOSProgrammingError": _error("XOSProgrammingError", 400, "programming error"),
    "XOSPermissionDenied": _error("XOSPermissionDenied", 403, "permission error", PermissionError),
    "XOSNotAuthenticated": _error("XOSNotAuthenticated", 401, "you must be authenticated to use this api"),
    "XOSDuplicateKey": _error("XOSDuplicateKey", 400, "duplicate key", ValidationError),
    "XOSMissingField": _error("XOSMissingField", 400, "missing field", ValidationError),
    "XOSConfigurationError": _error("XOSConfigurationError", 400, "configuration error"),
    "XOSConflictingField": _error("XOSConflictingField", 400, "conflicting field", ValidationError),
    "XOSServiceUnavailable": _error("XOSServiceUnavailable", 503, "Service temporarily unavailable"),
}
