"""Several synchronizer replicas on one PostgreSQL database never sync one object at the same time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
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


# -- replicas in processes of their own -------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def insert_dirty(store: Store, n: int) -> None:
    """``n`` dirty MyModel objects, written in one statement (the replicas find them by their resync)."""
    first = ModelAccessor(store, caller=Caller.CLIENT).MyModel(first_name="n", last_name="x")
    first.save()
    table = store.tables.by_model["MyModel"]
    columns = ", ".join(f'"{c.name}"' for c in table.c if c.name != "id")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {table.name}, "
            f"generate_series(1, {n - 1}) WHERE id = {first.id}"
        )


class Replica:
    """``tests.replica_worker`` in a subprocess; its sync log is ``log``."""

    def __init__(self, url: str, log: Path, seconds: float) -> None:
        self.log = log
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.replica_worker", url, str(log), str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"ready"

    def lines(self) -> list[list[str]]:
        """The whole lines of the log (a killed writer may leave half of one)."""
        if not self.log.exists():
            return []
        text = self.log.read_text()
        return [line.split() for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def syncs(lines: list[list[str]], killed_at: float) -> list[tuple[int, int, float, float]]:
    """``(id, pid, begin, end)`` of every sync; one cut short by a kill ends at ``killed_at``."""
    open_: dict[tuple[int, int], float] = {}
    out = []
    for mark, id_, pid, at in lines:
        key = (int(id_), int(pid))
        if mark == "b":
            open_[key] = float(at)
        else:
            out.append((key[0], key[1], open_.pop(key), float(at)))
    out.extend((id_, pid, begin, killed_at) for (id_, pid), begin in open_.items())
    return out


def pending_count(store: Store) -> int:
    return len(store.pending("MyModel", "sync"))


def test_three_replica_processes_share_the_work_and_take_over_from_a_killed_one(postgres_url, tmp_path):
    n = 6000
    with postgres_database(postgres_url) as url:
        store = Store(url, make_store().schema)
        try:
            insert_dirty(store, n)
            replicas = [Replica(url, tmp_path / f"r{i}.log", 0.0) for i in range(3)]
            try:
                for r in replicas:
                    r.wait_ready()
                victim = replicas[0]
                # Kill the victim in the middle of a sync, once the work is well under way.
                wait_for(lambda: len(victim.lines()) > n // 5, timeout=60, description="progress")
                held = wait_for(
                    lambda: (lambda ls: ls and ls[-1][0] == "b" and int(ls[-1][1]))(victim.lines()),
                    timeout=10,
                    interval=0.001,
                    description="the victim inside sync_record",
                )
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait()
                killed_at = time.time()
                wait_for(lambda: pending_count(store) == 0, timeout=120, description="every object enacted")
            finally:
                for r in replicas:
                    r.stop()
            all_syncs = [s for r in replicas for s in syncs(r.lines(), killed_at)]
        finally:
            store.close()
    by_id: dict[int, list[tuple[int, int, float, float]]] = {}
    for s in all_syncs:
        by_id.setdefault(s[0], []).append(s)
    assert len(by_id) == n  # 0 lost
    overlaps = [
        id_
        for id_, runs in by_id.items()
        for a, b in zip(sorted(runs, key=lambda s: s[2]), sorted(runs, key=lambda s: s[2])[1:], strict=False)
        if b[2] < a[3]
    ]
    assert overlaps == []
    # The object the victim held is taken over once its claim is released, not behind the backlog.
    others = sorted(s[2] for s in by_id[held] if s[1] != victim.process.pid)
    if os.environ.get("DEBUG_REPLICAS"):
        for r in replicas[1:]:
            mine = [s for s in all_syncs if s[1] == r.process.pid and killed_at <= s[2] <= (others or [0])[0]]
            print("survivor", (others or [0])[0] - killed_at, r.process.pid, len(mine), sum(1 for s in mine if s[0] < held), held,
                  [s[0] for s in mine[:5]], [s[0] for s in mine[-5:]])
    assert others and others[0] - killed_at < 3.0, (held, others, killed_at)
    # The work was spread: each survivor synced a fair share, and almost nothing twice.
    counts = Counter(s[1] for s in all_syncs)
    assert all(counts[r.process.pid] > n / 5 for r in replicas[1:]), counts
    twice = [id_ for id_, runs in by_id.items() if len(runs) > 1]
    assert len(twice) <= 3, twice
