"""Benchmark of the gRPC model API against the embedded ORM (the ceiling).

Run by hand: ``python benchmarks/bench_api.py [--seconds 3] [--watch-writes 500] [--only grpc]``.

It starts a core in its own process (``python -m actors.main core``: SQLite file, one
synchronizer user), then measures with the ORM over
``RemoteBackend`` and, in the same run, the same work with the ORM over a
local ``Store`` on its own SQLite file:

* create / get / update calls per second from one and from four client threads
  (each thread has its own connection or accessor), and for gRPC the CPU time per
  call of the core's process (``/proc/<pid>/stat``, all its threads) and of this
  client process: figures that do not depend on what else runs on the machine;
* watch latency, p50 and p99: from the commit of a write (the notice's ``at``)
  and from the start of the write call, to the notice at a subscriber.

Prints a table; the figures in ``docs/performance.md`` come from it.

It runs against any tree of the project that has the same client API: with
``PYTHONPATH=<tree>`` the client and the core (a subprocess) both import that tree's
``actors``, so one copy of the script measures a tree before and after a change
(``benchmarks/compare_api.py`` alternates trees round by round).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.api import RemoteBackend
from actors.models import load_schema
from actors.orm import ModelAccessor
from actors.store import Caller, ChangeNotice, Store

MODELS = """
message Widget (XOSBase) {
    required string name = 1 [max_length = 64];
    optional int32 size = 2 [default = 0];
    optional float weight = 3 [null = True];
}
"""
USER, PASSWORD = "bench", "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Core:
    """A core serving a file in a child process: its address and its CPU time."""

    def __init__(self, address: str, pid: int) -> None:
        self.address = address
        self.pid = pid

    def cpu(self) -> float:
        """CPU seconds the core's process has used so far, all its threads (user and system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@contextlib.contextmanager
