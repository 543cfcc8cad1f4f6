"""Replicas benchmark: 3 synchronizer processes against 1 on one PostgreSQL, an I/O-bound step.

Run by hand: ``python benchmarks/bench_replicas.py [--objects 1500] [--sleep 0.02] [--url URL]``.
Without ``--url`` it starts a PostgreSQL of its own (``scripts/local_postgres.py``).

- *Throughput*: N dirty objects; R replica processes (1, then 3), each a supervisor with
  one sync step whose ``sync_record`` sleeps ``--sleep`` seconds (the backend call; a
  step handles one object at a time, so one replica's floor is N x sleep). Timed from
  the go signal (every replica started and seeing the others) to the last object
  enacted; also measured: the replicas' CPU time over that span per object (their own
  work, whatever else loads the machine), and objects synced more than once.
- *Visibility*: a store writes ``--own-writes`` updates of its own, then another store
  writes one object; the time until the first store's subscribers get that notice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from actors.models import load_schema, parse_xproto
from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime.sync import SyncStepActor
from actors.steps import StepFactory, SyncStep
from actors.store import Caller, Store

ROOT = Path(__file__).resolve().parent.parent
MODEL = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""


def new_store(url: str) -> Store:
    return Store(url, load_schema([], extra=parse_xproto(MODEL, "bench.xproto")))


@contextlib.contextmanager
def fresh_schema(server_url: str) -> Iterator[str]:
    """A URL whose tables live in a new PostgreSQL schema of their own, dropped afterwards."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = "bench_" + uuid.uuid4().hex[:12]
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        url = sa.make_url(server_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


# -- one replica (this script with --worker) ----------------------------------------------------
def worker(url: str, log_path: str, seconds: float, replicas: int) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # stdout is a pipe nobody reads after "ready": log lines go to /dev/null instead.
    ready = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    class SlowSync(SyncStep):
        observes = "MyModel"

        def sync_record(self, o: Any) -> None:
            time.sleep(seconds)
            os.write(fd, f"{o.id}\n".encode())

    store = new_store(url)
    store.join("SlowSync")  # as the step's actor will: wait until every replica is there
    while len(store.replicas("SlowSync")[1]) < replicas:
        time.sleep(0.01)
    os.write(ready, b"ready\n")
    sys.stdin.readline()  # go
    cpu = time.process_time()
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings()
    factory = StepFactory(SlowSync, "bench")
    spec = ChildSpec(
        "SlowSync", SyncStepActor, (factory,), interests=SyncStepActor.interests(factory, accessor, settings)
    )
    sup = Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings)
    sys.stdin.readline()  # stop
    os.write(ready, f"{time.process_time() - cpu}\n".encode())  # CPU seconds from go to stop
    sup.stop()
    store.close()


# -- the measures ------------------------------------------------------------------------------
def insert_dirty(store: Store, n: int) -> None:
    first = store.create("MyModel", {"first_name": "n", "last_name": "x"})
    table = store.tables.by_model["MyModel"]
    columns = ", ".join(f'"{c.name}"' for c in table.c if c.name != "id")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {table.name}, "
            f"generate_series(1, {n - 1}) WHERE id = {first['id']}"
        )


def throughput(
    server_url: str, replicas: int, n: int, seconds: float, folder: str
) -> tuple[float, float, int]:
    """Seconds from go to the last object enacted, the replicas' CPU seconds, objects synced twice."""
    with fresh_schema(server_url) as url:
        store = new_store(url)
        insert_dirty(store, n)
        logs = [Path(folder) / f"r{replicas}-{uuid.uuid4().hex[:8]}.log" for _ in range(replicas)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", url, str(log), str(seconds), str(replicas)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for log in logs
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                while p.stdout.readline().strip() != "ready":  # log lines come first
                    assert p.poll() is None, "a replica died"
            begin = time.perf_counter()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            while store.pending("MyModel", "sync", limit=1):
                time.sleep(0.02)
            elapsed = time.perf_counter() - begin
        finally:
            for p in procs:
                with contextlib.suppress(OSError):
                    assert p.stdin is not None
                    p.stdin.write("stop\n")
                    p.stdin.flush()
            cpu = 0.0
            for p in procs:
                assert p.stdout is not None
                cpu += float(p.stdout.readline() or 0)
                p.wait(60)
            store.close()
    synced = Counter(line for log in logs for line in log.read_text().split())
    return elapsed, cpu, sum(1 for count in synced.values() if count > 1)


def visibility(server_url: str, own_writes: int) -> tuple[float, float]:
    """Seconds for the own writes; from the other store's write call to its notice here."""
    with fresh_schema(server_url) as url:
        me, other = new_store(url), new_store(url)
        got = threading.Event()
        seen_at: list[float] = []
        target: list[int] = []

        def on_notice(notice: Any) -> None:
            if target and notice.id == target[0]:
                seen_at.append(time.perf_counter())
                got.set()

        me.subscribe(on_notice)
        obj = me.create("MyModel", {"first_name": "mine", "last_name": "x"})
        begin = time.perf_counter()
        for i in range(own_writes):
            me.update("MyModel", obj["id"], {"first_name": f"n{i}"})
        writing = time.perf_counter() - begin
        target.append(obj["id"] + 1)  # the next id: the other store's object
        called = time.perf_counter()
        other.create("MyModel", {"first_name": "theirs", "last_name": "x"})
        seen = seen_at[0] - called if got.wait(30) else float("inf")
        me.close()
        other.close()
    return writing, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1500)
    parser.add_argument("--sleep", type=float, default=0.02, help="seconds per sync_record")
    parser.add_argument("--own-writes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of 1 and 3 replicas, taken in turn")
    parser.add_argument("--url", help="a PostgreSQL server (SQLAlchemy URL); default: start one")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, log, seconds, replicas = args.worker
        worker(url, log, float(seconds), int(replicas))
        return
    with contextlib.ExitStack() as stack:
        server_url = args.url
        if server_url is None:
            sys.path.append(str(ROOT / "scripts"))
            from local_postgres import LocalPostgres

            server_url = stack.enter_context(LocalPostgres()).url
        print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        floor = args.objects * args.sleep
        print(
            f"{args.objects} objects, sync_record {args.sleep * 1000:.0f} ms"
            f" (1 replica's floor {floor:.1f} s)"
        )
        print(
            f"{'run':>4} {'replicas':>9} {'time':>8} {'objects/s':>10}"
            f" {'CPU ms/object':>14} {'synced twice':>13}"
        )
        ratios = []
        for run in range(1, args.repeat + 1):
            times = {}
            for replicas in (1, 3):
                elapsed, cpu, twice = throughput(server_url, replicas, args.objects, args.sleep, folder)
                times[replicas] = elapsed
                print(
                    f"{run:>4} {replicas:>9} {elapsed:>7.1f}s {args.objects / elapsed:>10.1f}"
                    f" {cpu * 1000 / args.objects:>14.1f} {twice:>13}"
                )
            ratios.append(times[1] / times[3])
            print(f"{run:>4} speed-up 3 vs 1: {ratios[-1]:.2f}x")
        print(f"median speed-up 3 vs 1: {statistics.median(ratios):.2f}x (target 2.5x)")
        writing, seen = visibility(server_url, args.own_writes)
        print(
            f"after {args.own_writes} own writes ({args.own_writes / writing:.0f}/s): "
            f"another store's write seen {seen * 1000:.1f} ms after its call (target < 1 s)"
        )


if __name__ == "__main__":
    main()
