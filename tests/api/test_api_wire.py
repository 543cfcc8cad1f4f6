"""What a client in another language sees on the wire: the protobuf JSON mapping, id types,
write replies, reflection v1, schema answers without server paths, anonymous reads.

Requests are built the way grpcurl builds them: descriptors from server reflection, JSON
parsed with protobuf's own JSON mapping, bytes sent over a real socket.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from actors.api import AccessDenied, ApiServer, RemoteBackend
from actors.api._protos import base_protos
from actors.store import Caller, Store, WriteContext

from .support import PASSWORDS, WIDGETS_XPROTO, RawClient, basic

W = "actors.services.v1.Widget"
CORE = "actors.api.v1.Core"


class JsonClient:
    """Calls methods with JSON bodies over descriptors learnt by reflection, like grpcurl."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.raw = RawClient(self.channel)
        self.database = ProtoReflectionDescriptorDatabase(self.channel)
        self.pool = descriptor_pool.DescriptorPool(self.database)

    def method(self, service: str, name: str) -> Any:
        return self.pool.FindServiceByName(service).methods_by_name[name]

    def request(self, service: str, name: str, body: Any) -> Any:
        cls = message_factory.GetMessageClass(self.method(service, name).input_type)
        return json_format.Parse(json.dumps(body), cls())

    def call(self, service: str, name: str, body: Any, metadata: Any = ()) -> dict[str, Any]:
        method = self.method(service, name)
        result = self.raw.call(f"/{service}/{name}", self.request(service, name, body), metadata)
        reply = result.parse(message_factory.GetMessageClass(method.output_type))
        return json_format.MessageToDict(reply)

    def stream(self, service: str, name: str, body: Any, metadata: Any, count: int) -> list[dict[str, Any]]:
        method = self.method(service, name)
        cls = message_factory.GetMessageClass(method.output_type)
        call = self.raw.stream(f"/{service}/{name}", self.request(service, name, body), metadata)
        out = []
        for data in call:
            out.append(json_format.MessageToDict(cls.FromString(data)))
            if len(out) == count:
                break
        call.cancel()
        return out

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def client(api_server: ApiServer) -> Iterator[JsonClient]:
    c = JsonClient(api_server.address)
    yield c
    c.close()


# -- the protobuf JSON mapping --------------------------------------------------------


def test_descriptors_carry_lower_camel_json_names(client: JsonClient) -> None:
    file = descriptor_pb2.FileDescriptorProto()
    file.ParseFromString(
        client.database.FindFileContainingSymbol("actors.api.v1.ListRequest").SerializeToString()
    )
    listing = {m.name: m for m in file.message_type}["ListRequest"]
    assert {f.name: f.json_name for f in listing.field}["include_deleted"] == "includeDeleted"
    models = client.database.FindFileContainingSymbol("actors.models.v1.WidgetWrite")
    names = {
        (m.name, f.name): f.json_name
        for m in [message for message in _messages(models.SerializeToString())]
        for f in m.field
    }
    assert names[("WidgetWrite", "null_fields")] == "nullFields"
    assert names[("Widget", "owner_id")] == "ownerId"
    assert names[("Widget", "leaf_model_name")] == "leafModelName"


def _messages(serialized: bytes) -> list[descriptor_pb2.DescriptorProto]:
    file = descriptor_pb2.FileDescriptorProto()
    file.ParseFromString(serialized)
    return list(file.message_type)


def test_requests_take_lower_camel_and_snake_case_names(client: JsonClient, api_store: Store) -> None:
    sync = basic("sync")
    created = client.call(W, "Create", {"object": {"name": "a", "size": 3, "weight": 1.5}}, sync)
    # Answers use the lowerCamel names, as every protobuf JSON printer does by default.
    assert created["leafModelName"] == "Widget" and "leaf_model_name" not in created
    assert isinstance(created["id"], int)
    wid = created["id"]
    reply = client.call(W, "Update", {"object": {"id": wid, "size": 4}, "nullFields": ["weight"]}, sync)
    assert reply["nullFields"] == ["weight"]
    assert api_store.get("Widget", wid)["weight"] is None
    # snake_case (the proto field names) is accepted as well.
    client.call(W, "Update", {"object": {"id": wid, "weight": 2.0}}, sync)
    client.call(W, "Update", {"object": {"id": wid}, "null_fields": ["weight"]}, sync)
    assert api_store.get("Widget", wid)["weight"] is None

    client.call(W, "Create", {"object": {"name": "b", "size": 9}}, sync)
    # Owed a backend delete, the object stays (soft-deleted) after Delete.
    api_store.update("Widget", wid, {"backend_need_delete": True}, WriteContext(Caller.SYNCHRONIZER))
    assert client.call(W, "Delete", {"id": wid}, sync) == {"id": wid, "deleted": True}
    for body in (
        {"orderBy": ["-size"], "includeDeleted": True},
        {"order_by": ["-size"], "include_deleted": True},
    ):
        assert [w["name"] for w in client.call(W, "List", body, sync)["items"]] == ["b", "a"]
    assert [w["name"] for w in client.call(W, "List", {"orderBy": ["-size"]}, sync)["items"]] == ["b"]
    where = {"where": [{"field": "size", "op": "gte", "value": {"intValue": 5}}]}
    assert [w["name"] for w in client.call(W, "Filter", where, sync)["items"]] == ["b"]


