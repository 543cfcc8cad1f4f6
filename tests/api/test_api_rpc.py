"""Every RPC of the generated services and of Core, and every error code, over a real socket."""

from __future__ import annotations

import json

import grpc
import pytest

from actors.api import ApiServer
from actors.store import Store

from .support import RawClient, basic

W = "/actors.services.v1.Widget"
CORE = "/actors.api.v1.Core"
OK = grpc.StatusCode.OK


@pytest.fixture
def protos(api_server: ApiServer):
    return api_server.protos


@pytest.fixture
def widget(protos):
    return protos.models["Widget"]


def create(raw: RawClient, widget, user: str = "sync", null_fields=(), options=None, **values):
    req = widget.write(object=widget.message(**values), null_fields=list(null_fields))
    if options is not None:
        req.options.CopyFrom(options)
    return raw.call(f"{W}/Create", req, basic(user))


def filter_req(protos, *conds, **kwargs):
    value_cls = protos.message("Value")
    where = []
    for field, op, value in conds:
        v = value_cls()
        if value is None:
            v.null_value = True
        elif isinstance(value, bool):
            v.bool_value = value
        elif isinstance(value, int):
            v.int_value = value
        elif isinstance(value, float):
            v.double_value = value
        elif isinstance(value, list):
            v.list_value.SetInParent()
            for item in value:
                v.list_value.values.add(int_value=item) if isinstance(item, int) else v.list_value.values.add(
                    string_value=item
                )
        else:
            v.string_value = value
        where.append(protos.message("Condition")(field=field, op=op, value=v))
    return protos.message("FilterRequest")(where=where, **kwargs)


# -- model methods -----------------------------------------------------------------


def test_create_get_update_delete(raw: RawClient, protos, widget, api_store: Store) -> None:
    result = create(raw, widget, name="w1", size=3, weight=1.5)
    assert result.code == OK
    created = result.parse(widget.message)
    assert created.id > 0 and created.name == "w1" and created.size == 3 and created.weight == 1.5
    assert created.HasField("updated") and created.leaf_model_name == "Widget"
    assert created.active is True  # default filled by the store
    assert not created.HasField("owner_id")  # null: not set

    got = raw.call(f"{W}/Get", protos.message("GetRequest")(id=created.id), basic("reader")).parse(
        widget.message
    )
    assert got == created

    req = widget.write(object=widget.message(id=created.id, size=0), null_fields=["weight"])
    changes = raw.call(f"{W}/Update", req, basic("admin")).parse(widget.changes)
    assert changes.object.size == 0 and changes.object.HasField("size")  # zero is a value, not "unset"
    assert "weight" in changes.null_fields
    assert changes.object.updated > created.updated  # a client write bumps updated
    row = api_store.get("Widget", created.id)
    assert row["size"] == 0 and row["weight"] is None

    result = raw.call(f"{W}/Delete", protos.message("DeleteRequest")(id=created.id), basic("sync"))
    assert result.code == OK
    assert api_store.get("Widget", created.id) is None  # never synced: purged at once


def test_list_excludes_deleted_unless_asked(raw: RawClient, protos, widget, api_store: Store) -> None:
    a = api_store.create("Widget", {"name": "a"})
    b = api_store.create("Widget", {"name": "b"})
    api_store.update("Widget", b["id"], {"backend_need_delete": True})
    api_store.delete("Widget", b["id"])  # soft: it reached the backend
    listed = raw.call(f"{W}/List", protos.message("ListRequest")(), basic("reader")).parse(widget.list)
    assert [w.id for w in listed.items] == [a["id"]]
    req = protos.message("ListRequest")(include_deleted=True, order_by=["-id"])
    listed = raw.call(f"{W}/List", req, basic("reader")).parse(widget.list)
    assert [w.id for w in listed.items] == [b["id"], a["id"]]
    req = protos.message("ListRequest")(include_deleted=True, limit=1, offset=1)
    listed = raw.call(f"{W}/List", req, basic("reader")).parse(widget.list)
    assert [w.id for w in listed.items] == [b["id"]]


