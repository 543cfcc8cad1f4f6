"""The remote backend's errors, and the store error each gRPC status becomes on the client."""

from __future__ import annotations

import grpc

from actors.store import NotFound, StoreError, ValidationError

from ._wire import ERROR_KEY, ErrorKind

__all__ = ["AccessDenied", "RemoteError", "SchemaConflict", "Unavailable", "raise_remote", "status_details"]


class RemoteError(StoreError):
    """A call to the core failed; ``code`` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(RemoteError):
    """The core could not be reached within the call timeout."""


class AccessDenied(RemoteError, PermissionError):
    """Missing or wrong credentials, or a role that may not do this."""


class SchemaConflict(RemoteError):
    """An upload that conflicts with the core's models (``FAILED_PRECONDITION``)."""


def status_details(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str, str]:
    """``(status code, details, error kind)`` of a failed call (the kind from the trailing metadata)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    kind = ""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == ERROR_KEY:
            kind = value
    return code, details, kind


def raise_remote(exc: grpc.RpcError, endpoint: str) -> None:
    """Raise the error a failed call stands for: the store's own errors where they fit."""
    code, details, kind = status_details(exc)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        raise ValidationError(details) from None
    if code == grpc.StatusCode.NOT_FOUND:
        if kind == ErrorKind.UNKNOWN_MODEL:
            raise ValidationError(details) from None
        raise NotFound(details) from None
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        raise AccessDenied(details, code) from None
    if kind == ErrorKind.NO_SYNCHRONIZER:  # not a SchemaConflict, though FAILED_PRECONDITION too
        raise RemoteError(details, code) from None
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        raise SchemaConflict(details, code) from None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        raise Unavailable(f"the core at {endpoint} is unavailable: {details}", code) from None
    raise RemoteError(f"{code.name}: {details}", code) from None
