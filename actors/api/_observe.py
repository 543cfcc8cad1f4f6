"""The API's share of observability: calls counted by method and code, health that follows readiness."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from actors.observe import NullMetrics

__all__ = ["MetricsInterceptor", "ReadinessHealth"]


def _code(context: grpc.ServicerContext, default: str = "OK") -> str:
    code = context.code()  # set by abort() or set_code(); None when the handler set none
    if code is None:
        return default
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


#: How many methods' wrapped handlers :class:`MetricsInterceptor` keeps (method names come from clients).
MAX_WRAPPED = 4096

_KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class MetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc ships no type stubs
    """Counts every call (``actors_grpc_server_handled_total{grpc_service,grpc_method,grpc_code}``).

    The counting handler of a method is built once and kept while the services answer
    that method with the same handler (the API's and gRPC's own services keep theirs).
    """

    def __init__(self, metrics: NullMetrics) -> None:
        self.metrics = metrics
        #: method -> (the services' handler, the counting handler around it).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full: str = handler_call_details.method
        known = self._wrapped.get(full)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(full, handler)
        if len(self._wrapped) < MAX_WRAPPED or full in self._wrapped:
            self._wrapped[full] = (handler, wrapped)
        return wrapped

    def _wrap(self, full: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` with each call counted under its service and method."""
        service, _, method = str(full).lstrip("/").rpartition("/")
        record = self.metrics.grpc_calls(service, method)
        streaming = bool(handler.response_streaming)

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.monotonic()
                try:
                    response = behavior(request, context)
                except BaseException:
                    record(_code(context, "UNKNOWN"), started)
                    raise
                record(_code(context), started)
                return response

            return call

        def stream(behavior: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started = time.monotonic()
                code = "CANCELLED"  # the client went away, unless the stream ends otherwise
                try:
                    yield from behavior(request, context)
                    code = _code(context)
                except Exception:
                    code = _code(context, "UNKNOWN")
                    raise
                finally:
                    record(code, started)

            return call

        wrap = stream if streaming else unary
        attribute, make = _KINDS[(bool(handler.request_streaming), streaming)]
        return make(
            wrap(getattr(handler, attribute)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class ReadinessHealth(health.HealthServicer):  # type: ignore[misc]  # grpc ships no type stubs
    """The standard health service; ``Check`` answers NOT_SERVING while ``ready()`` is false.

    ``ready`` is the readiness of ``/readyz`` (a synchronizer's: store reachable, every
    step loaded and running, the event bus reachable; ``core``'s: its store).
    """

    def __init__(self, ready: Callable[[], Callable[[], bool] | None]) -> None:
        super().__init__(experimental_non_blocking=True)
        self._ready = ready

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = super().Check(request, context)
        ready = self._ready()
        if ready is None or response.status != health_pb2.HealthCheckResponse.SERVING:
            return response
        try:
            ok = ready()
        except Exception:
            ok = False
        if ok:
            return response
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