# -- id types -------------------------------------------------------------------------


def test_ids_and_seqs_are_numbers_like_the_model_id(client: JsonClient) -> None:
    sync = basic("sync")
    widget_id = client.method(W, "Get").output_type.fields_by_name["id"]
    notice = client.pool.FindMessageTypeByName("actors.api.v1.ChangeNotice")
    for message, field in [
        ("actors.api.v1.ChangeNotice", "id"),
        ("actors.api.v1.ChangeNotice", "seq"),
        ("actors.api.v1.GetRequest", "id"),
        ("actors.api.v1.DeleteRequest", "id"),
        ("actors.api.v1.WatchRequest", "since_seq"),
        ("actors.api.v1.NowResponse", "last_seq"),
    ]:
        assert client.pool.FindMessageTypeByName(message).fields_by_name[field].type == widget_id.type
    assert notice.fields_by_name["id"].type == widget_id.type

    created = client.call(W, "Create", {"object": {"name": "n"}}, sync)
    client.call(W, "Update", {"object": {"id": created["id"], "size": 2}}, sync)
    notices = client.stream(CORE, "Watch", {"sinceSeq": 0}, sync, count=2)
    assert [(n["seq"], n["id"], n["kind"]) for n in notices] == [
        (1, created["id"], "create"),
        (2, created["id"], "update"),
    ]
    assert isinstance(notices[0]["at"], float)
    assert client.call(CORE, "Now", {}, sync)["lastSeq"] == 2
    assert client.call(W, "Count", {}, sync)["count"] == 1


# -- write replies --------------------------------------------------------------------


def test_update_and_delete_replies_carry_the_id(
    client: JsonClient, api_store: Store, remote: Callable[..., RemoteBackend]
) -> None:
    sync = basic("sync")
    wid = client.call(W, "Create", {"object": {"name": "u"}}, sync)["id"]
    reply = client.call(W, "Update", {"object": {"id": wid, "size": 7}}, sync)
    assert reply["object"]["id"] == wid and reply["object"]["size"] == 7
    assert reply["object"]["updated"] == api_store.get("Widget", wid)["updated"]
    api_store.update("Widget", wid, {"backend_need_delete": True}, WriteContext(Caller.SYNCHRONIZER))
    assert client.call(W, "Delete", {"id": wid}, sync) == {"id": wid, "deleted": True}
    assert api_store.get("Widget", wid)["deleted"] is True
    gone = {"id": wid, "deleted": True, "purged": True}
    assert client.call(W, "Delete", {"id": wid, "purge": True}, sync) == gone
    assert api_store.get("Widget", wid) is None
    # An object that never reached the backend is purged at once, and the reply says so.
    never_synced = client.call(W, "Create", {"object": {"name": "fresh"}}, sync)["id"]
    assert client.call(W, "Delete", {"id": never_synced}, sync)["purged"] is True
    # The Python client still answers an update with the columns written, no id among them.
    backend = remote("sync")
    row = backend.create("Widget", {"name": "v"})
    changes = backend.update("Widget", row["id"], {"size": 3})
    assert changes["size"] == 3 and "updated" in changes and "id" not in changes


# -- reflection v1 --------------------------------------------------------------------


def _reflect_v1(address: str, *requests: reflection_pb2.ServerReflectionRequest) -> list[Any]:
    """Ask ``grpc.reflection.v1`` (its messages are the v1alpha ones under another package)."""
    with grpc.insecure_channel(address) as channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(info(iter(requests), timeout=10))


