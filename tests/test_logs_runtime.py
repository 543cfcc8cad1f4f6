"""The framework's own log lines go through the configured logging: embedded, main job, core."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from actors import logs
from actors.config import Config
from actors.models import load_schema
from actors.orm import ModelAccessor
from actors.runtime import FakeClock, Synchronizer
from actors.store import Caller, Store
from tests.helpers import free_port, wait_for
from tests.main_support import MainProcess, error_line, run_main

MODELS = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""

# The step fails on last_name "bad" and exits on "exit"; it also logs through the
# original's logger, as the reference's steps do.
STEP = """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import MyModel
from xosconfig import Config
from multistructlog import create_logger

log = create_logger(Config().get('logging'))

class SyncMyModel(SyncStep):
    observes = MyModel

    def sync_record(self, o):
        log.info("sync'ing object", object=str(o), **o.tologdict())
        if o.last_name == "bad":
            raise RuntimeError("backend refused " + o.first_name)
        if o.last_name == "exit":
            raise SystemExit(3)
"""

POLICY = """
from synchronizers.new_base.policy import Policy

class MyModelPolicy(Policy):
    model_name = "MyModel"

    def handle_create(self, model):
        if model.first_name == "bad":
            raise ValueError("no policy for bad ones")
"""

PULL = """
from synchronizers.new_base.pullstep import PullStep

class PullNothing(PullStep):
    def pull_records(self):
        raise ConnectionError("backend down")
