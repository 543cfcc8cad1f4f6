"""Logging benchmark: what the one ``synced`` line per object costs the no-op sync, two trees compared.

Run by hand: ``python benchmarks/bench_logging.py [--quick] [--before TREE]``. The runtime
benchmark's throughput set-up (``bench_runtime.py``: N dirty objects on a SQLite file, one
no-op sync step, from the supervisor's start to the last status write), each round in a
fresh subprocess, in three modes:

- filtered: the ``synced`` line filtered out by its level (root at WARNING);
- console: written at INFO to a ``logging.FileHandler`` in the default readable format
  (:class:`~actors.logs.ConsoleFormatter`);
- json: the same in :class:`~actors.logs.JSONFormatter`.

Modes and trees alternate (their order reversed every other round). With ``--before TREE``
(a checkout of the old code, e.g. ``git worktree add /tmp/before HEAD``) both trees run, each
subprocess importing ``actors`` from its tree. Reported: medians of objects per second, of
the process's CPU time per object, and of the CPU time of the sync actor's thread inside
its ``log.info("synced", ...)`` calls, measured around each call (``time.thread_time_ns``);
and, apart, the CPU time per line of the same call in a tight loop. Target: a written line
costs less than 10 % of the throughput of the filtered run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("filtered", "console", "json")


def logging_config(path: str, mode: str) -> dict[str, Any]:
    """The default logging configuration, to the file *path*, for *mode* (one of :data:`MODES`)."""
    from actors.logs import default_logging_config

    config = default_logging_config()
    if mode == "json":
        config["formatters"]["console"] = {"()": "actors.logs.JSONFormatter"}
    config["handlers"]["console"] = {"class": "logging.FileHandler", "formatter": "console", "filename": path}
    config["root"]["level"] = "WARNING" if mode == "filtered" else "INFO"
    return config


def timed_info(totals: list[int]) -> None:
    """Wrap ``BoundLogger.info`` to add the calling thread's CPU ns in each ``synced`` call to *totals*."""
    from actors.logs import BoundLogger

    plain = BoundLogger.info

    def info(self: Any, /, *args: Any, **kw: Any) -> Any:
        if not args or args[0] != "synced":
            return plain(self, *args, **kw)
        begin = time.thread_time_ns()
        try:
            return plain(self, *args, **kw)
        finally:
            totals[0] += time.thread_time_ns() - begin
            totals[1] += 1

    BoundLogger.info = info  # type: ignore[method-assign]


def one_round(mode: str, n: int) -> dict[str, float]:
    """One throughput run in this process: obj/s, CPU µs per object, CPU µs inside each ``synced`` call."""
    sys.path.insert(0, HERE)
    from bench_runtime import throughput

    from actors.logs import configure_logging

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.log")
        configure_logging(logging_config(path, mode))
        totals = [0, 0]
        timed_info(totals)
        begin = time.process_time()
        rate = throughput(folder, n)
        cpu = (time.process_time() - begin) / n * 1e6
        logging.shutdown()
        with open(path, encoding="utf-8") as written:
            lines = sum(1 for line in written if "synced" in line)
    expected = 0 if mode == "filtered" else n
    assert lines == expected, f"{mode}: {lines} synced lines written, {expected} expected"
    per_line = totals[0] / 1000 / totals[1] if totals[1] else 0.0
    return {"rate": rate, "cpu": cpu, "line": per_line}


def tight_loop(mode: str, count: int) -> float:
    """CPU µs per ``synced`` line logged in a loop by a logger bound to a step, as the sync actor's is."""
    from actors.logs import configure_logging, get_logger

    with tempfile.TemporaryDirectory() as folder:
        configure_logging(logging_config(os.path.join(folder, "loop.log"), mode))
        log = get_logger("actors.runtime.sync").bind(step="NoOpSync")
        for i in range(1000):
            log.info("synced", model="MyModel", id=i, deleted=False)
        begin = time.process_time()
        for i in range(count):
            log.info("synced", model="MyModel", id=i, deleted=False)
        elapsed = time.process_time() - begin
        logging.shutdown()
    return elapsed / count * 1e6


def child(tree: str, *args: str) -> dict[str, float]:
    """Run this script's ``--child`` part in a subprocess importing ``actors`` from *tree*."""
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few rounds of few objects, for a smoke run")
    parser.add_argument("--before", help="a checkout of the old code, run alternated with this tree")
    parser.add_argument("--rounds", type=int, help="rounds per mode and tree (default 8, quick 1)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, mode, n = args.child
        if kind == "round":
            print(json.dumps(one_round(mode, int(n))))
        else:
            print(json.dumps({"line": tight_loop(mode, int(n))}))
        return
    n, loop = (500, 2000) if args.quick else (2000, 20000)
    rounds = args.rounds or (1 if args.quick else 8)
    after = os.path.dirname(HERE)
    trees = {"after": after} if not args.before else {"before": os.path.abspath(args.before), "after": after}
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {n} objects per round, {rounds} rounds")
    results: dict[tuple[str, str], list[dict[str, float]]] = {(t, m): [] for t in trees for m in MODES}
    loops: dict[tuple[str, str], list[float]] = {(t, m): [] for t in trees for m in MODES[1:]}
    for r in range(rounds):
        names = list(trees) if r % 2 == 0 else list(reversed(trees))
        modes = MODES if r % 2 == 0 else tuple(reversed(MODES))
        for name in names:
            for mode in modes:
                results[name, mode].append(child(trees[name], "round", mode, str(n)))
            for mode in modes:
                if mode != "filtered":
                    loops[name, mode].append(child(trees[name], "loop", mode, str(loop))["line"])
        print(f"round {r + 1} of {rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print(
        f"{'tree':7} {'mode':9} {'obj/s':>7} {'vs filtered':>12} {'CPU us/obj':>11} {'+CPU us/obj':>12} "
        f"{'us in call':>11} {'us/line loop':>13}"
    )
    for name in trees:
        base = results[name, "filtered"]
        base_rate = statistics.median(r["rate"] for r in base)
        base_cpu = statistics.median(r["cpu"] for r in base)
        for mode in MODES:
            rows = results[name, mode]
            rate = statistics.median(r["rate"] for r in rows)
            cpu = statistics.median(r["cpu"] for r in rows)
            line = statistics.median(r["line"] for r in rows)  # filtered: the timer's own cost
            in_loop = statistics.median(loops[name, mode]) if mode != "filtered" else 0.0
            print(
                f"{name:7} {mode:9} {rate:>7.0f} {(rate - base_rate) / base_rate * 100:>+11.1f}% "
                f"{cpu:>11.0f} {cpu - base_cpu:>+12.0f} {line:>11.1f} {in_loop:>13.1f}"
            )


if __name__ == "__main__":
    main()
