"""Web view benchmark: no-op sync throughput with nobody looking, beside one viewer open, same run.

Run by hand: ``python benchmarks/bench_webview.py [--quick]``. A whole
:class:`~actors.runtime.Synchronizer` (its HTTP endpoint, its routes) over a SQLite
file with N dirty objects of one model and one no-op sync step, timed from
:meth:`start` to the last object synced, in alternated rounds of four modes:

- off: no HTTP endpoint (``http=False``);
- served: the endpoint and the web view served, nobody connected;
- viewer: one headless client doing what the open page does: it loads the page and
  its files once, then asks ``/live`` every 2 s and ``/problems`` every 4 s;
- viewer x10: the same ten times as often (``/live`` every 0.2 s), a stress figure.

Medians of objects per second and of the process's CPU time per object. Targets:
served costs nothing measurable beside off; one viewer costs less than 5 % beside
served. On a shared, loaded host the rounds scatter more than 5 %, so the cost of
the requests is also measured directly: the CPU time of the process while it
answers ``/live`` and ``/problems`` (client in the same process, so an upper bound)
on an idle synchronizer holding N objects (all synced; all failed), turned into
the share of one core that one viewer takes.
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
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_runtime import MODEL, bulk_dirty

from actors.config import Config
from actors.logs import configure_logging
from actors.runtime import Synchronizer

STEP = """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.modelaccessor import MyModel

class SyncNoOp(SyncStep):
    observes = MyModel

    def sync_record(self, o):
        pass