def core_process(
    folder: Path, launcher: Sequence[str] = ("-m", "actors.main"), stop_wait: float = 30.0
) -> Iterator[Core]:
    """A core serving ``folder/core.db`` in a child process (``python <launcher> core --config ...``).

    At the end it gets SIGTERM, and is killed if it has not stopped after ``stop_wait`` seconds.
    """
    (folder / "models").mkdir()
    (folder / "models" / "bench.xproto").write_text(MODELS)
    address = f"127.0.0.1:{free_port()}"
    config: dict[str, Any] = {
        "name": "bench-core",
        "models_dir": "models",
        "store": {"url": "sqlite:///" + str(folder / "core.db")},
        "logging": {"version": 1, "root": {"level": "WARNING"}},
        "api": {
            "address": address,
            "users": [{"username": USER, "password": PASSWORD, "role": "synchronizer"}],
        },
    }
    if importlib.util.find_spec("actors.observe") is not None:
        # The core serves /metrics (counting every call) as it does by default, on a free port.
        config["http"] = {"address": f"127.0.0.1:{free_port()}"}
    (folder / "core.yaml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, *launcher, "core", "--config", str(folder / "core.yaml")],
        cwd=folder,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "actors core: serving" in line:
            break
    else:
        raise SystemExit("the core did not start")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
    try:
        yield Core(address, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(stop_wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rate(
    threads: int,
    seconds: float,
    make: Callable[[], Callable[[int], None]],
    server_cpu: Callable[[], float] | None = None,
) -> dict[str, float]:
    """``op(i)`` from ``threads`` threads for about ``seconds``: calls per second, CPU per call.

    ``rate`` is calls per second; ``client_cpu`` the CPU seconds per call of this process
    (all its threads); ``server_cpu`` those of the server, when ``server_cpu()`` reads its total.
    """
    ops = [make() for _ in range(threads)]
    counts = [0] * threads
    start_line = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(n: int) -> None:
        op = ops[n]
        start_line.wait()
        i = 0
        while not stop.is_set():
            op(i)
            i += 1
        counts[n] = i

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    server_began = server_cpu() if server_cpu is not None else 0.0
    client_began = time.process_time()
    start_line.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    calls = max(1, sum(counts))
    out = {"rate": sum(counts) / elapsed, "client_cpu": (time.process_time() - client_began) / calls}
    if server_cpu is not None:
        out["server_cpu"] = (server_cpu() - server_began) / calls
    return out


def crud_rates(
    accessors: Callable[[], ModelAccessor],
    threads: int,
    seconds: float,
    server_cpu: Callable[[], float] | None = None,
) -> dict[str, dict[str, float]]:
    """``rate()`` of create, get and update (get and update on 50 objects of each thread's own)."""
    out: dict[str, dict[str, float]] = {}

    def creator() -> Callable[[int], None]:
        Widget = accessors().Widget

        def op(i: int) -> None:
            Widget(name=f"w{i}", size=i % 100).save()

        return op

    def with_objects(action: str) -> Callable[[], Callable[[int], None]]:
        def make() -> Callable[[int], None]:
            accessor = accessors()
            Widget = accessor.Widget
            objs = []
            for k in range(50):
                w = Widget(name=f"{action}{k}")
                w.save()
                objs.append(w)
            ids = [w.id for w in objs]

            def get(i: int) -> None:
                Widget.objects.get(id=ids[i % 50])

            def update(i: int) -> None:
                w = objs[i % 50]
                w.size = i % 1000
                w.save(update_fields=["size"])

            return get if action == "get" else update

        return make

    out["create"] = rate(threads, seconds, creator, server_cpu)
    out["get"] = rate(threads, seconds, with_objects("get"), server_cpu)
    out["update"] = rate(threads, seconds, with_objects("update"), server_cpu)
    return out


def watch_latency(
    writer: ModelAccessor,
    subscribe: Callable[[Callable[[ChangeNotice], None]], Callable[[], None]],
    writes: int,
) -> dict[str, float]:
    """p50/p99 in ms from commit (``notice.at``) and from the write call to the notice."""
    Widget = writer.Widget
    objs = []
    for k in range(writes):
        w = Widget(name=f"watched{k}")
        w.save()
        objs.append(w)
    sent: dict[int, float] = {}
    from_commit: list[float] = []
    from_call: list[float] = []
    done = threading.Event()

    def on_notice(notice: ChangeNotice) -> None:
        now = time.time()
        if notice.kind == "update" and notice.id in sent:
            from_commit.append(now - notice.at)
            from_call.append(now - sent[notice.id])
            if len(from_call) == writes:
                done.set()

    unsubscribe = subscribe(on_notice)
    try:
        time.sleep(0.2)
        for w in objs:
            w.size = 1
            sent[w.id] = time.time()
            w.save(update_fields=["size"])
            time.sleep(0.002)  # paced: latency, not throughput
        done.wait(30)
    finally:
        unsubscribe()

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    return {
        "commit_p50": pct(from_commit, 0.50),
        "commit_p99": pct(from_commit, 0.99),
        "call_p50": pct(from_call, 0.50),
        "call_p99": pct(from_call, 0.99),
        "received": float(len(from_call)),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput measurement")
    parser.add_argument(
        "--watch-writes", type=int, default=500, help="writes for the watch latency (0: no watch latency)"
    )
    parser.add_argument(
        "--only", choices=("grpc", "embedded"), help="measure one backend only (default: both)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead")
    args = parser.parse_args(argv)
    backends_run = [args.only] if args.only else ["grpc", "embedded"]

    import logging

    logging.disable(logging.INFO)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        folder = Path(tmp)
        (folder / "core").mkdir()
        if "grpc" in backends_run:
            with core_process(folder / "core") as core:
                backends: list[RemoteBackend] = []

                def remote() -> ModelAccessor:
                    backend = RemoteBackend(core.address, username=USER, password=PASSWORD)
                    backends.append(backend)
                    return ModelAccessor(backend, caller=Caller.CLIENT)

                try:
                    for threads in (1, 4):
                        results[f"grpc x{threads}"] = crud_rates(remote, threads, args.seconds, core.cpu)
                    if args.watch_writes:
                        writer, reader = remote(), remote()
                        results["grpc watch"] = watch_latency(
                            writer, reader.backend.subscribe, args.watch_writes
                        )
                finally:
                    for backend in backends:
                        backend.close()

        if "embedded" in backends_run:
            models = folder / "local-models"
            models.mkdir()
            (models / "bench.xproto").write_text(MODELS)
            store = Store("sqlite:///" + str(folder / "local.db"), load_schema([models]))
            try:

                def local() -> ModelAccessor:
                    return ModelAccessor(store, caller=Caller.CLIENT)

                for threads in (1, 4):
                    results[f"embedded x{threads}"] = crud_rates(local, threads, args.seconds)
                if args.watch_writes:
                    results["embedded watch"] = watch_latency(local(), store.subscribe, args.watch_writes)
            finally:
                store.close()

    if args.json:
        print(json.dumps({"load": os.getloadavg(), "results": results}))
        return 0
    print(f"# bench_api  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}")
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| backend | client threads | create/s | get/s | update/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind in backends_run:
        for threads in (1, 4):
            r = results[f"{kind} x{threads}"]
            name = "gRPC (RemoteBackend)" if kind == "grpc" else "embedded (Store)"
            print(
                f"| {name} | {threads} | {r['create']['rate']:.0f} | {r['get']['rate']:.0f} "
                f"| {r['update']['rate']:.0f} |"
            )
    if "grpc" in backends_run:
        print()
        print("| CPU per gRPC call | client threads | create | get | update |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for side in ("server_cpu", "client_cpu"):
            for threads in (1, 4):
                r = results[f"grpc x{threads}"]
                cells = " | ".join(f"{1e6 * r[kind][side]:.0f} us" for kind in ("create", "get", "update"))
                name = "core process" if side == "server_cpu" else "client process"
                print(f"| {name} | {threads} | {cells} |")
    if args.watch_writes:
        print()
        print("| backend | commit to notice p50 | p99 | write call to notice p50 | p99 | notices |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for kind in backends_run:
            r = results[f"{kind} watch"]
            name = "gRPC watch stream" if kind == "grpc" else "embedded subscribe"
            print(
                f"| {name} | {r['commit_p50']:.2f} ms | {r['commit_p99']:.2f} ms | "
                f"{r['call_p50']:.2f} ms | {r['call_p99']:.2f} ms | {r['received']:.0f}/{args.watch_writes} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