def test_reflection_v1_lists_and_describes(api_server: ApiServer) -> None:
    Request = reflection_pb2.ServerReflectionRequest
    listed, widget, itself = _reflect_v1(
        api_server.address,
        Request(list_services=""),
        Request(file_containing_symbol="actors.services.v1.Widget"),
        Request(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    )
    services = {s.name for s in listed.list_services_response.service}
    assert {
        "actors.api.v1.Core",
        "actors.services.v1.Widget",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    files = {}
    for data in widget.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto()
        file.ParseFromString(data)
        files[file.name] = file
    assert "actors/services/v1/services.proto" in files
    (own,) = [
        descriptor_pb2.FileDescriptorProto.FromString(d)
        for d in itself.file_descriptor_response.file_descriptor_proto
    ]
    assert own.name == "grpc/reflection/v1/reflection.proto" and own.package == "grpc.reflection.v1"
    method = own.service[0].method[0]
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    (missing,) = _reflect_v1(api_server.address, Request(file_containing_symbol="no.such.Thing"))
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# -- schema answers -------------------------------------------------------------------


def _origins(models_json: str) -> list[str]:
    models = json.loads(models_json)["models"]
    return [m["origin"] for m in models] + [f["origin"] for m in models for f in m["fields"]]


def test_schema_names_no_server_paths_to_non_admins(
    raw: RawClient, api_server: ApiServer, models_dir: Path
) -> None:
    protos = api_server.protos
    answers = {}
    for user in ("reader", "sync", "admin"):
        result = raw.call(f"/{CORE}/GetSchema", protos.message("Empty")(), basic(user))
        answers[user] = result.parse(protos.message("SchemaResponse")).models_json
    for user in ("reader", "sync"):
        origins = _origins(answers[user])
        assert str(models_dir) not in answers[user]
        assert all("/" not in o and "\\" not in o for o in origins), origins
        assert "widgets.xproto:4" in origins and any(o.startswith("core.xproto:") for o in origins)
    assert str(models_dir / "widgets.xproto") in answers["admin"]
    # The Python client still rebuilds the schema from a stripped answer.
    with RemoteBackend(api_server.address, username="reader", password=PASSWORDS["reader"]) as backend:
        assert backend.schema["Widget"].origin == "widgets.xproto:4"


# -- anonymous reads ------------------------------------------------------------------


def _call_now(address: str, metadata: Any = ()) -> grpc.StatusCode:
    protos = base_protos()
    with grpc.insecure_channel(address) as channel:
        return RawClient(channel).call(f"/{CORE}/Now", protos.message("Empty")(), metadata).code


def test_anonymous_read_is_off_by_default_with_users(api_server: ApiServer) -> None:
    assert _call_now(api_server.address) == grpc.StatusCode.UNAUTHENTICATED
    assert _call_now(api_server.address, basic("reader")) == grpc.StatusCode.OK


def test_anonymous_read_on_with_users(api_store: Store, start_server: Callable[..., ApiServer]) -> None:
    server = start_server(api_store, anonymous_read=True)
    api_store.create("Widget", {"name": "public"})
    with RemoteBackend(server.address, timeout=10) as anonymous:
        assert [r["name"] for r in anonymous.select("Widget")] == ["public"]
        with pytest.raises(AccessDenied, match="credentials required to write"):
            anonymous.create("Widget", {"name": "x"})
    # Credentials are still checked when sent, and still needed to write.
    assert _call_now(server.address, basic("reader", "wrong")) == grpc.StatusCode.UNAUTHENTICATED
    with RemoteBackend(server.address, username="admin", password=PASSWORDS["admin"], timeout=10) as admin:
        admin.create("Widget", {"name": "y"})
    assert api_store.count("Widget") == 2


def test_anonymous_read_off_without_users(api_store: Store, start_server: Callable[..., ApiServer]) -> None:
    server = start_server(api_store, users=[], anonymous_read=False)
    assert _call_now(server.address) == grpc.StatusCode.UNAUTHENTICATED
    open_server = start_server(api_store, users=[])
    assert _call_now(open_server.address) == grpc.StatusCode.OK


def test_anonymous_read_from_the_configuration(tmp_path: Path) -> None:
    from .test_api_cli import _start_core

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "widgets.xproto").write_text(WIDGETS_XPROTO)
    config: dict[str, Any] = {
        "name": "anonymous-read",
        "models_dir": "models",
        "store": {"url": "sqlite:///" + str(tmp_path / "core.db")},
        "api": {
            "address": "127.0.0.1:0",
            "anonymous_read": True,
            "users": [{"username": "ops", "password": "ops-pw", "role": "admin"}],
        },
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    proc, address = _start_core("--config", str(tmp_path / "config.yaml"), cwd=tmp_path)
    try:
        assert _call_now(address) == grpc.StatusCode.OK
        with RemoteBackend(address, timeout=10) as anonymous:
            assert anonymous.select("Widget") == []
            with pytest.raises(AccessDenied):
                anonymous.create("Widget", {"name": "x"})
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_anonymous_read_in_the_main_job(tmp_path: Path, api_store: Store) -> None:
    """The synchronizer's embedded API reads ``api.anonymous_read`` too."""
    from actors.config import load_config
    from actors.runtime._synchronizer import _api_server

    config: dict[str, Any] = {
        "name": "anonymous-read",
        "api": {
            "address": "127.0.0.1:0",
            "anonymous_read": True,
            "users": [{"username": "ops", "password": "ops-pw", "role": "admin"}],
        },
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    server = _api_server(api_store, load_config(str(tmp_path / "config.yaml")))
    server.start()
    try:
        assert _call_now(server.address) == grpc.StatusCode.OK
    finally:
        server.stop(grace=0)