"""

MODES = ("off", "served", "viewer", "viewer x10")
#: Seconds between the page's polls of /live and of /problems (as web/app.js does).
LIVE_EVERY, PROBLEMS_EVERY = 2.0, 4.0


def project(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "models" / "bench.xproto").write_text(MODEL)
    (folder / "steps").mkdir(exist_ok=True)
    (folder / "steps" / "sync_noop.py").write_text(STEP)
    return folder


def viewer(url: str, stop: threading.Event, speed: float, counts: list[int]) -> None:
    """What the open page asks for: its files once, then /live and /problems on their periods."""
    for path in ("/", "/web/app.js", "/web/style.css"):
        with urllib.request.urlopen(url + path, timeout=10) as response:
            response.read()
    next_problems = 0.0
    while True:
        began = time.monotonic()
        with urllib.request.urlopen(url + "/live", timeout=10) as response:
            response.read()
        counts[0] += 1
        if began >= next_problems:
            with urllib.request.urlopen(url + "/problems/_", timeout=10) as response:
                response.read()
            counts[1] += 1
            next_problems = began + PROBLEMS_EVERY / speed
        if stop.wait(LIVE_EVERY / speed):
            return


def one_run(root: Path, n: int, mode: str, tag: str) -> tuple[float, float, list[int]]:
    """``(objects/s, CPU µs per object, [/live requests, /problems requests])`` of one run in ``mode``."""
    folder = project(root / tag)
    config = Config.from_dict(
        {
            "name": "bench",
            "models_dir": str(folder / "models"),
            "steps_dir": str(folder / "steps"),
            "data_dir": str(folder / "data"),
            "http": {"address": "127.0.0.1:0"},
            "runtime": {"resync_period": 3600},
        }
    )
    sync = Synchronizer(config, http=mode != "off")
    sync.model_accessor  # noqa: B018 - builds the store, to fill it before the start
    assert sync.store is not None
    bulk_dirty(sync.store, n)
    stop = threading.Event()
    counts = [0, 0]
    client: threading.Thread | None = None
    begin, begin_cpu = time.perf_counter(), time.process_time()
    sync.start()
    try:
        if mode.startswith("viewer"):
            assert sync.http is not None
            speed = 10.0 if mode.endswith("x10") else 1.0
            client = threading.Thread(target=viewer, args=(sync.http.url, stop, speed, counts), daemon=True)
            client.start()
        while sync.store.pending("MyModel", "sync", limit=1):
            time.sleep(0.005)
        elapsed = time.perf_counter() - begin
        cpu = (time.process_time() - begin_cpu) / n * 1e6  # the viewer's client counts too: an upper bound
    finally:
        stop.set()
        if client is not None:
            client.join()
        sync.stop()
    return n / elapsed, cpu, counts


def request_cost(root: Path, n: int, failing: bool, count: int = 20) -> tuple[float, float]:
    """CPU ms of one ``/live`` and one ``/problems`` request on an idle synchronizer holding N objects.

    ``failing``: every object failed (twice, now in backoff): ``/problems`` has the most to do.
    """
    folder = project(root / f"cost-{failing}")
    if failing:
        (folder / "steps" / "sync_noop.py").write_text(STEP.replace("pass", "raise RuntimeError('down')"))
    config = Config.from_dict(
        {
            "name": "bench",
            "models_dir": str(folder / "models"),
            "steps_dir": str(folder / "steps"),
            "data_dir": str(folder / "data"),
            "http": {"address": "127.0.0.1:0"},
            "runtime": {"resync_period": 3600},
        }
    )
    sync = Synchronizer(config, http=True)
    sync.model_accessor  # noqa: B018 - builds the store
    assert sync.store is not None
    bulk_dirty(sync.store, n)
    sync.start()
    costs = []
    try:
        assert sync.http is not None and sync.wait_idle(600)
        for path in ("/live", "/problems/_"):
            with urllib.request.urlopen(sync.http.url + path, timeout=60) as response:
                response.read()  # warm
            begin = time.process_time()
            for _ in range(count):
                with urllib.request.urlopen(sync.http.url + path, timeout=60) as response:
                    response.read()
            costs.append((time.process_time() - begin) / count * 1000)
    finally:
        sync.stop()
    return costs[0], costs[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    n, rounds = (1000, 2) if args.quick else (4000, 10)
    configure_logging({"version": 1, "root": {"level": "WARNING"}})  # the synced lines are not measured
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    requests = {mode: [0, 0] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one_run(root, 500, "viewer x10", "warm-up")  # imports, caches: not measured
        for i in range(rounds):
            order = MODES[i % len(MODES) :] + MODES[: i % len(MODES)]  # each mode in each place in turn
            for mode in order:
                rate, cpu, counts = one_run(root, n, mode, f"{i}-{mode}")
                rates[mode].append(rate)
                cpus[mode].append(cpu)
                requests[mode] = [a + b for a, b in zip(requests[mode], counts, strict=True)]
    print(f"{n} objects, {rounds} rounds of each mode (rotated)")
    head = f"{'obj/s (median)':>15} {'min':>5} {'max':>5} {'vs off':>8} {'vs served':>10}"
    head += f" {'CPU us/obj':>10} {'vs off':>8} {'vs served':>10} {'requests':>18}"
    print(f"{'':12} {head}")
    off, served = statistics.median(rates["off"]), statistics.median(rates["served"])
    cpu_off, cpu_served = statistics.median(cpus["off"]), statistics.median(cpus["served"])
    for mode in MODES:
        rate, cpu = statistics.median(rates[mode]), statistics.median(cpus[mode])
        vs_off = "" if mode == "off" else f"{(rate - off) / off * 100:+.1f} %"
        vs_served = "" if mode in ("off", "served") else f"{(rate - served) / served * 100:+.1f} %"
        cpu_vs_off = "" if mode == "off" else f"{(cpu - cpu_off) / cpu_off * 100:+.1f} %"
        cpu_vs_served = "" if mode in ("off", "served") else f"{(cpu - cpu_served) / cpu_served * 100:+.1f} %"
        live, problems = requests[mode]
        asked = f"{live} live, {problems} prob." if mode.startswith("viewer") else ""
        print(
            f"{mode:12} {rate:>15.0f} {min(rates[mode]):>5.0f} {max(rates[mode]):>5.0f} "
            f"{vs_off:>8} {vs_served:>10} {cpu:>10.0f} {cpu_vs_off:>8} {cpu_vs_served:>10} {asked:>18}"
        )
    configure_logging({"version": 1, "root": {"level": "ERROR"}})  # the failed syncs are not shown
    for failing in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            live, problem = request_cost(Path(tmp), n, failing)
        per_second = live / LIVE_EVERY + problem / PROBLEMS_EVERY  # ms of CPU per second of one viewer
        what = "every object failed" if failing else "every object synced"
        print(f"{n} objects, {what}: CPU per request /live {live:.1f} ms, /problems {problem:.1f} ms;")
        print(f"  one viewer {per_second:.1f} ms CPU per second ({per_second / 10:.2f} % of one core)")


if __name__ == "__main__":
    main()
