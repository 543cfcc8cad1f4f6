"""Turning handler functions into gRPC method handlers: bytes in, bytes out, errors as status codes.

Requests travel as bytes and are parsed inside the handler (:func:`parse`), so a
malformed request is an ``INVALID_ARGUMENT`` answer, never a crash; every exception
is mapped to a status code and an error kind in the trailing metadata (:func:`status_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc

from actors.logs import get_logger
from actors.store import NotFound, ValidationError, database_rejection

from ._wire import ERROR_KEY, ApiError, ErrorKind, clip

__all__ = ["Behavior", "method_handler", "parse"]

log = get_logger("actors.api")

#: A handler: the request bytes and the call's context to a response message
#: (or, for a streaming method, an iterator of serialized responses).
Behavior = Callable[[bytes, grpc.ServicerContext], Any]


def parse(cls: Any, request: bytes) -> Any:
    """``request`` parsed as a ``cls`` message; ``INVALID_ARGUMENT`` (malformed) if it is not one."""
    try:
        return cls.FromString(request)
    except Exception as exc:
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"malformed request: cannot parse {cls.DESCRIPTOR.full_name}: {exc}",
            ErrorKind.MALFORMED,
        ) from None


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """The status code, message and error kind that answer ``exc`` (unexpected errors are logged)."""
    if isinstance(exc, ApiError):
        return exc.code, exc.message, exc.kind
    if isinstance(exc, ValidationError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), ErrorKind.VALIDATION
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc), ErrorKind.NOT_FOUND
    rejected = database_rejection(exc)
    if rejected is not None:
        return grpc.StatusCode.INVALID_ARGUMENT, rejected, ErrorKind.VALIDATION
    log.exception("API handler failed", error=repr(exc))
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}", ErrorKind.INTERNAL


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    code, message, kind = status_of(exc)
    context.set_trailing_metadata(((ERROR_KEY, kind),))
    context.abort(code, clip(message))


def method_handler(
    behavior: Behavior, streaming: bool, turn: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> grpc.RpcMethodHandler:
    """A unary (or server-streaming) handler running ``behavior`` with every error as a status.

    A unary call runs inside ``turn()`` (the API's :class:`~actors.api._gate.CallGate`);
    a stream does not, since it waits most of its life.
    """
    if streaming:

        def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            try:
                yield from behavior(request, context)
                return
            except Exception as exc:
                failure = exc
            _abort(context, failure)  # outside the except: the status carries no exception chain

        return grpc.unary_stream_rpc_method_handler(stream)

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            with turn():
                return behavior(request, context).SerializeToString()  # type: ignore[no-any-return]
        except Exception as exc:
            failure = exc
        _abort(context, failure)
        return b""  # not reached: abort raises

    return grpc.unary_unary_rpc_method_handler(unary)
