"""The built-in XOS core models, and what the core does on save and delete.

- The built-in models carry the facts of upstream's core.xproto (checked against the
  file itself, which tests read from ``shared/upstream``).
- Service-shaped models that link to the core load with no extra file.
- ``owner_class_name`` fills ``ServiceInstance.owner`` on create.
- Deleting an object soft-deletes, recursively, what links to it; deleting a
  ``ServiceInstanceLink`` counts on its provider's ``link_deleted_count``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.api import RemoteBackend, hash_password, serve
from actors.models import FieldSpec, load_schema, parse_file, parse_xproto
from actors.orm import ModelAccessor
from actors.store import Caller, Store, ValidationError, WriteContext

from .store_support import StepClock, open_store, postgres_database, sqlite_url
from .test_xproto import upstream_file

# -- the built-in models against upstream's core.xproto --------------------------------

#: Upstream date strings (``content_type = "date"``) are float seconds here.
DATE_KINDS = {"string": "float"}
#: Fields upstream's User repeats from XOSBase (it derives from Django's user base).
USER_BOOKKEEPING = {
    "created", "updated", "enacted", "policed", "backend_status", "backend_code", "backend_need_delete",
    "backend_need_reap", "deleted", "write_protect", "lazy_blocked", "no_sync", "no_policy", "policy_status",
    "policy_code", "leaf_model_name", "backend_need_delete_policy", "xos_managed", "backend_handle",
    "changed_by_step", "changed_by_policy",
}  # fmt: skip


def kind_of(f: FieldSpec) -> str:
    """The kind a field has here: dates are floats, ``text = True`` strings may be ``text``."""
    if f.options.get("content_type") == "date":
        return "float"
    return "string" if f.kind == "text" else f.kind


def test_builtins_have_every_upstream_core_model_field_default_and_link() -> None:
    upstream = {spec.name: spec for spec in parse_file(upstream_file("xos-core.xproto"))}
    ours = load_schema()
    assert set(upstream) == set(ours.names)
    for name, theirs in upstream.items():
        spec = ours[name]
        expected_bases = ("XOSBase",) if name == "User" else theirs.bases
        assert spec.bases == expected_bases, name
        assert spec.abstract == theirs.abstract, name
        fields = ours.fields(name)
        for f in theirs.fields:
            if name == "User" and f.name in USER_BOOKKEEPING:
                assert f.name in fields, f"User.{f.name}"
                continue
            where = f"{name}.{f.name}"
            assert f.name in fields, where
            mine = fields[f.name]
            assert kind_of(mine) == kind_of(f), where
            assert mine.link == f.link, where
            if f.options.get("content_type") != "date":  # dates here: float seconds or None
                assert mine.nullable == f.nullable, where
                assert mine.default == f.default, where
            assert mine.choices == f.choices, where
            if f.max_length and kind_of(f) == "string" and mine.kind == "string":
                assert mine.max_length == f.max_length or name in ("Service", "ServiceAttribute"), where
            for option in ("unique", "unique_with", "tosca_key", "feedback_state", "bookkeeping_state"):
                if f.options.get(option) and name != "User":
                    assert mine.options.get(option) == f.options.get(option), f"{where} {option}"
        assert [(m.name, m.link) for m in spec.manytomany] == [(m.name, m.link) for m in theirs.manytomany]


# -- services that link to the core ----------------------------------------------------

#: Models shaped like real services' (a compute service, a workflow driver, a subscriber).
SERVICE_MODELS = """
option app_label = "democompute";
option name = "democompute";

message DemoComputeService (Service) {
    option verbose_name = "Demo Compute Service";
    option sync_implemented = "True";
    optional string default_flavor = 1 [max_length = 32, default = "m1.small"];
}

message DemoComputeServiceInstance (ComputeServiceInstance) {
    option owner_class_name = "DemoComputeService";
    option verbose_name = "Demo Compute Service Instance";
    optional manytoone node->Node:demo_instances = 1:1100 [db_index = True];
    optional manytoone trust_domain->TrustDomain:demo_instances = 2:1101 [db_index = True];
    optional string pod_ip = 3 [max_length = 32, feedback_state = True];
}

