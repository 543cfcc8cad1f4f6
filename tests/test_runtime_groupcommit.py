"""Group commit in the queue actors: a drain batch's status writes are committed once (message tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from actors.runtime import _queue
from actors.runtime.policy import PolicyActor
from actors.runtime.sync import SyncStepActor
from actors.steps import Policy, SyncStep
from actors.store import Store

from .helpers import wait_for
from .runtime_support import GRAPH, client, factory, make_ctx, make_store, settle


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(_queue, "DRAIN_SECONDS", 60.0)  # a batch is never cut short by a slow machine
    s = make_store("sqlite:///" + str(tmp_path / "store.db"))
    yield s
    s.close()


def commits(store: Store) -> list[int]:
    seen: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _conn: seen.append(1))
    return seen


def committed(store: Store, id: int, column: str) -> Any:
    """``column`` of MyModel ``id`` as a read connection sees it (what is committed)."""
    row = store.get("MyModel", id)
    assert row is not None
    return row[column]


def objects(store: Store, n: int, **values: Any) -> list[int]:
    make = client(store).MyModel
    out = []
    for i in range(n):
        obj = make(first_name=f"f{i}", last_name="x", **values)
        obj.save()
        out.append(obj.id)
    return out


def test_a_drain_batch_commits_its_status_writes_once(store: Store) -> None:
    ids = objects(store, 10, backend_need_delete=True)
    synced, counted = sync_all(store)
    assert sorted(synced) == ids
    assert len(counted) == 1  # one per object before group commit
    assert not store.pending("MyModel", "sync")


def sync_all(store: Store, note: Callable[[Any], Any] = lambda o: None) -> tuple[dict[int, Any], list[int]]:
    """Sync every dirty object with a step taking ``note(o)`` of each; the notes by id, and the commits."""
    notes: dict[int, Any] = {}

    class Step(SyncStep):
        observes = "MyModel"

        def sync_record(self, o: Any) -> None:
            notes[o.id] = note(o)

    counted = commits(store)
    ref = SyncStepActor.start(make_ctx(store, name="Step"), factory(Step))
    try:
        settle(ref)
    finally:
        ref.stop()
    return notes, counted


def marked_when_synced(store: Store) -> tuple[dict[int, Any], list[int]]:
    """:func:`sync_all`, noting the ``backend_need_delete`` each handler saw committed."""
    return sync_all(store, lambda o: committed(store, o.id, "backend_need_delete"))


def test_new_objects_are_marked_before_their_handlers_run_in_one_commit(store: Store) -> None:
    """``backend_need_delete`` is stored before ``sync_record`` (one commit per batch), the statuses after."""
    ids = objects(store, 10)
    marked, counted = marked_when_synced(store)
    assert marked == {id: True for id in ids}
    assert len(counted) == 2  # the marks, then the statuses
    assert not store.pending("MyModel", "sync")


def test_a_policy_drain_batch_commits_once(store: Store) -> None:
    ids = objects(store, 10)
    handled: list[int] = []

    class NoOp(Policy):
        model_name = "MyModel"

        def handle_create(self, o: Any) -> None:
            handled.append(o.id)

    counted = commits(store)
    ref = PolicyActor.start(make_ctx(store, name="policies"), [factory(NoOp)])
    try:
        settle(ref)
    finally:
        ref.stop()
    assert sorted(handled) == ids
    assert len(counted) == 1
    assert not store.pending("MyModel", "policy")


def test_a_client_save_is_stored_at_once_while_a_batch_is_open(store: Store) -> None:
    """The synchronizer's statuses wait for their batch's commit; a client's save does not."""
    first, second = objects(store, 2, backend_need_delete=True)
    [other] = objects(store, 1, backend_need_delete=True, no_sync=True)
    inside, release = threading.Event(), threading.Event()

    class Step(SyncStep):
        observes = "MyModel"

        def sync_record(self, o: Any) -> None:
            if o.id == second:
                inside.set()
                assert release.wait(10)

    ref = SyncStepActor.start(make_ctx(store, name="Step"), factory(Step))
    try:
        assert inside.wait(10)
        assert committed(store, first, "enacted") is None  # synced, its status not committed yet
        obj = client(store).MyModel.objects.get(id=other)
        obj.first_name = "changed"
        obj.save()
        assert committed(store, other, "first_name") == "changed"  # stored when save() returned
        release.set()
        settle(ref)
    finally:
        release.set()
        ref.stop()
    wait_for(lambda: committed(store, first, "enacted") is not None)
    assert committed(store, second, "enacted") is not None


def test_the_next_drains_marks_share_this_drains_commit(store: Store) -> None:
    """With more objects than one drain takes, the marks of the next drain's objects are committed
    with this drain's statuses: one commit per drain (the first drain's marks aside), and every
    object is still marked before its handler runs."""
    ids = objects(store, 40)
    marked, counted = marked_when_synced(store)
    assert marked == {id: True for id in ids}
    # 32 marks; 32 statuses with the next 8 marks; 8 statuses (it was two commits per drain: 4).
    assert len(counted) == 3
    assert not store.pending("MyModel", "sync")


def test_a_long_queue_is_drained_in_larger_batches(store: Store) -> None:
    ids = objects(store, _queue.LONG_QUEUE + 20, backend_need_delete=True)
    synced, counted = sync_all(store)
    assert sorted(synced) == ids
    assert len(counted) == 2  # LONG_QUEUE objects, then the 20 left (32 a drain: 9 commits)


def test_a_batchs_dependencies_are_read_together(store: Store) -> None:
    """Ten Betas linking to five Alphas: the Alphas are read in one SELECT for the batch, not one
    per Beta; a Beta whose Alpha is not enacted waits, the others are synced."""
    c = client(store)
    alphas = []
    for i in range(5):
        alpha = c.Alpha(name=f"a{i}")
        alpha.save()
        alphas.append(alpha)
    ts = store.now()
    for alpha in alphas[:4]:  # enacted, as if synced
        store.update("Alpha", alpha.id, {"enacted": ts + 1, "backend_need_delete": True})
    betas = []
    for i in range(10):
        beta = c.Beta(name=f"b{i}", alpha=alphas[i % 5])
        beta.save()
        betas.append(beta)
    synced: list[int] = []

    class Step(SyncStep):
        observes = "Beta"

        def sync_record(self, o: Any) -> None:
            synced.append(o.id)

    selects: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "m_alpha" in statement:
            selects.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    ref = SyncStepActor.start(make_ctx(store, name="Step", dependency_graph=GRAPH), factory(Step))
    try:
        settle(ref)
    finally:
        ref.stop()
    waiting = {b.id for b in betas if b.alpha_id == alphas[4].id}
    assert sorted(synced) == sorted(b.id for b in betas if b.id not in waiting)
    assert len(selects) == 1  # one per Beta before: 10
