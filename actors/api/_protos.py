"""Protobuf descriptors built at run time from a :class:`~actors.models.Schema`.

The fixed ``api.proto`` is a ``.proto`` file beside this module, compiled by
``protoc`` (grpcio-tools) the first time it is needed. The model files need no
``protoc`` step: their messages and services are written as
``FileDescriptorProto`` values. All are loaded into a private
:class:`~google.protobuf.descriptor_pool.DescriptorPool` and turned into message
classes with :mod:`google.protobuf.message_factory`. One :class:`Protos` value
holds everything generated for one schema; a schema change builds a new one.

Three files are generated:

``actors/api/v1/api.proto`` (package ``actors.api.v1``)
    the shared messages (requests, filter conditions, change notices...) and the
    ``Core`` service (schema, upload, login, watch).
``actors/models/v1/models.proto`` (package ``actors.models.v1``)
    one message per concrete model, plus ``<Model>List``, ``<Model>Write`` and
    ``<Model>Changes``.
``actors/services/v1/services.proto`` (package ``actors.services.v1``)
    one service per concrete model, named like the model.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from actors.models import FieldSpec, Schema, SchemaError

__all__ = [
    "CORE_SERVICE",
    "MODEL_METHODS",
    "SERVICES_PACKAGE",
    "ModelTypes",
    "Protos",
    "api_file",
    "base_protos",
    "model_files",
    "render_proto",
]

API_PACKAGE = "actors.api.v1"
MODELS_PACKAGE = "actors.models.v1"
SERVICES_PACKAGE = "actors.services.v1"
API_FILE = "actors/api/v1/api.proto"
MODELS_FILE = "actors/models/v1/models.proto"
SERVICES_FILE = "actors/services/v1/services.proto"
CORE_SERVICE = f"{API_PACKAGE}.Core"

#: Methods of every model service: name -> (request, response, server streaming).
#: ``{M}`` stands for the model's own messages.
MODEL_METHODS: Mapping[str, tuple[str, str, bool]] = {
    "List": (".actors.api.v1.ListRequest", ".actors.models.v1.{M}List", False),
    "Get": (".actors.api.v1.GetRequest", ".actors.models.v1.{M}", False),
    "Create": (".actors.models.v1.{M}Write", ".actors.models.v1.{M}", False),
    "Update": (".actors.models.v1.{M}Write", ".actors.models.v1.{M}Changes", False),
    "Delete": (".actors.api.v1.DeleteRequest", ".actors.api.v1.DeleteResponse", False),
    "Filter": (".actors.api.v1.FilterRequest", ".actors.models.v1.{M}List", False),
    "Count": (".actors.api.v1.FilterRequest", ".actors.api.v1.CountResponse", False),
    "Watch": (".actors.api.v1.WatchRequest", ".actors.api.v1.ChangeNotice", True),
}

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED

#: xproto kind -> protobuf scalar type. Links are ``int32`` ids (stored in ``<name>_id``).
KIND_TYPES: Mapping[str, int] = {
    "string": _F.TYPE_STRING,
    "text": _F.TYPE_STRING,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
    "bool": _F.TYPE_BOOL,
    "float": _F.TYPE_DOUBLE,
    "double": _F.TYPE_DOUBLE,
}
ID_TYPE = _F.TYPE_INT32


# -- building descriptors ------------------------------------------------------------


class _MessageBuilder:
    """Adds fields to a ``DescriptorProto``; proto3 ``optional`` gets its synthetic oneof."""

    def __init__(self, message: descriptor_pb2.DescriptorProto) -> None:
        self.message = message
        self._synthetic: list[tuple[descriptor_pb2.FieldDescriptorProto, str]] = []

    def add(
        self,
        name: str,
        number: int,
        type_: int,
        *,
        type_name: str | None = None,
        repeated: bool = False,
        optional: bool = False,
    ) -> descriptor_pb2.FieldDescriptorProto:
        field = self.message.field.add(
            name=name,
            number=number,
            type=type_,
            label=_REPEATED if repeated else _OPTIONAL,
            json_name=_default_json_name(name),
        )
        if type_name is not None:
            field.type_name = type_name
        if optional:
            field.proto3_optional = True
            self._synthetic.append((field, f"_{name}"))
        return field

    def finish(self) -> descriptor_pb2.DescriptorProto:
        # A lowerCamel JSON name that equals another field's name or JSON name (foo_bar and
        # fooBar) would be ambiguous: such a field keeps its own name as its JSON name.
        names = {f.name for f in self.message.field}
        camel = Counter(f.json_name for f in self.message.field)
        for field in self.message.field:
            if field.json_name != field.name and (field.json_name in names or camel[field.json_name] > 1):
                field.json_name = field.name
        # Synthetic oneofs come after every real one.
        for field, oneof_name in self._synthetic:
            field.oneof_index = len(self.message.oneof_decl)
            self.message.oneof_decl.add(name=oneof_name)
        return self.message


def _message(
    file: descriptor_pb2.FileDescriptorProto, name: str, comment: str | None = None
) -> _MessageBuilder:
    if comment:
        _comment(file, [4, len(file.message_type)], comment)
    return _MessageBuilder(file.message_type.add(name=name))


def _comment(file: descriptor_pb2.FileDescriptorProto, path: list[int], text: str) -> None:
    lines = textwrap.wrap(" ".join(str(text).split()), width=96) or [""]
    file.source_code_info.location.add(path=path, leading_comments="".join(f" {line}\n" for line in lines))


def _model_service(file: descriptor_pb2.FileDescriptorProto, model: str) -> None:
    _comment(file, [6, len(file.service)], f"Objects of model {model}.")
    service = file.service.add(name=model)
    for method, (request, response, streaming) in MODEL_METHODS.items():
        rpc = service.method.add(
            name=method,
            input_type=request.replace("{M}", model),
            output_type=response.replace("{M}", model),
        )
        if streaming:
            rpc.server_streaming = True


#: ``api.proto``'s source, beside this module; its name is the path below the package root.
_API_SOURCE = Path(__file__).parent / "v1" / "api.proto"


@functools.cache
def _compiled_api_file() -> bytes:
    """``api.proto`` compiled by ``protoc`` (grpcio-tools), once per process; only its comments kept
    of the source information, for :func:`render_proto`."""
    from grpc_tools import protoc

    source = _API_SOURCE.resolve()  # an absolute path: protoc names it by its place below the root
    root = source.parents[3]
    with tempfile.TemporaryDirectory(prefix="actors-api-proto-") as tmp:
        out = Path(tmp) / "api.pb"
        args = ["protoc", f"-I{root}", f"--descriptor_set_out={out}", "--include_source_info", str(source)]
        if protoc.main(args) != 0 or not out.exists():
            raise SchemaError(f"{_API_SOURCE}: protoc cannot compile it (its errors are printed above)")
        (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    comments = [(list(loc.path), loc.leading_comments) for loc in file.source_code_info.location]
    file.ClearField("source_code_info")
    for path, text in comments:
        if text:
            file.source_code_info.location.add(path=path, leading_comments=text)
    data: bytes = file.SerializeToString(deterministic=True)
    return data


def api_file() -> descriptor_pb2.FileDescriptorProto:
    """``actors/api/v1/api.proto``: the messages shared by every service, and ``Core``.

    Its one source is the ``.proto`` file itself, compiled when first needed.
    """
    return descriptor_pb2.FileDescriptorProto.FromString(_compiled_api_file())


def _field_type(f: FieldSpec) -> int:
    return ID_TYPE if f.is_link else KIND_TYPES[f.kind]


def model_files(
    schema: Schema,
) -> tuple[descriptor_pb2.FileDescriptorProto, descriptor_pb2.FileDescriptorProto]:
    """``models.proto`` and ``services.proto`` for the concrete models of ``schema``.

    Field numbers: ``id`` is 1, then every field (inherited ones first, as
    :meth:`Schema.fields` orders them) takes the next number. Field names are
    the stored column names (``owner_id`` for a link ``owner``).

    Raises:
        SchemaError: a model whose generated names clash with another model's.
    """
    models = descriptor_pb2.FileDescriptorProto(name=MODELS_FILE, package=MODELS_PACKAGE, syntax="proto3")
    models.dependency.append(API_FILE)
    services = descriptor_pb2.FileDescriptorProto(
        name=SERVICES_FILE, package=SERVICES_PACKAGE, syntax="proto3"
    )
    services.dependency.extend([API_FILE, MODELS_FILE])
    concrete = [spec.name for spec in schema.concrete()]
    names = set(concrete)
    for name in concrete:
        for suffix in ("List", "Write", "Changes"):
            if name + suffix in names:
                raise SchemaError(
                    f"{schema[name + suffix].origin}: model {name + suffix} clashes with the "
                    f"generated message {name}{suffix} of model {name}"
                )
    for name in concrete:
        spec = schema[name]
        description = spec.options.get("description") or spec.options.get("verbose_name")
        m = _message(models, name, f"{name}: {description}" if description else f"Objects of model {name}.")
        msg_index = len(models.message_type) - 1
        m.add("id", 1, ID_TYPE, optional=True)
        for number, f in enumerate(schema.fields(name).values(), start=2):
            help_text = f.options.get("help_text")
            link = f" (id of a {f.link.model})" if f.link is not None else ""
            if help_text or link:
                _comment(models, [4, msg_index, 2, len(m.message.field)], f"{help_text or ''}{link}".strip())
            m.add(f.column, number, _field_type(f), optional=True)
        m.finish()
        own = f".{MODELS_PACKAGE}.{name}"
        m = _message(models, f"{name}List")
        m.add("items", 1, _F.TYPE_MESSAGE, type_name=own, repeated=True)
        m.finish()
        m = _message(
            models,
            f"{name}Write",
            f"Create (object without id) or Update (object.id) a {name}: the fields set in object, "
            "and null_fields set to null.",
        )
        m.add("object", 1, _F.TYPE_MESSAGE, type_name=own)
        m.add("null_fields", 2, _F.TYPE_STRING, repeated=True)
        m.add("options", 3, _F.TYPE_MESSAGE, type_name=".actors.api.v1.WriteOptions")
        m.finish()
        m = _message(
            models,
            f"{name}Changes",
            "What an Update wrote: object holds the id and the columns written (bookkeeping included), "
            "null_fields those set to null.",
        )
        m.add("object", 1, _F.TYPE_MESSAGE, type_name=own)
        m.add("null_fields", 2, _F.TYPE_STRING, repeated=True)
        m.finish()
        _model_service(services, name)
    return models, services


# -- the generated bundle ------------------------------------------------------------


@dataclass(frozen=True)
class ModelTypes:
    """The message classes and service of one model."""

    name: str
    service: str
    message: Any
    list: Any
    write: Any
    changes: Any
    #: Column names of the message (``id`` included), in field order.
    column_names: tuple[str, ...]
    #: The same names, for membership tests.
    columns: frozenset[str]
    #: A fingerprint of the model's message: changes when its fields do.
    digest: str


class Protos:
    """Descriptors, message classes and ``.proto`` text generated for one schema.

    Build it from a schema (:meth:`from_schema`, the server) or from the
    serialized descriptors a server sends (:meth:`from_serialized`, the client),
    so both sides use the same field numbers.
    """

    def __init__(self, files: Sequence[descriptor_pb2.FileDescriptorProto]) -> None:
        self.files = list(files)
        self.pool = descriptor_pool.DescriptorPool()
        try:
            for file in self.files:
                self.pool.Add(file)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"cannot build protobuf descriptors: {exc}") from None
        self.serialized = [f.SerializeToString(deterministic=True) for f in self.files]
        self.version = hashlib.sha256(b"".join(self.serialized)).hexdigest()[:16]
        api = self.pool.FindFileByName(API_FILE).message_types_by_name
        self.api: dict[str, Any] = {name: message_factory.GetMessageClass(d) for name, d in api.items()}
        try:
            models = list(self.pool.FindFileByName(SERVICES_FILE).services_by_name)
        except KeyError:  # api.proto alone (base_protos)
            models = []
        self.models = {name: self._model_types(name) for name in models}
        self.service_names = [CORE_SERVICE, *(types.service for types in self.models.values())]

    def _model_types(self, name: str) -> ModelTypes:
        def find(suffix: str) -> Any:
            return message_factory.GetMessageClass(
                self.pool.FindMessageTypeByName(f"{MODELS_PACKAGE}.{name}{suffix}")
            )

        desc = self.pool.FindMessageTypeByName(f"{MODELS_PACKAGE}.{name}")
        proto = descriptor_pb2.DescriptorProto()
        desc.CopyToProto(proto)
        digest = hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()[:16]
        return ModelTypes(
            name=name,
            service=f"{SERVICES_PACKAGE}.{name}",
            message=find(""),
            list=find("List"),
            write=find("Write"),
            changes=find("Changes"),
            column_names=tuple(f.name for f in desc.fields),
            columns=frozenset(f.name for f in desc.fields),
            digest=digest,
        )

    @classmethod
    def from_schema(cls, schema: Schema) -> Protos:
        """Generate the files for ``schema``. Raises :class:`SchemaError` if that is impossible."""
        return cls([api_file(), *model_files(schema)])

    @classmethod
    def from_serialized(cls, files: Iterable[bytes]) -> Protos:
        """Load the serialized ``FileDescriptorProto`` values a server sent."""
        return cls([descriptor_pb2.FileDescriptorProto.FromString(data) for data in files])

    def message(self, name: str) -> Any:
        """A class of ``api.proto`` by short name: ``protos.message("GetRequest")``."""
        return self.api[name]

    def proto_texts(self) -> dict[str, str]:
        """File name -> ``.proto`` source, for ``protoc`` in any language."""
        return {file.name: render_proto(file) for file in self.files}


@functools.cache
def base_protos() -> Protos:
    """The ``api.proto`` messages alone (no models): enough to ask a server for its schema."""
    return Protos([api_file()])


# -- .proto text ---------------------------------------------------------------------


def _emit_comment(out: list[str], text: str | None, indent: str) -> None:
    if text:
        for line in text.rstrip("\n").split("\n"):
            out.append(f"{indent}//{line}")


def _emit_field(
    out: list[str], field: descriptor_pb2.FieldDescriptorProto, label: str, indent: str, comment: str | None
) -> None:
    _emit_comment(out, comment, indent)
    out.append(f"{indent}{label}{_type_of(field)} {field.name} = {field.number}{_field_options(field)};")


def _type_of(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (_F.TYPE_MESSAGE, _F.TYPE_ENUM):
        return str(field.type_name)
    return str(_F.Type.Name(field.type)).removeprefix("TYPE_").lower()  # TYPE_INT32: int32


def render_proto(file: descriptor_pb2.FileDescriptorProto) -> str:
    """The ``.proto`` source of a generated file (messages, oneofs, services, comments)."""
    locations = file.source_code_info.location
    comments = {tuple(loc.path): loc.leading_comments for loc in locations if loc.leading_comments}
    out = [
        "// Generated by actors.api from the loaded xproto models. Do not edit.",
        f'syntax = "{file.syntax or "proto2"}";',
        "",
        f"package {file.package};",
        "",
    ]
    for dep in file.dependency:
        out.append(f'import "{dep}";')
    if file.dependency:
        out.append("")
    for mi, message in enumerate(file.message_type):
        _emit_comment(out, comments.get((4, mi)), "")
        out.append(f"message {message.name} {{")
        oneofs: dict[int, list[int]] = {}  # the fields of each real oneof (not proto3 optional's)
        for fi, field in enumerate(message.field):
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneofs.setdefault(field.oneof_index, []).append(fi)
        for fi, field in enumerate(message.field):
            members = oneofs.get(field.oneof_index, []) if field.HasField("oneof_index") else []
            if not members:
                label = (
                    "repeated " if field.label == _REPEATED else "optional " if field.proto3_optional else ""
                )
                _emit_field(out, field, label, "  ", comments.get((4, mi, 2, fi)))
            elif fi == members[0]:  # a oneof is written whole where its first field stands
                out.append(f"  oneof {message.oneof_decl[field.oneof_index].name} {{")
                for ofi in members:
                    _emit_field(out, message.field[ofi], "", "    ", comments.get((4, mi, 2, ofi)))
                out.append("  }")
        out.append("}")
        out.append("")
    for si, service in enumerate(file.service):
        _emit_comment(out, comments.get((6, si)), "")
        out.append(f"service {service.name} {{")
        for method in service.method:
            stream = "stream " if method.server_streaming else ""
            out.append(f"  rpc {method.name}({method.input_type}) returns ({stream}{method.output_type});")
        out.append("}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _field_options(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.json_name and field.json_name != _default_json_name(field.name):
        return f' [json_name = "{field.json_name}"]'
    return ""


def _default_json_name(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)
