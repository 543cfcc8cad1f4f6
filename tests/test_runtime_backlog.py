"""The backlog the API's writes wait for: a step's objects ready to sync, and the main job's sum of them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from actors.api import RemoteBackend
from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import FakeClock, Synchronizer
from actors.runtime.messages import ChildStatus
from actors.runtime.sync import SyncStepActor
from actors.steps import SyncStep
from actors.store import Caller

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


MODELS = """
message MyModel (XOSBase) {
    required string name = 1 [max_length = 64];
}
"""
STEP = """
import os
import time

from synchronizers.new_base.SyncInstanceUsingAnsible import SyncStep
from synchronizers.new_base.modelaccessor import MyModel

HOLD = {hold!r}


class SyncMyModel(SyncStep):
    provides = [MyModel]
    observes = MyModel

    def sync_record(self, o):
        deadline = time.monotonic() + 30
        while os.path.exists(HOLD) and time.monotonic() < deadline:  # a slow backend, until released
            time.sleep(0.01)
"""


def test_the_main_jobs_api_holds_writes_back_while_its_sync_step_is_behind(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mymodel.xproto").write_text(MODELS)
    (tmp_path / "steps").mkdir()
    hold = tmp_path / "hold"
    hold.touch()
    (tmp_path / "steps" / "sync_mymodel.py").write_text(STEP.format(hold=str(hold)))
    config = Config.from_dict(
        {
            "name": "behind",
            "models_dir": str(tmp_path / "models"),
            "steps_dir": str(tmp_path / "steps"),
            "data_dir": str(tmp_path / "data"),
            "http": {"enabled": False},
            "api": {
                "address": "127.0.0.1:0",
                "users": [{"username": "admin", "password": "pw", "role": "admin"}],
                "backlog_limit": 1,
                "backlog_wait": 30,
            },
        }
    )
    sync = Synchronizer(config, serve_api=True).start()
    backend = RemoteBackend(sync.api.address, username="admin", password="pw", timeout=60)
    try:
        MyModel = ModelAccessor(backend, caller=Caller.CLIENT).MyModel
        MyModel(name="a").save()
        MyModel(name="b").save()
        wait_for(lambda: sync._backlog() >= 1)  # b waits while a syncs (as the API sees it)
        writer = threading.Thread(target=lambda: MyModel(name="c").save(), daemon=True)
        writer.start()
        gate = sync.api.service.gate
        wait_for(lambda: gate.waiting == 1, description="the third write held back")
        assert MyModel.objects.count() == 2  # reads answer meanwhile
        hold.unlink()
        writer.join(30)
        assert not writer.is_alive()
        assert MyModel.objects.count() == 3
        assert gate.held >= 1  # the third; b too, if a was still queued when b came
    finally:
        hold.unlink(missing_ok=True)
        backend.close()
        sync.stop()
