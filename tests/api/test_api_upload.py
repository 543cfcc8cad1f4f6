"""Upload of xproto files: new models served at once, extensions, conflicts, restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from actors.api import ApiServer, RemoteBackend, SchemaConflict
from actors.models import Schema
from actors.orm import ModelAccessor
from actors.store import Caller, Store, ValidationError

from .support import PASSWORDS, RawClient, basic

GADGETS = """
option app_label = "gadgets";
message Gadget (XOSBase) {
    required string label = 1 [max_length = 32];
    optional manytoone widget->Widget:gadgets = 2:1001 [null = True];
}
"""
GADGETS_EXTENDED = GADGETS.replace(
    "[null = True];\n}", "[null = True];\n    optional int32 volume = 3 [default = 11];\n}"
)


def test_upload_serves_new_models_at_once(
    remote: Callable[..., RemoteBackend], api_server: ApiServer, api_store: Store
) -> None:
    sync = remote("sync")
    other = remote("reader")  # connected before the upload
    assert "Gadget" not in other.schema
    assert sync.upload_models({"gadgets.xproto": GADGETS}) == ["Gadget"]
    assert "Gadget" in sync.schema and "Gadget" in api_store.schema
    accessor = ModelAccessor(sync, caller=Caller.CLIENT)
    w = accessor.Widget(name="w")
    w.save()
    g = accessor.Gadget(label="g1", widget=w)
    g.save()
    assert [x.label for x in w.gadgets.all()] == ["g1"]
    # Another client learns the new model on first use.
    assert other.get("Gadget", g.id)["label"] == "g1"
    assert "Gadget" in other.schema
    assert "actors.services.v1.Gadget" in api_server.protos.service_names


def test_extending_a_model_keeps_its_data(remote: Callable[..., RemoteBackend], api_store: Store) -> None:
    sync = remote("sync")
    sync.upload_models({"gadgets.xproto": GADGETS})
    row = sync.create("Gadget", {"label": "old"})
    reader = remote("reader")
    assert reader.get("Gadget", row["id"])["label"] == "old"
    assert sync.upload_models({"gadgets.xproto": GADGETS_EXTENDED}) == ["Gadget"]
    assert sync.upload_models({"gadgets.xproto": GADGETS_EXTENDED}) == []  # same again: no change
    # The reader's descriptors are stale: its next call fetches the schema again and works.
    got = reader.get("Gadget", row["id"])
    assert got["label"] == "old" and got["volume"] == 11  # the new column is filled with its default
    assert "volume" in reader.schema.fields("Gadget")
    sync.update("Gadget", row["id"], {"volume": 3})
    assert api_store.get("Gadget", row["id"])["volume"] == 3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GADGETS.replace("string label", "int32 label"), "Gadget.label changes type"),
        (
            GADGETS.replace("    optional manytoone widget->Widget:gadgets = 2:1001 [null = True];\n", ""),
            "Gadget.widget would be removed",
        ),
        (GADGETS.replace("Gadget (XOSBase)", "Gadget (Widget)"), "bases change"),
    ],
)
def test_conflicting_upload_is_refused(
    remote: Callable[..., RemoteBackend], text: str, fragment: str
) -> None:
    sync = remote("sync")
    sync.upload_models({"gadgets.xproto": GADGETS})
    with pytest.raises(SchemaConflict, match=fragment):
        sync.upload_models({"gadgets-v2.xproto": text})
    assert "label" in sync.refresh_schema().fields("Gadget")


def test_upload_errors(remote: Callable[..., RemoteBackend], api_server: ApiServer) -> None:
    sync = remote("sync")
    with pytest.raises(ValidationError, match=r"bad\.xproto:1:"):
        sync.upload_models({"bad.xproto": "message {"})
    with pytest.raises(SchemaConflict, match="unknown model"):
        sync.upload_models({"x.xproto": "message X (Nowhere) { optional string a = 1; }"})
    with pytest.raises(SchemaConflict, match="declared twice"):
        sync.upload_models(
            {
                "a.xproto": "message Dup (XOSBase) { optional string a = 1; }",
                "b.xproto": "message Dup (XOSBase) { optional string b = 1; }",
            }
        )
    # A model whose generated names clash with another's.
    with pytest.raises(SchemaConflict, match="WidgetList clashes"):
        sync.upload_models({"c.xproto": "message WidgetList (XOSBase) { optional string a = 1; }"})
    channel = grpc.insecure_channel(api_server.address)
    protos = api_server.protos
    empty = RawClient(channel).call(
        "/actors.api.v1.Core/UploadModels", protos.message("UploadRequest")(), basic("sync")
    )
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()
    # Nothing of the failed uploads is left behind.
    assert not {"X", "Dup", "WidgetList"} & set(sync.refresh_schema().names)


def test_python_in_an_upload_is_never_run(remote: Callable[..., RemoteBackend], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = (
        f'option custom_python = "open({str(marker)!r}, \\"w\\").write(\\"x\\")";\n'
        + 'message Safe (XOSBase) { option custom_python = "import os"; optional string a = 1; }'
    )
    sync = remote("sync")
    assert sync.upload_models({"safe.xproto": text}) == ["Safe"]
    assert not marker.exists()


def test_upload_from_a_folder(remote: Callable[..., RemoteBackend], tmp_path: Path) -> None:
    folder = tmp_path / "gadget-models"
    folder.mkdir()
    (folder / "gadgets.xproto").write_text(GADGETS, encoding="utf-8")
    (folder / "notes.txt").write_text("not a model", encoding="utf-8")
    assert remote("sync").upload_models(str(folder)) == ["Gadget"]


def test_uploaded_models_survive_a_restart(
    api_schema: Schema, db_url: str, start_server: Callable[..., ApiServer], api_store: Store
) -> None:
    server = start_server(api_store)
    with RemoteBackend(server.address, username="sync", password=PASSWORDS["sync"]) as sync:
        sync.upload_models({"gadgets.xproto": GADGETS})
        sync.upload_models({"gadgets.xproto": GADGETS_EXTENDED})
        row = sync.create("Gadget", {"label": "kept", "volume": 5})
    server.stop(grace=0)
    store2 = Store(db_url, api_schema)  # the core's own models only, as configured
    try:
        server2 = start_server(store2)
        assert "Gadget" in store2.schema and "volume" in store2.schema.fields("Gadget")
        with RemoteBackend(server2.address, username="reader", password=PASSWORDS["reader"]) as reader:
            assert reader.get("Gadget", row["id"])["volume"] == 5
    finally:
        store2.close()