def test_filter_operators(raw: RawClient, protos, widget, api_store: Store) -> None:
    svc = api_store.create("Service", {"name": "svc"})
    ids = {}
    for name, size, weight, owner in [
        ("Alpha", 1, 1.0, svc["id"]),
        ("beta", 5, None, None),
        ("GAMMA", 9, 3.5, None),
    ]:
        ids[name] = api_store.create(
            "Widget", {"name": name, "size": size, "weight": weight, "owner_id": owner}
        )["id"]

    def names(*conds, **kwargs):
        result = raw.call(f"{W}/Filter", filter_req(protos, *conds, **kwargs), basic("reader"))
        assert result.code == OK, result.details
        return [w.name for w in result.parse(widget.list).items]

    assert names(("size", "gt", 1)) == ["beta", "GAMMA"]
    assert names(("size", "gte", 5), ("size", "lt", 9)) == ["beta"]
    assert names(("size", "lte", 1)) == ["Alpha"]
    assert names(("name", "eq", "beta")) == ["beta"]
    assert names(("name", "", "beta")) == ["beta"]  # empty op means eq
    assert names(("name", "iexact", "gamma")) == ["GAMMA"]
    assert names(("name", "contains", "AMM")) == ["GAMMA"]
    assert names(("name", "icontains", "A")) == ["Alpha", "beta", "GAMMA"]
    assert names(("size", "in", [1, 9])) == ["Alpha", "GAMMA"]
    assert names(("weight", "isnull", True)) == ["beta"]
    assert names(("weight", "eq", None)) == ["beta"]
    assert names(("owner", "eq", svc["id"])) == ["Alpha"]  # field name or column
    assert names(("owner_id", "eq", svc["id"])) == ["Alpha"]
    assert names(("weight", "gt", 2)) == ["GAMMA"]  # an int compared with a float field
    assert names(order_by=["-size"], limit=2) == ["GAMMA", "beta"]
    excl = filter_req(protos, ("size", "gt", 0))
    excl.exclude.add(field="name", op="eq").value.string_value = "beta"
    assert [w.name for w in raw.call(f"{W}/Filter", excl, basic("reader")).parse(widget.list).items] == [
        "Alpha",
        "GAMMA",
    ]
    count = raw.call(f"{W}/Count", filter_req(protos, ("size", "gt", 1)), basic("reader"))
    assert count.parse(protos.message("CountResponse")).count == 2


def test_filter_pending_queries(raw: RawClient, protos, widget, api_store: Store) -> None:
    new = api_store.create("Widget", {"name": "new"})
    done = api_store.create("Widget", {"name": "done"})
    api_store.update("Widget", done["id"], {"enacted": api_store.now(), "policed": api_store.now()}, _sync())
    gone = api_store.create("Widget", {"name": "gone"})
    api_store.update("Widget", gone["id"], {"backend_need_delete": True}, _sync())
    api_store.delete("Widget", gone["id"])

    def pending(which, **kwargs):
        result = raw.call(
            f"{W}/Filter", protos.message("FilterRequest")(pending=which, **kwargs), basic("sync")
        )
        assert result.code == OK, result.details
        return [w.id for w in result.parse(widget.list).items]

    assert pending("sync") == [new["id"]]
    assert pending("sync_deleted") == [gone["id"]]
    assert pending("policy") == [new["id"]]
    assert pending("policy_deleted") == [gone["id"]]
    assert pending("sync", limit=0) == []
    count = raw.call(f"{W}/Count", protos.message("FilterRequest")(pending="sync"), basic("sync"))
    assert count.parse(protos.message("CountResponse")).count == 1


def _sync():
    from actors.store import Caller, WriteContext

    return WriteContext(Caller.SYNCHRONIZER)


