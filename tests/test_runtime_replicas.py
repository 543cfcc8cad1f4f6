"""Several synchronizer replicas on one PostgreSQL database never sync one object at the same time."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, FakeClock, RuntimeSettings, Supervisor
from actors.runtime.sync import SyncStepActor
from actors.steps import SyncStep
from actors.store import Caller, Store

from .helpers import wait_for
from .runtime_support import factory, make_store
from .store_support import postgres_database

pytestmark = pytest.mark.postgres


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[int] = Counter()
        self.active: set[int] = set()
        self.overlaps: list[int] = []
        self.replicas: Counter[str] = Counter()


def replica(store: Store, ledger: Ledger, name: str) -> Any:
    class SyncMyModel(SyncStep):
        observes = "MyModel"

        def sync_record(self, o: Any) -> None:
            with ledger.lock:
                if o.id in ledger.active:
                    ledger.overlaps.append(o.id)
                ledger.active.add(o.id)
                ledger.calls[o.id] += 1
                ledger.replicas[name] += 1
            # A little real work against the database, so the replicas interleave.
            self.model_accessor.MyModel.objects.filter(id=o.id).count()
            with ledger.lock:
                ledger.active.discard(o.id)

    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings()
    f = factory(SyncMyModel)
    spec = ChildSpec(
        "SyncMyModel", SyncStepActor, (f,), interests=SyncStepActor.interests(f, accessor, settings)
    )
    return Supervisor.start([spec], accessor=accessor, clock=FakeClock(), settings=settings)


def test_two_replicas_share_the_work_and_sync_each_object_once(postgres_url):
    with postgres_database(postgres_url) as url:
        schema = make_store().schema
        first, second = Store(url, schema), Store(url, schema)
        client = ModelAccessor(first, caller=Caller.CLIENT)
        for i in range(150):
            client.MyModel(first_name=f"n{i}", last_name="x").save()
        ledger = Ledger()
        # Both start on the same dirty set: every object is wanted by both at about the same time.
        a = replica(first, ledger, "a")
        b = replica(second, ledger, "b")
        try:
            wait_for(
                lambda: not first.pending("MyModel", "sync"), timeout=60, description="all objects synced"
            )
            with ledger.lock:
                assert ledger.overlaps == []
                assert set(ledger.calls.values()) == {1}
                assert len(ledger.calls) == 150
        finally:
            a.stop()
            b.stop()
            first.close()
            second.close()


def test_a_claim_is_exclusive_across_connections(postgres_url):
    with postgres_database(postgres_url) as url:
        schema = make_store().schema
        first, second = Store(url, schema), Store(url, schema)
        try:
            assert first.shared and second.shared
            with first.claim("MyModel", 7) as held:
                assert held
                with second.claim("MyModel", 7) as other:
                    assert not other
                with second.claim("MyModel", 8) as other:
                    assert other
            with second.claim("MyModel", 7) as again:
                assert again
        finally:
            first.close()
            second.close()


def test_sqlite_stores_are_not_shared(tmp_path):
    store = make_store("sqlite:///" + str(tmp_path / "x.db"))
    try:
        assert not store.shared
        with store.claim("MyModel", 1) as held, store.claim("MyModel", 1) as again:
            assert held and again
    finally:
        store.close()


def test_writes_of_another_store_on_the_same_database_are_published(postgres_url):
    with postgres_database(postgres_url) as url:
        schema = make_store().schema
        writer, reader = Store(url, schema), Store(url, schema)
        seen: list[Any] = []
        try:
            reader.subscribe(seen.append)
            client = ModelAccessor(writer, caller=Caller.CLIENT)
            obj = client.MyModel(first_name="far", last_name="away")
            obj.save()
            obj.last_name = "closer"
            obj.save()
            wait_for(lambda: len(seen) >= 2, description="the other store's notices")
            assert [(n.model, n.id, n.kind) for n in seen] == [
                ("MyModel", obj.id, "create"),
                ("MyModel", obj.id, "update"),
            ]
            # Its own writes are published once, not again by the listener.
            ModelAccessor(reader, caller=Caller.CLIENT).MyModel(first_name="near", last_name="by").save()
            wait_for(lambda: len(seen) >= 3)
            assert reader.changes_since(0)[-1].seq == seen[-1].seq
            writer.update("MyModel", obj.id, {"first_name": "again"})
            wait_for(lambda: len(seen) >= 4)
            assert len({n.seq for n in seen}) == len(seen) == 4
        finally:
            writer.close()
            reader.close()


def test_a_replica_reacts_at_once_to_a_write_from_another_process(postgres_url):
    with postgres_database(postgres_url) as url:
        schema = make_store().schema
        core, worker = Store(url, schema), Store(url, schema)
        ledger = Ledger()
        sup = replica(worker, ledger, "worker")
        try:
            client = ModelAccessor(core, caller=Caller.CLIENT)
            obj = client.MyModel(first_name="pushed", last_name="x")
            obj.save()
            # No resync happens (a fake clock): only the listener can bring the change.
            wait_for(lambda: ledger.calls[obj.id] == 1, description="the sync through LISTEN/NOTIFY")
        finally:
            sup.stop()
            core.close()
            worker.close()
