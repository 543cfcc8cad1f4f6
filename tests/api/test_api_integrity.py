"""A link to a missing or deleted object, over a real socket: INVALID_ARGUMENT with the store's message."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from actors.api import ApiServer, RemoteBackend
from actors.store import Caller, Store, ValidationError, WriteContext

from .support import RawClient, basic

W = "/actors.services.v1.Widget"


def test_create_and_update_with_a_link_to_a_missing_object(raw: RawClient, api_server: ApiServer) -> None:
    widget = api_server.protos.models["Widget"]
    req = widget.write(object=widget.message(name="w", owner_id=999))
    result = raw.call(f"{W}/Create", req, basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert result.details == "Widget.owner_id: no Service with id 999"
    assert result.kind == "validation"
    created = raw.call(f"{W}/Create", widget.write(object=widget.message(name="w")), basic("sync"))
    assert created.code == grpc.StatusCode.OK
    update = widget.write(object=widget.message(id=created.parse(widget.message).id, owner_id=998))
    result = raw.call(f"{W}/Update", update, basic("sync"))
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert result.details == "Widget.owner_id: no Service with id 998"


def test_a_client_gets_the_same_validation_error(
    remote: Callable[..., RemoteBackend], api_store: Store
) -> None:
    backend = remote()
    with pytest.raises(ValidationError) as info:
        backend.create("SpecialWidget", {"name": "sw", "owner_id": 4242})
    assert str(info.value) == "SpecialWidget.owner_id: no Service with id 4242"
    svc = api_store.create("Service", {"name": "s"})
    api_store.update("Service", svc["id"], {"backend_need_delete": True}, WriteContext(Caller.SYNCHRONIZER))
    api_store.delete("Service", svc["id"])
    with pytest.raises(ValidationError, match=rf"^Widget\.owner_id: Service {svc['id']} is deleted"):
        backend.create("Widget", {"name": "w", "owner_id": svc["id"]})
    assert api_store.select("Widget") == []
