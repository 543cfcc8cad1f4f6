"""Concurrency per sync step: an I/O-bound step (``sync_record`` sleeps 20 ms) at K = 1, 8, 32, 128.

Run by hand: ``python benchmarks/bench_concurrency.py [--quick] [--sizes 1000 10000]
[--postgres URL]``. For each store (a SQLite file in WAL mode, and PostgreSQL when a URL is
given), each N and each K, N dirty objects are inserted before a supervisor starts with one
sync step (``runtime.step_concurrency`` = K); the time runs from its start to the last
status write. Beside each rate: the floor's rate N / (N x 20 ms / K), the ratio, and the
process's CPU time per object over the same span (user + system, every thread: what the
framework costs, less sensitive than the rate to other processes on the host).

*independent*: N objects of one model. *dependent*: N/2 ``Parent`` and N/2 ``Child``
objects, each child linked to its own parent and the graph saying ``Child`` depends on
``Parent``; the benchmark checks that every child's ``sync_record`` started after its
parent's had returned. *store ceiling*: the bare store doing the same two status writes
per object (``backend_need_delete``, then the success fields) in one thread, no actors
and no waiting: no K can go past it while every status write is its own transaction.
K = 1 at N = 10,000 takes 200 s and more; it is skipped and its
rate taken from N = 1,000 (marked "from 1,000").
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from typing import Any

from actors.models import load_schema, parse_xproto
from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime._status import success_fields
from actors.runtime.messages import IsIdle
from actors.runtime.sync import SyncStepActor
from actors.steps import StepFactory, SyncStep
from actors.store import Caller, Store, WriteContext

MODELS = """
message Parent (XOSBase) {
    optional string name = 1;
}
message Child (XOSBase) {
    optional string name = 1;
    required manytoone parent->Parent:children = 2;
}
"""
GRAPH = {"Child": [["Parent", "parent", "children"]]}
WAIT = 0.020


class Seen:
    lock = threading.Lock()
    started: dict[tuple[str, int], float] = {}
    ended: dict[tuple[str, int], float] = {}
    parent_of: dict[int, int] = {}


class IOBoundSync(SyncStep):
    """A step that waits 20 ms per object, as a REST call or a device manager would."""

    observes = ["Parent", "Child"]

    def sync_record(self, o: Any) -> None:
        key = (o.model_name, o.id)
        begin = time.perf_counter()
        time.sleep(WAIT)
        with Seen.lock:
            Seen.started[key] = begin
            Seen.ended[key] = time.perf_counter()


def new_store(url: str) -> Store:
    schema = load_schema([], extra=parse_xproto(MODELS, "bench.xproto"))
    store = Store(url, schema)
    if url.startswith("postgresql"):
        with store.engine.begin() as conn:
            for model in ("Child", "Parent"):
                conn.execute(store.tables.by_model[model].delete())
    return store


def insert(store: Store, model: str, rows: list[dict[str, Any]]) -> list[int]:
    """Rows needing sync, inserted in one transaction (setup, not measured); their ids."""
    table = store.tables.by_model[model]
    now = time.time()
    defaults = {f.column: f.default for f in store.schema.fields(model).values()}
    full = [{**defaults, **row, "created": now, "updated": now, "leaf_model_name": model} for row in rows]
    with store.engine.begin() as conn:
        result = conn.execute(table.insert().returning(table.c.id), full)
        return [r[0] for r in result]


def run(url: str, n: int, k: int, dependent: bool) -> tuple[float, float]:
    """Objects/s from the supervisor's start to the last status write, and CPU seconds per object."""
    store = new_store(url)
    Seen.started, Seen.ended, Seen.parent_of = {}, {}, {}
    if dependent:
        parents = insert(store, "Parent", [{"name": f"p{i}"} for i in range(n // 2)])
        link = store.schema.fields("Child")["parent"].column
        children = insert(store, "Child", [{"name": f"c{i}", link: p} for i, p in enumerate(parents)])
        Seen.parent_of = dict(zip(children, parents, strict=True))
    else:
        insert(store, "Parent", [{"name": f"p{i}"} for i in range(n)])
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings(resync_period=3600, step_concurrency=k, dependency_graph=GRAPH)
    factory = StepFactory(IOBoundSync, "bench")
    spec = ChildSpec(
        "IOBoundSync",
        SyncStepActor,
        (factory,),
        interests=SyncStepActor.interests(factory, accessor, settings),
    )
    begin, cpu = time.perf_counter(), time.process_time()
    sup = Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings)
    try:
        wait_idle(sup)
        elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu
        for model in ("Parent", "Child"):
            assert not store.pending(model, "sync"), f"{model} objects left dirty"
        assert len(Seen.ended) == n, f"{len(Seen.ended)} of {n} synced"
        for child, parent in Seen.parent_of.items():
            if Seen.started[("Child", child)] < Seen.ended[("Parent", parent)]:
                raise AssertionError(f"Child {child} started before its Parent {parent} was synced")
    finally:
        sup.stop()
        store.close()
    return n / elapsed, cpu / n


def ceiling(url: str, n: int) -> float:
    """Objects/s of the bare store doing each object's two status writes, one thread."""
    store = new_store(url)
    insert(store, "Parent", [{"name": f"p{i}"} for i in range(n)])
    ctx = WriteContext(Caller.SYNCHRONIZER)
    begin = time.perf_counter()
    for row in store.pending("Parent", "sync"):
        store.update("Parent", row["id"], {"backend_need_delete": True}, ctx)
        store.update("Parent", row["id"], success_fields(row, time.time()), ctx)
    elapsed = time.perf_counter() - begin
    store.close()
    return n / elapsed


def wait_idle(sup: Any, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if sup.ask(IsIdle()) else 0
        if streak >= 2:
            return
        time.sleep(0.005)
    raise TimeoutError("supervisor still busy")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="N = 200 and 1,000 only, for a smoke run")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--ks", type=int, nargs="*", default=[1, 8, 32, 128])
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to run the same work on")
    parser.add_argument("--kinds", nargs="*", default=["independent", "dependent"])
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL runs")
    args = parser.parse_args()
    sizes = args.sizes or ([200, 1000] if args.quick else [1000, 10_000])
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        stores = [] if args.no_sqlite else [("sqlite", None)]
        stores += [("postgresql", args.postgres)] if args.postgres else []
        header = (
            f"{'store':>10} {'work':>11} {'N':>6} {'K':>4} {'obj/s':>7} {'floor obj/s':>11} {'ratio':>6}"
            f" {'cpu us/obj':>10} {'load':>5}"
        )
        print(header)
        for name, pg in stores:
            for n in sizes:
                rate = ceiling(pg or "sqlite:///" + os.path.join(folder, f"ceiling-{n}.db"), n)
                print(f"{name:>10} {'ceiling':>11} {n:>6} {'-':>4} {rate:>7.0f}", flush=True)
            for kind in args.kinds:
                small: dict[int, tuple[float, float]] = {}
                for n in sizes:
                    for k in args.ks:
                        floor = k / WAIT
                        if k == 1 and n >= 10_000 and small.get(1):
                            (rate, cpu), note = small[1], "  (from 1,000)"
                        else:
                            url = pg or "sqlite:///" + os.path.join(folder, f"{kind}-{n}-{k}.db")
                            (rate, cpu), note = run(url, n, k, kind == "dependent"), ""
                        if n == min(sizes):
                            small[k] = (rate, cpu)
                        print(
                            f"{name:>10} {kind:>11} {n:>6} {k:>4} {rate:>7.0f} {floor:>11.0f}"
                            f" {rate / floor:>6.2f} {cpu * 1e6:>10.0f} {os.getloadavg()[0]:>5.1f}{note}",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