message DemoSubscriber::demo_policy (ServiceInstance, AttributeMixin) {
    option owner_class_name = "DemoComputeService";
    optional manytoone creator->User:demo_subscribers = 1:1102 [db_index = True];
    optional manytoone site->Site:demo_subscribers = 2:1103 [];
    optional manytomany images->Image/DemoSubscriber_images:demo_subscribers = 3:1104 [];
}

policy demo_policy < ctx.user.is_admin >
"""


def demo_schema(tmp_path: Path) -> Any:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "democompute.xproto").write_text(SERVICE_MODELS, encoding="utf-8")
    return load_schema([tmp_path / "models"])


def test_service_models_linking_to_core_load_without_extra_files(tmp_path: Path) -> None:
    schema = demo_schema(tmp_path)
    assert schema.chain("DemoComputeServiceInstance") == [
        "ServiceInstance",
        "ComputeServiceInstance",
        "DemoComputeServiceInstance",
    ]
    fields = schema.fields("DemoComputeServiceInstance")
    assert {"owner", "slice", "image", "node", "trust_domain", "pod_ip"} <= set(fields)
    assert schema.field("DemoSubscriber", "creator").link is not None
    assert ("DemoSubscriber", "creator") in {(m, f.name) for m, f in schema.reverse_links("User")}
    assert "images" not in schema.fields("DemoSubscriber")


# -- stores ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    schema = demo_schema(tmp_path)
    if request.param == "sqlite":
        with open_store(sqlite_url(tmp_path), schema, clock=StepClock()) as s:
            yield s
        return
    with postgres_database(request.getfixturevalue("postgres_url")) as url, open_store(url, schema) as s:
        yield s


def make_compute(store: Store, name: str = "ci1", **values: Any) -> dict[str, Any]:
    """A site, a slice and an image, and a DemoComputeServiceInstance on them."""
    site = store.create("Site", {"name": f"site-{name}", "login_base": "s"})
    slice_ = store.create("Slice", {"name": f"slice-{name}", "site_id": site["id"]})
    image = store.create("Image", {"name": f"image-{name}"})
    return store.create(
        "DemoComputeServiceInstance",
        {"name": name, "slice_id": slice_["id"], "image_id": image["id"], **values},
    )


def mark_synced(store: Store, model: str, id: int) -> None:
    """As a sync step leaves an object: in the backend, so its deletion waits for the step."""
    store.update(model, id, {"backend_need_delete": True}, WriteContext(Caller.SYNCHRONIZER))


# -- owner from owner_class_name ---------------------------------------------------------


def test_owner_missing_and_no_service_of_the_class(store: Store) -> None:
    store.create("Service", {"name": "other"})  # a Service, but not of the owner class
    with pytest.raises(ValidationError) as info:
        make_compute(store)
    assert str(info.value) == (
        "DemoComputeServiceInstance: Cannot find eligible owner of class DemoComputeService"
    )


def test_owner_filled_from_the_one_service_of_the_class(store: Store) -> None:
    store.create("Service", {"name": "other"})
    demo = store.create("DemoComputeService", {"name": "demo"})
    si = make_compute(store)
    assert si["owner_id"] == demo["id"]
    assert store.get("DemoComputeServiceInstance", si["id"])["owner_id"] == demo["id"]
    # A model that inherits the option through ServiceInstance's subclass chain, too.
    sub = store.create("DemoSubscriber", {"name": "sub"})
    assert sub["owner_id"] == demo["id"]


def test_owner_with_several_services_is_the_first_live_one(store: Store) -> None:
    first = store.create("DemoComputeService", {"name": "first"})
    second = store.create("DemoComputeService", {"name": "second"})
    store.delete("DemoComputeService", first["id"])  # deleted services are not eligible
    assert make_compute(store)["owner_id"] == second["id"]
    third = store.create("DemoComputeService", {"name": "third"})
    assert make_compute(store, "ci2")["owner_id"] == second["id"] != third["id"]


def test_owner_given_is_kept_if_of_the_class_else_replaced(store: Store) -> None:
    first = store.create("DemoComputeService", {"name": "first"})
    second = store.create("DemoComputeService", {"name": "second"})
    other = store.create("Service", {"name": "other"})
    assert make_compute(store, owner_id=second["id"])["owner_id"] == second["id"]
    assert make_compute(store, "ci2", owner_id=other["id"])["owner_id"] == first["id"]


def test_owner_class_that_is_no_model(tmp_path: Path) -> None:
    schema = load_schema(
        extra=parse_xproto('message LostInstance (ServiceInstance) { option owner_class_name = "Gone"; }')
    )
    with open_store("sqlite://", schema) as store:
        store.create("Service", {"name": "svc"})
        with pytest.raises(ValidationError, match=r"^LostInstance: Cannot find owner class Gone$"):
            store.create("LostInstance", {})
        # Without the option, a missing owner is the ordinary missing-field error.
        with pytest.raises(ValidationError, match=r"ServiceInstance.owner is required"):
            store.create("ServiceInstance", {})


def test_owner_through_the_orm(store: Store) -> None:
    orm = ModelAccessor(store, caller=Caller.CLIENT)
    demo = orm.DemoComputeService(name="demo")
    demo.save()
    sub = orm.DemoSubscriber(name="sub")
    sub.save()
    assert sub.owner_id == demo.id
    assert orm.DemoSubscriber.objects.get(id=sub.id).owner.name == "demo"


# -- cascading soft delete --------------------------------------------------------------


def live_ids(store: Store, model: str) -> set[int]:
    return {row["id"] for row in store.select(model) if not row["deleted"]}


def test_deleting_a_service_deletes_what_links_to_it_recursively(store: Store) -> None:
    demo = store.create("DemoComputeService", {"name": "demo"})
    other = store.create("DemoComputeService", {"name": "other"})
    si = make_compute(store, owner_id=demo["id"])
    kept = make_compute(store, "kept", owner_id=other["id"])
    attribute = store.create("ServiceAttribute", {"name": "a", "value": "1", "service_id": demo["id"]})
    dependency = store.create(
        "ServiceDependency", {"provider_service_id": other["id"], "subscriber_service_id": demo["id"]}
    )
    si_attribute = store.create(
        "ServiceInstanceAttribute", {"name": "b", "value": "2", "service_instance_id": si["id"]}
    )
    link = store.create(
        "ServiceInstanceLink",
        {"provider_service_instance_id": kept["id"], "subscriber_service_instance_id": si["id"]},
    )
    child = make_compute(store, "child", owner_id=other["id"], master_serviceinstance_id=si["id"])
    for model, id in [("DemoComputeServiceInstance", si["id"]), ("ServiceInstanceLink", link["id"])]:
        mark_synced(store, model, id)
    before = store.last_seq()

    store.delete("DemoComputeService", demo["id"])

    # Synced objects stay, deleted, for their step's delete_record; the others are purged.
    si_row = store.get("DemoComputeServiceInstance", si["id"])
    assert (
        si_row is not None and si_row["deleted"] and si_row["enacted"] is None and si_row["policed"] is None
    )
    link_row = store.get("ServiceInstanceLink", link["id"])
    assert link_row is not None and link_row["deleted"]
    for model, id in [
        ("ServiceAttribute", attribute["id"]),
        ("ServiceDependency", dependency["id"]),
        ("ServiceInstanceAttribute", si_attribute["id"]),
    ]:
        assert store.get(model, id) is None, model
    # The service waits, deleted, while its instance (in the backend) still links to it.
    demo_row = store.get("DemoComputeService", demo["id"])
    assert demo_row is not None and demo_row["deleted"]
    # child -> si (master link, nullable) is followed too: every link cascades, as in XOS.
    child_row = store.get("DemoComputeServiceInstance", child["id"])
    assert child_row is None or child_row["deleted"]
    assert live_ids(store, "DemoComputeServiceInstance") == {kept["id"]}
    assert live_ids(store, "Service") == {other["id"]}
    # The pending delete reaches the steps: the synced objects are in the sync_deleted query.
    assert {r["id"] for r in store.pending("ServiceInstance", "sync_deleted")} == {si["id"]}
    # Notices name each object's leaf model, one delete each.
    deletes = [(n.model, n.id) for n in store.changes_since(before) if n.kind == "delete"]
    assert sorted(deletes) == sorted(
        [
            ("DemoComputeService", demo["id"]),
            ("DemoComputeServiceInstance", si["id"]),
            ("DemoComputeServiceInstance", child["id"]),
            ("ServiceAttribute", attribute["id"]),
            ("ServiceDependency", dependency["id"]),
            ("ServiceInstanceAttribute", si_attribute["id"]),
            ("ServiceInstanceLink", link["id"]),
        ]
    )
    # Once the backends are done, the last of them to go takes the waiting service with it.
    reaped = WriteContext(Caller.SYNCHRONIZER)
    store.update("ServiceInstanceLink", link["id"], {"backend_need_reap": True}, reaped)
    assert store.get("DemoComputeService", demo["id"]) is not None
    store.update("DemoComputeServiceInstance", si["id"], {"backend_need_reap": True}, reaped)
    assert store.get("DemoComputeServiceInstance", si["id"]) is None
    assert store.get("DemoComputeService", demo["id"]) is None
    assert store.dangling_links() == []


def test_cascade_follows_links_to_core_models_and_stops_at_deleted_objects(store: Store) -> None:
    demo = store.create("DemoComputeService", {"name": "demo"})
    si = make_compute(store, owner_id=demo["id"])
    slice_id = si["slice_id"]
    mark_synced(store, "DemoComputeServiceInstance", si["id"])
    store.delete("DemoComputeServiceInstance", si["id"])
    before = store.last_seq()
    store.delete("Slice", slice_id)  # the instance is already deleted: not again
    # The slice waits for the instance that still links to it, then goes with it.
    assert [(n.model, n.kind) for n in store.changes_since(before)] == [("Slice", "delete")]
    reaped = WriteContext(Caller.SYNCHRONIZER)
    store.update("DemoComputeServiceInstance", si["id"], {"backend_need_reap": True}, reaped)
    assert [(n.model, n.kind) for n in store.changes_since(before)][1:] == [
        ("DemoComputeServiceInstance", "update"),
        ("DemoComputeServiceInstance", "purge"),
        ("Slice", "purge"),
    ]
    # A link to a core model: deleting the site deletes its slices, users and nodes.
    site = store.create("Site", {"name": "s2", "login_base": "s2"})
    user = store.create("User", {"email": "a@b", "site_id": site["id"]})
    owned = store.create("Slice", {"name": "sl2", "site_id": site["id"], "creator_id": user["id"]})
    node = store.create("Node", {"name": "n2", "site_id": site["id"]})
    unrelated = store.create("Slice", {"name": "sl3", "site_id": store.get("Slice", owned["id"])["site_id"]})
    store.delete("User", user["id"])
    assert store.get("Slice", owned["id"]) is None  # via creator
    assert store.get("Slice", unrelated["id"]) is not None and store.get("Node", node["id"]) is not None
    store.delete("Site", site["id"])
    assert store.get("Slice", unrelated["id"]) is None and store.get("Node", node["id"]) is None


def test_cascade_through_a_cycle_ends(store: Store) -> None:
    demo = store.create("DemoComputeService", {"name": "demo"})
    a = make_compute(store, "a", owner_id=demo["id"])
    b = make_compute(store, "b", owner_id=demo["id"], master_serviceinstance_id=a["id"])
    store.update("DemoComputeServiceInstance", a["id"], {"master_serviceinstance_id": b["id"]})
    for si in (a, b):
        mark_synced(store, "DemoComputeServiceInstance", si["id"])
    store.delete("DemoComputeServiceInstance", a["id"])
    assert store.get("DemoComputeServiceInstance", b["id"])["deleted"]


def test_purging_an_object_purges_its_dependents(store: Store) -> None:
    # As Django's CASCADE on XOS's delete(purge=True): no object is left linking to a purged one.
    demo = store.create("DemoComputeService", {"name": "demo"})
    si = make_compute(store, owner_id=demo["id"])
    mark_synced(store, "DemoComputeServiceInstance", si["id"])
    before = store.last_seq()
    store.delete("Service", demo["id"], purge=True)
    assert store.get("Service", demo["id"]) is None
    assert store.get("DemoComputeServiceInstance", si["id"]) is None
    purged = {(n.model, n.id) for n in store.changes_since(before) if n.kind == "purge"}
    assert purged == {("DemoComputeService", demo["id"]), ("DemoComputeServiceInstance", si["id"])}
    assert store.dangling_links() == []


def test_deleting_through_the_orm_cascades(store: Store) -> None:
    orm = ModelAccessor(store, caller=Caller.CLIENT)
    demo = orm.DemoComputeService(name="demo")
    demo.save()
    sub = orm.DemoSubscriber(name="sub")
    sub.save()
    demo.delete()
    assert not orm.DemoSubscriber.objects.filter(id=sub.id).exists()


# -- link_deleted_count ------------------------------------------------------------------


def test_deleting_a_link_counts_on_its_live_provider(store: Store) -> None:
    demo = store.create("DemoComputeService", {"name": "demo"})
    provider = make_compute(store, "p", owner_id=demo["id"])
    subscriber = make_compute(store, "s", owner_id=demo["id"])
    assert provider["link_deleted_count"] == 0
    links = [
        store.create(
            "ServiceInstanceLink",
            {
                "provider_service_instance_id": provider["id"],
                "subscriber_service_instance_id": subscriber["id"],
            },
        )
        for _ in range(2)
    ]
    mark_synced(store, "ServiceInstanceLink", links[0]["id"])
    updated = store.get("DemoComputeServiceInstance", provider["id"])["updated"]
    before = store.last_seq()
    store.delete("ServiceInstanceLink", links[0]["id"], WriteContext(Caller.POLICY))
    row = store.get("DemoComputeServiceInstance", provider["id"])
    assert row["link_deleted_count"] == 1 and row["updated"] > updated  # updated even for a policy
    assert ("DemoComputeServiceInstance", provider["id"], "update") in [
        (n.model, n.id, n.kind) for n in store.changes_since(before)
    ]
    # Purging the already deleted link does not count it twice; a second link counts once more.
    store.delete("ServiceInstanceLink", links[0]["id"], purge=True)
    store.delete("ServiceInstanceLink", links[1]["id"])
    assert store.get("DemoComputeServiceInstance", provider["id"])["link_deleted_count"] == 2


def test_links_deleted_with_their_provider_are_not_counted(store: Store) -> None:
    demo = store.create("DemoComputeService", {"name": "demo"})
    provider = make_compute(store, "p", owner_id=demo["id"])
    mark_synced(store, "DemoComputeServiceInstance", provider["id"])
    link = store.create("ServiceInstanceLink", {"provider_service_instance_id": provider["id"]})
    mark_synced(store, "ServiceInstanceLink", link["id"])
    store.delete("DemoComputeServiceInstance", provider["id"])
    assert store.get("ServiceInstanceLink", link["id"])["deleted"]
    assert store.get("DemoComputeServiceInstance", provider["id"])["link_deleted_count"] == 0
    # A link whose provider is already deleted: deleting it counts nothing either.
    store.delete("ServiceInstanceLink", link["id"])
    assert store.get("DemoComputeServiceInstance", provider["id"])["link_deleted_count"] == 0


# -- the same over gRPC -------------------------------------------------------------------


def test_owner_and_cascade_for_a_client_over_grpc(tmp_path: Path) -> None:
    """A client of a core creates a service instance without owner and deletes its service."""
    users = [{"username": "sync", "password_hash": hash_password("pw"), "role": "synchronizer"}]
    with open_store(sqlite_url(tmp_path), demo_schema(tmp_path)) as store:
        server = serve(store, address="127.0.0.1:0", users=users)
        backend = RemoteBackend(server.address, username="sync", password="pw", timeout=10.0)
        try:
            orm = ModelAccessor(backend, caller=Caller.CLIENT)
            with pytest.raises(
                ValidationError, match="Cannot find eligible owner of class DemoComputeService"
            ):
                orm.DemoSubscriber(name="early").save()
            demo = orm.DemoComputeService(name="demo")
            demo.save()
            sub = orm.DemoSubscriber(name="sub")
            sub.save()
            assert sub.owner_id == demo.id
            other = orm.DemoSubscriber(name="other")
            other.save()
            link = orm.ServiceInstanceLink(provider_service_instance=sub, subscriber_service_instance=other)
            link.save()
            link.delete()
            assert orm.DemoSubscriber.objects.get(id=sub.id).link_deleted_count == 1
            demo.delete()
            assert not orm.DemoSubscriber.objects.filter(name__in=["sub", "other"]).exists()
            assert store.get("DemoSubscriber", sub.id) is None  # never synced: purged at once
        finally:
            backend.close()
            server.stop(grace=0)
