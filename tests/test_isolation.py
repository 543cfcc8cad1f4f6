"""Hard crashes in step code: the crash record that names the step, and steps in a child process.

Real processes throughout: the isolated step runs in a spawned child; the step that
ends the whole process runs in a main job subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.config import ConfigError, load_config
from actors.orm import ModelAccessor
from actors.runtime import Synchronizer
from actors.runtime._isolation import CrashRecords, report_previous_crashes
from actors.store import Caller

from .helpers import wait_for

MODELS = """
message Thing (XOSBase) {
    optional string name = 1;
    optional string note = 2;
}
message Other (XOSBase) {
    optional string name = 1;
}
"""

#: Thing objects named "exit" call os._exit(3), "segv" crash in native code, "kill" are SIGKILLed,
#: "raise" raise, "hang" hang.
CRASHING_STEP = """
import ctypes
import os
import signal
import time

from xossynchronizer.steps.syncstep import SyncStep


class SyncThing(SyncStep):
    observes = "Thing"
    {isolation}

    def sync_record(self, o):
        if o.name == "exit":
            os._exit(3)
        if o.name == "segv":
            ctypes.string_at(0)
        if o.name == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if o.name == "raise":
            raise ValueError("no such thing")
        if o.name == "hang":
            with open(o.note, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(300)
        o.note = "synced %s in %d" % (o.name, os.getpid())
        o.save(update_fields=["note"])

    def after_sync_save(self, o):
        # It sees the object sync_record changed (as in a thread), not a fresh copy.
        o.note = o.note + " +after"
        o.save(update_fields=["note"])

    def delete_record(self, o):
        pass
"""

OTHER_STEP = """
from xossynchronizer.steps.syncstep import SyncStep


class SyncOther(SyncStep):
    observes = "Other"

    def sync_record(self, o):
        pass

    def delete_record(self, o):
        pass
"""

POLICY = """
import os

from xossynchronizer.model_policies.policy import Policy


class OtherPolicy(Policy):
    model_name = "Other"
    isolation = "process"

    def handle_create(self, o):
        o.name = o.name + " policed in %d" % os.getpid()
        o.save(update_fields=["name"])
"""

PULL = """
import os

from xossynchronizer.pull_steps.pullstep import PullStep


class PullThings(PullStep):
    isolation = "process"

    def pull_records(self):
        Thing = self.model_accessor.get_model_class("Thing")
        name = "pulled in %d" % os.getpid()
        if not Thing.objects.filter(name=name):
            Thing(name=name).save()
"""


def write_synchronizer(
    tmp_path: Path, *, isolation: str | None, policy: bool = False, pull: bool = False, **extra: Any
) -> Path:
    """A synchronizer folder with the crashing step and an ordinary one; returns its config file."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "things.xproto").write_text(MODELS)
    steps = tmp_path / "steps"
    steps.mkdir()
    line = f"isolation = {isolation!r}" if isolation else ""
    (steps / "sync_thing.py").write_text(textwrap.dedent(CRASHING_STEP).replace("{isolation}", line))
    (steps / "sync_other.py").write_text(OTHER_STEP)
    data: dict[str, Any] = {
        "name": "crashy",
        "models_dir": "models",
        "steps_dir": "steps",
        "data_dir": "data",
        "api": {"enabled": False},
        "runtime": {"restart_backoff": 0.05, "max_restarts": 10, "resync_period": 1},
        **extra,
    }
    if policy:
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "other_policy.py").write_text(POLICY)
        data["model_policies_dir"] = "policies"
    if pull:
        (tmp_path / "pull").mkdir()
        (tmp_path / "pull" / "pull_things.py").write_text(PULL)
        data["pull_steps_dir"] = "pull"
        data["runtime"]["pull_period"] = 0.5
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _client(sync: Synchronizer) -> ModelAccessor:
    return ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)


def _row(sync: Synchronizer, model: str, name: str) -> dict[str, Any]:
    objs = list(sync.model_accessor.get_model_class(model).objects.filter(name=name))
    return dict(objs[0]._data)


