"""End to end on the embedded store: the reference document's examples, verbatim, in a Synchronizer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import FakeClock, Synchronizer
from actors.store import Caller
from tests.helpers import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "steps_examples"


def examples_config(data_dir: Path, *, events: bool = False, **extra: Any) -> Config:
    data = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    data["data_dir"] = str(data_dir)
    if not events:
        data.pop("event_steps_dir", None)
    data.update(extra)
    return Config.from_dict(data, base_dir=EXAMPLES)


@pytest.fixture
def synchronizer(tmp_path):
    sync = Synchronizer(examples_config(tmp_path), clock=FakeClock()).start()
    yield sync
    sync.stop()


def client_of(sync: Synchronizer) -> ModelAccessor:
    """What another program sees: the same store, writing as a client."""
    return ModelAccessor(
        sync.model_accessor.backend, caller=Caller.CLIENT, wrappers=sync.model_accessor.wrappers
    )


def test_reference_examples_run_verbatim(synchronizer):
    sync = synchronizer
    assert sync.load_errors == []
    status = sync.status()
    assert {"SyncMyModel", "policies", "MyModelPullStep", "changefeed"} <= set(status)
    assert all(s.state == "running" for s in status.values())
    assert sync.wait_idle()
    models = client_of(sync)
    # The pull step ran once at start: John Doe, with no_sync so no sync step runs for him.
    john = wait_for(
        lambda: models.MyModel.objects.filter(first_name="John").first(), description="the pulled object"
    )
    assert john.no_sync is True and john.enacted is None
    assert john.full_name == "John Doe"  # the convenience wrapper, on every object the ORM returns
    # A client creates an object: the sync step runs for it at once.
    jane = models.MyModel(first_name="Jane", last_name="Roe")
    jane.save()
    wait_for(
        lambda: models.MyModel.objects.get(id=jane.id).backend_status == "OK", description="the sync step"
    )
    synced = models.MyModel.objects.get(id=jane.id)
    assert synced.enacted == synced.updated and synced.backend_code == 1
    # The model policy runs for a MyServiceInstance.
    owner = models.Service(name="svc")
    owner.save()
    instance = models.MyServiceInstance(owner=owner, name="si")
    instance.save()
    wait_for(
        lambda: models.MyServiceInstance.objects.get(id=instance.id).policy_code == 1,
        description="the policy",
    )
    assert models.MyServiceInstance.objects.get(id=instance.id).policy_status == "done"
    assert [si.id for si in owner.service_instances.all()] == [instance.id]
    # Deleting runs delete_record, then the row is purged.
    synced.delete()
    wait_for(lambda: sync.model_accessor.backend.get("MyModel", jane.id) is None, description="the purge")
    assert sync.status()["SyncMyModel"].done == 2
    assert sync.wait_idle()


def test_the_pull_step_runs_on_its_period(synchronizer):
    sync = synchronizer
    models = client_of(sync)
    wait_for(lambda: models.MyModel.objects.count() == 1, description="the first pull")
    assert sync.wait_idle()
    sync.clock.advance(59)  # type: ignore[attr-defined]
    assert sync.wait_idle()
    assert models.MyModel.objects.count() == 1
    sync.clock.advance(1)  # type: ignore[attr-defined]
    wait_for(lambda: models.MyModel.objects.count() == 2, description="the second pull, 60 s later")


def test_two_synchronizers_side_by_side_do_not_interfere(tmp_path):
    first = Synchronizer(examples_config(tmp_path / "one"), clock=FakeClock()).start()
    second = Synchronizer(examples_config(tmp_path / "two", name="other"), clock=FakeClock()).start()
    try:
        a, b = client_of(first), client_of(second)
        assert a.MyModel is not b.MyModel
        x = a.MyModel(first_name="Only", last_name="First")
        x.save()
        wait_for(
            lambda: a.MyModel.objects.get(id=x.id).backend_status == "OK", description="the first one's sync"
        )
        assert b.MyModel.objects.filter(first_name="Only").count() == 0
        assert first.wait_idle() and second.wait_idle()
        assert first.status()["SyncMyModel"].done == 1
        assert second.status()["SyncMyModel"].done == 0
        assert first.store is not None and second.store is not None
        assert first.store.url != second.store.url
    finally:
        first.stop()
        second.stop()


def test_a_restarted_synchronizer_keeps_its_data_and_resumes(tmp_path):
    config = examples_config(tmp_path)
    sync = Synchronizer(config, clock=FakeClock()).start()
    models = client_of(sync)
    obj = models.MyModel(first_name="Keep", last_name="Me")
    obj.save()
    wait_for(lambda: models.MyModel.objects.get(id=obj.id).backend_status == "OK")
    sync.stop()
    # Written while the synchronizer is down: picked up on the next start.
    again = Synchronizer(config, clock=FakeClock())
    later = client_of(again)
    stored = later.MyModel.objects.get(id=obj.id)
    stored.last_name = "Changed"
    stored.save()
    again.start()
    try:
        wait_for(
            lambda: (
                later.MyModel.objects.get(id=obj.id).enacted == later.MyModel.objects.get(id=obj.id).updated
            )
        )
    finally:
        again.stop()


def _write_config(tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    for key in ("models_dir", "steps_dir", "pull_steps_dir", "model_policies_dir"):
        data[key] = str(EXAMPLES / data[key])
    data.pop("event_steps_dir")
    data["data_dir"] = str(tmp_path / "data")
    data["api"] = {"enabled": False}
    data.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_main_job_stops_gracefully_on_sigterm(tmp_path):
    config = _write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.main", "-C", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "ACTORS_HTTP__ADDRESS": "127.0.0.1:0"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "running" in line and "mysynchronizer" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        lines.append(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines)
    assert proc.returncode == 0, text
    assert "stopped" in text
    assert (tmp_path / "data" / "actors.db").exists()


def test_main_job_bad_config_exits_2_with_one_line(tmp_path):
    config = _write_config(tmp_path, steps_dir=str(tmp_path / "missing"))
    result = subprocess.run(
        [sys.executable, "-m", "actors.main", "-C", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "steps_dir" in result.stderr and "Traceback" not in result.stderr
