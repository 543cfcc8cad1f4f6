"""The remote backend's gRPC retry policy: a read the core answers UNAVAILABLE is sent again by
gRPC itself; a write never is. Real gRPC over a socket, through a relay in front of the real service."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from actors.api import ApiServer, RemoteBackend, Unavailable
from actors.api._client import READ_ATTEMPTS, read_service_config
from actors.store import Store


class FlakyRelay(grpc.GenericRpcHandler):
    """Answers through the real service, but the first call of each method in ``fail`` gets UNAVAILABLE."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self.inner = inner
        self.fail: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.peers: set[str] = set()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self.inner.service(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method, answer = details.method, handler.unary_unary

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append((method, dict(context.invocation_metadata())))
            self.peers.add(context.peer())
            if method in self.fail:
                self.fail.discard(method)
                context.abort(grpc.StatusCode.UNAVAILABLE, "the relay drops this call")
            return bytes(answer(request, context))

        return grpc.unary_unary_rpc_method_handler(unary)

    def attempts(self, method: str) -> list[dict[str, Any]]:
        return [metadata for name, metadata in self.calls if name == method]


@pytest.fixture
def relay(api_server: ApiServer) -> Iterator[tuple[FlakyRelay, str]]:
    handler = FlakyRelay(api_server.service)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield handler, f"127.0.0.1:{port}"
    server.stop(grace=0)


GET = "/actors.services.v1.Widget/Get"
CREATE = "/actors.services.v1.Widget/Create"


def test_a_read_answered_unavailable_is_retried_by_grpc(
    relay: tuple[FlakyRelay, str], remote: Callable[..., RemoteBackend], api_store: Store
) -> None:
    handler, address = relay
    id = api_store.create("Widget", {"name": "kept"})["id"]
    backend = remote("reader", endpoint=address)
    handler.fail = {GET}
    row = backend.get("Widget", id)
    assert row is not None and row["name"] == "kept"
    first, second = handler.attempts(GET)
    assert "grpc-previous-rpc-attempts" not in first
    assert second["grpc-previous-rpc-attempts"] == "1"  # gRPC's retry policy sent it again


def test_a_write_answered_unavailable_is_not_sent_again(
    relay: tuple[FlakyRelay, str], remote: Callable[..., RemoteBackend], api_store: Store
) -> None:
    handler, address = relay
    backend = remote("sync", endpoint=address)
    handler.fail = {CREATE}
    with pytest.raises(Unavailable, match="the relay drops this call"):
        backend.create("Widget", {"name": "once"})
    assert len(handler.attempts(CREATE)) == 1
    assert api_store.count("Widget") == 0
    assert backend.create("Widget", {"name": "once"})["name"] == "once"  # the same channel still writes
    assert backend.get("Widget", 1) is not None
    assert len(handler.peers) == 1  # in plaintext, reads and writes share one connection


def test_the_retry_policy_covers_every_method_of_the_read_channel() -> None:
    (config,) = json.loads(read_service_config())["methodConfig"]
    assert config["name"] == [{}]
    assert config["retryPolicy"]["maxAttempts"] == READ_ATTEMPTS
    assert config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["retryPolicy"]["initialBackoff"] == "0.05s"
