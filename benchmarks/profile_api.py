"""What one gRPC call costs the core: its Python functions (cProfile) or its instructions (callgrind).

Run by hand::

    python benchmarks/profile_api.py [--calls 3000] [--kinds create get update] [--top 40]
                                     [--out DIR] [--against DIR]
    python benchmarks/profile_api.py --instructions [--calls 200] [--threads 1]

With ``PYTHONPATH=<tree>`` it measures that tree (the core and the client import it).
It starts a core as ``benchmarks/bench_api.py`` does and, for each kind of call, makes
``--calls`` calls after a warm-up, from one client thread (``--threads``: from
that many at once, each with its own connection, as ``bench_api.py`` does):

* by default every thread of the core's process runs under its own ``cProfile``
  profiler (the main thread only waits); a snapshot of the profiles is taken before
  and after the calls (``SIGUSR1``), and the difference divided by the calls is what
  one call costs, function by function (cProfile's overhead included: compare trees,
  not absolute times; the calls per call are exact). ``--out DIR`` writes the
  differences as pstats files (``python -m pstats DIR/get.pstats``); ``--against DIR``
  lists the functions of this run that another run's files do not have (matched by
  module and name, so moved code matches) and the Python calls per call of both;
* ``--instructions`` runs the core under valgrind's callgrind, counting only while
  the calls run: the instructions per call of the whole process (gRPC's C core, the
  interpreter, every thread), a figure the machine's load does not move (about 1 %
  between runs). Needs ``valgrind``; the core runs some 20 times slower meanwhile.
"""

from __future__ import annotations

import argparse
import cProfile
import marshal
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
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
            for key, (cc, nc, tt, ct, callers) in profile.stats.items():
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


def _module(key: Key) -> tuple[str, str]:
    """``(module path, function)`` of a profile key: the same in any checkout and after a line moved."""
    file, _line, func = key
    if file == "~":
        return "~", func
    parts = Path(file).parts
    if "actors" in parts:
        file = "/".join(parts[len(parts) - 1 - parts[::-1].index("actors") :])
    elif "site-packages" in parts:
        file = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        file = Path(file).name
    return file, func


def _name(key: Key) -> str:
    file, func = _module(key)
    return func if file == "~" else f"{file}:{key[1]}({func})"


def _by_module(stats: Stats) -> dict[tuple[str, str], tuple[int, float]]:
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for key, (_cc, nc, _tt, ct, _callers) in stats.items():
        name = _module(key)
        calls, cumulative = out.get(name, (0, 0.0))
        out[name] = (calls + nc, cumulative + ct)
    return out


def _against(diff: Stats, other: Stats, calls: int, top: int) -> None:
    """The functions of ``diff`` that ``other`` lacks, by cumulative time per call."""
    mine, theirs = _by_module(diff), _by_module(other)
    total = sum(v[1] for v in diff.values()) / calls
    print(f"\nPython calls per call: {total:.0f} here, {sum(v[1] for v in other.values()) / calls:.0f} there")
    print("| only here | calls/call | cumulative us/call |")
    print("| --- | ---: | ---: |")
    only = sorted(((v[1], v[0], k) for k, v in mine.items() if k not in theirs), reverse=True)
    for cumulative, n, (file, func) in only[:top]:
        print(f"| {file}:{func} | {n / calls:.2f} | {1e6 * cumulative / calls:.1f} |")


def _calls(backend: Any) -> dict[str, Callable[[int], None]]:
    """The calls of ``bench_api.py``: create, and get and update on 50 objects."""
    from actors.orm import ModelAccessor
    from actors.store import Caller

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
        w: Any = objs[i % 50]
        w.size = i % 1000
        w.save(update_fields=["size"])

    return {"create": create, "get": get, "update": update}


