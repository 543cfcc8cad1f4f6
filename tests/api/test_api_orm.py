"""The ORM over gRPC: ``ModelAccessor(RemoteBackend(...))`` behaves as over the local store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from actors.api import AccessDenied, RemoteBackend
from actors.orm import ModelAccessor, ORMWrapper, WrapperRegistry, acting_as
from actors.store import Caller, NotFound, Store, ValidationError, WriteContext

from ..helpers import wait_for


@pytest.fixture(params=["local", "remote"])
def accessor(request: pytest.FixtureRequest, api_store: Store) -> ModelAccessor:
    """The same accessor over the store itself and over the API, so every test runs on both."""
    if request.param == "local":
        return ModelAccessor(api_store, caller=Caller.SYNCHRONIZER)
    remote = request.getfixturevalue("remote")
    return ModelAccessor(remote("sync"), caller=Caller.SYNCHRONIZER)


def test_schema_is_learned_from_the_core(remote: Callable[..., RemoteBackend], api_store: Store) -> None:
    backend = remote("reader")
    assert backend.schema.names == api_store.schema.names
    assert backend.schema.fields("SpecialWidget").keys() == api_store.schema.fields("SpecialWidget").keys()
    assert backend.schema.parent("SpecialWidget") == "Widget"
    assert backend.schema["Widget"].fields[4].link.reverse == "widgets"


def test_create_get_filter_save_delete(accessor: ModelAccessor) -> None:
    Service, Widget = accessor.Service, accessor.Widget
    svc = Service(name="svc")
    svc.save()
    w = Widget(name="w1", size=3, owner=svc)
    w.save()
    assert w.id is not None and w.created > 0 and w.leaf_model_name == "Widget"
    Widget(name="w2", size=10, weight=2.5).save()
    Widget(name="other", size=7, active=False).save()

    got = Widget.objects.get(name="w1")
    assert got.size == 3 and got.weight is None and got.owner.name == "svc"
    assert [x.name for x in Widget.objects.filter(size__gt=3).order_by("-size")] == ["w2", "other"]
    assert [x.name for x in Widget.objects.filter(name__icontains="W")] == ["w1", "w2"]
    assert [x.name for x in Widget.objects.filter(size__in=[3, 7])] == ["w1", "other"]
    assert [x.name for x in Widget.objects.filter(weight__isnull=True)] == ["w1", "other"]
    assert [x.name for x in Widget.objects.exclude(active=False)] == ["w1", "w2"]
    assert Widget.objects.filter(size__lt=10).count() == 2
    assert Widget.objects.filter(owner=svc).first().name == "w1"
    assert Widget.objects.all()[1].name == "w2"
    assert [x.name for x in Widget.objects.all()[1:3]] == ["w2", "other"]
    with pytest.raises(Widget.DoesNotExist):
        Widget.objects.get(name="nope")

    # Reverse relation.
    assert [x.name for x in svc.widgets.all()] == ["w1"]

    # Save with update_fields writes only those fields.
    got.size = 4
    got.name = "renamed-but-not-saved"
    got.save(update_fields=["size"])
    again = Widget.objects.get(id=got.id)
    assert again.size == 4 and again.name == "w1"

    # A synchronizer save does not bump updated; always_update_timestamp does.
    updated = again.updated
    again.backend_status = "OK"
    again.save()
    assert Widget.objects.get(id=got.id).updated == updated
    again.save(always_update_timestamp=True)
    assert Widget.objects.get(id=got.id).updated > updated

    # Delete: never synced, so purged at once.
    again.delete()
    assert not Widget.objects.filter(id=got.id).exists()


def test_client_and_step_bookkeeping(accessor: ModelAccessor) -> None:
    Widget = accessor.Widget
    w = Widget(name="w")
    w.save()
    assert [x.id for x in accessor.fetch_pending("Widget")] == [w.id]
    assert [x.id for x in accessor.fetch_policies(Widget)] == [w.id]
    with acting_as(Caller.STEP):
        w.size = 2
        w.save()
    fresh = Widget.objects.get(id=w.id)
    assert fresh.changed_by_step is not None
    fresh.enacted = fresh.updated
    fresh.save(update_fields=["enacted"])
    assert accessor.fetch_pending("Widget") == []
    client = ModelAccessor(accessor.backend, caller=Caller.CLIENT)
    c = client.Widget.objects.get(id=w.id)
    c.size = 12
    c.save()
    assert [x.id for x in accessor.fetch_pending("Widget")] == [w.id]  # a client write makes it dirty


def test_soft_delete_and_deleted_objects(accessor: ModelAccessor) -> None:
    Widget = accessor.Widget
    w = Widget(name="w", backend_need_delete=True)
    w.save()
    w.delete()
    assert Widget.objects.filter(id=w.id).count() == 0
    assert [x.id for x in Widget.deleted_objects.all()] == [w.id]
    assert [x.id for x in accessor.fetch_pending("Widget", deletion=True)] == [w.id]


def test_derived_models_and_leaf(accessor: ModelAccessor) -> None:
    special = accessor.SpecialWidget(name="sw", flavour="lime", size=2)
    special.save()
    as_widget = accessor.Widget.objects.get(id=special.id)
    assert as_widget.model_name == "Widget"
    leaf = as_widget.leaf_model
    assert leaf.model_name == "SpecialWidget" and leaf.flavour == "lime"
    assert accessor.is_instance(leaf, "Widget")


def test_errors_match_the_local_store(accessor: ModelAccessor) -> None:
    Widget = accessor.Widget
    with pytest.raises(ValidationError, match=r"Widget\.name: longer than max_length 64"):
        Widget(name="x" * 65)
    backend = accessor.backend
    with pytest.raises(ValidationError, match=r"Widget\.size: expected an integer"):
        backend.create("Widget", {"name": "w", "size": "three"})
    with pytest.raises(ValidationError, match="model Widget has no field 'nope'"):
        backend.create("Widget", {"name": "w", "nope": 1})
    with pytest.raises(ValidationError, match="unknown model 'Gadget'"):
        backend.create("Gadget", {})
    with pytest.raises(ValidationError, match="abstract"):
        backend.select("XOSBase")
    with pytest.raises(NotFound, match="Widget id 999"):
        backend.update("Widget", 999, {"size": 1})
    with pytest.raises(NotFound):
        backend.delete("Widget", 999)
    assert backend.get("Widget", 999) is None
    with pytest.raises(ValidationError):
        list(Widget.objects.filter(nope=3))


def test_numeric_strings_filter_numeric_fields(accessor: ModelAccessor) -> None:
    """``portId="1"`` from an event filters an integer field, locally and through the API."""
    Service, Widget = accessor.Service, accessor.Widget
    svc = Service(name="svc")
    svc.save()
    a = Widget(name="a", size=1, weight=0.5, owner=svc)
    a.save()
    b = Widget(name="b", size=2, weight=2.0)
    b.save()
    assert [w.name for w in Widget.objects.filter(size="1")] == ["a"]
    assert [w.name for w in Widget.objects.filter(size__in=["1", "2"])] == ["a", "b"]
    assert [w.name for w in Widget.objects.filter(weight__gt="1")] == ["b"]
    assert [w.name for w in Widget.objects.filter(owner_id=str(svc.id))] == ["a"]
    assert [w.name for w in Widget.objects.filter(id=str(b.id))] == ["b"]
    assert Widget.objects.exclude(size="1").count() == 1
    with pytest.raises(ValidationError, match=r"Widget\.size: expected an integer, got 'one'"):
        list(Widget.objects.filter(size="one"))


def test_models_uploaded_after_connecting_are_found_by_name(remote: Callable[..., RemoteBackend]) -> None:
    """A client asks the core again for a model name it does not know, instead of failing."""
    from actors.compat import activated
    from actors.config import Config

    accessor = ModelAccessor(remote("sync"), caller=Caller.CLIENT)
    assert accessor.Widget.objects.count() == 0  # connected, schema fetched, classes built
    assert not accessor.has_model_class("Gizmo")
    remote("admin").upload_models({"gizmos.xproto": "message Gizmo (XOSBase) { optional string label = 1; }"})
    Gizmo = accessor.Gizmo  # no refresh_schema() by hand
    Gizmo(label="g").save()
    assert [g.label for g in accessor.Gizmo.objects.all()] == ["g"]
    # The original's import path finds it too.
    remote("admin").upload_models({"d.xproto": "message Doohickey (XOSBase) { optional int32 n = 1; }"})
    with activated(Config.from_dict({"name": "late-models"}), accessor):
        from xossynchronizer.modelaccessor import Doohickey

        assert Doohickey.objects.count() == 0
    with pytest.raises(AttributeError, match="no model named 'Nope'"):
        accessor.Nope  # noqa: B018


def test_convenience_wrapper(remote: Callable[..., RemoteBackend]) -> None:
    registry = WrapperRegistry()

    class WidgetWrapper(ORMWrapper):
        @property
        def label(self) -> str:
            return f"{self.name}#{self.size}"

        def grow(self) -> None:
            self.size += 1
            self.save(update_fields=["size"])

    registry.register("Widget", WidgetWrapper)
    accessor = ModelAccessor(remote("sync"), wrappers=registry)
    w = accessor.Widget(name="w", size=1)
    w.save()
    got = accessor.Widget.objects.get(id=w.id)
    assert got.label == "w#1"
    got.grow()
    assert accessor.Widget.objects.get(id=w.id).label == "w#2"
    # Derived models inherit the wrapper.
    special = accessor.SpecialWidget(name="sw", size=5)
    special.save()
    assert accessor.SpecialWidget.objects.get(id=special.id).label == "sw#5"


def test_roles_through_the_orm(remote: Callable[..., RemoteBackend]) -> None:
    reader = ModelAccessor(remote("reader"), caller=Caller.CLIENT)
    with pytest.raises(AccessDenied, match="may not write"):
        reader.Widget(name="w").save()
    admin = ModelAccessor(remote("admin"), caller=Caller.CLIENT)
    w = admin.Widget(name="w")
    w.save()
    admin_as_sync = ModelAccessor(admin.backend, caller=Caller.SYNCHRONIZER)
    obj = admin_as_sync.Widget.objects.get(id=w.id)
    obj.size = 5
    with pytest.raises(AccessDenied, match="only as a client"):
        obj.save()
    assert [x.id for x in reader.Widget.objects.all()] == [w.id]


def test_two_clients_write_the_same_object(remote: Callable[..., RemoteBackend], api_store: Store) -> None:
    a = ModelAccessor(remote("sync"), caller=Caller.CLIENT)
    b = ModelAccessor(remote("admin"), caller=Caller.CLIENT)
    w = a.Widget(name="shared", size=0)
    w.save()
    # Each client changes its own field of the same object, many times, at the same time.
    rounds = 25
    errors: list[BaseException] = []

    def writer(accessor: ModelAccessor, field: str) -> None:
        try:
            for i in range(1, rounds + 1):
                obj = accessor.Widget.objects.get(id=w.id)
                setattr(obj, field, i if field == "size" else float(i))
                obj.save()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(a, "size")),
        threading.Thread(target=writer, args=(b, "weight")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    final = api_store.get("Widget", w.id)
    # Only changed fields are written, so neither client undoes the other's writes.
    assert final["size"] == rounds and final["weight"] == float(rounds)
    # Same field: the last write wins, and every write is one journal entry.
    before = api_store.last_seq()
    a_obj, b_obj = a.Widget.objects.get(id=w.id), b.Widget.objects.get(id=w.id)
    a_obj.name, b_obj.name = "from-a", "from-b"
    a_obj.save()
    b_obj.save()
    assert api_store.get("Widget", w.id)["name"] == "from-b"
    assert api_store.last_seq() == before + 2


def test_remote_subscribe_sees_every_write(remote: Callable[..., RemoteBackend], api_store: Store) -> None:
    backend = remote("reader")
    seen: list[Any] = []
    unsubscribe = backend.subscribe(seen.append)
    writer = remote("sync")
    ids = [writer.create("Widget", {"name": f"w{i}"}, WriteContext(Caller.CLIENT))["id"] for i in range(5)]
    api_store.update("Widget", ids[0], {"size": 9})
    wait_for(lambda: len(seen) == 6, description="six notices")
    assert [n.seq for n in seen] == list(range(seen[0].seq, seen[0].seq + 6))
    assert [n.id for n in seen[:5]] == ids and seen[5].kind == "update"
    unsubscribe()
    writer.create("Widget", {"name": "after"}, WriteContext(Caller.CLIENT))
    assert len(seen) == 6


def test_now_is_increasing_and_close_to_the_core(
    remote: Callable[..., RemoteBackend], api_store: Store
) -> None:
    backend = remote("reader")
    values = [backend.now() for _ in range(100)]
    assert values == sorted(values) and len(set(values)) == 100
    assert abs(backend.now() - api_store.now()) < 1.0
