"""Where a gRPC call's time goes in the core: cProfile of its handler threads, per call.

Run by hand: ``python benchmarks/profile_api.py [--calls 3000] [--kinds create get update] [--top 40]``.
With ``PYTHONPATH=<tree>`` it profiles that tree (the core and the client import it).

It starts a core as ``benchmarks/bench_api.py`` does, with every thread of the core's
process under its own ``cProfile`` profiler (the main thread only waits). For each
kind of call it makes ``--calls`` calls from one client thread after a warm-up, and
takes a snapshot of the core's profiles before and after (``SIGUSR1``); the
difference, divided by the calls, is what one call costs, function by function
(cProfile's own overhead included: compare trees, not absolute figures).

Prints, per kind, the functions by cumulative time per call, and writes the
differences as pstats files (``--out DIR``) for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import marshal
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

Key = tuple[str, int, str]
#: pstats' form: function -> (primitive calls, calls, own time, cumulative time, callers).
Stats = dict[Key, tuple[int, int, float, float, dict[Key, Any]]]


# -- in the core's process -----------------------------------------------------------
def _serve(argv: list[str]) -> None:
    """Run ``python -m actors.main <argv>`` with each new thread profiled; SIGUSR1 writes a snapshot."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    snapshots = 0

    def snapshot(_signum: int, _frame: Any) -> None:
        nonlocal snapshots
        merged: Stats = {}
        with lock:
            current = list(profiles)
        for profile in current:
            profile.snapshot_stats()  # reads the entries without disabling the profiler
            for key, (cc, nc, tt, ct, callers) in profile.stats.items():  # type: ignore[attr-defined]
                old = merged.get(key)
                if old is None:
                    merged[key] = (cc, nc, tt, ct, dict(callers))
                else:
                    merged[key] = (old[0] + cc, old[1] + nc, old[2] + tt, old[3] + ct, old[4])
        snapshots += 1
        target = Path(os.environ["PROFILE_API_SNAPSHOTS"]) / f"snapshot-{snapshots}"
        partial = target.with_suffix(".part")
        with partial.open("wb") as f:
            marshal.dump(merged, f)
        partial.rename(target)

    signal.signal(signal.SIGUSR1, snapshot)
    sys.argv = ["actors.main", *argv]
    import runpy

    runpy.run_module("actors.main", run_name="__main__", alter_sys=True)


# -- in the driver -------------------------------------------------------------------
def _take(pid: int, folder: Path, number: int) -> Stats:
    os.kill(pid, signal.SIGUSR1)
    target = folder / f"snapshot-{number}"
    deadline = time.monotonic() + 30
    while not target.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the core wrote no profile snapshot")
        time.sleep(0.02)
    with target.open("rb") as f:
        stats: Stats = marshal.load(f)
    return stats


def _difference(after: Stats, before: Stats) -> Stats:
    out: Stats = {}
    for key, (cc, nc, tt, ct, _callers) in after.items():
        b = before.get(key, (0, 0, 0.0, 0.0, {}))
        if nc - b[1] > 0:
            out[key] = (cc - b[0], nc - b[1], tt - b[2], ct - b[3], {})
    return out


def _name(key: Key) -> str:
    file, line, func = key
    if file == "~":
        return func
    parts = Path(file).parts
    if "actors" in parts:
        file = "/".join(parts[len(parts) - 1 - parts[::-1].index("actors") :])
    elif "site-packages" in parts:
        file = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        file = Path(file).name
    return f"{file}:{line}({func})"


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--serve"]:
        _serve(args_in[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls profiled per kind")
    parser.add_argument(
        "--kinds", nargs="+", default=["create", "get", "update"], choices=["create", "get", "update"]
    )
    parser.add_argument("--top", type=int, default=40, help="functions printed per kind")
    parser.add_argument("--out", help="folder for the pstats files of the differences (default: none)")
    args = parser.parse_args(args_in)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_api import PASSWORD, USER, core_process

    from actors.api import RemoteBackend
    from actors.orm import ModelAccessor
    from actors.store import Caller

    with tempfile.TemporaryDirectory(prefix="profile-api-") as tmp:
        folder = Path(tmp)
        snapshots = folder / "snapshots"
        snapshots.mkdir()
        (folder / "core").mkdir()
        os.environ["PROFILE_API_SNAPSHOTS"] = str(snapshots)
        number = 0
        with core_process(folder / "core", launcher=(str(Path(__file__).resolve()), "--serve")) as core:
            backend = RemoteBackend(core.address, username=USER, password=PASSWORD)
            try:
                Widget = ModelAccessor(backend, caller=Caller.CLIENT).Widget
                objs = []
                for k in range(50):
                    w = Widget(name=f"p{k}")
                    w.save()
                    objs.append(w)
                ids = [w.id for w in objs]

                def create(i: int) -> None:
                    Widget(name=f"w{i}", size=i % 100).save()

                def get(i: int) -> None:
                    Widget.objects.get(id=ids[i % 50])

                def update(i: int) -> None:
                    w = objs[i % 50]
                    w.size = i % 1000
                    w.save(update_fields=["size"])

                ops = {"create": create, "get": get, "update": update}
                for kind in args.kinds:
                    op = ops[kind]
                    for i in range(200):  # warm-up
                        op(i)
                    number += 1
                    before = _take(core.pid, snapshots, number)
                    cpu_began = core.cpu()
                    for i in range(args.calls):
                        op(i)
                    cpu = (core.cpu() - cpu_began) / args.calls
                    number += 1
                    diff = _difference(_take(core.pid, snapshots, number), before)
                    if args.out:
                        Path(args.out).mkdir(parents=True, exist_ok=True)
                        with (Path(args.out) / f"{kind}.pstats").open("wb") as f:
                            marshal.dump(diff, f)
                    own = sum(v[2] for v in diff.values())
                    print(
                        f"\n## {kind}: {args.calls} calls; core CPU {1e6 * cpu:.0f} us/call under the "
                        f"profiler, profiled Python {1e6 * own / args.calls:.0f} us/call"
                    )
                    print("| function | calls/call | own us/call | cumulative us/call |")
                    print("| --- | ---: | ---: | ---: |")
                    ranked = sorted(diff.items(), key=lambda kv: kv[1][3], reverse=True)
                    for key, (_cc, nc, tt, ct, _callers) in ranked[: args.top]:
                        n = args.calls
                        print(f"| {_name(key)} | {nc / n:.2f} | {1e6 * tt / n:.1f} | {1e6 * ct / n:.1f} |")
            finally:
                backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
