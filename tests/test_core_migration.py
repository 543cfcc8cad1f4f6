"""A store made with the old built-in models keeps every row when the core models arrive.

The old schema is embedded here: the service graph as the built-in models declared it
before the XOS core models were added (XOSBase, Service, ServiceInstance and their
links), plus a service's own models. The store is filled with it, then opened with
today's built-in models and the same service models: every row and value is still
there, the new columns hold their defaults, the new tables are empty and usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.models import Schema, load_schema, parse_xproto
from actors.store import Store

from .store_support import open_store, sqlite_url

#: The old built-in models, cut to what this test stores (the XOSBase fields are all there).
OLD_CORE = """
option app_label = "core";
message XOSBase {
    option abstract = True;
    required float created = 2 [default = 0, null = False, bookkeeping_state = True];
    required float updated = 3 [default = 0, null = False, bookkeeping_state = True];
    optional float enacted = 4 [null = True, default = None, bookkeeping_state = True];
    optional float policed = 5 [null = True, default = None, bookkeeping_state = True];
    optional string backend_register = 6 [default = "{}", max_length = 1024, feedback_state = True];
    required bool backend_need_delete = 7 [default = False, bookkeeping_state = True];
    required bool backend_need_reap = 8 [default = False, bookkeeping_state = True];
    required string backend_status = 9 [default = "Provisioning in progress", max_length = 1024,
                                        feedback_state = True];
    required int32 backend_code = 10 [default = 0, feedback_state = True];
    required bool deleted = 11 [default = False, bookkeeping_state = True];
    required bool write_protect = 12 [default = False, bookkeeping_state = True];
    required bool lazy_blocked = 13 [default = False, bookkeeping_state = True];
    required bool no_sync = 14 [default = False, bookkeeping_state = True];
    required bool no_policy = 15 [default = False, bookkeeping_state = True];
    optional string policy_status = 16 [default = "Policy in process", max_length = 1024,
                                        feedback_state = True];
    optional int32 policy_code = 17 [default = 0, feedback_state = True];
    required string leaf_model_name = 18 [null = False, max_length = 1024, bookkeeping_state = True];
    required bool backend_need_delete_policy = 19 [default = False, bookkeeping_state = True];
    required bool xos_managed = 20 [default = True, bookkeeping_state = True];
    optional string backend_handle = 21 [null = True, max_length = 1024, feedback_state = True];
    optional float changed_by_step = 22 [null = True, default = None, bookkeeping_state = True];
    optional float changed_by_policy = 23 [null = True, default = None, bookkeeping_state = True];
}
message Service (XOSBase) {
    optional string description = 1 [null = True, max_length = 254];
    required bool enabled = 2 [default = True, null = False];
    required string kind = 3 [default = "generic", null = False, max_length = 30];
    required string name = 4 [null = False, max_length = 30, unique = True];
    optional string versionNumber = 5 [null = True, max_length = 30];
    required bool published = 6 [default = True, null = False];
    optional string icon_url = 8 [null = True, max_length = 1024];
    optional string public_key = 9 [null = True, max_length = 4096];
    optional string private_key_fn = 10 [null = True, max_length = 4096];
    optional string service_specific_id = 11 [null = True, max_length = 30];
    optional text service_specific_attribute = 12 [null = True];
    optional string vendor = 13 [null = True, max_length = 128];
    optional string version = 14 [null = True, max_length = 30];
}
message ServiceInstance (XOSBase) {
    optional string name = 1 [null = True, max_length = 200];
    required manytoone owner->Service:service_instances = 2:1009 [null = False, db_index = True];
    optional string service_specific_id = 3 [null = True, max_length = 30];
    optional text service_specific_attribute = 10 [null = True];
    optional uint32 link_deleted_count = 11 [default = 0];
    optional manytoone master_serviceinstance->ServiceInstance:child_serviceinstances = 12:1002 [null = True];
}
message ServiceInstanceLink (XOSBase) {
    required manytoone provider_service_instance->ServiceInstance:provided_links = 1:1003 [null = False];
    optional manytoone subscriber_service_instance->ServiceInstance:subscribed_links = 3:1005 [null = True];
    optional manytoone subscriber_service->Service:subscribed_links = 4:1010 [null = True];
}
"""

#: A service's models, the same before and after.
SERVICE = """
message DemoService (Service) {
    optional string region = 1 [max_length = 30, default = "eu"];
}
message DemoInstance (ServiceInstance) {
    option owner_class_name = "DemoService";
    optional int32 vlan = 1 [default = 7];
    optional float ratio = 2;
    required bool active = 3 [default = True, null = False];
}
"""

#: Columns that did not exist in the old store, and what they read afterwards.
NEW_COLUMNS = {
    "Service": {"site_id": None},
    "ServiceInstanceLink": {"provider_service_interface_id": None, "subscriber_network_id": None},
}


def old_schema() -> Schema:
    return Schema(parse_xproto(OLD_CORE, "old-core.xproto") + parse_xproto(SERVICE, "demo.xproto"))


def new_schema() -> Schema:
    return load_schema(extra=parse_xproto(SERVICE, "demo.xproto"))


def fill(store: Store) -> dict[tuple[str, int], dict[str, Any]]:
    """Objects of every old model, in several states; returns each one's stored row by (model, id)."""
    svc = store.create("DemoService", {"name": "demo", "region": "us", "description": "d"})
    plain = store.create("Service", {"name": "plain", "kind": "data"})
    a = store.create("DemoInstance", {"name": "a", "owner_id": svc["id"], "vlan": 100, "ratio": 0.5})
    b = store.create(
        "DemoInstance",
        {"name": "b", "owner_id": plain["id"], "master_serviceinstance_id": a["id"], "active": False},
    )
    store.update("DemoInstance", b["id"], {"backend_status": "OK", "backend_code": 1, "enacted": 5.0})
    link = store.create(
        "ServiceInstanceLink", {"provider_service_instance_id": a["id"], "subscriber_service_id": plain["id"]}
    )
    gone = store.create("DemoInstance", {"name": "gone", "owner_id": svc["id"]})
    store.update("DemoInstance", gone["id"], {"backend_need_delete": True})
    store.delete("DemoInstance", gone["id"])  # soft-deleted, waiting for its step
    rows = {}
    for model, id in [
        ("DemoService", svc["id"]),
        ("Service", plain["id"]),
        ("DemoInstance", a["id"]),
        ("DemoInstance", b["id"]),
        ("DemoInstance", gone["id"]),
        ("ServiceInstanceLink", link["id"]),
    ]:
        row = store.get(model, id)
        assert row is not None
        rows[(model, id)] = dict(row)
    return rows


