"""Descriptors generated at run time, and the .proto text clients in other languages compile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from actors.api._protos import Protos, api_file, model_files, render_proto
from actors.api._wire import (
    schema_from_json,
    schema_to_json,
    value_from_message,
    value_to_message,
)
from actors.models import Schema, SchemaError, load_schema, parse_xproto


def test_one_message_and_one_service_per_concrete_model(api_schema: Schema) -> None:
    protos = Protos.from_schema(api_schema)
    concrete = {spec.name for spec in api_schema.concrete()}
    assert set(protos.models) == concrete
    assert protos.service_names == ["actors.api.v1.Core", *(f"actors.services.v1.{m}" for m in protos.models)]
    widget = protos.models["Widget"]
    fields = widget.message.DESCRIPTOR.fields_by_name
    assert fields["id"].number == 1
    assert fields["owner_id"].type == fields["owner_id"].TYPE_INT32  # a link is the linked id
    assert fields["weight"].type == fields["weight"].TYPE_DOUBLE  # xproto float is a double
    assert fields["size"].has_presence  # proto3 optional: unset differs from 0
    assert set(widget.columns) == {"id", *(f.column for f in api_schema.fields("Widget").values())}
    methods = {m.name: m for m in protos.pool.FindServiceByName("actors.services.v1.Widget").methods}
    assert set(methods) == {"List", "Get", "Create", "Update", "Delete", "Filter", "Count", "Watch"}
    assert methods["Watch"].server_streaming and not methods["Get"].server_streaming


def test_presence_of_zero_values(api_schema: Schema) -> None:
    widget = Protos.from_schema(api_schema).models["Widget"]
    msg = widget.message(size=0, active=False, name="")
    again = widget.message.FromString(msg.SerializeToString())
    assert again.HasField("size") and again.HasField("active") and again.HasField("name")
    assert not again.HasField("weight")


def test_versions_and_digests(api_schema: Schema) -> None:
    a, b = Protos.from_schema(api_schema), Protos.from_schema(api_schema)
    assert a.version == b.version
    assert a.models["Widget"].digest == b.models["Widget"].digest
    extended = Schema(
        [s for s in api_schema if s.name != "SpecialWidget"]
        + parse_xproto(
            "message SpecialWidget (Widget) { optional string flavour = 1; optional int32 n = 2; }"
        )
    )
    c = Protos.from_schema(extended)
    assert c.version != a.version
    assert c.models["SpecialWidget"].digest != a.models["SpecialWidget"].digest
    assert c.models["Widget"].digest == a.models["Widget"].digest  # unchanged model, same digest


def test_client_side_protos_equal_the_server_side(api_schema: Schema) -> None:
    server = Protos.from_schema(api_schema)
    client = Protos.from_serialized(server.serialized)
    assert client.version == server.version
    assert {m: t.digest for m, t in client.models.items()} == {m: t.digest for m, t in server.models.items()}


def test_name_clashes_are_reported() -> None:
    schema = load_schema(
        extra=parse_xproto(
            "message Thing (XOSBase) { optional string a = 1; }\n"
            "message ThingWrite (XOSBase) { optional string b = 1; }"
        )
    )
    with pytest.raises(SchemaError, match="ThingWrite clashes"):
        Protos.from_schema(schema)


def test_fields_whose_json_names_would_clash() -> None:
    schema = load_schema(
        extra=parse_xproto(
            "message Camel (XOSBase) { optional string foo_bar = 1; optional string fooBar = 2; }"
        )
    )
    protos = Protos.from_schema(schema)  # foo_bar keeps its own name as JSON name: no clash
    assert {"foo_bar", "fooBar"} <= set(protos.models["Camel"].columns)
    fields = protos.models["Camel"].message.DESCRIPTOR.fields_by_name
    assert (fields["foo_bar"].json_name, fields["fooBar"].json_name) == ("foo_bar", "fooBar")
    assert fields["leaf_model_name"].json_name == "leafModelName"
    text = protos.proto_texts()["actors/models/v1/models.proto"]
    assert re.search(r'optional string foo_bar = \d+ \[json_name = "foo_bar"\];', text)


def test_schema_json_round_trip(api_schema: Schema) -> None:
    again = schema_from_json(schema_to_json(api_schema))
    assert again.names == api_schema.names
    for spec in api_schema:
        assert again[spec.name] == spec


def test_values_round_trip(api_schema: Schema) -> None:
    value_cls = Protos.from_schema(api_schema).message("Value")
    for value in [None, True, False, 0, -5, 2**62, 1.5, "", "text", [1, 2, 3], ["a", None]]:
        assert (
            value_from_message(value_cls.FromString(value_to_message(value_cls, value).SerializeToString()))
            == value
        )
    with pytest.raises(TypeError):
        value_to_message(value_cls, object())
    with pytest.raises(TypeError):
        value_to_message(value_cls, 2**70)


def test_rendered_text_has_every_element(api_schema: Schema) -> None:
    texts = Protos.from_schema(api_schema).proto_texts()
    api = texts["actors/api/v1/api.proto"]
    assert 'syntax = "proto3";' in api and "package actors.api.v1;" in api
    assert "oneof kind {" in api and "sint64 int_value = 2" in api
    assert "rpc Watch(.actors.api.v1.WatchRequest) returns (stream .actors.api.v1.ChangeNotice);" in api
    models = texts["actors/models/v1/models.proto"]
    assert "message Widget {" in models and "optional double weight = " in models
    assert "// The Service this attribute is associated with (id of a Service)" in models
    assert 'import "actors/api/v1/api.proto";' in models


def test_rendered_text_compiles_with_protoc(api_schema: Schema, tmp_path: Path) -> None:
    grpc_tools = pytest.importorskip("grpc_tools")
    protos = Protos.from_schema(api_schema)
    for name, text in protos.proto_texts().items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path / 'src'}",
            f"--descriptor_set_out={out / 'set.pb'}",
            *protos.proto_texts(),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path / "src",
        env={"PYTHONPATH": str(Path(grpc_tools.__file__).parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    compiled = descriptor_pb2.FileDescriptorSet.FromString((out / "set.pb").read_bytes())
    by_name = {f.name: f for f in compiled.file}
    # protoc reads back exactly the descriptors we built (comments aside).
    for file in protos.files:
        expected = descriptor_pb2.FileDescriptorProto()
        expected.CopyFrom(file)
        expected.ClearField("source_code_info")
        assert by_name[file.name] == expected, file.name


def test_render_proto_of_a_plain_file() -> None:
    text = render_proto(api_file())
    assert text.startswith("// Generated by actors.api")
    models, services = model_files(load_schema())
    assert "service Service {" in render_proto(services)
    assert "message ServiceInstance {" in render_proto(models)


def test_api_proto_has_one_source_the_proto_file_beside_the_module() -> None:
    import actors.api

    source = Path(actors.api.__file__).parent / "v1" / "api.proto"
    text = source.read_text(encoding="utf-8")
    file = api_file()
    assert file.name == "actors/api/v1/api.proto"
    declared = re.findall(r"^message (\w+) \{", text, flags=re.M)
    assert [m.name for m in file.message_type] == declared
    assert [m.name for m in file.service[0].method] == re.findall(r"^  rpc (\w+)\(", text, flags=re.M)
    # The comments of the source reach the served text.
    rendered = render_proto(file)
    assert "// A filter value: exactly one of the kinds; null_value = true is SQL NULL." in rendered
    assert "// Schema, upload of xproto files, login, clock and the change feed of every model." in rendered
