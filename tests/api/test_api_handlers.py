"""The handlers of API methods are built once per method and counted per call, the same as before."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from actors.api import ApiServer
from actors.api._observe import MetricsInterceptor
from actors.api._wire import row_to_message
from actors.observe import HttpSettings, Metrics
from actors.store import Record, Store

from .support import RawClient, basic

W = "/actors.services.v1.Widget"


class _Details:
    """The ``grpc.HandlerCallDetails`` of a call to ``method``."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_a_method_served_gets_the_same_handler_on_each_call(api_server: ApiServer) -> None:
    service = api_server.service
    first = service.service(_Details(f"{W}/Get"))
    assert first is not None
    assert service.service(_Details(f"{W}/Get")) is first
    core = service.service(_Details("/actors.api.v1.Core/Now"))
    assert core is not None and service.service(_Details("/actors.api.v1.Core/Now")) is core
    assert service.service(_Details(f"{W}/Get")) is not service.service(_Details(f"{W}/Filter"))


def test_methods_of_models_not_served_are_answered_but_not_kept(
    api_server: ApiServer, raw: RawClient
) -> None:
    service = api_server.service
    before = len(service._handlers)
    for k in range(20):
        assert service.service(_Details(f"/actors.services.v1.NoSuch{k}/Get")) is not None
    assert service.service(_Details("/actors.api.v1.Core/NoSuchMethod")) is None
    assert service.service(_Details("/elsewhere.Service/Get")) is None
    assert len(service._handlers) == before
    result = raw.call("/actors.services.v1.NoSuch1/Get", b"", basic("reader"))
    assert result.code == grpc.StatusCode.NOT_FOUND and "unknown model" in result.details


def _handler(name: str) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(lambda request, context: name.encode())


def test_the_interceptor_keeps_its_counting_handler_while_the_services_keep_theirs() -> None:
    interceptor = MetricsInterceptor(Metrics())
    served = {"now": _handler("a")}
    details = _Details("/actors.api.v1.Core/Now")
    first = interceptor.intercept_service(lambda d: served["now"], details)
    assert interceptor.intercept_service(lambda d: served["now"], details) is first
    served["now"] = _handler("b")  # the services answer the method with another handler
    second = interceptor.intercept_service(lambda d: served["now"], details)
    assert second is not first
    assert second.unary_unary(b"", _Context()) == b"b"
    assert interceptor.intercept_service(lambda d: None, details) is None


class _Context:
    def code(self) -> Any:
        return None


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_call_is_counted_by_method_and_code_with_kept_handlers(
    api_store: Store, start_server: Callable[..., ApiServer]
) -> None:
    server = start_server(api_store, http=HttpSettings(address="127.0.0.1:0"))
    assert server.http is not None
    channel = grpc.insecure_channel(server.address)
    try:
        raw = RawClient(channel)
        protos = server.protos
        widget = protos.models["Widget"]
        created = raw.call(f"{W}/Create", widget.write(object=widget.message(name="w")), basic("sync"))
        wid = created.parse(widget.message).id
        get = protos.message("GetRequest")
        for _ in range(2):
            assert raw.call(f"{W}/Get", get(id=wid), basic("reader")).code == grpc.StatusCode.OK
        missing = raw.call(f"{W}/Get", get(id=wid + 100), basic("reader"))
        assert missing.code == grpc.StatusCode.NOT_FOUND
        found = _samples(server.http.url)
    finally:
        channel.close()

    def handled(method: str, code: str) -> float:
        labels = {"grpc_service": "actors.services.v1.Widget", "grpc_method": method, "grpc_code": code}
        return found.get(("actors_grpc_server_handled_total", frozenset(labels.items())), 0.0)

    assert (handled("Create", "OK"), handled("Get", "OK"), handled("Get", "NOT_FOUND")) == (1, 2, 1)
    timed = {"grpc_service": "actors.services.v1.Widget", "grpc_method": "Get"}
    assert found[("actors_grpc_server_handling_seconds_count", frozenset(timed.items()))] == 3


def test_a_store_record_becomes_the_same_message_as_its_dict(api_server: ApiServer, api_store: Store) -> None:
    created = api_store.create("Widget", {"name": "w", "active": False, "size": 3})
    record = api_store.get("Widget", created["id"])
    assert isinstance(record, Record)
    message = api_server.protos.models["Widget"].message
    got = row_to_message(message, record)
    assert got == row_to_message(message, dict(record))
    assert got.HasField("active") and got.active is False  # SQLite's 0, converted to a boolean
    assert not got.HasField("weight")  # null: unset
    assert (got.name, got.size) == ("w", 3)