def check_kept(store: Store, rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    for (model, id), before in rows.items():
        after = store.get(model, id)
        assert after is not None, (model, id)
        assert {k: after[k] for k in before} == before, (model, id)
        for column, default in NEW_COLUMNS.get(store.schema.root(model), {}).items():
            if column in after:
                assert after[column] == default, (model, id, column)
    assert store.count("Service") == 2 and store.count("ServiceInstance") == 3
    assert {r["id"] for r in store.pending("ServiceInstance", "sync_deleted")} == {
        id for (model, id), row in rows.items() if row.get("deleted")
    }


def test_reopening_an_old_store_with_the_core_models_keeps_every_row(db_url: str) -> None:
    with open_store(db_url, old_schema()) as old:
        rows = fill(old)
        seq = old.last_seq()
        journal = old.changes_since(0)
    with open_store(db_url, new_schema()) as store:
        check_kept(store, rows)
        assert store.last_seq() == seq and store.changes_since(0) == journal
        # The new tables exist, empty, and take objects that link to the old ones.
        assert store.count("Site") == 0 and store.count("Slice") == 0
        site = store.create("Site", {"name": "site", "login_base": "s"})
        (svc_key,) = [key for key in rows if key[0] == "DemoService"]
        store.update("DemoService", svc_key[1], {"site_id": site["id"]})
        assert store.get("DemoService", svc_key[1])["site_id"] == site["id"]
        # New core behaviour works on old rows: the owner comes from owner_class_name.
        assert store.create("DemoInstance", {"name": "new"})["owner_id"] == svc_key[1]
    with open_store(db_url, new_schema()) as again:  # and a third open changes nothing
        assert again.get("DemoService", svc_key[1])["site_id"] == site["id"]
        assert again.count("ServiceInstance") == 4


def test_an_open_store_switched_to_the_core_models_keeps_every_row(tmp_path: Path) -> None:
    with open_store(sqlite_url(tmp_path), old_schema()) as store:
        rows = fill(store)
        store.set_schema(new_schema())
        check_kept(store, rows)
        assert "Slice" in store.tables.by_model


def test_stores_of_the_same_declarations_share_their_tables(tmp_path: Path) -> None:
    """Building the tables of ~35 models costs more than creating them: stores share them."""
    with (
        open_store(sqlite_url(tmp_path, "a.db"), new_schema()) as a,
        open_store(sqlite_url(tmp_path, "b.db"), new_schema()) as b,
        open_store(sqlite_url(tmp_path, "c.db"), old_schema()) as c,
    ):
        assert a.schema is not b.schema and a.tables is b.tables
        assert c.tables is not a.tables and "Slice" not in c.tables.by_model
        c.set_schema(new_schema())
        assert c.tables is a.tables
    with open_store("sqlite://", new_schema()) as memory:  # same declarations, same tables
        assert memory.tables is a.tables