def test_write_options_caller_and_update_fields(raw: RawClient, protos, widget, api_store: Store) -> None:
    row = api_store.create("Widget", {"name": "w"})
    options = protos.message("WriteOptions")(caller="synchronizer")
    req = widget.write(object=widget.message(id=row["id"], backend_status="OK"), options=options)
    changes = raw.call(f"{W}/Update", req, basic("sync")).parse(widget.changes)
    assert not changes.object.HasField("updated")  # a synchronizer write does not bump updated
    assert api_store.get("Widget", row["id"])["updated"] == row["updated"]

    options = protos.message("WriteOptions")(caller="step", origin="step-a")
    options.update_fields.names.append("size")
    req = widget.write(object=widget.message(id=row["id"], size=7, name="ignored"), options=options)
    changes = raw.call(f"{W}/Update", req, basic("sync")).parse(widget.changes)
    stored = api_store.get("Widget", row["id"])
    assert stored["size"] == 7 and stored["name"] == "w"  # only update_fields written
    assert stored["changed_by_step"] is not None
    assert api_store.changes_since(0)[-1].origin == "step-a"

    options = protos.message("WriteOptions")(caller="synchronizer", always_update_timestamp=True)
    req = widget.write(object=widget.message(id=row["id"], size=8), options=options)
    changes = raw.call(f"{W}/Update", req, basic("sync")).parse(widget.changes)
    assert changes.object.updated > row["updated"]


def test_derived_model_and_links(raw: RawClient, protos, api_store: Store) -> None:
    special = protos.models["SpecialWidget"]
    svc = api_store.create("Service", {"name": "svc"})
    req = special.write(object=special.message(name="sw", flavour="lime", owner_id=svc["id"]))
    created = raw.call("/actors.services.v1.SpecialWidget/Create", req, basic("sync")).parse(special.message)
    assert created.flavour == "lime" and created.owner_id == svc["id"]
    # The object is also a Widget.
    widget = protos.models["Widget"]
    got = raw.call(f"{W}/Get", protos.message("GetRequest")(id=created.id), basic("reader")).parse(
        widget.message
    )
    assert got.name == "sw" and got.leaf_model_name == "SpecialWidget"


# -- core methods ------------------------------------------------------------------


def test_get_schema_and_protos(raw: RawClient, protos) -> None:
    schema = raw.call(f"{CORE}/GetSchema", protos.message("Empty")(), basic("reader"))
    response = schema.parse(protos.message("SchemaResponse"))
    assert response.version == protos.version
    names = [m["name"] for m in json.loads(response.models_json)["models"]]
    assert {"XOSBase", "Service", "Widget", "SpecialWidget"} <= set(names)
    assert len(response.file_descriptors) == 3
    files = raw.call(f"{CORE}/GetProtos", protos.message("Empty")(), basic("reader"))
    texts = {f.name: f.content for f in files.parse(protos.message("ProtoFiles")).files}
    assert set(texts) == {
        "actors/api/v1/api.proto",
        "actors/models/v1/models.proto",
        "actors/services/v1/services.proto",
    }
    assert "service Widget {" in texts["actors/services/v1/services.proto"]
    assert "optional int32 owner_id = " in texts["actors/models/v1/models.proto"]


def test_now_and_login(raw: RawClient, protos, api_store: Store) -> None:
    api_store.create("Widget", {"name": "w"})
    now = raw.call(f"{CORE}/Now", protos.message("Empty")(), basic("reader")).parse(
        protos.message("NowResponse")
    )
    assert now.last_seq == api_store.last_seq() and now.now > 0
    login = raw.call(f"{CORE}/Login", protos.message("LoginRequest")(username="admin", password="admin-pw"))
    token = login.parse(protos.message("LoginResponse"))
    assert token.role == "admin" and token.token.startswith("v1.")
    bearer = (("authorization", f"Bearer {token.token}"),)
    assert raw.call(f"{CORE}/Now", protos.message("Empty")(), bearer).code == OK
    assert raw.call(f"{CORE}/Now", protos.message("Empty")(), (("token", token.token),)).code == OK
    bad = raw.call(f"{CORE}/Login", protos.message("LoginRequest")(username="admin", password="nope"))
    assert bad.code == grpc.StatusCode.UNAUTHENTICATED


