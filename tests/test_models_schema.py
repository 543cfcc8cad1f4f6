"""Built-in models, loading xproto files and folders into a Schema, and inheritance."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import actors.models
from actors.models import (
    LinkSpec,
    ModelSpec,
    Schema,
    SchemaError,
    XprotoSyntaxError,
    builtin_models,
    load_schema,
    parse_file,
    parse_xproto,
    xproto_files,
)
from actors.models._spec import ABSTRACT_ROOT

#: The service graph first, then the rest of the XOS core, in core.xproto's order.
SERVICE_GRAPH = [
    "XOSBase",
    "Service",
    "ServiceAttribute",
    "ServiceDependency",
    "ServiceInstance",
    "ServiceInstanceAttribute",
    "ServiceInstanceLink",
]
BUILTIN_NAMES = [
    *SERVICE_GRAPH,
    *[
        "Site",
        "User",
        "Privilege",
        "Role",
        "TrustDomain",
        "Principal",
        "Flavor",
        "Image",
        "Node",
        "NodeLabel",
        "Slice",
        "ComputeServiceInstance",
        "NetworkTemplate",
        "Network",
        "NetworkParameterType",
        "NetworkParameter",
        "NetworkSlice",
        "Port",
        "AddressPool",
        "ServicePort",
        "InterfaceType",
        "ServiceInterface",
        "Tag",
        "BackupFile",
        "BackupOperation",
        "XOSCore",
        "XOSGuiExtension",
        "ServiceGraphConstraint",
    ],
]

#: Every bookkeeping field of XOSBase: (type, nullable, default).
BOOKKEEPING = {
    "created": ("float", False, 0.0),
    "updated": ("float", False, 0.0),
    "enacted": ("float", True, None),
    "policed": ("float", True, None),
    "changed_by_step": ("float", True, None),
    "changed_by_policy": ("float", True, None),
    "backend_status": ("string", False, "Provisioning in progress"),
    "backend_code": ("int32", False, 0),
    "backend_register": ("string", True, "{}"),
    "backend_need_delete": ("bool", False, False),
    "backend_need_reap": ("bool", False, False),
    "policy_status": ("string", True, "Policy in process"),
    "policy_code": ("int32", True, 0),
    "no_sync": ("bool", False, False),
    "no_policy": ("bool", False, False),
    "lazy_blocked": ("bool", False, False),
    "deleted": ("bool", False, False),
    "write_protect": ("bool", False, False),
    "leaf_model_name": ("string", False, ""),
    "backend_handle": ("string", True, None),
    "xos_managed": ("bool", False, True),
    "backend_need_delete_policy": ("bool", False, False),
}
FEEDBACK = {
    "backend_status",
    "backend_code",
    "backend_register",
    "policy_status",
    "policy_code",
    "backend_handle",
}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- the package surface ------------------------------------------------------------


def test_public_names() -> None:
    for name in actors.models.__all__:
        assert hasattr(actors.models, name), name
    assert {"parse_xproto", "XprotoSyntaxError", "load_schema", "builtin_models"} <= set(
        actors.models.__all__
    )
    assert {"FieldSpec", "LinkSpec", "ModelSpec", "Schema", "SchemaError"} <= set(actors.models.__all__)


# -- built-in models ---------------------------------------------------------------


def test_builtins_load_and_schema_accepts_them() -> None:
    models = builtin_models()
    assert [m.name for m in models] == BUILTIN_NAMES
    schema = Schema(models)
    assert schema.names == BUILTIN_NAMES
    assert [m.name for m in schema.concrete()] == BUILTIN_NAMES[1:]
    assert load_schema().names == BUILTIN_NAMES
    for model in models:
        assert model.origin.endswith(f"core.xproto:{model.origin.rsplit(':', 1)[1]}")
        assert model.options["app_label"] == "core"


def test_builtin_models_is_cached_but_returns_new_lists() -> None:
    first, second = builtin_models(), builtin_models()
    assert first == second and first is not second
    assert all(a is b for a, b in zip(first, second, strict=True))
    first.clear()
    assert len(builtin_models()) == len(BUILTIN_NAMES)


def test_xosbase_bookkeeping_fields() -> None:
    base = load_schema()[ABSTRACT_ROOT]
    assert base.abstract and base.bases == ()
    fields = {f.name: f for f in base.fields}
    assert set(fields) == set(BOOKKEEPING)
    assert "id" not in fields
    for name, (kind, nullable, default) in BOOKKEEPING.items():
        f = fields[name]
        assert (f.kind, f.nullable, f.default) == (kind, nullable, default), name
        if name in FEEDBACK:
            assert f.options.get("feedback_state") is True, name
            assert "bookkeeping_state" not in f.options, name
        else:
            assert f.options.get("bookkeeping_state") is True, name
            assert "feedback_state" not in f.options, name
    assert fields["backend_status"].max_length == 1024
    assert fields["backend_register"].max_length == 1024
    assert fields["leaf_model_name"].max_length == 1024
    assert len({f.number for f in base.fields}) == len(base.fields)
    assert min(f.number for f in base.fields) == 2  # 1 is the implicit id


def test_service_graph_models() -> None:
    schema = load_schema()
    service = schema.fields("Service")
    assert service["kind"].default == "generic"
    assert service["enabled"].default is True
    assert service["kind"].choices is not None and ("generic", "Generic") in service["kind"].choices
    assert {"name", "description", "vendor", "version", "service_specific_id",
            "service_specific_attribute"} <= set(service)  # fmt: skip
    assert service["name"].options.get("unique") is True

    owner = schema.field("ServiceInstance", "owner")
    assert (
        owner.link is not None and owner.link.model == "Service" and owner.link.reverse == "service_instances"
    )
    assert owner.modifier == "required" and not owner.nullable and owner.options["db_index"] is True
    assert owner.column == "owner_id"
    assert {"name", "service_specific_id", "service_specific_attribute"} <= set(
        schema.fields("ServiceInstance")
    )

    link = schema.fields("ServiceInstanceLink")
    assert link["provider_service_instance"].link == LinkSpec("ServiceInstance", "provided_links", 1003)
    assert not link["provider_service_instance"].nullable
    assert link["subscriber_service_instance"].link == LinkSpec("ServiceInstance", "subscribed_links", 1005)
    assert link["subscriber_service_instance"].nullable
    assert link["subscriber_service"].link == LinkSpec("Service", "subscribed_links", 1010)
    assert link["subscriber_service"].nullable

    dependency = schema.fields("ServiceDependency")
    assert dependency["provider_service"].link == LinkSpec("Service", "provided_dependencies", 1004)
    assert dependency["subscriber_service"].link == LinkSpec("Service", "subscribed_dependencies", 1005)
    assert dependency["connect_method"].default == "none"

    to_service = {(m, f.name) for m, f in schema.reverse_links("Service")}
    assert to_service == {
        ("ServiceInstance", "owner"),
        ("ServiceInstanceLink", "subscriber_service"),
        ("ServiceDependency", "provider_service"),
        ("ServiceDependency", "subscriber_service"),
        ("ServiceAttribute", "service"),
        ("TrustDomain", "owner"),
        ("Slice", "service"),
        ("AddressPool", "service"),
        ("ServicePort", "service"),
        ("ServiceInterface", "service"),
        ("Tag", "service"),
    }


def test_builtin_reverse_accessors_and_numbers_are_unique_per_target() -> None:
    schema = load_schema()
    for target in schema.names:
        links = [f.link for _, f in schema.reverse_links(target) if f.link and f.link.model == target]
        reverses = [link.reverse for link in links if link.reverse]
        numbers = [link.reverse_number for link in links if link.reverse_number]
        assert len(reverses) == len(set(reverses)), target
        assert len(numbers) == len(set(numbers)), target


def test_reference_my_model_on_top_of_builtins() -> None:
    schema = load_schema(
        extra=parse_xproto(
            """
            message MyModel (XOSBase){
                required string first_name = 1 [null = False, blank = False];
                required string last_name = 2 [null = False, blank = False];
            }
            """
        )
    )
    fields = schema.fields("MyModel")
    assert list(fields)[-2:] == ["first_name", "last_name"]
    assert set(BOOKKEEPING) <= set(fields)
    assert fields["created"].default == 0.0
    assert fields["backend_status"].default == "Provisioning in progress"
    # XOSBase is abstract: its columns live in MyModel's own (root) table.
    assert schema.parent("MyModel") is None
    assert schema.root("MyModel") == "MyModel"
    assert schema.chain("MyModel") == ["MyModel"]
    assert [f.name for f in schema.own_fields("MyModel")] == list(fields)
    assert schema.is_a("MyModel", "XOSBase")


# -- loading files and folders ------------------------------------------------------


def test_multi_file_multi_level_inheritance(tmp_path: Path) -> None:
    write(tmp_path, "a.xproto", """\
        option app_label = "alpha";
        message A (XOSBase) {
            required string a_name = 1 [max_length = 30];
        }
        """)  # fmt: skip
    write(tmp_path, "b.xproto", """\
        message B (A) {
            option verbose_name = "Bee";
            optional int32 b_count = 1 [default = 3];
            required manytoone service->Service:bs = 2:1101;
        }
        """)  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    c_file = write(other, "c.xproto", """\
        message C (B) {
            optional manytoone a->A:cs = 1:1001 [null = True];
            optional float c_ratio = 2;
        }
        message Mixin {
            option abstract = True;
            optional bool mixed = 1 [default = True];
        }
        message D (C, Mixin) {
            optional string d = 1;
        }
        """)  # fmt: skip
    schema = load_schema([tmp_path, c_file])
    assert schema.names == [*BUILTIN_NAMES, "A", "B", "C", "Mixin", "D"]

    assert schema["A"].origin == f"{tmp_path / 'a.xproto'}:2"
    assert schema["A"].options == {"app_label": "alpha"}
    assert schema["B"].options == {"verbose_name": "Bee"}  # file options stay in their file

    names = list(schema.fields("C"))
    assert names[: len(BOOKKEEPING)] == [f.name for f in schema["XOSBase"].fields]
    assert names[len(BOOKKEEPING) :] == ["a_name", "b_count", "service", "a", "c_ratio"]
    # Inherited fields come base-most first (reversed ancestors), so the mixin's come first.
    assert list(schema.fields("D")) == ["mixed", *names, "d"]

    assert schema.ancestors("C") == ("B", "A", "XOSBase")
    assert schema.parent("C") == "B" and schema.parent("B") == "A" and schema.parent("A") is None
    assert schema.chain("C") == ["A", "B", "C"]
    assert schema.chain("D") == ["A", "B", "C", "D"]
    assert schema.root("D") == "A"
    assert [f.name for f in schema.own_fields("A")] == [*(f.name for f in schema["XOSBase"].fields), "a_name"]
    assert [f.name for f in schema.own_fields("B")] == ["b_count", "service"]
    assert [f.name for f in schema.own_fields("C")] == ["a", "c_ratio"]
    assert [f.name for f in schema.own_fields("D")] == ["mixed", "d"]  # the abstract mixin's columns

    assert schema.descendants("A") == ["B", "C", "D"]
    assert schema.descendants("Mixin") == ["D"]
    assert schema.descendants("XOSBase") == [*BUILTIN_NAMES[1:], "A", "B", "C", "D"]
    assert schema.is_a("D", "A") and not schema.is_a("A", "D")

    assert [(m, f.name) for m, f in schema.reverse_links("A")] == [("C", "a")]
    assert [(m, f.name) for m, f in schema.reverse_links("C")] == [("C", "a")]  # C is an A
    assert ("B", "service") in [(m, f.name) for m, f in schema.reverse_links("Service")]
    assert schema.field("D", "a").origin == f"{c_file}:2"


def test_folders_read_sorted_xproto_files_only(tmp_path: Path) -> None:
    write(tmp_path, "b.xproto", "message B (A) {}")
    write(tmp_path, "a.xproto", "message A (XOSBase) {}")
    write(tmp_path, "notes.txt", "message Ignored {}")
    write(tmp_path, "c.proto", "message Ignored {}")
    sub = tmp_path / "sub.xproto"
    sub.mkdir()
    write(sub, "deep.xproto", "message Deep {}")
    assert xproto_files(tmp_path) == [tmp_path / "a.xproto", tmp_path / "b.xproto"]
    assert load_schema([tmp_path]).names == [*BUILTIN_NAMES, "A", "B"]
    assert load_schema(str(tmp_path)).names == [*BUILTIN_NAMES, "A", "B"]  # one path, not a list


def test_folder_without_xproto_files_is_fine(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("nothing here")
    assert xproto_files([tmp_path]) == []
    assert load_schema([tmp_path]).names == BUILTIN_NAMES


def test_a_file_path_is_read_whatever_its_name_and_only_once(tmp_path: Path) -> None:
    models = write(tmp_path, "models.txt", "message M (XOSBase) {}")
    write(tmp_path, "n.xproto", "message N (M) {}")
    schema = load_schema([models, tmp_path, tmp_path / "n.xproto", tmp_path / "." / "n.xproto"])
    assert schema.names == [*BUILTIN_NAMES, "M", "N"]
    assert parse_file(models)[0].origin == f"{models}:1"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        load_schema([tmp_path / "nope"])


def test_extra_specs() -> None:
    extra = ModelSpec(name="Extra", bases=("ServiceInstance",), origin="test:1")
    schema = load_schema(extra=[extra])
    assert schema.parent("Extra") == "ServiceInstance"
    assert schema.chain("Extra") == ["ServiceInstance", "Extra"]


# -- errors carry the file name -------------------------------------------------------


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "ok.xproto", "message Ok (XOSBase) {}")
    bad = write(tmp_path, "zz.xproto", "message Bad (XOSBase) {\n  required string x = 1\n}\n")
    with pytest.raises(XprotoSyntaxError) as info:
        load_schema([tmp_path])
    assert str(info.value) == f"{bad}:3:1: unexpected '}}', expected '[' or ';'"
    assert info.value.filename == str(bad)


def test_invalid_utf8_is_a_syntax_error(tmp_path: Path) -> None:
    bad = tmp_path / "bin.xproto"
    bad.write_bytes(b"message M {\n  // caf\xc3\xa9 \xff\n}")
    with pytest.raises(XprotoSyntaxError) as info:
        load_schema([bad])
    assert str(info.value) == f"{bad}:2:11: invalid UTF-8 byte 0xff, expected UTF-8 text"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.xproto": "message A (Missing) {}"}, "{a}:1: model A inherits from unknown model Missing"),
        (
            {"a.xproto": "message A (XOSBase) {\n  optional manytoone x->Nowhere = 1;\n}"},
            "{a}:2: field A.x links to unknown model Nowhere",
        ),
        (
            {"a.xproto": "message A (XOSBase) {}", "b.xproto": "\nmessage A (XOSBase) {}"},
            "model A is declared twice ({a}:1 and {b}:2)",
        ),
        (
            {"a.xproto": "message A (B) {}", "b.xproto": "message B (A) {}"},
            "{a}:1: inheritance cycle: A -> B -> A",
        ),
        (
            {
                "a.xproto": "message A (XOSBase) { optional int32 b_id = 1; }",
                "b.xproto": "message B (A) {\n  optional manytoone b->A = 1;\n}",
            },
            "{b}:2: field B.b clashes with b_id",
        ),
        (
            {"a.xproto": "message A (XOSBase) {\n  optional int32 deleted = 1;\n}"},
            "{a}:2: field A.deleted redeclares inherited field with another type (bool -> int32)",
        ),
        ({"a.xproto": "message Service (XOSBase) {}"}, "model Service is declared twice ({core}:"),
    ],
)
def test_schema_errors_name_the_file(tmp_path: Path, files: dict[str, str], message: str) -> None:
    paths = {Path(name).stem: write(tmp_path, name, text) for name, text in files.items()}
    core = builtin_models()[0].origin.rsplit(":", 1)[0]
    with pytest.raises(SchemaError) as info:
        load_schema([tmp_path])
    assert str(info.value).startswith(message.format(core=core, **paths)), str(info.value)


def test_the_example_of_the_model_docs_loads() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "models.md"
    if not docs.exists():  # pragma: no cover - docs are not shipped with the package
        pytest.skip("docs/models.md not found")
    example = docs.read_text(encoding="utf-8").split("```proto\n", 1)[1].split("```", 1)[0]
    schema = load_schema(extra=parse_xproto(example, "docs/models.md"))
    assert schema.chain("MyServiceInstance") == ["ServiceInstance", "MyServiceInstance"]
    assert schema.field("MyServiceInstance", "owner_model").column == "owner_model_id"
    assert [m for m, _ in schema.reverse_links("MyModel")] == ["MyServiceInstance"]
    assert schema["MyServiceInstance"].options == {
        "app_label": "mysvc",
        "verbose_name": "My Service Instance",
    }


def test_the_policy_example_of_the_model_docs_loads() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "models.md"
    if not docs.exists():  # pragma: no cover - docs are not shipped with the package
        pytest.skip("docs/models.md not found")
    blocks = docs.read_text(encoding="utf-8").split("```proto\n")[1:]
    (example,) = [block.split("```", 1)[0] for block in blocks if block.startswith("policy ")]
    schema = load_schema(extra=parse_xproto(example, "docs/models.md"))
    campus = schema["Campus"]
    assert campus.bases == ("XOSBase",) and campus.options["policy"] == "site_policy"
    assert campus.options["python_bases"] == "AttributeMixin"
    assert [f.name for f in campus.manytomany] == ["nodes"] and "nodes" not in schema.fields("Campus")
