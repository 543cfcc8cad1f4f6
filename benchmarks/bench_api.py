"""Benchmark of the gRPC model API against the embedded ORM (the ceiling).

Run by hand: ``python benchmarks/bench_api.py [--seconds 3] [--watch-writes 500]``.

It starts a core in its own process (``python -m actors.main core``: SQLite file, one
synchronizer user), then measures with the ORM over
``RemoteBackend`` and, in the same run, the same work with the ORM over a
local ``Store`` on its own SQLite file:

* create / get / update calls per second from one and from four client threads
  (each thread has its own connection or accessor);
* watch latency, p50 and p99: from the commit of a write (the notice's ``at``)
  and from the start of the write call, to the notice at a subscriber.

Prints a table; the figures in ``docs/performance.md`` come from it.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def core_process(folder: Path) -> Iterator[str]:
    """A core serving ``folder/core.db`` in a child process; yields its address."""
    (folder / "models").mkdir()
    (folder / "models" / "bench.xproto").write_text(MODELS)
    address = f"127.0.0.1:{free_port()}"
    config = {
        "name": "bench-core",
        "models_dir": "models",
        "store": {"url": "sqlite:///" + str(folder / "core.db")},
        "logging": {"version": 1, "root": {"level": "WARNING"}},
        "api": {
            "address": address,
            "users": [{"username": USER, "password": PASSWORD, "role": "synchronizer"}],
        },
    }
    (folder / "core.yaml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.main", "core", "--config", str(folder / "core.yaml")],
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
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def rate(threads: int, seconds: float, make: Callable[[], Callable[[int], None]]) -> float:
    """Calls per second of ``op(i)`` from ``threads`` threads for about ``seconds``."""
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
    start_line.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began)


def crud_rates(accessors: Callable[[], ModelAccessor], threads: int, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}

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

    out["create"] = rate(threads, seconds, creator)
    out["get"] = rate(threads, seconds, with_objects("get"))
    out["update"] = rate(threads, seconds, with_objects("update"))
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
    parser.add_argument("--watch-writes", type=int, default=500, help="writes for the watch latency")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.INFO)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        folder = Path(tmp)
        (folder / "core").mkdir()
        with core_process(folder / "core") as address:
            backends: list[RemoteBackend] = []

            def remote() -> ModelAccessor:
                backend = RemoteBackend(address, username=USER, password=PASSWORD)
                backends.append(backend)
                return ModelAccessor(backend, caller=Caller.CLIENT)

            try:
                for threads in (1, 4):
                    results[f"grpc x{threads}"] = crud_rates(remote, threads, args.seconds)
                writer, reader = remote(), remote()
                results["grpc watch"] = watch_latency(writer, reader.backend.subscribe, args.watch_writes)
            finally:
                for backend in backends:
                    backend.close()

        models = folder / "local-models"
        models.mkdir()
        (models / "bench.xproto").write_text(MODELS)
        store = Store("sqlite:///" + str(folder / "local.db"), load_schema([models]))
        try:

            def local() -> ModelAccessor:
                return ModelAccessor(store, caller=Caller.CLIENT)

            for threads in (1, 4):
                results[f"embedded x{threads}"] = crud_rates(local, threads, args.seconds)
            results["embedded watch"] = watch_latency(local(), store.subscribe, args.watch_writes)
        finally:
            store.close()

    print(f"# bench_api  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}")
    print()
    print("| backend | client threads | create/s | get/s | update/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for backend in ("grpc", "embedded"):
        for threads in (1, 4):
            r = results[f"{backend} x{threads}"]
            name = "gRPC (RemoteBackend)" if backend == "grpc" else "embedded (Store)"
            print(f"| {name} | {threads} | {r['create']:.0f} | {r['get']:.0f} | {r['update']:.0f} |")
    print()
    print("| backend | commit to notice p50 | p99 | write call to notice p50 | p99 | notices |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for backend in ("grpc", "embedded"):
        r = results[f"{backend} watch"]
        name = "gRPC watch stream" if backend == "grpc" else "embedded subscribe"
        print(
            f"| {name} | {r['commit_p50']:.2f} ms | {r['commit_p99']:.2f} ms | "
            f"{r['call_p50']:.2f} ms | {r['call_p99']:.2f} ms | {r['received']:.0f}/{args.watch_writes} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