"""


@pytest.fixture(autouse=True)
def isolated_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the root logger and structlog back, and forget the applied dictConfig, after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(logs._setup, "_applied", logs._events._NOTHING)
    # Levels an earlier test left on the framework's loggers would change what is logged here.
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "actors" or name.startswith("actors.")):
            logger.setLevel(logging.NOTSET)
            logger.disabled = False
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def project(folder: Path) -> Path:
    """A synchronizer folder: MyModel, its sync step and policy, and a broken step file."""
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "mymodel.xproto").write_text(MODELS)
    (folder / "steps").mkdir()
    (folder / "steps" / "sync_mymodel.py").write_text(STEP)
    (folder / "steps" / "broken.py").write_text("import no_such_module\n")
    (folder / "policies").mkdir()
    (folder / "policies" / "mymodel_policy.py").write_text(POLICY)
    (folder / "pull_steps").mkdir()
    (folder / "pull_steps" / "pull_nothing.py").write_text(PULL)
    return folder


def json_file_logging(path: Path, level: str = "INFO") -> dict[str, Any]:
    """A dictConfig sending everything at ``level`` and above to ``path``, one JSON object a line."""
    return {
        "version": 1,
        "formatters": {"json": {"()": "actors.logs.JSONFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "json", "filename": str(path)}},
        "root": {"level": level, "handlers": ["file"]},
    }


def config_data(folder: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "logsync",
        "models_dir": str(folder / "models"),
        "steps_dir": str(folder / "steps"),
        "model_policies_dir": str(folder / "policies"),
        "pull_steps_dir": str(folder / "pull_steps"),
        "data_dir": str(folder / "data"),
        **extra,
    }


def lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a log file (every line must be one)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def find(path: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in lines(path) if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


def client(sync: Synchronizer) -> Any:
    return ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)


def test_each_sync_policy_failure_restart_and_state_change_is_one_json_line(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    out = tmp_path / "log.jsonl"
    data = config_data(
        folder, backoff_disabled=True, runtime={"max_restarts": 1}, logging=json_file_logging(out, "DEBUG")
    )
    clock = FakeClock()
    sync = Synchronizer(Config.from_dict(data), clock=clock, configure_logging=True).start()
    try:
        models = client(sync)
        good = models.MyModel(first_name="good", last_name="ok")
        good.save()
        bad = models.MyModel(first_name="bad", last_name="bad")
        bad.save()
        step = {"step": "SyncMyModel", "model": "MyModel"}
        [synced] = wait_for(lambda: find(out, "synced", id=good.id, **step))
        failed = wait_for(lambda: find(out, "sync failed", id=bad.id, **step))[0]
        [applied] = wait_for(lambda: find(out, "policy applied", step="policies", id=good.id))
        policy_failed = wait_for(lambda: find(out, "policy failed", step="policies", id=bad.id))[0]
        pull_failed = wait_for(lambda: find(out, "pull failed", step="PullNothing"))[0]
        doomed = models.MyModel(first_name="doomed", last_name="exit")
        doomed.save()
        restarting = wait_for(lambda: find(out, "restarting child", step="SyncMyModel"))[0]
        wait_for(lambda: find(out, "state changed", step="SyncMyModel", state="restarting"))
        clock.advance(restarting["delay"])  # the replacement re-reads the dirty objects and exits again
        [gone] = wait_for(lambda: find(out, "child failed for good", step="SyncMyModel"))
        wait_for(lambda: find(out, "state changed", step="SyncMyModel", state="failed"))
    finally:
        sync.stop()
    assert (synced["level"], synced["logger"], synced["deleted"]) == ("info", "actors.runtime.sync", False)
    assert failed["level"] == "warning" and failed["error"] == "backend refused bad"
    assert "Traceback (most recent call last)" in failed["exception"]  # DEBUG is on: the traceback
    assert (applied["model"], applied["method"], applied["level"]) == ("MyModel", "handle_create", "info")
    assert policy_failed["model"] == "MyModel" and policy_failed["error"] == "no policy for bad ones"
    assert "Traceback" in policy_failed["exception"]
    assert pull_failed["error"] == "backend down" and pull_failed["logger"] == "actors.runtime.pull"
    assert "SystemExit" in restarting["error"] and gone["level"] == "error"
    assert find(out, "sync failed", id=doomed.id, **step)
    assert find(out, "actor crashed", step="SyncMyModel")
    assert find(out, "state changed", step="SyncMyModel", state="running", previous="starting")
    [started] = find(out, "synchronizer started")
    assert started["children"] == ["SyncMyModel", "policies", "PullNothing"] and started["load_errors"] == 1
    [broken] = find(out, "step not loaded")
    assert broken["path"].endswith("broken.py") and "no_such_module" in broken["error"]
    # the steps' own logger (multistructlog.create_logger) writes to the same file
    assert find(out, "sync'ing object", logger="logsync", pk=good.id)


def test_a_failure_carries_its_traceback_only_when_debug_is_on(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    out = tmp_path / "log.jsonl"
    data = config_data(folder, logging=json_file_logging(out, "INFO"))
    sync = Synchronizer(Config.from_dict(data), clock=FakeClock(), configure_logging=True).start()
    try:
        bad = client(sync).MyModel(first_name="bad", last_name="bad")
        bad.save()
        failed = wait_for(lambda: find(out, "sync failed", id=bad.id))[0]
    finally:
        sync.stop()
    assert failed["error"] == "backend refused bad" and "exception" not in failed
    assert not find(out, "state changed", state="starting")  # transient states: DEBUG only


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_embedded_synchronizer_leaves_the_host_logging_alone(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    # a step that applies no logging configuration of its own
    step = STEP.replace("create_logger(Config().get('logging'))", "create_logger()")
    (folder / "steps" / "sync_mymodel.py").write_text(step)
    out = tmp_path / "log.jsonl"
    host = ListHandler()
    root = logging.getLogger()
    root.addHandler(host)
    root.setLevel(logging.INFO)
    before = root.handlers[:]
    sync = Synchronizer(Config.from_dict(config_data(folder, logging=json_file_logging(out)))).start()
    try:
        good = client(sync).MyModel(first_name="good", last_name="ok")
        good.save()
        wait_for(lambda: any(r.msg.get("event") == "synced" for r in host.records if isinstance(r.msg, dict)))
        assert root.handlers == before and not out.exists()
    finally:
        sync.stop()
    [record] = [r for r in host.records if isinstance(r.msg, dict) and r.msg.get("event") == "synced"]
    assert record.name == "actors.runtime.sync" and record.msg["id"] == good.id
    assert record.getMessage() == f"synced step=SyncMyModel model=MyModel id={good.id} deleted=False"


# -- the main job and core, in subprocesses ---------------------------------------------------
def dirty_object(folder: Path) -> None:
    """One MyModel needing sync in the synchronizer's store, written before the main job starts."""
    schema = load_schema([str(folder / "models")])
    store = Store("sqlite:///" + str(folder / "data" / "actors.db"), schema)
    try:
        ModelAccessor(store, caller=Caller.CLIENT).MyModel(first_name="first", last_name="ok").save()
    finally:
        store.close()