def test_core_watch_replays_then_streams(raw: RawClient, protos, api_store: Store) -> None:
    api_store.create("Widget", {"name": "before"})
    call = raw.stream(f"{CORE}/Watch", protos.message("WatchRequest")(since_seq=0), basic("reader"))
    notice_cls = protos.message("ChangeNotice")
    first = notice_cls.FromString(next(call))
    assert (first.seq, first.model, first.kind) == (1, "Widget", "create")
    api_store.create("Service", {"name": "s"})
    second = notice_cls.FromString(next(call))
    assert (second.seq, second.model) == (2, "Service")
    call.cancel()


def test_model_watch_filters_by_model(raw: RawClient, protos, api_store: Store) -> None:
    since = api_store.last_seq()
    call = raw.stream(f"{W}/Watch", protos.message("WatchRequest")(since_seq=since), basic("reader"))
    api_store.create("Service", {"name": "s"})  # not a Widget: skipped
    special = api_store.create("SpecialWidget", {"name": "sw"})  # a Widget too
    notice = protos.message("ChangeNotice").FromString(next(call))
    assert (notice.model, notice.id, notice.seq) == ("SpecialWidget", special["id"], 2)
    call.cancel()


# -- error codes -------------------------------------------------------------------


def test_invalid_argument(raw: RawClient, protos, widget) -> None:
    result = create(raw, widget, name="x" * 65)
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Widget.name" in result.details and "max_length" in result.details
    result = create(raw, widget, name="w", color="green")
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.color" in result.details
    result = create(raw, widget, name="w", null_fields=["nope"])
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in result.details
    result = create(raw, widget, name="w", null_fields=["name"])
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.name" in result.details
    result = create(raw, widget, name="w", weight=float("nan"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.weight" in result.details
    result = create(raw, widget, name="w", options=protos.message("WriteOptions")(caller="god"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "'god'" in result.details
    result = raw.call(f"{W}/Create", b"\xff\xff\xff", basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in result.details
    result = raw.call(f"{W}/Filter", filter_req(protos, ("size", "like", 1)), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "'like'" in result.details
    result = raw.call(f"{W}/Filter", filter_req(protos, ("nope", "eq", 1)), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in result.details
    result = raw.call(f"{W}/Filter", filter_req(protos, ("size", "eq", "three")), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.size" in result.details
    result = raw.call(f"{W}/Filter", filter_req(protos, ("size", "icontains", "3")), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.size__icontains" in result.details
    result = raw.call(f"{W}/Filter", filter_req(protos, ("active", "gt", True)), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.active__gt" in result.details
    result = raw.call(f"{W}/Filter", filter_req(protos, ("weight", "isnull", 3)), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.weight__isnull" in result.details
    result = raw.call(f"{W}/Filter", protos.message("FilterRequest")(pending="later"), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "'later'" in result.details
    result = raw.call(f"{W}/List", protos.message("ListRequest")(limit=-1), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    result = raw.call(f"{W}/List", protos.message("ListRequest")(order_by=["nope"]), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "'nope'" in result.details
    result = raw.call(f"{W}/Update", widget.write(object=widget.message(size=1)), basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT and "Widget.id" in result.details
    assert result.kind == "validation"


def test_not_found(raw: RawClient, protos, widget) -> None:
    result = raw.call(f"{W}/Get", protos.message("GetRequest")(id=12345), basic("reader"))
    assert result.code == grpc.StatusCode.NOT_FOUND and "Widget id 12345" in result.details
    assert result.kind == "not-found"
    with pytest.raises(ValueError):  # ids are int32 everywhere, as in the model messages
        protos.message("GetRequest")(id=2**40)
    result = raw.call(f"{W}/Update", widget.write(object=widget.message(id=999, size=1)), basic("sync"))
    assert result.code == grpc.StatusCode.NOT_FOUND and "Widget id 999" in result.details
    result = raw.call(f"{W}/Delete", protos.message("DeleteRequest")(id=999), basic("sync"))
    assert result.code == grpc.StatusCode.NOT_FOUND
    result = raw.call("/actors.services.v1.Gadget/Get", protos.message("GetRequest")(id=1), basic("reader"))
    assert result.code == grpc.StatusCode.NOT_FOUND and "'Gadget'" in result.details
    assert result.kind == "unknown-model"
    result = raw.call("/actors.services.v1.XOSBase/List", protos.message("ListRequest")(), basic("reader"))
    assert result.code == grpc.StatusCode.NOT_FOUND and "XOSBase is abstract" in result.details
    result = raw.call(f"{W}/Explode", b"", basic("reader"))
    assert result.code == grpc.StatusCode.UNIMPLEMENTED


def test_unauthenticated(raw: RawClient, protos) -> None:
    get = protos.message("GetRequest")(id=1)
    for metadata in [
        (),
        basic("reader", "wrong"),
        basic("nobody", "x"),
        (("authorization", "Bearer v1.abc.def"),),
        (("authorization", "Basic !!!"),),
        (("authorization", "Digest xyz"),),
        (("username", "admin"), ("password", "bad")),
    ]:
        result = raw.call(f"{W}/Get", get, metadata)
        assert result.code == grpc.StatusCode.UNAUTHENTICATED, metadata
    assert (
        raw.call(f"{W}/Get", get, (("username", "admin"), ("password", "admin-pw"))).code
        == grpc.StatusCode.NOT_FOUND
    )


def test_permission_denied(raw: RawClient, protos, widget) -> None:
    result = create(raw, widget, user="reader", name="w")
    assert result.code == grpc.StatusCode.PERMISSION_DENIED and "reader" in result.details
    result = create(
        raw, widget, user="admin", name="w", options=protos.message("WriteOptions")(caller="step")
    )
    assert result.code == grpc.StatusCode.PERMISSION_DENIED and "as step" in result.details
    result = create(
        raw, widget, user="sync", name="w", options=protos.message("WriteOptions")(caller="policy")
    )
    assert result.code == OK
    upload = protos.message("UploadRequest")(
        files=[protos.message("XprotoFile")(name="a.xproto", content="")]
    )
    result = raw.call(f"{CORE}/UploadModels", upload, basic("reader"))
    assert result.code == grpc.StatusCode.PERMISSION_DENIED


def test_failed_precondition_and_aborted(raw: RawClient, protos, widget) -> None:
    conflicting = "message Widget (XOSBase) { optional int32 name = 1; }"
    upload = protos.message("UploadRequest")(
        files=[protos.message("XprotoFile")(name="w.xproto", content=conflicting)]
    )
    result = raw.call(f"{CORE}/UploadModels", upload, basic("sync"))
    assert result.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "Widget.name" in result.details and result.kind == "conflict"
    # A client that built its request from other fields is told to fetch the schema again.
    stale = (*basic("reader"), ("x-actors-model-digest", "0000"))
    result = raw.call(f"{W}/List", protos.message("ListRequest")(), stale)
    assert result.code == grpc.StatusCode.ABORTED and result.kind == "schema-changed"


def test_oversized_request_is_refused(api_store: Store, start_server) -> None:
    server = start_server(api_store, max_message_bytes=64 * 1024)
    channel = grpc.insecure_channel(server.address)
    client = RawClient(channel)
    widget = server.protos.models["Widget"]
    big = widget.write(object=widget.message(name="w", backend_register="x" * 100_000))
    result = client.call(f"{W}/Create", big, basic("sync"))
    assert result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = widget.write(object=widget.message(name="w"))
    assert client.call(f"{W}/Create", small, basic("sync")).code == OK
    channel.close()
