"""Standard gRPC health checking and server reflection (what grpcurl uses)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from actors.api import ApiServer, RemoteBackend
from actors.store import Store

from .support import basic


def test_health(api_server: ApiServer, remote: Callable[..., RemoteBackend]) -> None:
    channel = grpc.insecure_channel(api_server.address)
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ["", "actors.api.v1.Core", "actors.services.v1.Widget"]:
        assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == serving
    try:
        stub.Check(health_pb2.HealthCheckRequest(service="actors.services.v1.Gadget"), timeout=5)
        raise AssertionError("expected NOT_FOUND")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    remote("sync").upload_models({"g.xproto": "message Gadget (XOSBase) { optional string a = 1; }"})
    request = health_pb2.HealthCheckRequest(service="actors.services.v1.Gadget")
    assert stub.Check(request, timeout=5).status == serving
    channel.close()


def test_reflection_lists_and_describes_everything(
    api_server: ApiServer, api_store: Store, remote: Callable[..., RemoteBackend]
) -> None:
    channel = grpc.insecure_channel(api_server.address)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {
        "actors.api.v1.Core",
        "actors.services.v1.Service",
        "actors.services.v1.Widget",
        "actors.services.v1.SpecialWidget",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    assert "actors.services.v1.XOSBase" not in services  # abstract: no objects

    # Call a method with nothing but what reflection told us, as grpcurl does.
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("actors.services.v1.Widget").methods_by_name["Get"]
    assert method.output_type.full_name == "actors.models.v1.Widget"
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    row = api_store.create("Widget", {"name": "seen-by-reflection", "size": 4})
    stub = channel.unary_unary(
        "/actors.services.v1.Widget/Get",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    got = stub(request_cls(id=row["id"]), metadata=basic("reader"), timeout=5)
    assert got.name == "seen-by-reflection" and got.size == 4

    # Models uploaded later are listed too.
    remote("sync").upload_models({"g.xproto": "message Gadget (XOSBase) { optional string a = 1; }"})
    fresh = ProtoReflectionDescriptorDatabase(channel)
    assert "actors.services.v1.Gadget" in set(fresh.get_services())
    gadget = descriptor_pool.DescriptorPool(fresh).FindMessageTypeByName("actors.models.v1.Gadget")
    assert "a" in gadget.fields_by_name
    channel.close()
