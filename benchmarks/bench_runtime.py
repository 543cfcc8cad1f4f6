"""Runtime benchmark: reaction latency and sync throughput, beside the bare store's ceiling.

Run by hand: ``python benchmarks/bench_runtime.py [--quick]``. On the embedded
default (a SQLite file, WAL), with a no-op sync step:

- reaction latency: from a client's ``save()`` returning to ``sync_record`` being called
  (p50, p99 over sequential saves);
- throughput: objects per second to sync N dirty objects (1k, 10k, 100k) from a
  supervisor's start to the last status write; the ceiling is the bare store doing
  the same reads and status writes in one thread, in the same run.

``--passes``: instead, the no-op sync pass and the no-op policy pass alone (objects
per second from a supervisor's start to the last status write, and the process's CPU
time per object over that span, median of rounds;
``--size N`` objects, 3,000 by default, ``--rounds R``, 5 by default), for
comparing two trees in one run (``PYTHONPATH=<tree> python benchmarks/bench_runtime.py
--passes``, alternated).

The cost of the one ``synced`` log line per object: ``bench_logging.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from typing import Any

from actors.models import load_schema, parse_xproto
from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime._status import success_fields
from actors.runtime.messages import IsIdle
from actors.runtime.policy import PolicyActor
from actors.runtime.sync import SyncStepActor
from actors.steps import Policy, StepFactory, SyncStep
from actors.store import Caller, Store, WriteContext

MODEL = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""


class Seen:
    lock = threading.Lock()
    at: dict[int, float] = {}
    event = threading.Event()
    want: int | None = None


class NoOpSync(SyncStep):
    observes = "MyModel"

    def sync_record(self, o: Any) -> None:
        now = time.perf_counter()
        with Seen.lock:
            Seen.at[o.id] = now
            if Seen.want == o.id:
                Seen.event.set()


class NoOpPolicy(Policy):
    model_name = "MyModel"

    def handle_create(self, o: Any) -> None:
        pass


def new_store(folder: str, name: str) -> Store:
    schema = load_schema([], extra=parse_xproto(MODEL, "bench.xproto"))
    return Store("sqlite:///" + os.path.join(folder, name), schema)


def start(store: Store, policy: bool = False) -> Any:
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings(resync_period=3600)
    if policy:
        factories = [StepFactory(NoOpPolicy, "bench")]
        spec = ChildSpec("policies", PolicyActor, (factories,), interests=PolicyActor.interests(factories))
    else:
        factory = StepFactory(NoOpSync, "bench")
        spec = ChildSpec(
            "NoOpSync",
            SyncStepActor,
            (factory,),
            interests=SyncStepActor.interests(factory, accessor, settings),
        )
    return Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings)


def wait_idle(sup: Any, timeout: float = 3600, poll: float = 0.001) -> None:
    """Until the supervisor says idle twice in a row, asked every ``poll`` seconds.

    Each ask goes to every child actor, between its Drain messages: a pass polls every
    10 ms (its end is known to 10 ms, its actors are asked a tenth as often).
    """
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if sup.ask(IsIdle()) else 0
        if streak >= 2:
            return
        time.sleep(poll)
    raise TimeoutError("supervisor still busy")


def bulk_dirty(store: Store, n: int) -> None:
    """N objects needing sync, inserted in one transaction (setup, not measured)."""
    table = store.tables.by_model["MyModel"]
    now = time.time()
    defaults = {f.column: f.default for f in store.schema.fields("MyModel").values()}
    rows = [
        {
            **defaults,
            "first_name": f"f{i}",
            "last_name": "x",
            "created": now,
            "updated": now,
            "leaf_model_name": "MyModel",
        }
        for i in range(n)
    ]
    with store.engine.begin() as conn:
        conn.execute(table.insert(), rows)


def latency(folder: str, samples: int) -> tuple[float, float]:
    store = new_store(folder, "latency.db")
    sup = start(store)
    client = ModelAccessor(store, caller=Caller.CLIENT)
    delays = []
    try:
        wait_idle(sup)
        for i in range(samples):
            Seen.event.clear()
            obj = client.MyModel(first_name=f"n{i}", last_name="x")
            with Seen.lock:
                Seen.want = None
            obj.save()
            saved = time.perf_counter()
            with Seen.lock:
                Seen.want = obj.id
                if obj.id in Seen.at:
                    Seen.event.set()
            if not Seen.event.wait(10):
                raise TimeoutError("sync_record not called")
            delays.append((Seen.at[obj.id] - saved) * 1000)
            wait_idle(sup)
    finally:
        sup.stop()
        store.close()
    delays.sort()
    return statistics.median(delays), delays[min(len(delays) - 1, int(len(delays) * 0.99))]


def throughput(folder: str, n: int, suffix: str = "", policy: bool = False) -> float:
    return pass_rate(folder, n, suffix, policy)[0]


def pass_rate(folder: str, n: int, suffix: str = "", policy: bool = False) -> tuple[float, float]:
    """Objects per second of one pass over ``n`` dirty objects, and the process's CPU seconds per object
    from the supervisor's start to the last status write (the setup, store and rows, is not counted)."""
    store = new_store(folder, f"throughput-{n}{suffix}{'-policy' if policy else ''}.db")
    bulk_dirty(store, n)
    begin, cpu = time.perf_counter(), time.process_time()
    sup = start(store, policy)
    try:
        wait_idle(sup, poll=0.01)
        elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu
        assert not store.pending("MyModel", "policy" if policy else "sync"), "objects left dirty"
    finally:
        sup.stop()
        store.close()
    return n / elapsed, cpu / n


