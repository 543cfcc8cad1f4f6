"""``why(model, id)`` for each reason an object waits, the status tree, and both over HTTP from a main job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.config import Config
from actors.runtime import FakeClock, Synchronizer
from actors.runtime._inspect import status_tree, why
from tests.helpers import wait_for
from tests.main_support import EXAMPLES, MainProcess, environment, write_config
from tests.store_support import postgres_database
from tests.test_observe import client, get

MODELS = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
message Alpha (XOSBase) {
    optional string name = 1;
}
message Beta (XOSBase) {
    optional string name = 1;
    required manytoone alpha->Alpha:betas = 2;
}
message Gamma (XOSBase) {
    optional string name = 1;
}
message Slow (XOSBase) {
    optional string name = 1;
}
"""

STEPS = {
    "sync_mymodel.py": """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import MyModel

class SyncMyModel(SyncStep):
    observes = MyModel

    def sync_record(self, o):
        if o.last_name == "bad":
            raise RuntimeError("backend refused " + o.first_name)
""",
    "sync_alpha.py": """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import Alpha, Beta

class SyncAlpha(SyncStep):
    observes = Alpha

    def sync_record(self, o):
        if o.name == "bad":
            raise RuntimeError("alpha refused")

class SyncBeta(SyncStep):
    observes = Beta

    def sync_record(self, o):
        pass
""",
    "sync_slow.py": """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import Slow

class SyncSlow(SyncStep):
    observes = Slow

    def sync_record(self, o):
        pass
""",
}

POLICY = """
from synchronizers.new_base.policy import Policy

class GammaPolicy(Policy):
    model_name = "Gamma"

    def handle_create(self, model):
        raise ValueError("no policy for " + model.name)
"""


def project(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "models.xproto").write_text(MODELS)
    (folder / "steps").mkdir()
    for name, text in STEPS.items():
        (folder / "steps" / name).write_text(text)
    (folder / "policies").mkdir()
    (folder / "policies" / "gamma.py").write_text(POLICY)
    return folder


def config_data(folder: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "why",
        "models_dir": str(folder / "models"),
        "steps_dir": str(folder / "steps"),
        "model_policies_dir": str(folder / "policies"),
        "data_dir": str(folder / "data"),
        "dependency_graph": {"Beta": [["Alpha", "alpha", "betas"]]},
        # One token, then one each 1000 s: the second Slow stays queued (the clock is fake).
        "runtime": {"steps": {"SyncSlow": {"rate_limit": 0.001, "rate_burst": 1}}},
        **extra,
    }


@pytest.fixture
def running(tmp_path: Path) -> Any:
    clock = FakeClock()
    data = config_data(project(tmp_path / "sync"), http={"address": "127.0.0.1:0"})
    sync = Synchronizer(Config.from_dict(data), clock=clock).start()
    yield sync, clock
    sync.stop()


def test_why_for_each_reason(running: Any) -> None:
    sync, _clock = running
    models = client(sync)
    good = models.MyModel(first_name="good", last_name="ok")
    good.save()
    bad = models.MyModel(first_name="bad", last_name="bad")
    bad.save()
    quiet = models.MyModel(first_name="John", last_name="Doe", no_sync=True)
    quiet.save()
    alpha = models.Alpha(name="bad")
    alpha.save()
    beta = models.Beta(name="b", alpha=alpha)
    beta.save()
    gamma = models.Gamma(name="g")
    gamma.save()
    first, second = models.Slow(name="1"), models.Slow(name="2")
    first.save()
    second.save()

    assert wait_for(lambda: why(sync, "MyModel", good.id).reason == "enacted")
    # The first failure retries at once; the second waits 600 s.
    backoff = wait_for(lambda: (w := why(sync, "MyModel", bad.id)).reason == "backoff" and w)
    assert backoff.step == "SyncMyModel" and backoff.attempts == 2
    assert backoff.until is not None and backoff.until == pytest.approx(sync.clock.now() + 600, abs=1)
    assert backoff.errors == ["backend refused bad"]
    assert "tried again in 600 s" in backoff.message

    assert why(sync, "MyModel", quiet.id).reason == "no_sync"

    blocked = wait_for(lambda: (w := why(sync, "Beta", beta.id)).reason == "blocked" and w)
    assert blocked.blocked_by == ["Alpha", alpha.id] and blocked.step == "SyncBeta"
    assert "waits for the sync of Alpha" in blocked.message and "alpha refused" in blocked.message

    # Waiting for its policy from the start; the policy's failure reaches the answer once its
    # status is committed (with the drain batch's other writes).
    waiting = wait_for(
        lambda: (
            (w := why(sync, "Gamma", gamma.id)).reason == "waiting_for_policy"
            and "no policy for g" in w.message
            and w
        )
    )
    assert waiting.step == "policies"

    wait_for(lambda: why(sync, "Slow", first.id).reason == "enacted")
    queued = why(sync, "Slow", second.id)
    assert queued.reason == "queued" and queued.step == "SyncSlow"

    with pytest.raises(LookupError, match="MyModel 9999 not found"):
        why(sync, "MyModel", 9999)
    with pytest.raises(LookupError, match="no model named Nope"):
        why(sync, "Nope", 1)