def _run(ops: list[Callable[[int], None]], calls: int) -> None:
    """``calls`` calls in all, shared among one client thread per op, all at once."""
    if len(ops) == 1:
        for i in range(calls):
            ops[0](i)
        return

    def share(op: Callable[[int], None]) -> None:
        for i in range(calls // len(ops)):
            op(i)

    threads = [threading.Thread(target=share, args=(op,)) for op in ops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _callgrind_total(path: Path) -> int:
    """The instructions counted in one callgrind dump."""
    found = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.M)
    if found is None:
        raise SystemExit(f"no totals in {path}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--serve"]:
        _serve(args_in[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, help="calls measured per kind (default 3000, 200 with --instructions)"
    )
    parser.add_argument(
        "--kinds", nargs="+", default=["create", "get", "update"], choices=["create", "get", "update"]
    )
    parser.add_argument("--threads", type=int, default=1, help="client threads making the calls")
    parser.add_argument("--top", type=int, default=40, help="functions printed per kind")
    parser.add_argument("--out", help="folder for the pstats files of the differences (default: none)")
    parser.add_argument("--against", help="a folder of another run's --out: list the functions only here")
    parser.add_argument(
        "--instructions", action="store_true", help="count the core's instructions per call (valgrind)"
    )
    args = parser.parse_args(args_in)
    calls = args.calls or (200 if args.instructions else 3000)
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_api import PASSWORD, USER, core_process

    from actors.api import RemoteBackend

    with tempfile.TemporaryDirectory(prefix="profile-api-") as tmp:
        folder = Path(tmp)
        snapshots = folder / "snapshots"
        snapshots.mkdir()
        (folder / "core").mkdir()
        if args.instructions:
            valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            valgrind.append(f"--callgrind-out-file={snapshots}/callgrind.%p")
            code = "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])"
            launcher: tuple[str, ...] = ("-c", code, *valgrind, sys.executable, "-m", "actors.main")
        else:
            os.environ["PROFILE_API_SNAPSHOTS"] = str(snapshots)
            launcher = (str(Path(__file__).resolve()), "--serve")
        number = 0
        with core_process(
            folder / "core", launcher=launcher, stop_wait=300 if args.instructions else 30
        ) as core:
            backends = [
                RemoteBackend(core.address, username=USER, password=PASSWORD) for _ in range(args.threads)
            ]
            try:
                each = [_calls(backend) for backend in backends]
                if args.instructions:
                    print("| call | instructions per call (core process) |")
                    print("| --- | ---: |")
                for kind in args.kinds:
                    run = partial(_run, [ops[kind] for ops in each])
                    run(50 if args.instructions else 200)  # warm-up
                    if args.instructions:
                        control = ["callgrind_control"]
                        subprocess.run(
                            [*control, "--instr=on", str(core.pid)], check=True, capture_output=True
                        )
                        run(calls)
                        subprocess.run(
                            [*control, "--instr=off", str(core.pid)], check=True, capture_output=True
                        )
                        subprocess.run([*control, "-d", kind, str(core.pid)], check=True, capture_output=True)
                        number += 1
                        dump = snapshots / f"callgrind.{core.pid}.{number}"
                        print(f"| {kind} | {_callgrind_total(dump) / calls:,.0f} |", flush=True)
                        continue
                    number += 1
                    before = _take(core.pid, snapshots, number)
                    cpu_began = core.cpu()
                    run(calls)
                    cpu = (core.cpu() - cpu_began) / calls
                    number += 1
                    diff = _difference(_take(core.pid, snapshots, number), before)
                    if args.out:
                        Path(args.out).mkdir(parents=True, exist_ok=True)
                        with (Path(args.out) / f"{kind}.pstats").open("wb") as f:
                            marshal.dump(diff, f)
                    print(
                        f"\n## {kind}: {calls} calls; core CPU {1e6 * cpu:.0f} us/call under the profiler; "
                        f"{sum(v[1] for v in diff.values()) / calls:.0f} Python calls per call"
                    )
                    print("| function | calls/call | own us/call | cumulative us/call |")
                    print("| --- | ---: | ---: | ---: |")
                    ranked = sorted(diff.items(), key=lambda kv: kv[1][3], reverse=True)
                    for key, (_cc, nc, tt, ct, _callers) in ranked[: args.top]:
                        own, cumulative = 1e6 * tt / calls, 1e6 * ct / calls
                        print(f"| {_name(key)} | {nc / calls:.2f} | {own:.1f} | {cumulative:.1f} |")
                    if args.against:
                        with (Path(args.against) / f"{kind}.pstats").open("rb") as f:
                            _against(diff, marshal.load(f), calls, args.top)
            finally:
                for backend in backends:
                    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
