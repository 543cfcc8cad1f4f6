"""The runtime unchanged over gRPC: the reference examples against a core in another process.

The synchronizers run on the real clock, as in production: a call that fails while the core
is busy or restarting is retried at its backoff's time (on a fake clock nobody advances it
would wait for ever).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.api import RemoteBackend
from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import Synchronizer
from actors.store import Caller

from .helpers import free_port, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "steps_examples"
USER = {"username": "sync", "password": "s3cret", "role": "synchronizer"}


class Core:
    """``python -m actors.main core`` in a subprocess, restartable on the same port and store."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.config = folder / "core.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "name": "core",
                    "store": {"url": "sqlite:///" + str(folder / "core.db")},
                    "api": {"address": self.endpoint, "users": [USER]},
                }
            )
        )
        self.log = folder / "core.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "actors.main", "core", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "ACTORS_HTTP__ADDRESS": "127.0.0.1:0"},
            )
        wait_for(lambda: _answers(self.endpoint), timeout=60, description=f"the core on {self.endpoint}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            assert self.process.wait(timeout=30) == 0, self.log.read_text()
            self.process = None


def _credentials() -> dict[str, str]:
    return {"username": USER["username"], "password": USER["password"]}


def _answers(endpoint: str) -> bool:
    try:
        RemoteBackend(endpoint, **_credentials(), timeout=2).close()
        return True
    except Exception:
        return False


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    server = Core(tmp_path)
    server.start()
    yield server
    server.stop()


def remote_config(core: Core, data_dir: Path) -> Config:
    data = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    data.pop("event_steps_dir")
    data["data_dir"] = str(data_dir)
    data["accessor"] = {"kind": "grpcapi", "endpoint": core.endpoint, **_credentials()}
    return Config.from_dict(data, base_dir=EXAMPLES)


def client(core: Core) -> Any:
    return ModelAccessor(RemoteBackend(core.endpoint, **_credentials()), caller=Caller.CLIENT)


def test_reference_examples_against_a_core_in_another_process(core, tmp_path):
    sync = Synchronizer(remote_config(core, tmp_path)).start()
    models = client(core)
    try:
        assert sync.store is None  # no local store: every read and write goes over gRPC
        assert sync.load_errors == []
        # The synchronizer uploaded its xproto at start: the core serves MyModel now.
        john = wait_for(
            lambda: models.MyModel.objects.filter(first_name="John").first(), description="the pull"
        )
        assert john.no_sync is True
        jane = models.MyModel(first_name="Jane", last_name="Roe")
        jane.save()
        wait_for(
            lambda: models.MyModel.objects.get(id=jane.id).backend_status == "OK", description="the sync"
        )
        synced = models.MyModel.objects.get(id=jane.id)
        assert synced.enacted == synced.updated
        owner = models.Service(name="svc")
        owner.save()
        instance = models.MyServiceInstance(owner=owner, name="si")
        instance.save()
        wait_for(lambda: models.MyServiceInstance.objects.get(id=instance.id).policy_code == 1)
        synced.delete()
        wait_for(lambda: models.MyModel.deleted_objects.filter(id=jane.id).count() == 0, description="purge")
        # The purge is the core's, in another process: the actor counts the delete just after.
        wait_for(lambda: sync.status()["SyncMyModel"].done == 2, description="the delete counted")
        assert sync.status()["SyncMyModel"].failed == 0
    finally:
        sync.stop()
        models.backend.close()


def test_the_synchronizer_resumes_after_the_core_restarts(core, tmp_path):
    sync = Synchronizer(remote_config(core, tmp_path)).start()
    try:
        models = client(core)
        before = models.MyModel(first_name="Before", last_name="Restart")
        before.save()
        wait_for(lambda: models.MyModel.objects.get(id=before.id).backend_status == "OK")
        models.backend.close()
        core.stop()
        core.start()
        # A change made after the restart reaches the sync step through the resumed watch.
        models = client(core)
        after = models.MyModel(first_name="After", last_name="Restart")
        after.save()
        wait_for(
            lambda: models.MyModel.objects.get(id=after.id).backend_status == "OK",
            timeout=60,
            description="a sync after the core came back",
        )
        # Nothing written before was lost.
        assert models.MyModel.objects.get(id=before.id).backend_status == "OK"
        models.backend.close()
    finally:
        sync.stop()
