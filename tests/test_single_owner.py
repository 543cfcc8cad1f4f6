"""One owner per SQLite store: a second main job, ``core`` or Synchronizer on the same file is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter
from pathlib import Path

import pytest

from actors.config import load_config
from actors.models import load_schema
from actors.runtime import Synchronizer
from actors.store import Store, StoreInUse
from tests.helpers import wait_for
from tests.main_support import EXAMPLES, MainProcess, error_line, run_main, write_config
from tests.store_support import postgres_database

RECORDING_STEP = """
from synchronizers.new_base.SyncInstanceUsingAnsible import SyncStep
from synchronizers.new_base.modelaccessor import MyModel
import os


class SyncMyModel(SyncStep):
    provides = [MyModel]
    observes = MyModel

    def sync_record(self, o):
        with open({record!r}, "a") as out:
            out.write(f"{{os.getpid()}} {{o.id}}\\n")
"""


def _db(folder: Path) -> Path:
    return folder / "data" / "actors.db"


def _url(folder: Path) -> str:
    return "sqlite:///" + str(_db(folder))


def test_a_second_main_job_on_the_same_file_exits_2_naming_the_owner(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = MainProcess(["-C", str(config)], tmp_path / "first.log")
    try:
        first.wait_for_line("running")
        second = run_main(["-C", str(config)])
        assert second.returncode == 2, second.stderr
        line = error_line(second.stderr)
        assert line.startswith(f"error: store {_url(tmp_path)} is in use by pid {first.pid} (python")
        assert "-m actors.main" in line and f"on host {socket.gethostname()}" in line
        assert "one process per SQLite file" in line
        assert first.process.poll() is None  # the owner is left alone
        info = json.loads(Path(str(_db(tmp_path)) + ".lock").read_text())
        assert info["pid"] == first.pid
    finally:
        assert first.stop() == 0, first.text()


def test_core_and_main_job_on_one_file_exclude_each_other(tmp_path: Path, free_port: int) -> None:
    config = write_config(tmp_path)
    core = MainProcess(
        ["core", "--store-url", _url(tmp_path), "--address", f"127.0.0.1:{free_port}"], tmp_path / "core.log"
    )
    try:
        core.wait_for_line("actors core: serving")
        main = run_main(["-C", str(config)])
        assert main.returncode == 2, main.stderr
        assert f"is in use by pid {core.pid} (python -m actors.main core" in error_line(main.stderr)
    finally:
        assert core.stop() == 0, core.text()
    # And the other way round: a running main job keeps a core off its file.
    main_job = MainProcess(["-C", str(config)], tmp_path / "main.log")
    try:
        main_job.wait_for_line("running")
        second = run_main(["core", "--store-url", _url(tmp_path), "--address", "127.0.0.1:0"])
        assert second.returncode == 2, second.stderr
        line = error_line(second.stderr)
        assert line.startswith(f"actors core: store {_url(tmp_path)} is in use by pid {main_job.pid}")
    finally:
        assert main_job.stop() == 0, main_job.text()


def test_a_killed_owner_never_blocks_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = MainProcess(["-C", str(config)], tmp_path / "first.log")
    try:
        first.wait_for_line("running")
    finally:
        first.stop(signal.SIGKILL)
    assert Path(str(_db(tmp_path)) + ".lock").exists()  # left behind, and stale
    again = MainProcess(["-C", str(config)], tmp_path / "again.log")
    try:
        again.wait_for_line("running")
    finally:
        assert again.stop() == 0, again.text()
    assert "in use" not in again.text()


def test_two_main_jobs_started_together_never_sync_an_object_twice(tmp_path: Path) -> None:
    """The original report: two main jobs on one file both synced 289 of 300 objects."""
    steps = tmp_path / "steps"
    steps.mkdir()
    record = tmp_path / "synced.txt"
    (steps / "sync_mymodel.py").write_text(RECORDING_STEP.format(record=str(record)))
    config = write_config(tmp_path, steps_dir=str(steps), pull_steps_dir=None, model_policies_dir=None)
    schema = load_schema([str(EXAMPLES / "models")])
    store = Store(_url(tmp_path), schema)
    try:
        for i in range(300):
            store.create("MyModel", {"first_name": f"n{i}", "last_name": "x"})
    finally:
        store.close()
    jobs = [MainProcess(["-C", str(config)], tmp_path / f"job{n}.log") for n in range(2)]
    try:
        refused = wait_for(
            lambda: [job for job in jobs if job.process.poll() is not None],
            timeout=60,
            description="one of the two main jobs to give up",
        )
        assert len(refused) == 1
        loser = refused[0]
        (winner,) = [job for job in jobs if job is not loser]
        assert loser.process.returncode == 2, loser.text()
        assert f"is in use by pid {winner.pid}" in loser.text()
        wait_for(
            lambda: record.exists() and len(record.read_text().splitlines()) >= 300,
            timeout=60,
            description="300 objects synced",
        )
        assert winner.stop() == 0, winner.text()
    finally:
        for job in jobs:
            job.kill()
    synced = [line.split() for line in record.read_text().splitlines()]
    assert {pid for pid, _ in synced} == {str(winner.pid)}
    twice = [id for id, n in Counter(id for _, id in synced).items() if n > 1]
    assert not twice and len(synced) == 300


def test_an_embedded_synchronizer_on_a_file_already_owned_is_refused(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    first = Synchronizer(config).start()
    try:
        second = Synchronizer(config)
        with pytest.raises(StoreInUse) as info:
            second.start()
        message = str(info.value)
        assert f"is in use by pid {os.getpid()} (this process)" in message
        assert "actors.db" in message and "\n" not in message
        second.stop()
        # Plain stores (scripts, inspection) are not owners and may still open the file.
        assert first.store is not None
        reader = Store(first.store.url, first.store.schema)
        reader.close()
    finally:
        first.stop()
    # Once the owner has stopped, the file is free.
    again = Synchronizer(config).start()
    again.stop()


def test_exclusive_stores_on_postgresql_share_the_database(postgres_url: str) -> None:
    """Replicas on PostgreSQL keep sharing work: no owner lock there."""
    schema = load_schema([])
    with postgres_database(postgres_url) as url:
        first = Store(url, schema, exclusive=True)
        try:
            second = Store(url, schema, exclusive=True)
            second.close()
        finally:
            first.close()