def ceiling(folder: str, n: int) -> float:
    store = new_store(folder, f"ceiling-{n}.db")
    bulk_dirty(store, n)
    ctx = WriteContext(Caller.SYNCHRONIZER)
    begin = time.perf_counter()
    for row in store.pending("MyModel", "sync"):
        store.update("MyModel", row["id"], {"backend_need_delete": True}, ctx)
        store.update("MyModel", row["id"], success_fields(row, time.time()), ctx)
    elapsed = time.perf_counter() - begin
    store.close()
    return n / elapsed


def passes(folder: str, n: int, rounds: int) -> None:
    """The no-op sync pass and policy pass over ``n`` dirty objects: median obj/s and CPU of ``rounds``.

    The CPU time of the process per object (during the pass) varies much less than the
    rate on a shared machine.
    """
    rates: dict[str, list[float]] = {"sync": [], "policy": []}
    cpu: dict[str, list[float]] = {"sync": [], "policy": []}
    for r in range(rounds):
        for kind in rates:
            rate, seconds = pass_rate(folder, n, f"-{r}", policy=kind == "policy")
            rates[kind].append(rate)
            cpu[kind].append(seconds * 1e6)
    for kind, values in rates.items():
        print(
            f"no-op {kind} pass, {n} objects: {statistics.median(values):.0f} obj/s, "
            f"{statistics.median(cpu[kind]):.0f} us CPU/object (medians of {rounds})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--passes", action="store_true", help="only the no-op sync and policy passes")
    parser.add_argument("--size", type=int, help="objects per pass with --passes (default 3000)")
    parser.add_argument("--rounds", type=int, help="rounds with --passes (default 5)")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    if args.passes:
        size = args.size or (1000 if args.quick else 3000)
        rounds = args.rounds or (1 if args.quick else 5)
        with tempfile.TemporaryDirectory() as folder:
            passes(folder, size, rounds)
        return
    sizes = [1000, 5000] if args.quick else [1000, 10_000, 100_000]
    samples = 50 if args.quick else 500
    with tempfile.TemporaryDirectory() as folder:
        p50, p99 = latency(folder, samples)
        print(f"reaction latency save -> sync_record: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({samples} saves)")
        print(f"{'dirty objects':>14} {'actors obj/s':>13} {'bare store obj/s':>17} {'ratio':>6} {'time':>8}")
        previous: float | None = None
        prev_n = 1
        for n in sizes:
            rate = throughput(folder, n)
            base = ceiling(folder, n)
            seconds = n / rate
            growth = (
                "" if previous is None else f"  (x{seconds / previous:.1f} time for x{n // prev_n} objects)"
            )
            print(f"{n:>14} {rate:>13.0f} {base:>17.0f} {rate / base:>6.2f} {seconds:>7.2f}s{growth}")
            previous, prev_n = seconds, n


if __name__ == "__main__":
    main()
