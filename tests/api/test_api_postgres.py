"""The API over a PostgreSQL store: the remote ORM, the watch, an upload (needs a PostgreSQL server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from actors.api import ApiServer, RemoteBackend
from actors.models import Schema
from actors.orm import ModelAccessor
from actors.store import Caller, ChangeNotice, Store
from tests.store_support import postgres_database

from ..helpers import wait_for
from .support import PASSWORDS


@pytest.fixture
def pg_store(postgres_url: str, api_schema: Schema) -> Iterator[Store]:
    with postgres_database(postgres_url) as url:
        store = Store(url, api_schema)
        try:
            yield store
        finally:
            store.close()


def test_remote_orm_and_watch_over_postgres(pg_store: Store, start_server: Callable[..., ApiServer]) -> None:
    server = start_server(pg_store)
    with RemoteBackend(server.address, username="sync", password=PASSWORDS["sync"]) as backend:
        seen: list[ChangeNotice] = []
        backend.subscribe(seen.append)
        accessor = ModelAccessor(backend, caller=Caller.CLIENT)
        svc = accessor.Service(name="pg")
        svc.save()
        w = accessor.Widget(name="w", size=2, owner=svc)
        w.save()
        assert [x.name for x in svc.widgets.all()] == ["w"]
        assert [x.id for x in accessor.Widget.objects.filter(name__icontains="W", size__in=[2, 3])] == [w.id]
        w.size = 3
        w.save(update_fields=["size"])
        assert [x.id for x in accessor.fetch_pending("Widget")] == [w.id]
        assert backend.upload_models({"g.xproto": "message Gadget (XOSBase) { optional string a = 1; }"})
        backend.create("Gadget", {"a": "x"})
        wait_for(lambda: len(seen) == 4, description="four notices")
        assert [n.kind for n in seen] == ["create", "create", "update", "create"]
        assert [n.seq for n in seen] == sorted(n.seq for n in seen)
