"""The xproto parser: syntax, values, errors, and properties over arbitrary input."""

from __future__ import annotations

import pickle
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.models import (
    FieldSpec,
    LinkSpec,
    ModelSpec,
    Schema,
    XprotoSyntaxError,
    option_true,
    parse_file,
    parse_xproto,
)
from actors.models._spec import SCALAR_KINDS

MY_MODEL = """\
message MyModel (XOSBase){
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""


def one(text: str, filename: str = "t.xproto") -> ModelSpec:
    specs = parse_xproto(text, filename)
    assert len(specs) == 1
    return specs[0]


def field_of(text: str, name: str) -> FieldSpec:
    for spec in parse_xproto(text):
        for f in spec.fields:
            if f.name == name:
                return f
    raise AssertionError(f"no field {name}")


def error_of(text: str, filename: str = "t.xproto") -> XprotoSyntaxError:
    with pytest.raises(XprotoSyntaxError) as info:
        parse_xproto(text, filename)
    return info.value


# -- the documented examples ------------------------------------------------------


def test_reference_my_model() -> None:
    spec = one(MY_MODEL, "mymodel.xproto")
    assert spec.name == "MyModel"
    assert spec.bases == ("XOSBase",)
    assert spec.options == {}
    assert spec.origin == "mymodel.xproto:1"
    first, last = spec.fields
    assert first == FieldSpec(
        name="first_name",
        kind="string",
        number=1,
        modifier="required",
        options={"null": False, "blank": False},
        origin="mymodel.xproto:2",
    )
    assert last.name == "last_name" and last.number == 2 and last.origin == "mymodel.xproto:3"
    assert not first.nullable and not first.is_link and first.column == "first_name"
    assert first.python_type is str and first.default == ""


def test_semantics_note_link_snippet() -> None:
    spec = one(
        """
        message MyServiceInstance (ServiceInstance) {
            required manytoone owner->Service:owned_instances = 2:1001 [db_index = True, null = False];
        }
        """
    )
    (owner,) = spec.fields
    assert owner.kind == "manytoone" and owner.is_link
    assert owner.link == LinkSpec(model="Service", reverse="owned_instances", reverse_number=1001)
    assert owner.column == "owner_id"
    assert owner.python_type is int
    assert owner.number == 2 and owner.modifier == "required"
    assert owner.options == {"db_index": True, "null": False}
    assert not owner.nullable


def test_link_forms() -> None:
    spec = one(
        """
        message Link (XOSBase) {
            required manytoone a->Service:service_instances = 1:1001 [db_index = True];
            optional manytoone b->Service = 2;
            optional manytoone c->Service:cs = 3;
            optional manytoone d->Service:+ = 4:1002;
            optional onetoone e->Link:e_back = 5 [null = True];
            manytoone f->Service = 6;
        }
        """
    )
    links = {f.name: f.link for f in spec.fields}
    assert links == {
        "a": LinkSpec("Service", "service_instances", 1001),
        "b": LinkSpec("Service", None, None),
        "c": LinkSpec("Service", "cs", None),
        "d": LinkSpec("Service", None, 1002),  # '+': no reverse accessor
        "e": LinkSpec("Link", "e_back", None),
        "f": LinkSpec("Service", None, None),
    }
    kinds = {f.name: f.kind for f in spec.fields}
    assert kinds["e"] == "onetoone" and kinds["a"] == "manytoone"
    assert {f.name: f.modifier for f in spec.fields}["f"] == "optional"
    assert [f.column for f in spec.fields] == ["a_id", "b_id", "c_id", "d_id", "e_id", "f_id"]


@pytest.mark.parametrize("kind", sorted(SCALAR_KINDS))
def test_every_scalar_type(kind: str) -> None:
    f = field_of(f"message M {{ optional {kind} x = 1; }}", "x")
    assert f.kind == kind and f.link is None and f.nullable


def test_message_without_bases_has_none() -> None:
    spec = one("message Plain { required int32 n = 1; }")
    assert spec.bases == ()
    assert spec.fields[0].nullable is False


def test_several_bases_and_empty_message() -> None:
    specs = parse_xproto("message A (X, Y,Z) {}\nmessage B{}")
    assert [(s.name, s.bases, s.fields) for s in specs] == [("A", ("X", "Y", "Z"), ()), ("B", (), ())]


def test_keywords_are_usable_as_names() -> None:
    spec = one(
        """
        message message (option) {
            optional string option = 1;
            optional string required = 2 [message = option];
            optional bool manytoone = 3 [True = False];
            optional string messages = 4;
        }
        """
    )
    assert spec.name == "message" and spec.bases == ("option",)
    assert [f.name for f in spec.fields] == ["option", "required", "manytoone", "messages"]
    assert spec.fields[1].options == {"message": "option"}
    assert spec.fields[2].options == {"True": False}


# -- options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ('"text"', "text"),
        ("'text'", "text"),
        ('""', ""),
        (r'"a\"b"', 'a"b'),
        (r"'a\'b'", "a'b"),
        (r'"it\'s"', "it's"),
        (r'"tab\tnew\nline\\"', "tab\tnew\nline\\"),
        (r'"\x41\101\u00e9\U0001F600"', "AA\u00e9\U0001f600"),
        (r'"keep \d as is"', r"keep \d as is"),
        ('"/* not a comment */ // nor this"', "/* not a comment */ // nor this"),
        ("\"('a', 'A')\"", "('a', 'A')"),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("+7", 7),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("2.", 2.0),
        ("1e3", 1000.0),
        ("6.02E-2", 0.0602),
        ("True", True),
        ("False", False),
        ("true", True),
        ("false", False),
        ("None", None),
        ("now", "now"),
        ("subscriber_service_instance", "subscriber_service_instance"),
        ("Truely", "Truely"),
        ("null", "null"),
    ],
)
def test_option_values(written: str, value: Any) -> None:
    f = field_of(f"message M {{ optional string x = 1 [opt = {written}]; }}", "x")
    assert f.options["opt"] == value
    assert type(f.options["opt"]) is type(value)
    spec = one(f"option opt = {written};\nmessage M {{ option inner = {written}; }}")
    assert spec.options == {"opt": value, "inner": value}


def test_every_known_field_option_is_kept() -> None:
    f = field_of(
        """
        message M (XOSBase) {
            optional string x = 1 [
                null = True, blank = True, default = "d", max_length = 30,
                choices = "(('a', 'A'), ('b', 'B'))", help_text = 'Help "me"',
                db_index = False, unique = True, unique_with = "y", feedback_state = True,
                tosca_key = True, content_type = "stripped", min_value = 1, max_value = 9.5,
                gui_hidden = True, bookkeeping_state = False, some_future_option = whatever
            ];
        }
        """,
        "x",
    )
    assert f.options == {
        "null": True,
        "blank": True,
        "default": "d",
        "max_length": 30,
        "choices": "(('a', 'A'), ('b', 'B'))",
        "help_text": 'Help "me"',
        "db_index": False,
        "unique": True,
        "unique_with": "y",
        "feedback_state": True,
        "tosca_key": True,
        "content_type": "stripped",
        "min_value": 1,
        "max_value": 9.5,
        "gui_hidden": True,
        "bookkeeping_state": False,
        "some_future_option": "whatever",
    }
    assert f.choices == (("a", "A"), ("b", "B"))
    assert f.max_length == 30 and f.default == "d"


def test_repeated_field_option_last_wins() -> None:
    assert field_of("message M { optional int32 x = 1 [default = 1, default = 2]; }", "x").options == {
        "default": 2
    }


def test_file_options_apply_to_every_message_unless_overridden() -> None:
    specs = parse_xproto(
        """
        message Early (XOSBase) { }
        option app_label = "mysvc";
        option name = "mysvc";
        option verbose_name = "File";
        message Late (XOSBase) {
            option verbose_name = "My Model";
            option custom_python = True;
            option description = "late";
        }
        """
    )
    early, late = specs
    assert early.options == {"app_label": "mysvc", "name": "mysvc", "verbose_name": "File"}
    assert late.options == {
        "app_label": "mysvc",
        "name": "mysvc",
        "verbose_name": "My Model",
        "custom_python": True,
        "description": "late",
    }
    assert late.verbose_name == "My Model" and early.verbose_name == "File"


def test_abstract_option() -> None:
    spec = one("message Base { option abstract = True; optional int32 n = 1; }")
    assert spec.abstract


def test_policy_reference_is_recorded() -> None:
    spec = one("message Slice::slice_policy (XOSBase) { }")
    assert spec.name == "Slice" and spec.bases == ("XOSBase",)
    assert spec.options == {"policy": "slice_policy"}


# -- the XOS dialect ----------------------------------------------------------------


def upstream_file(name: str) -> Path:
    """A file of the shared upstream test data (``shared/upstream/``), or skip the test.

    The folder ``shared/`` sits beside the clone (in CI) or higher up (in a worktree):
    the nearest one among the repository's parents is used.
    """
    root = Path(__file__).resolve().parents[1]
    for folder in root.parents:
        path = folder / "shared" / "upstream" / name
        if path.is_file():
            return path
    pytest.skip(f"upstream test data shared/upstream/{name} not found beside or above {root}")


def test_policy_definitions_are_accepted_and_ignored() -> None:
    specs = parse_xproto(
        """
        policy admin_policy < ctx.user.is_admin >
        policy write_rule <
                 ctx.user.is_admin
                 | (ctx.write_access -> exists Privilege: Privilege.object_type = "Site>"
                    & Privilege.object_id = obj.id) >
        policy no_spaces < {{ ' ' not in obj.name and len(obj.name) > 0 }} >
        policy nested < *write_rule(site) & *admin_policy(owner) >
        message Site::write_rule (XOSBase) { optional string name = 1; }
        policy after_message < obj.creator >
        """
    )
    (site,) = specs
    assert site.name == "Site" and site.bases == ("XOSBase",)
    assert site.options == {"policy": "write_rule"}
    assert [f.name for f in site.fields] == ["name"]


def test_empty_option_list() -> None:
    f = field_of("message M { optional string s = 20 []; optional int32 n = 21 [ ]; }", "s")
    assert f.options == {} and f.number == 20
    assert field_of("message M { optional int32 n = 21 [ /* none */ ]; }", "n").options == {}


def test_manytomany_is_parsed_and_kept_apart_from_stored_fields() -> None:
    spec = one(
        """
        message Network (XOSBase) {
            required string name = 1;
            optional manytomany permitted_slices->Slice/Network_permitted_slices:availableNetworks
                = 18:1005 [];
            required manytomany eps->Port/Net_eps:nets = 7 [db_index = False];
        }
        """
    )
    assert [f.name for f in spec.fields] == ["name"]
    slices, eps = spec.manytomany
    assert slices.kind == "manytomany" and not slices.is_link
    assert slices.link == LinkSpec("Slice", "availableNetworks", 1005, through="Network_permitted_slices")
    assert (slices.number, slices.modifier, slices.options) == (18, "optional", {})
    assert eps.link == LinkSpec("Port", "nets", None, through="Net_eps")
    assert eps.options == {"db_index": False}
    # Names and numbers are still unique across both kinds.
    error = error_of("message M { optional string a = 1; optional manytomany a->M/T:ms = 2; }")
    assert "duplicate field name 'a'" in error.message
    error = error_of("message M { optional manytomany a->M/T:ms = 1; optional string b = 1; }")
    assert "duplicate field number 1 in message M (already used by 'a')" in error.message


def test_manytomany_target_must_exist() -> None:
    specs = parse_xproto("message M { optional manytomany n->Nowhere/M_n:ms = 1; }", "m.xproto")
    with pytest.raises(ValueError, match=r"m.xproto:1: field M.n links to unknown model Nowhere"):
        Schema(specs)


def test_python_bases_are_set_aside() -> None:
    user, instance = parse_xproto(
        """
        message User::user_policy (AbstractBaseUser, PlModelMixIn) { required string email = 2; }
        message ServiceInstance (XOSBase, AttributeMixin) { optional string name = 1; }
        """
    )
    assert user.bases == () and user.options["python_bases"] == "AbstractBaseUser,PlModelMixIn"
    assert instance.bases == ("XOSBase",) and instance.options["python_bases"] == "AttributeMixin"
    assert (
        "lists base AttributeMixin twice" in error_of("message M (AttributeMixin, AttributeMixin) {}").message
    )


def test_xos_model_and_field_options_are_kept() -> None:
    spec = one(
        """
        option app_label = "simpleexampleservice";
        option name = "simpleexampleservice";
        message SimpleExampleServiceInstance (ServiceInstance) {
            option owner_class_name = "SimpleExampleService";
            option verbose_name = "Example Service Instance";
            option sync_implemented = "True";
            option policy_implemented = "True";
            option custom_python = True;
            option legacy = "True";
            option validators = "has_name:Instance has no name";
            option skip_init = True;
            option plural = "SimpleExampleServiceInstances";
            required string tenant_message = 10 [help_text = "m", max_length = 254, tosca_key = True,
                unique_with = "owner", gui_hidden = True, feedback_state = True, bookkeeping_state = True,
                content_type = "stripped", text = True, tosca_key_one_of = owner];
        }
        """
    )
    assert spec.options["owner_class_name"] == "SimpleExampleService"
    assert spec.options["sync_implemented"] == "True" and spec.flag("sync_implemented")
    assert spec.flag("policy_implemented") and spec.flag("custom_python") and spec.flag("legacy")
    assert not spec.flag("abstract") and not spec.abstract
    assert spec.options["validators"] == "has_name:Instance has no name"
    (f,) = spec.fields
    assert f.options["unique_with"] == "owner" and f.options["tosca_key_one_of"] == "owner"
    assert f.options["tosca_key"] is True and f.options["text"] is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("True", True),
        ("true", True),
        (1, True),
        (False, False),
        ("False", False),
        (None, False),
    ],
)
def test_option_true(value: Any, expected: bool) -> None:
    assert option_true(value) is expected


def test_quoted_flags() -> None:
    assert one('message Base { option abstract = "True"; }').abstract
    quoted = one('message M { optional string a = 1 [null = "False"]; required string b = 2 [null = "1"]; }')
    assert [f.nullable for f in quoted.fields] == [False, False]


def test_link_default_naming_a_function_is_no_default() -> None:
    spec = one(
        """
        message Node (XOSBase) {
            required manytoone site->Site:nodes = 7:1006 [default = get_first_site];
            optional manytoone owner->Service = 8 [default = 3];
            optional manytoone other->Service = 9 [default = "3"];
        }
        """
    )
    site, owner, other = spec.fields
    assert site.options["default"] == "get_first_site" and site.default is None
    assert owner.default == 3
    assert other.default is None


def test_upstream_core_xproto_parses_into_its_models() -> None:
    specs = parse_file(upstream_file("xos-core.xproto"))
    models = {spec.name: spec for spec in specs}
    assert len(specs) == len(models) == 35
    assert {"XOSBase", "User", "Privilege", "Site", "Slice", "TrustDomain", "Principal", "Image", "Flavor",
            "Node", "NodeLabel", "Network", "NetworkTemplate", "NetworkSlice", "Port", "Tag", "Service",
            "ServiceInstance", "ServiceInstanceLink", "ComputeServiceInstance",
            "XOSCore"} <= set(models)  # fmt: skip
    schema = Schema(specs)  # every base and link target resolves

    base = models["XOSBase"]
    assert base.abstract and base.flag("custom_python") and base.options["custom_header"] == "xosbase_header"
    assert [f.name for f in base.fields][:3] == ["created", "updated", "enacted"]
    assert base.fields[1].options == {
        "default": "now()", "content_type": "date", "bookkeeping_state": True,
        "help_text": "Time this model was changed by a non-synchronizer",
    }  # fmt: skip

    user = models["User"]
    assert user.bases == () and user.options["python_bases"] == "AbstractBaseUser,PlModelMixIn"
    assert user.options["policy"] == "user_policy" and user.options["skip_django"] is True
    assert schema.field("User", "site").link == LinkSpec("Site", "users", 1001)
    assert schema.field("User", "timezone").default == "America/New_York"
    assert schema.field("User", "is_admin").default is False

    assert models["Site"].options["policy"] == "site_policy" and models["Site"].bases == ("XOSBase",)
    assert schema.field("Site", "login_base").max_length == 50

    assert (
        models["Service"].bases == ("XOSBase",)
        and models["Service"].options["python_bases"] == "AttributeMixin"
    )
    kind = schema.field("Service", "kind")
    assert kind.default == "generic" and ("data", "Data Plane") in (kind.choices or ())
    assert schema.field("Service", "site").link == LinkSpec("Site", "service", 1012)

    owner = schema.field("ServiceInstance", "owner")
    assert owner.link == LinkSpec("Service", "service_instances", 1009) and not owner.nullable
    assert schema.field("ServiceInstance", "link_deleted_count").default == 0
    assert schema.ancestors("ComputeServiceInstance") == ("ServiceInstance", "XOSBase")
    assert schema.field("ComputeServiceInstance", "slice").link == LinkSpec(
        "Slice", "computeserviceinstances", 1001
    )
    assert schema.field("ComputeServiceInstance", "image").link == LinkSpec(
        "Image", "computeserviceinstances", 1001
    )

    slice_ = models["Slice"]
    assert slice_.options["plural"] == "Slices" and slice_.options["policy"] == "slice_policy"
    assert slice_.options["validators"].startswith("slice_name_no_spaces:")
    assert schema.field("Slice", "max_instances").default == 10
    assert schema.field("Slice", "default_isolation").default == "vm"
    assert schema.field("Slice", "trust_domain").link == LinkSpec("TrustDomain", "slices", 1002)
    assert schema.field("Slice", "creator").link == LinkSpec("User", "slices", 1004)
    assert schema.field("TrustDomain", "owner").link == LinkSpec("Service", "owned_trust_domains", 1011)

    (permitted,) = models["Network"].manytomany
    assert permitted.link == LinkSpec("Slice", "availableNetworks", 1005, through="Network_permitted_slices")
    assert permitted.options == {}
    assert "permitted_slices" not in schema.fields("Network")
    (labelled,) = models["NodeLabel"].manytomany
    assert labelled.link == LinkSpec("Node", "nodelabels", 1002, through="NodeLabel_node")

    node_site = schema.field("Node", "site")
    assert node_site.options["default"] == "get_first_site" and node_site.default is None
    assert schema.field("Port", "network").options["unique_with"] == "service_instance"
    assert models["XOSGuiExtension"].options["policy"] == "admin_policy"
    link = schema.fields("ServiceInstanceLink")
    assert link["subscriber_network"].link == LinkSpec("Network", "subscribed_links", 1004)
    assert link["subscriber_network"].options["tosca_key_one_of"] == "subscriber_service_instance"


# -- layout, comments and ignored statements -------------------------------------------


def test_comments_whitespace_and_ignored_statements() -> None:
    text = (
        '\ufeffsyntax = "proto3";\r\n'
        "package xos.mysvc;\n"
        'import "core.xproto";\n'
        "import public 'other.xproto';\n"
        "// a line comment\n"
        '/* a block\n   comment */ option app_label = /* inline */ "mysvc"; // trailing\n'
        ";\n"
        "message M /* here */ (XOSBase) // there\n"
        "{\n"
        "\toptional string a = 1 [ // options over several lines\n"
        '\t\tdefault = "x", /* between */\n'
        "\t\tmax_length = 10\n"
        "\t];\n"
        "};\n"
    )
    spec = one(text, "c.xproto")
    assert spec.origin == "c.xproto:9"
    assert spec.options == {"app_label": "mysvc"}
    (a,) = spec.fields
    assert a.options == {"default": "x", "max_length": 10}
    assert a.origin == "c.xproto:11"


def test_origins_follow_lines() -> None:
    specs = parse_xproto(
        "\n\nmessage A {\n\n  optional int32 x = 1;\n}\nmessage B {\n required\n int32 y = 1; }", "o"
    )
    assert [s.origin for s in specs] == ["o:3", "o:7"]
    assert [f.origin for s in specs for f in s.fields] == ["o:5", "o:8"]


def test_empty_input() -> None:
    assert parse_xproto("") == []
    assert parse_xproto("  // nothing\n/* at all */\n") == []
    assert parse_xproto('option app_label = "x";') == []


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # syntax errors: what was found, what was expected
        (
            "messages Foo {}",
            "1:1: unexpected 'messages', expected 'message', 'policy', 'option', "
            "'syntax', 'package' or 'import'",
        ),
        (
            "message Foo {",
            "1:14: unexpected end of file, expected '}', 'option', 'required', 'optional' or a field type",
        ),
        ("message Foo\n", "2:1: unexpected end of file, expected '::', '(' or '{'"),
        ("message Foo Bar {}", "1:13: unexpected 'Bar', expected '::', '(' or '{'"),
        ("message Foo (A, ) {}", "1:17: unexpected ')', expected an identifier"),
        ("message M {\n  required string x = 1\n}", "3:1: unexpected '}', expected '[' or ';'"),
        ("message M { required string x 1; }", "1:31: unexpected '1', expected '='"),
        ("message M { required = 1; }", "1:22: unexpected '=', expected a field type"),
        ("message M { option = 1; }", "1:20: unexpected '=', expected an identifier"),
        ("message M { required string x = -1; }", "1:33: unexpected '-1', expected an integer"),
        ("message M { required string x = 2.5; }", "1:33: unexpected '2.5', expected an integer"),
        ("message M { required manytoone x = 1; }", "1:34: unexpected '=', expected '->'"),
        ("message M { required manytoone x->; }", "1:35: unexpected ';', expected an identifier"),
        (
            "message M { required manytoone x->S:1 = 1; }",
            "1:37: unexpected '1', expected '+' or an identifier",
        ),
        ("message M { optional string x = 1 [a = 1 b = 2]; }", "1:42: unexpected 'b', expected ']' or ','"),
        ("message M { optional string x = 1 [,]; }", "1:36: unexpected ',', expected ']' or an identifier"),
        ("policy p ctx.user.is_admin >", "1:10: unexpected 'ctx', expected '<' policy expression '>'"),
        ("policy p < a -> b", "1:10: unterminated policy expression, expected a closing '>'"),
        ("policy < a >", "1:8: unexpected '< a >', expected an identifier"),
        ("message M { optional string x = 1 [a = ]; }", "1:40: unexpected ']', expected a value"),
        ("option x = ;", "1:12: unexpected ';', expected a value"),
        ("option x = 1", "1:13: unexpected end of file, expected ';'"),
        (
            "message M { } @",
            "1:15: unexpected '@', expected 'message', 'policy', 'option', 'syntax', 'package' or 'import'",
        ),
        (
            "\u00a0",
            "1:1: unexpected '\\xa0', expected 'message', 'policy', 'option', "
            "'syntax', 'package' or 'import'",
        ),
        (
            'message M { optional string x = 1 [a = "abc]; }',
            "1:40: unterminated string, expected a closing '\"' on the same line",
        ),
        (
            "message M { optional string x = 1 [a = 'ab\ncd']; }",
            '1:40: unterminated string, expected a closing "\'" on the same line',
        ),
        ("message M {}\n/* never closed", "2:1: unterminated comment, expected '*/'"),
        ("syntax = proto3;", "1:10: unexpected 'proto3', expected a string"),
        # unsupported constructs
        (
            "message M { optional manytoone n->Node/Through:ns = 2; }",
            "1:40: field 'n': only manytomany links have a through model",
        ),
        (
            "message M {\n  enum Kind { A = 1; }\n}",
            "2:3: 'enum' declarations are not supported (use a string field with 'choices')",
        ),
        (
            "message M { message Inner {} }",
            "1:13: nested 'message' declarations are not supported (declare the message at file level)",
        ),
        (
            "message M { repeated string x = 1; }",
            "1:13: 'repeated' fields are not supported (declare a manytoone link on the other model)",
        ),
        (
            "message M { policy p < True > }",
            "1:13: 'policy' definitions belong at file level",
        ),
        (
            "enum E { A = 0; }",
            "1:1: 'enum' declarations are not supported (use a string field with 'choices')",
        ),
        # semantic errors
        (
            "message M { required Bar x = 1; }",
            "1:22: unknown field type 'Bar', expected one of bool, double, float, int32, int64, "
            "string, text, uint32, uint64 or a link (manytoone, onetoone)",
        ),
        (
            "message M {\n  required string id = 1;\n}",
            "2:19: field name 'id' is reserved: every model has an implicit integer 'id'",
        ),
        (
            "message M {\n  optional string x = 1;\n  optional int32 x = 2;\n}",
            "3:18: duplicate field name 'x' in message M (first declared on line 2)",
        ),
        (
            "message M {\n  optional string x = 1;\n  optional int32 y = 1;\n}",
            "3:22: duplicate field number 1 in message M (already used by 'x')",
        ),
        (
            "message M { optional manytoone owner->S = 1; optional int32 owner_id = 2; }",
            "1:61: field 'owner_id' is stored in column 'owner_id', which field 'owner' already uses",
        ),
        ("message M { optional string x = 0; }", "1:33: field number must be between 1 and 536870911, not 0"),
        (
            "message M { optional manytoone x->S:xs = 1:0; }",
            "1:44: reverse link number must be between 1 and 536870911, not 0",
        ),
        ("message M { optional string x = 1 [d = 1" + "0" * 5000 + "]; }", "1:40: number is too large"),
        (
            'message M { optional string x = 1 [d = "\\U00110000"]; }',
            "1:40: invalid escape '\\\\U00110000' in string",
        ),
        ("message M {}\nmessage M {}", "2:9: message M is declared twice (first on line 1)"),
        ("message M (M) {}", "1:12: message M cannot inherit from itself"),
        ("message M (A, B, A) {}", "1:18: message M lists base A twice"),
    ],
)
def test_errors(text: str, expected: str) -> None:
    error = error_of(text, "bad.xproto")
    assert str(error) == f"bad.xproto:{expected}"
    line, column, message = expected.split(":", 2)
    assert (error.filename, error.line, error.column, error.message) == (
        "bad.xproto",
        int(line),
        int(column),
        message.strip(),
    )


def test_error_default_filename_and_pickling() -> None:
    error = error_of("message", filename="<string>")
    assert str(error) == "<string>:1:8: unexpected end of file, expected an identifier"
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, XprotoSyntaxError) and str(copy) == str(error)
    assert isinstance(error, Exception)


def test_error_columns_count_characters_after_crlf_and_tabs() -> None:
    error = error_of("message M {\r\n\toptional strin x = 1;\r\n}")
    assert (error.line, error.column) == (2, 11)
    assert "unknown field type 'strin'" in error.message


# -- properties -------------------------------------------------------------------

VALID = """\
option app_label = "mysvc";
/* a block comment */
message MyModel (XOSBase) {
    option verbose_name = "My Model";
    required string first_name = 1 [null = False, blank = False, default = "a\\tb"];
    optional int32 n = 2 [default = -3, min_value = 0.5, choices = "(('a', 'A'),)", x = None, y = z];
    required manytoone owner->Service:owned_instances = 3:1001 [db_index = True];
    optional onetoone peer->MyModel = 4; // trailing
}
message Other::p (MyModel, Mixin) { optional text t = 1; }
policy p < ctx.user.is_admin | (ctx.write_access -> {{ obj.n > 1 }}) >
"""

TOKENS = [
    "message", "option", "required", "optional", "manytoone", "onetoone", "manytomany",
    "string", "int32", "bool", "float", "{", "}", "(", ")", "[", "]", "=", ";", ":", "::",
    "->", "/", "+", ",", ".", "Foo", "id", '"s"', "'s'", '"', "'", "\\", "1", "-2.5", "True",
    "None", "//c\n", "/*", "*/", "\n", "enum", "policy", "syntax", "import", "package",
    "<", ">", "{{", "}}", "policy p <", "AttributeMixin", "[]",
]  # fmt: skip


def check_parse(text: str) -> None:
    """parse_xproto returns specs or raises XprotoSyntaxError pointing inside the text."""
    try:
        specs = parse_xproto(text, "p.xproto")
    except XprotoSyntaxError as error:
        lines = text.split("\n")
        assert 1 <= error.line <= len(lines), error
        assert 1 <= error.column <= len(lines[error.line - 1]) + 1, error
        assert str(error).startswith(f"p.xproto:{error.line}:{error.column}: ")
        return
    assert isinstance(specs, list)
    assert all(isinstance(spec, ModelSpec) for spec in specs)
    for spec in specs:
        assert all(isinstance(f, FieldSpec) for f in spec.fields)


PROPERTY = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def test_valid_sample_parses() -> None:
    specs = parse_xproto(VALID)
    assert [s.name for s in specs] == ["MyModel", "Other"]
    assert specs[1].options == {"app_label": "mysvc", "policy": "p"}


@PROPERTY
@given(st.text())
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    check_parse(text)


@PROPERTY
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_any_token_soup_parses_or_fails_cleanly(text: str) -> None:
    check_parse(text)


@PROPERTY
@given(st.data())
def test_mutated_valid_xproto_parses_or_fails_cleanly(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        start = data.draw(st.integers(0, len(text)), label="start")
        end = data.draw(st.integers(start, min(len(text), start + 12)), label="end")
        insert = data.draw(
            st.one_of(st.just(""), st.text(max_size=4), st.sampled_from(TOKENS)), label="insert"
        )
        text = text[:start] + insert + text[end:]  # a deletion, insertion or replacement
    check_parse(text)


# Round trip: any model rendered as xproto parses back to the same spec.

KEYWORDS = {"message", "option", "required", "optional", "manytoone", "onetoone", "manytomany",
            "True", "False", "None", "true", "false", "syntax", "package", "import", "policy",
            "enum", "service", "extend", "oneof", "extensions", "reserved", "repeated", "map",
            "group", "public", "weak"}  # fmt: skip
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: name not in KEYWORDS
)
field_names = identifiers.filter(lambda name: name != "id")
values = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    identifiers.map(lambda name: ("bare", name)),
)


def render_value(value: Any) -> str:
    if isinstance(value, tuple):
        return str(value[1])
    if isinstance(value, str):
        escaped = "".join(
            "\\" + ch if ch in '\\"' else ch if ch.isprintable() else f"\\U{ord(ch):08x}" for ch in value
        )
        return f'"{escaped}"'
    if isinstance(value, float):
        return repr(value)
    return str(value)


def plain(value: Any) -> Any:
    return value[1] if isinstance(value, tuple) else value


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, ModelSpec]:
    name = draw(identifiers)
    bases = draw(st.lists(identifiers.filter(lambda b: b != name), max_size=3, unique=True))
    names = draw(st.lists(field_names, max_size=6, unique_by=lambda n: n.lower().removesuffix("_id")))
    numbers = draw(st.lists(st.integers(1, 5000), min_size=len(names), max_size=len(names), unique=True))
    options = draw(st.dictionaries(identifiers, values, max_size=3))
    lines = [f"message {name}" + (f" ({', '.join(bases)})" if bases else "") + " {"]
    lines += [f"    option {key} = {render_value(value)};" for key, value in options.items()]
    fields = []
    for index, (field_name, number) in enumerate(zip(names, numbers, strict=True)):
        modifier = draw(st.sampled_from(["required", "optional"]))
        field_options = draw(st.dictionaries(identifiers, values, max_size=3))
        rendered = ", ".join(f"{k} = {render_value(v)}" for k, v in field_options.items())
        suffix = f" [{rendered}]" if field_options else ""
        line = 2 + len(options) + index
        if draw(st.booleans()):
            kind = draw(st.sampled_from(sorted(SCALAR_KINDS)))
            link = None
            lines.append(f"    {modifier} {kind} {field_name} = {number}{suffix};")
        else:
            kind = draw(st.sampled_from(["manytoone", "onetoone"]))
            link = LinkSpec(
                draw(identifiers), draw(st.none() | field_names), draw(st.none() | st.integers(1, 9999))
            )
            reverse = f":{link.reverse}" if link.reverse else ""
            reverse_number = f":{link.reverse_number}" if link.reverse_number else ""
            target = f"{link.model}{reverse}"
            lines.append(f"    {modifier} {kind} {field_name}->{target} = {number}{reverse_number}{suffix};")
        fields.append(
            FieldSpec(
                name=field_name,
                kind=kind,
                number=number,
                modifier=modifier,
                options={k: plain(v) for k, v in field_options.items()},
                link=link,
                origin=f"r.xproto:{line}",
            )
        )
    lines.append("}")
    spec = ModelSpec(
        name=name,
        bases=tuple(bases),
        fields=tuple(fields),
        options={k: plain(v) for k, v in options.items()},
        origin="r.xproto:1",
    )
    return "\n".join(lines) + "\n", spec


@PROPERTY
@given(messages())
def test_rendered_models_parse_back(message: tuple[str, ModelSpec]) -> None:
    text, spec = message
    assert parse_xproto(text, "r.xproto") == [spec]


@PROPERTY
@given(st.text(alphabet=string.printable, max_size=30))
def test_any_string_literal_round_trips(value: str) -> None:
    rendered = render_value(value)
    f = field_of(f"message M {{ optional string x = 1 [default = {rendered}]; }}", "x")
    assert f.options["default"] == value
