"""The gRPC rows of ``bench_api.py`` for several trees of the project, in alternated rounds.

Run by hand: ``python benchmarks/compare_api.py TREE [TREE ...] [--rounds 4] [--seconds 2]``,
e.g. ``python benchmarks/compare_api.py /work/wt/pre15 .`` (a tree is a checkout's root).

Each round runs ``bench_api.py --only grpc --watch-writes 0 --json`` (this copy of the
script) once per tree, in turn, with ``PYTHONPATH=<tree>``: the client and the core both
import that tree's ``actors``. Rounds alternate the trees' order, so a change of the
machine's load falls on all of them. Prints, per tree, the median and the range over
the rounds of calls per second and of CPU time per call (core and client processes),
and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent / "bench_api.py"
KINDS = ("create", "get", "update")


def one_round(tree: Path, seconds: float) -> dict[str, Any]:
    """One run of ``bench_api.py``'s gRPC rows against ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(BENCH), "--only", "grpc", "--watch-writes", "0", "--json"]
    out = subprocess.run(
        [*command, "--seconds", str(seconds)], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    results: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    return results


def cell(values: list[float], scale: float, unit: str) -> str:
    """``median (low-high)`` of ``values`` times ``scale``."""
    v = [x * scale for x in values]
    return f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f}){unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="roots of the checkouts to compare")
    parser.add_argument("--rounds", type=int, default=4, help="rounds (each runs every tree once)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per throughput measurement")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.trees]
    runs: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
    load_before = os.getloadavg()
    for n in range(args.rounds):
        order = trees if n % 2 == 0 else trees[::-1]
        for tree in order:
            runs[tree].append(one_round(tree, args.seconds))
            print(f"round {n + 1}: {tree} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    names = [t.name for t in trees]
    print(
        f"# compare_api  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {args.rounds} rounds of --seconds {args.seconds:g}"
    )
    print(
        f"# load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    print()
    print("median (range) over the rounds")
    print()
    print(f"| measure | threads | call | {' | '.join(names)} |")
    print("| --- | ---: | --- |" + " ---: |" * len(trees))
    for measure, key, scale, unit in (
        ("calls/s", "rate", 1.0, ""),
        ("core CPU/call", "server_cpu", 1e6, " us"),
        ("client CPU/call", "client_cpu", 1e6, " us"),
    ):
        for threads in (1, 4):
            for kind in KINDS:
                cells = [
                    cell([r[f"grpc x{threads}"][kind][key] for r in runs[t]], scale, unit) for t in trees
                ]
                print(f"| {measure} | {threads} | {kind} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
