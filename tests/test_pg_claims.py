"""PostgreSQL claims: one kept connection per store, many at once, several per statement.

And the sync path on PostgreSQL: a drain claims its objects together and commits once,
instead of a claim, a read, a commit and a release per object.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest
import sqlalchemy as sa

from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime.messages import IsIdle
from actors.runtime.sync import SyncStepActor
from actors.steps import SyncStep
from actors.store import Caller

from .helpers import wait_for
from .runtime_support import client, factory, make_store
from .store_support import driver_statements, postgres_database, postgres_stores

pytestmark = pytest.mark.postgres


def test_a_store_holds_more_claims_at_once_than_its_pool_has_connections(postgres_url):
    """Each claim used to hold a pooled connection: the 16th waited for the pool's timeout and failed."""
    with postgres_stores(postgres_url, make_store().schema) as (holder, other):
        with ExitStack() as stack:
            held = [stack.enter_context(holder.claim("MyModel", id)) for id in range(1, 41)]
            assert all(held)
            assert holder.engine.pool.checkedout() <= 2  # the claim connection (and a read's)
            assert other.claim_many("MyModel", range(1, 41)) == []
        assert other.claim_many("MyModel", range(1, 41)) == list(range(1, 41))
        other.release_many("MyModel", range(1, 41))


def test_claim_many_leaves_out_what_another_process_holds_and_counts_its_own(postgres_url):
    with postgres_stores(postgres_url, make_store().schema) as (first, second):
        assert second.claim_many("MyModel", [2]) == [2]
        assert first.claim_many("MyModel", [1, 2, 3, 3]) == [1, 3]
        # Counted within a store: the object stays held against others until the last release.
        with first.claim("MyModel", 1) as again:
            assert again
        assert second.claim_many("MyModel", [1]) == []
        first.release_many("MyModel", [1, 3])
        assert second.claim_many("MyModel", [1, 3]) == [1, 3]
        assert first.claim_many("MyModel", [1, 2, 3]) == []


def test_the_claims_of_a_lost_connection_are_taken_again_on_a_new_one(postgres_url):
    with postgres_stores(postgres_url, make_store().schema) as (store, other):
        assert store.claim_many("MyModel", [5]) == [5]
        with other.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            pids = admin.execute(
                sa.text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 5 AND objsubid = 2")
            ).scalars()
            for pid in list(pids):
                admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        # The session went, and its lock with it: another store may claim the object now.
        wait_for(lambda: other.claim_many("MyModel", [5]) == [5], description="the lock released")
        other.release_many("MyModel", [5])
        assert store.claim_many("MyModel", [6]) == [6]  # a new connection, at the first try


class NoopSync(SyncStep):
    observes = "MyModel"

    def sync_record(self, o: Any) -> None:
        pass


class NoopSyncK(NoopSync):
    concurrency = 8


@pytest.mark.parametrize("step", [NoopSync, NoopSyncK], ids=["k1", "k8"])
def test_a_sync_pass_on_postgresql_claims_and_commits_per_drain_not_per_object(postgres_url, step):
    """With K = 1 the actor handles its drain's objects; with K = 8 it hands them to workers, with their
    claims and their rows read afresh: the workers neither claim nor read; the actor commits their status."""
    n = 96
    with postgres_database(postgres_url) as url:
        store = make_store(url)
        objects = client(store)
        for i in range(n):
            objects.MyModel(first_name=f"n{i}", last_name="x").save()
        counts = {"commits": 0}
        table = store.tables.by_model["MyModel"].name

        @sa.event.listens_for(store.engine, "commit")
        def _commit(_conn: Any) -> None:
            counts["commits"] += 1

        accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
        settings = RuntimeSettings(resync_period=3600)
        f = factory(step)
        spec = ChildSpec(
            "NoopSync", SyncStepActor, (f,), interests=SyncStepActor.interests(f, accessor, settings)
        )
        with driver_statements() as statements:
            sup = Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings)
            try:
                wait_for(lambda: not store.pending("MyModel", "sync"), timeout=60, description="all synced")
                wait_for(lambda: sup.ask(IsIdle()), timeout=30)
            finally:
                sup.stop()
                store.close()
        ours = [sql for thread, sql in statements if thread.startswith("SyncStep")]
        counts["claims"] = sum("pg_try_advisory_lock" in sql for sql in ours)
        # The step's reads: its pending queries, and the rows read again after their claims.
        counts["reads"] = sum(f"FROM {table}" in sql and "UPDATE" not in sql for sql in ours)
        # A claim or a read of a worker's own.
        counts["by workers"] = sum(
            thread.startswith("SyncWorker") and ("advisory_lock" in sql or "SELECT" in sql)
            for thread, sql in statements
        )
        # Before: one claim, one read, one commit (and one release) per object. Now one claim
        # statement, one read and two commits per drain (its marks, its status writes); a drain
        # takes up to 32 objects, fewer on a loaded machine (at most 50 ms of work each).
        assert counts["by workers"] == 0, counts
        assert 1 <= counts["claims"] <= n / 4, counts
        assert counts["commits"] <= n / 2, counts
        assert counts["reads"] <= n / 4 + 4, counts