def test_status_tree_and_why_over_http(running: Any) -> None:
    sync, _clock = running
    bad = client(sync).MyModel(first_name="bad", last_name="bad")
    bad.save()
    wait_for(lambda: why(sync, "MyModel", bad.id).reason == "backoff")
    tree = status_tree(sync)
    assert tree.state == "running" and tree.name == "why"
    names = [c.name for c in tree.children]
    assert names[0] == "changefeed" and {"SyncMyModel", "SyncAlpha", "SyncBeta", "policies"} <= set(names)
    mine = next(c for c in tree.children if c.name == "SyncMyModel")
    assert mine.failed == 2 and mine.queue_depth == 1 and mine.state == "running"
    assert sync.http is not None
    code, kind, text = get(f"{sync.http.url}/status")
    assert code == 200 and kind == "application/json"
    served = json.loads(text)
    assert [c["name"] for c in served["children"]] == names
    code, _, text = get(f"{sync.http.url}/why/MyModel/{bad.id}")
    answer = json.loads(text)
    assert code == 200 and answer["reason"] == "backoff" and answer["attempts"] == 2
    assert get(f"{sync.http.url}/why/MyModel/x")[0] == 400
    assert get(f"{sync.http.url}/why/MyModel")[0] == 400
    assert json.loads(get(f"{sync.http.url}/why/Nope/1")[2]) == {"error": "no model named Nope"}


def test_step_down(tmp_path: Path) -> None:
    folder = project(tmp_path / "sync")
    (folder / "steps" / "sync_slow.py").write_text(
        STEPS["sync_slow.py"].replace("        pass", "        raise SystemExit(1)")
    )
    clock = FakeClock()
    data = config_data(folder)
    data["runtime"].update(max_restarts=1, restart_backoff=1)
    sync = Synchronizer(Config.from_dict(data), clock=clock).start()
    try:
        slow = client(sync).Slow(name="s")
        slow.save()
        wait_for(lambda: sync.status()["SyncSlow"].state == "restarting")
        clock.advance(1)
        down = wait_for(lambda: (w := why(sync, "Slow", slow.id)).reason == "step_down" and w)
        assert down.step == "SyncSlow" and "failed" in down.message
    finally:
        sync.stop()


def test_an_object_of_another_replica(tmp_path: Path, postgres_url: str) -> None:
    with postgres_database(postgres_url) as url:
        folder = project(tmp_path / "sync")
        syncs = [
            Synchronizer(
                Config.from_dict(
                    config_data(folder, data_dir=str(tmp_path / f"data{i}"), store={"url": url})
                ),
                clock=FakeClock(),
            )
            for i in range(2)
        ]
        for sync in syncs:
            sync.start()
        try:
            for sync in syncs:
                backend: Any = sync.model_accessor.backend
                wait_for(lambda b=backend: len(b.replicas("SyncMyModel")[1]) == 2, description="two replicas")
            models = client(syncs[0])
            objects = [models.MyModel(first_name=f"n{i}", last_name="bad") for i in range(6)]
            for obj in objects:
                obj.save()
            reasons = [[why(sync, "MyModel", obj.id).reason for sync in syncs] for obj in objects]
        finally:
            for sync in syncs:
                sync.stop()
    for pair in reasons:  # each object belongs to one of them; the other says so
        assert pair.count("other_replica") == 1, reasons


def cli(*args: str) -> Any:
    """``python -m actors.main ARGS --json``: its JSON output (the command must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "actors.main", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_why_from_a_running_main_job_and_the_quick_start(tmp_path: Path) -> None:
    """The quick start: the example's dev user creates a MyModel from the CLI; the log and /why show it."""
    example = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    api = {**example["api"], "address": "127.0.0.1:0"}
    config = write_config(tmp_path, api=api)
    job = MainProcess(["-C", str(config)], tmp_path / "main.log")
    try:
        job.wait_for_line("HTTP endpoint serving")
        text = job.text()
        http = re.search(r"url=(http://127\.0\.0\.1:\d+)/metrics", text)
        api_line = re.search(r"API serving\s.*address=(127\.0\.0\.1:\d+)", text)
        assert http and api_line, text
        url, endpoint = http.group(1), api_line.group(1)
        login = ("--endpoint", endpoint, "--username", "dev", "--password", "dev")
        ada = cli("objects", "create", "MyModel", "first_name=Ada", "last_name=Lovelace", *login)["id"]
        job.wait_for_line(f"id={ada}")  # SyncMyModel's "sync'ing object" and "synced"
        answer = wait_for(
            lambda: (w := json.loads(get(f"{url}/why/MyModel/{ada}")[2]))["reason"] == "enacted" and w
        )
        assert answer["model"] == "MyModel"
        # The pull step's John Doe rows: no_sync, by design of the reference.
        [doe, *_] = cli("objects", "list", "MyModel", "first_name=John", "--endpoint", endpoint)
        assert json.loads(get(f"{url}/why/MyModel/{doe['id']}")[2])["reason"] == "no_sync"
        status = json.loads(get(f"{url}/status")[2])
        step = next(c for c in status["children"] if c["name"] == "SyncMyModel")
        assert step["done"] >= 1 and step["state"] == "running"
    finally:
        assert job.stop() == 0