def test_a_step_that_exits_or_crashes_in_its_process_fails_alone(tmp_path: Path) -> None:
    sync = Synchronizer(load_config(write_synchronizer(tmp_path, isolation="process", policy=True))).start()
    try:
        client = _client(sync)
        Thing = client.get_model_class("Thing")
        Other = client.get_model_class("Other")
        for name in ("exit", "segv", "kill", "raise", "fine"):
            Thing(name=name).save()
        Other(name="o1").save()

        def failed(name: str, words: str) -> bool:
            row = _row(sync, "Thing", name)
            return row["backend_code"] == 2 and words in str(row["backend_status"])

        wait_for(lambda: failed("exit", "exited with code 3 during sync_record"), timeout=60)
        wait_for(lambda: failed("segv", "was killed by signal SIGSEGV during sync_record"), timeout=60)
        wait_for(lambda: failed("kill", "was killed by signal SIGKILL during sync_record"), timeout=60)
        wait_for(lambda: failed("raise", "no such thing"), timeout=60)
        fine = wait_for(lambda: str((r := _row(sync, "Thing", "fine"))["note"]).endswith(" +after") and r, 60)
        assert fine["backend_status"] == "OK"
        child_pid = int(fine["note"].removeprefix("synced fine in ").removesuffix(" +after"))
        assert child_pid != os.getpid()  # sync_record ran in the child, its save reached our store
        # A changed object is synced again from its new row.
        again = Thing.objects.get(id=fine["id"])
        again.name = "fine again"
        again.save()
        wait_for(lambda: _row(sync, "Thing", "fine again")["note"].startswith("synced fine again in "), 60)
        # The other step and the isolated policy kept working; the synchronizer is up.
        other = sync.model_accessor.get_model_class("Other")
        policed = wait_for(lambda: "policed in" in (o := other.objects.get(id=1)).name and o, timeout=60)
        assert not policed.name.endswith(f"policed in {os.getpid()}")  # the policy ran in its child
        wait_for(lambda: other.objects.get(id=1).backend_status == "OK", timeout=30)
        status = sync.status()
        assert status["SyncThing"].restarts >= 2
        assert status["SyncThing"].state == "running"
        assert status["SyncOther"].restarts == 0
        # A new object is synced by the restarted step's new child.
        Thing(name="later").save()
        wait_for(lambda: _row(sync, "Thing", "later")["backend_status"] == "OK", timeout=60)
    finally:
        sync.stop()


def test_a_hung_isolated_step_is_killed_at_its_deadline(tmp_path: Path) -> None:
    config = write_synchronizer(tmp_path, isolation="process")
    step = tmp_path / "steps" / "sync_thing.py"
    step.write_text(step.read_text().replace('observes = "Thing"', 'observes = "Thing"\n    deadline = 4'))
    sync = Synchronizer(load_config(config)).start()
    try:
        pid_file = tmp_path / "hung.pid"
        _client(sync).get_model_class("Thing")(name="hang", note=str(pid_file)).save()
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60))
        wait_for(lambda: sync.status()["SyncThing"].restarts >= 1, timeout=60)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(gone, timeout=30, description="the hung step process killed")
        assert "past its deadline" in str(sync.status()["SyncThing"].last_error)
    finally:
        sync.stop()


def test_an_isolated_pull_step_writes_through_the_parent(tmp_path: Path) -> None:
    sync = Synchronizer(load_config(write_synchronizer(tmp_path, isolation=None, pull=True))).start()
    try:
        Thing = sync.model_accessor.get_model_class("Thing")
        pulled = wait_for(lambda: list(Thing.objects.all()), timeout=60)
        assert pulled[0].name.startswith("pulled in ") and pulled[0].name != f"pulled in {os.getpid()}"
        # Then the (thread) sync step synced it: the parent saw the child's write.
        wait_for(lambda: Thing.objects.get(id=pulled[0].id).backend_status == "OK", timeout=30)
    finally:
        sync.stop()


def test_os_exit_ends_the_main_job_and_the_next_start_names_the_step(tmp_path: Path) -> None:
    config = write_synchronizer(tmp_path, isolation=None)
    seed = Synchronizer(load_config(config))
    thing = _client(seed).get_model_class("Thing")(name="exit")
    thing.save()
    seed.stop()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ACTORS_HTTP__ADDRESS": "127.0.0.1:0"}
    command = [sys.executable, "-m", "actors.main", "-C", str(config)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 3, first.stdout + first.stderr
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 3, second.stdout + second.stderr
    output = second.stdout + second.stderr
    lines = [line for line in output.splitlines() if "the previous run ended inside a step" in line]
    assert len(lines) == 1, output
    assert "step=SyncThing" in lines[0] and "call=sync_record" in lines[0]
    assert "model=Thing" in lines[0] and f"id={thing.id}" in lines[0]
    assert "the previous run ended" not in first.stdout + first.stderr


def test_crash_records_of_a_live_or_cleanly_stopped_process_are_not_reported(tmp_path: Path) -> None:
    live = CrashRecords(tmp_path, "s")
    live.enter("Step", "sync_record", ())
    stopped = CrashRecords(tmp_path, "s")
    stopped.enter("Step", "sync_record", ())
    stopped.close()
    other = CrashRecords(tmp_path, "t")
    assert report_previous_crashes(other) == []
    assert CrashRecords(tmp_path, "s").previous() == []  # the live one holds its lock
    live.leave("Step")
    live.enter("Step2", "pull_records", ())
    os.close(live._fd)  # what the OS does when the process dies: the lock goes
    live._fd = None
    assert [r["step"] for r in CrashRecords(tmp_path, "s").previous()] == ["Step2"]


def test_isolation_values_are_checked(tmp_path: Path) -> None:
    config = write_synchronizer(tmp_path, isolation="elsewhere")
    sync = Synchronizer(load_config(config))
    try:
        sync.child_specs()
        assert [str(e) for e in sync.load_errors] == [
            f"{tmp_path / 'steps' / 'sync_thing.py'}: SyncThing: isolation must be 'thread' or 'process', "
            "got 'elsewhere'"
        ]
    finally:
        sync.stop()
    data = yaml.safe_load(config.read_text())
    data["runtime"]["isolation"] = "vm"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"runtime\.isolation"):
        load_config(config)
