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

Medians of objects per second. Targets: served costs nothing measurable beside off;
one viewer costs less than 5 % beside served.
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


def one_run(root: Path, n: int, mode: str, tag: str) -> tuple[float, list[int]]:
    """``(objects/s, [/live requests, /problems requests])`` of one run in ``mode``."""
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
    begin = time.perf_counter()
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
    finally:
        stop.set()
        if client is not None:
            client.join()
        sync.stop()
    return n / elapsed, counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    n, rounds = (1000, 2) if args.quick else (6000, 6)
    configure_logging({"version": 1, "root": {"level": "WARNING"}})  # the synced lines are not measured
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    requests = {mode: [0, 0] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one_run(root, 500, "viewer x10", "warm-up")  # imports, caches: not measured
        for i in range(rounds):
            order = MODES[i % len(MODES) :] + MODES[: i % len(MODES)]  # each mode in each place in turn
            for mode in order:
                rate, counts = one_run(root, n, mode, f"{i}-{mode}")
                rates[mode].append(rate)
                requests[mode] = [a + b for a, b in zip(requests[mode], counts, strict=True)]
    print(f"{n} objects, {rounds} rounds of each mode (rotated)")
    head = f"{'obj/s (median)':>15} {'min':>7} {'max':>7} {'vs off':>8} {'vs served':>10} {'requests':>18}"
    print(f"{'':12} {head}")
    off, served = statistics.median(rates["off"]), statistics.median(rates["served"])
    for mode in MODES:
        rate = statistics.median(rates[mode])
        vs_off = "" if mode == "off" else f"{(rate - off) / off * 100:+.1f} %"
        vs_served = "" if mode in ("off", "served") else f"{(rate - served) / served * 100:+.1f} %"
        live, problems = requests[mode]
        asked = f"{live} live, {problems} prob." if mode.startswith("viewer") else ""
        print(
            f"{mode:12} {rate:>15.0f} {min(rates[mode]):>7.0f} {max(rates[mode]):>7.0f} "
            f"{vs_off:>8} {vs_served:>10} {asked:>18}"
        )


if __name__ == "__main__":
    main()
