"""Metrics benchmark: no-op sync throughput with the Prometheus metrics on, beside off, same run.

Run by hand: ``python benchmarks/bench_metrics.py [--quick]``. The runtime benchmark's
throughput set-up (``bench_runtime.py``: N dirty objects on a SQLite file, one no-op
sync step, from the supervisor's start to the last status write), in alternated
rounds:

- off: the runtime's default, ``NULL_METRICS`` (no endpoint served);
- on: a :class:`~actors.observe.Metrics` registry recording every reconcile, queue
  wait and sync lag, served by the HTTP endpoint and scraped once a second for the
  whole run (the scrape-time gauges ask the supervisor for its status and the store
  for its pending objects).

Medians of objects per second and of the process's CPU time per object. Target: on
costs less than 5 % of the throughput.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_runtime import NoOpSync, bulk_dirty, new_store, wait_idle

from actors.logs import configure_logging
from actors.observe import NULL_METRICS, Health, Metrics, NullMetrics, ObserveServer
from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime.messages import GetStatus
from actors.runtime.sync import SyncStepActor
from actors.steps import StepFactory
from actors.store import Caller, Store


def start(store: Store, metrics: NullMetrics) -> Any:
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings(resync_period=3600)
    factory = StepFactory(NoOpSync, "bench")
    spec = ChildSpec(
        "NoOpSync", SyncStepActor, (factory,), interests=SyncStepActor.interests(factory, accessor, settings)
    )
    return Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings, metrics=metrics)


def one_run(folder: str, n: int, on: bool, tag: str) -> tuple[float, float, int]:
    """``(objects/s, CPU µs per object, scrapes)`` of one run."""
    store = new_store(folder, f"metrics-{tag}.db")
    bulk_dirty(store, n)
    metrics: NullMetrics = Metrics() if on else NULL_METRICS
    server: ObserveServer | None = None
    scrapes = 0
    stop = threading.Event()
    sup: Any = None

    def scrape() -> None:
        nonlocal scrapes
        assert server is not None
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
                response.read()
            scrapes += 1

    scraper = threading.Thread(target=scrape, daemon=True)
    begin_cpu = time.process_time()
    begin = time.perf_counter()
    sup = start(store, metrics)
    if isinstance(metrics, Metrics):
        metrics.set_sources(
            children=lambda: sup.ask(GetStatus(), timeout=10).values(),
            objects=lambda: {("MyModel", "pending"): len(store.pending("MyModel", "sync"))},
        )
        server = ObserveServer("127.0.0.1:0", metrics=metrics, health=Health()).start()
        scraper.start()
    try:
        wait_idle(sup)
        elapsed = time.perf_counter() - begin
        cpu = (time.process_time() - begin_cpu) / n * 1e6
        assert not store.pending("MyModel", "sync"), "objects left dirty"
    finally:
        stop.set()
        if server is not None:
            scraper.join()
            server.stop()
        sup.stop()
        store.close()
    if isinstance(metrics, Metrics):
        total = metrics.registry.get_sample_value(
            "actors_reconcile_total", {"step": "NoOpSync", "result": "success"}
        )
        assert total == n, f"counted {total} of {n} reconciles"
    return n / elapsed, cpu, scrapes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    n, rounds = (1000, 2) if args.quick else (3000, 10)
    configure_logging({"version": 1, "root": {"level": "WARNING"}})  # the synced lines are not measured
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    scraped = 0
    with tempfile.TemporaryDirectory() as folder:
        for i in range(rounds):
            for on in (False, True) if i % 2 == 0 else (True, False):
                rate, cpu, scrapes = one_run(folder, n, on, f"{i}-{on}")
                rates[on].append(rate)
                cpus[on].append(cpu)
                scraped += scrapes
    print(f"{n} objects, {rounds} rounds each (alternated), {scraped} scrapes while on")
    print(f"{'':28} {'obj/s (median)':>15} {'CPU us/object (median)':>23}")
    for on, label in ((False, "metrics off (NULL_METRICS)"), (True, "metrics on, scraped 1/s")):
        print(f"{label:28} {statistics.median(rates[on]):>15.0f} {statistics.median(cpus[on]):>23.0f}")
    off, on_rate = statistics.median(rates[False]), statistics.median(rates[True])
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    rate_cost, cpu_cost = (off - on_rate) / off * 100, (cpu_on - cpu_off) / cpu_off * 100
    print(f"cost: {rate_cost:+.1f} % obj/s, {cpu_cost:+.1f} % CPU")


if __name__ == "__main__":
    main()