def test_the_main_job_sends_every_line_to_the_configured_json_file(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    (folder / "data").mkdir()
    dirty_object(folder)
    out = tmp_path / "log.jsonl"
    data = config_data(folder, logging=json_file_logging(out), api={"address": f"127.0.0.1:{free_port()}"})
    data["feefie"] = {}  # a key of the original framework: warned about when the file loads
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    console = tmp_path / "console.txt"
    main = MainProcess(["-C", str(config)], console)
    try:
        wait_for(lambda: find(out, "synced", model="MyModel", id=1), timeout=60)
        wait_for(lambda: find(out, "running", logger="actors.main"), timeout=30)
    finally:
        assert main.stop(signal.SIGTERM) == 0
    assert find(out, "state changed", step="SyncMyModel", state="running")
    [first] = lines(out)[:1]
    assert first["logger"] == "actors.config" and "feefie" in first["event"]  # logged first, in JSON
    assert find(out, "synced", step="SyncMyModel", model="MyModel", id=1, level="info")
    assert find(out, "step not loaded") and find(out, "synchronizer started") and find(out, "API serving")
    assert find(out, "sync'ing object", logger="logsync", pk=1)
    assert find(out, "stopped", logger="actors.main")
    assert console.read_text() == ""  # nothing on stdout or stderr: the file has it all


def test_the_main_job_without_a_logging_key_writes_readable_lines_on_stderr(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    (folder / "data").mkdir()
    dirty_object(folder)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_data(folder, api={"enabled": False})))
    main = MainProcess(["-C", str(config)], tmp_path / "console.txt")
    try:
        main.wait_for_line("synced", timeout=60)
    finally:
        assert main.stop(signal.SIGTERM) == 0
    [line] = [line for line in main.text().splitlines() if " synced " in line]
    assert "[info     ]" in line and "[actors.runtime.sync]" in line
    assert "step=SyncMyModel" in line and "model=MyModel" in line and "id=1" in line
    assert not line.startswith("{")


def test_an_invalid_logging_dictconfig_is_one_line_naming_it(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    bad = {"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}, "root": {"handlers": ["h"]}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_data(folder, logging=bad)))
    done = run_main(["-C", str(config)])
    assert done.returncode == 2
    line = error_line(done.stderr)
    assert line.startswith(f"error: {config}: logging: invalid dictConfig") and "h" in line


def test_core_sends_its_lines_to_the_configured_json_file(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    out = tmp_path / "core.jsonl"
    data = config_data(folder, logging=json_file_logging(out), api={"address": f"127.0.0.1:{free_port()}"})
    data["feefie"] = {}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    console = tmp_path / "console.txt"
    core = MainProcess(["core", "--config", str(config)], console)
    try:
        wait_for(lambda: find(out, "API serving", logger="actors.api"), timeout=60)
    finally:
        assert core.stop(signal.SIGTERM) == 0
    assert "feefie" in lines(out)[0]["event"]
    assert "API serving" not in console.read_text()
