"""Metrics benchmark: no-op sync throughput with the Prometheus metrics on, beside off, same run.

Run by hand: ``python benchmarks/bench_metrics.py [--quick]``. The runtime benchmark's
throughput set-up (``bench_runtime.py``: N dirty objects on a SQLite file, one no-op
sync step, from the supervisor's start to the last status write), in alternated
rounds:

- off: the runtime's default, ``NULL_METRICS`` (no endpoint served);
- recorded: a :class:`~actors.observe.Metrics` registry recording every reconcile,
  queue wait and sync lag, served by the HTTP endpoint, not scraped;
- scraped: the same, scraped once a second for the whole run (the scrape-time gauges
  ask the supervisor for its status and the store for its pending objects), far more
  often than Prometheus' usual 15 s to 1 min.

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


MODES = ("off", "recorded", "scraped")


def one_run(folder: str, n: int, mode: str, tag: str) -> tuple[float, float, int]:
    """``(objects/s, CPU µs per object, scrapes)`` of one run in ``mode`` (one of :data:`MODES`)."""
    on = mode != "off"
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
        if mode == "scraped":
            scraper.start()
    try:
        wait_idle(sup)
        elapsed = time.perf_counter() - begin
        cpu = (time.process_time() - begin_cpu) / n * 1e6
        assert not store.pending("MyModel", "sync"), "objects left dirty"
    finally:
        stop.set()
        if scraper.is_alive():
            scraper.join()
        if server is not None:
            server.stop()
        sup.stop()
        store.close()
    if isinstance(metrics, Metrics):
        total = metrics.registry.get_sample_value(
            "actors_reconcile_total", {"step": "NoOpSync", "result": "success"}
        )
        assert total == n, f"counted {total} of {n} reconciles"
    return n / elapsed, cpu, scrapes


def recording_cost(n: int = 100_000) -> float:
    """CPU µs of the metric calls one synced object makes (queue wait, reconcile with time and lag)."""
    metrics = Metrics()
    begin = time.process_time()
    for _ in range(n):
        started = time.monotonic()
        metrics.queued("NoOpSync", started)
        metrics.reconciled("NoOpSync", "success", started, 0.5)
    return (time.process_time() - begin) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    n, rounds = (1000, 3) if args.quick else (3000, 12)
    configure_logging({"version": 1, "root": {"level": "WARNING"}})  # the synced lines are not measured
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    scraped = 0
    with tempfile.TemporaryDirectory() as folder:
        one_run(folder, 500, "scraped", "warm-up")  # imports, caches: not measured
        for i in range(rounds):
            order = MODES[i % 3 :] + MODES[: i % 3]  # each mode first, second and third in turn
            for mode in order:
                rate, cpu, scrapes = one_run(folder, n, mode, f"{i}-{mode}")
                rates[mode].append(rate)
                cpus[mode].append(cpu)
                scraped += scrapes
    print(f"{n} objects, {rounds} rounds of each mode (rotated), {scraped} scrapes in the scraped runs")
    print(f"{'':34} {'obj/s (median)':>15} {'CPU us/object (median)':>23} {'cost obj/s':>11} {'cost CPU':>9}")
    off, cpu_off = statistics.median(rates["off"]), statistics.median(cpus["off"])
    labels = {
        "off": "off (NULL_METRICS)",
        "recorded": "recorded, not scraped",
        "scraped": "recorded, scraped each second",
    }
    for mode in MODES:
        rate, cpu = statistics.median(rates[mode]), statistics.median(cpus[mode])
        cost = "" if mode == "off" else f"{(off - rate) / off * 100:+.1f} %"
        cpu_cost = "" if mode == "off" else f"{(cpu - cpu_off) / cpu_off * 100:+.1f} %"
        print(f"{labels[mode]:34} {rate:>15.0f} {cpu:>23.0f} {cost:>11} {cpu_cost:>9}")
    calls = recording_cost()
    print(
        f"the metric calls of one synced object: {calls:.1f} us CPU ({calls / cpu_off * 100:.2f} % of off's)"
    )


if __name__ == "__main__":
    main()
