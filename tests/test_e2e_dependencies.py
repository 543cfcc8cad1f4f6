"""End to end: three steps over three linked models, the dependency graph, broken step files."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import types
import uuid
from pathlib import Path

import pytest

from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import FakeClock, Synchronizer
from actors.store import Caller
from tests.helpers import wait_for

MODELS = """
message Alpha (XOSBase) { optional string name = 1; }
message Beta (XOSBase) { optional string name = 1; required manytoone alpha->Alpha:betas = 2; }
message Gamma (XOSBase) { optional string name = 1; required manytoone beta->Beta:gammas = 2; }
"""

STEP = """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import {model}
import {journal} as journal

class Sync{model}(SyncStep):
    observes = {model}
    provides = [{model}]

    def sync_record(self, o):
        journal.record("sync", o)

    def delete_record(self, o):
        journal.record("delete", o)
"""


class Journal(types.ModuleType):
    """What the steps did, shared with the test through ``sys.modules`` under a unique name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, int]] = []
        self.failing: set[tuple[str, str]] = set()

    def record(self, kind, o):
        with self.lock:
            self.calls.append((kind, o.model_name, o.id))
        if (o.model_name, o.name) in self.failing:
            raise RuntimeError("backend refused " + o.model_name)


@pytest.fixture
def journal():
    name = f"journal_{uuid.uuid4().hex}"
    sys.modules[name] = module = Journal(name)
    yield module
    del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path, journal: Journal) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "abc.xproto").write_text(MODELS)
    steps = tmp_path / "steps"
    steps.mkdir()
    for model in ("Alpha", "Beta", "Gamma"):
        (steps / f"sync_{model.lower()}.py").write_text(STEP.format(model=model, journal=journal.__name__))
    (steps / "broken_import.py").write_text("import does_not_exist\n")
    (steps / "broken_init.py").write_text(
        textwrap.dedent(
            """
            from synchronizers.new_base.syncstep import SyncStep

            class SyncBroken(SyncStep):
                observes = "Alpha"

                def __init__(self, *args, **kwargs):
                    raise ValueError("no credentials")
            """
        )
    )
    graph = {"Beta": [["Alpha", "alpha", "betas"]], "Gamma": [["Beta", "beta", "gammas"]]}
    (tmp_path / "deps.json").write_text(json.dumps(graph))
    return tmp_path


def start(project: Path) -> Synchronizer:
    config = Config.from_dict(
        {
            "name": "abc",
            "models_dir": "models",
            "steps_dir": "steps",
            "dependency_graph": "deps.json",
            "data_dir": "data",
        },
        base_dir=project,
    )
    return Synchronizer(config, clock=FakeClock()).start()


def test_three_steps_sync_in_dependency_order_and_delete_in_reverse(project, journal):
    sync = start(project)
    try:
        errors = {(e.cls, Path(e.path).name): e.message for e in sync.load_errors}
        assert "does_not_exist" in errors[(None, "broken_import.py")]
        assert errors[("SyncBroken", "broken_init.py")] == "ValueError: no credentials"
        assert {"SyncAlpha", "SyncBeta", "SyncGamma"} <= set(sync.status())
        c = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
        # Created leaf first: each waits for what it depends on, whatever the order of arrival.
        journal.failing.add(("Alpha", "a"))
        a = c.Alpha(name="a")
        a.save()
        b = c.Beta(name="b", alpha=a)
        b.save()
        g = c.Gamma(name="g", beta=b)
        g.save()
        wait_for(lambda: c.Beta.objects.get(id=b.id).backend_code == 2, description="Beta blocked")
        wait_for(lambda: len(journal.calls) == 2, description="Alpha failed, retried at once, failed")
        assert sync.wait_idle()
        assert c.Beta.objects.get(id=b.id).backend_status == (
            f"Failed due to error in model Alpha id {a.id}: backend refused Alpha"
        )
        assert [m for _, m, _ in journal.calls] == ["Alpha", "Alpha"]
        journal.failing.clear()
        sync.clock.advance(600)  # type: ignore[attr-defined]
        wait_for(lambda: c.Gamma.objects.get(id=g.id).backend_status == "OK", description="the whole chain")
        assert [m for k, m, _ in journal.calls if k == "sync"] == ["Alpha", "Alpha", "Alpha", "Beta", "Gamma"]
        assert sync.wait_idle()
    finally:
        sync.stop()
    # Deleted together (here while the synchronizer is down): dependents are deleted first.
    c = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
    for obj in (a, b, g):
        obj.delete()
    sync = start(project)
    try:
        wait_for(lambda: c.Alpha.deleted_objects.count() == 0, description="everything purged")
        assert [m for k, m, _ in journal.calls if k == "delete"] == ["Gamma", "Beta", "Alpha"]
        assert c.Gamma.deleted_objects.count() == c.Beta.deleted_objects.count() == 0
    finally:
        sync.stop()


def test_a_dependent_waits_while_its_dependency_is_stuck_in_a_slow_step(project, journal):
    sync = start(project)
    gate = threading.Event()
    original = journal.record

    def slow_alpha(kind, o):
        if o.model_name == "Alpha":
            assert gate.wait(10)
        original(kind, o)

    journal.record = slow_alpha
    try:
        c = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
        a = c.Alpha(name="slow")
        a.save()
        b = c.Beta(name="dependent", alpha=a)
        b.save()
        wait_for(
            lambda: sync.status()["SyncAlpha"].busy_for is not None, description="Alpha's step to be busy"
        )
        assert sync.status()["SyncBeta"].queue_depth == 1  # waiting, not syncing, and not blocking its actor
        assert ("sync", "Beta", b.id) not in journal.calls
        gate.set()
        wait_for(lambda: c.Beta.objects.get(id=b.id).backend_status == "OK", description="the dependent Beta")
        assert [m for _, m, _ in journal.calls] == ["Alpha", "Beta"]
    finally:
        gate.set()
        sync.stop()
