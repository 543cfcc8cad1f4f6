"""The backlog the API's writes wait for: a step's objects ready to sync, and the main job's sum of them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors.runtime import FakeClock, Synchronizer
from actors.runtime.messages import ChildStatus
from actors.runtime.sync import SyncStepActor
from actors.steps import SyncStep

from .helpers import wait_for
from .runtime_support import client, factory, make_ctx, make_store, settle


class _Fails(SyncStep):
    observes = "MyModel"

    def sync_record(self, o: Any) -> None:
        raise RuntimeError("backend down")


def test_objects_in_backoff_are_in_the_depth_but_not_queued() -> None:
    store = make_store()
    c = client(store)
    for i in range(3):
        c.MyModel(first_name=f"n{i}", last_name="x").save()
    ctx = make_ctx(store, name="Step", clock=FakeClock())  # the retries stay in the future
    ref = SyncStepActor.start(ctx, factory(_Fails))
    try:
        wait_for(lambda: ctx.state.failed >= 3)
        settle(ref)
        assert (ctx.state.queue_depth, ctx.state.queued) == (3, 0)  # all three wait for a retry
    finally:
        ref.stop()
        store.close()


def _status(name: str, kind: str, queued: int) -> ChildStatus:
    return ChildStatus(name=name, kind=kind, state="running", queue_depth=queued + 7, queued=queued)


def test_the_synchronizer_backlog_sums_its_sync_steps_and_is_reused_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync = Synchronizer.__new__(Synchronizer)  # only the backlog's state: no config, nothing started
    sync._backlog_lock = threading.Lock()
    sync._backlog_seen = (0, float("-inf"))
    calls = []
    statuses = {
        "SyncA": _status("SyncA", "sync", 5),
        "SyncB": _status("SyncB", "sync", 2),
        "policies": _status("policies", "policy", 100),
        "Events": _status("Events", "event", 100),
    }
    monkeypatch.setattr(sync, "status", lambda: calls.append(1) or statuses)
    assert sync._backlog() == 7
    assert sync._backlog() == 7
    assert len(calls) == 1  # the second read reuses the first
