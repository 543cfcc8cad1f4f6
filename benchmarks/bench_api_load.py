"""Benchmark: the synchronizer's sync rate while gRPC clients write through the main job's API.

Run by hand: ``python benchmarks/bench_api_load.py [--seconds 60] [--clients 8] [--preload 3000]``.

It runs the main job (``python -m actors.main -C config.yaml``: SQLite file, API on a
free port, the HTTP endpoint on port 0) with one sync step whose ``sync_record`` does
nothing (``--sleep`` seconds, 0 by default), in four phases:

1. *preload*: the main job runs without the step while the clients create
   ``--preload`` objects; it is stopped;
2. *unloaded*: the main job starts again, with the step, and drains those objects with
   no client connected: the unloaded sync rate;
3. *loaded*: ``--clients`` client processes (each its own interpreter, so the client
   side's GIL is not what limits) create and update objects through the gRPC API for
   ``--seconds``, with the job's settings as given. When they stop, the backlog (syncs
   still owed) and the time to catch up are measured: the lag. The sync rate of this
   phase is at most the clients' write rate, so it says little about what the
   synchronizer could do;
4. *behind* (``--standing`` objects, 0 to skip): in a fresh database the step-less job
   takes ``--standing`` objects; the job starts with the step and ``api.backlog_limit``
   0 (writes never held back). The step runs alone for ``--before-seconds``, then the
   clients write as in 3 for ``--behind-seconds`` (or until the queue is empty), then
   the step goes on alone for up to ``--after-seconds``. The sync rate over the
   stretches with objects queued (sampled every 0.25 s) while the clients write is the
   *loaded rate*, beside the rate alone just before: the synchronizer's share under load.

The step's counts come from the HTTP endpoint's ``/status`` (``done``, ``queued``).
Prints one JSON object; the figures in ``docs/performance.md`` come from it.
``--profile FILE`` records the main job with py-spy during phase 4 (at most 15 s;
``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODELS = """
message Widget (XOSBase) {
    required string name = 1 [max_length = 64];
    optional int32 size = 2 [default = 0];
}
"""
STEP = """
import time

from synchronizers.new_base.SyncInstanceUsingAnsible import SyncStep
from synchronizers.new_base.modelaccessor import Widget

PAUSE = {sleep!r}


class SyncWidget(SyncStep):
    provides = [Widget]
    observes = Widget

    def sync_record(self, o):
        if PAUSE:
            time.sleep(PAUSE)

    def delete_record(self, o):
        pass
"""
USER, PASSWORD = "bench", "bench-password"
STEP_NAME = "SyncWidget"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, address: str, *, with_step: bool, sleep: float, extra: dict[str, Any]) -> Path:
    models, steps = folder / "models", folder / ("steps" if with_step else "no-steps")
    models.mkdir(exist_ok=True)
    steps.mkdir(exist_ok=True)
    (models / "bench.xproto").write_text(MODELS)
    if with_step:
        (steps / "sync_widget.py").write_text(STEP.format(sleep=sleep))
    config: dict[str, Any] = {
        "name": "bench-load",
        "models_dir": str(models),
        "steps_dir": str(steps),
        "data_dir": str(folder / "data"),
        "logging": {
            "version": 1,
            "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "root": {"level": "WARNING", "handlers": ["err"]},
            "loggers": {"actors.main": {"level": "INFO"}},
        },
        "api": {
            "address": address,
            "users": [{"username": USER, "password": PASSWORD, "role": "admin"}],
            "anonymous_read": True,  # /status without a password check (scrypt) on every poll
        },
        "http": {"address": "127.0.0.1:0"},
    }
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    path = folder / ("config.yaml" if with_step else "config-preload.yaml")
    path.write_text(json.dumps(config))
    return path


@contextlib.contextmanager
def main_job(config: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The main job on ``config``; yields the process and its HTTP endpoint's URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.main", "-C", str(config)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    url = None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        found = re.search(r"http=(http://[0-9.:]+)", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        raise SystemExit("the main job did not start:\n" + "".join(seen[-20:]))
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
    try:
        yield proc, url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def step_counts(url: str) -> tuple[int, int]:
    """``(done, queue_depth)`` of the sync step, from ``/status``."""
    done, depth, _queued = step_status(url)
    return done, depth


def step_status(url: str) -> tuple[int, int, int]:
    """``(done, queue_depth, queued)`` of the sync step, from ``/status``."""
    with urllib.request.urlopen(f"{url}/status", timeout=30) as response:
        status = json.load(response)
    for child in status.get("children", []):
        if child.get("name") == STEP_NAME:
            return int(child.get("done", 0)), int(child.get("queue_depth", 0)), int(child.get("queued", 0))
    raise RuntimeError(f"no step {STEP_NAME} in /status: {status}")


def client(
    address: str, seconds: float, creates_only: int, seed: int, out: Any, go: Any, start: Any, stop: Any
) -> None:
    """One client process: creates and updates Widgets for ``seconds`` (or ``creates_only`` creates)."""
    from actors.api import RemoteBackend
    from actors.orm import ModelAccessor
    from actors.store import Caller

    backend = RemoteBackend(address, username=USER, password=PASSWORD)
    try:
        Widget = ModelAccessor(backend, caller=Caller.CLIENT).Widget
        calls = 0
        list(Widget.objects.filter(name="none"))  # connected and logged in before the start
        out.put("ready")
        go.wait()
        deadline = start.value + seconds  # the same end for every client
        if creates_only:
            for i in range(creates_only):
                Widget(name=f"p{seed}-{i}").save()
            out.put(creates_only)
            return
        mine = []
        while time.time() < deadline and not stop.is_set():
            if len(mine) < 50 or calls % 2 == 0:
                w = Widget(name=f"c{seed}-{calls}")
                w.save()
                mine.append(w)
            else:
                w = mine[calls % len(mine)]
                w.size = calls % 1000
                w.save(update_fields=["size"])
            calls += 1
        out.put(calls)
    finally:
        backend.close()


def run_clients(
    address: str, n: int, seconds: float, creates_only: int = 0, on_start: Any = None
) -> tuple[int, float]:
    """``n`` client processes to their end: ``(calls, seconds taken)``.

    ``on_start(stop)`` is called just before they start; setting ``stop`` ends them early.
    """
    ctx = mp.get_context("spawn")
    out, go, start, stop = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0), ctx.Event()
    procs = [
        ctx.Process(target=client, args=(address, seconds, creates_only, k, out, go, start, stop))
        for k in range(n)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        out.get(timeout=300)
    if on_start is not None:
        on_start(stop)
    start.value = time.time()
    go.set()
    calls = sum(out.get(timeout=seconds + 600) for _ in procs)
    took = time.time() - start.value
    for p in procs:
        p.join(60)
    return calls, took


def wait_idle(url: str, quiet: float = 2.0, deadline: float = 900.0) -> tuple[int, float]:
    """Wait until the step's queue is empty and ``done`` stopped moving: ``(done, when it last moved)``."""
    done, _depth = step_counts(url)
    moved = time.monotonic()
    end = moved + deadline
    while time.monotonic() < end:
        time.sleep(0.1)
        now_done, depth = step_counts(url)
        if now_done != done:
            done, moved = now_done, time.monotonic()
        elif depth == 0 and time.monotonic() - moved >= quiet:
            return done, moved
    raise SystemExit("the synchronizer did not catch up")


def profile(pid: int, seconds: float, path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
         "--format", "raw", "--threads", "--output", path, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load:.1f} at start"


class Sampler:
    """``(seconds since the start, done, queued)`` of the step every ``period`` s, in a thread.

    It stops by itself once the queue, having held objects, is empty; ``stop_when_empty``
    (an event) is set then.
    """

    def __init__(self, url: str, period: float = 0.25) -> None:
        self.url, self.period = url, period
        self.stop_when_empty: Any = None
        self.samples: list[tuple[float, int, int]] = []
        self.began = time.monotonic()
        self._end = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.began = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        seen = False  # the step queues its objects a moment after it starts
        while not self._end.is_set():
            done, _depth, queued = step_status(self.url)
            self.samples.append((time.monotonic() - self.began, done, queued))
            seen = seen or queued > 0
            if seen and queued == 0:
                if self.stop_when_empty is not None:
                    self.stop_when_empty.set()  # the standing backlog is gone: the clients stop
                return
            self._end.wait(self.period)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after at most ``timeout`` seconds more (sooner if the queue empties)."""
        self._thread.join(timeout)
        self._end.set()
        self._thread.join(30)

    def rate_while_behind(self, start: float, end: float) -> tuple[float, float]:
        """Objects synced per second between ``start`` and ``end`` (s), over stretches with objects queued.

        Returns the rate and the seconds it was measured over.
        """
        synced = seconds = 0.0
        for (t0, d0, q0), (t1, d1, q1) in zip(self.samples, self.samples[1:], strict=False):
            if q0 > 0 and q1 > 0 and start <= t0 and t1 <= end:
                synced += d1 - d0
                seconds += t1 - t0
        return (synced / seconds if seconds else 0.0), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds the clients write")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--preload", type=int, default=3000, help="objects for the unloaded rate")
    parser.add_argument("--standing", type=int, default=24000,
                        help="objects owed as the clients start (0: skip phase 4)")  # fmt: skip
    parser.add_argument("--before-seconds", type=float, default=4.0,
                        help="seconds the step runs alone in phase 4 before the clients start")  # fmt: skip
    parser.add_argument("--behind-seconds", type=float, default=12.0,
                        help="seconds the clients write while the step is behind")  # fmt: skip
    parser.add_argument("--after-seconds", type=float, default=5.0,
                        help="seconds the step's rate is measured alone after that")  # fmt: skip
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each sync_record sleeps")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting of the main job, e.g. api.max_concurrent_calls=2")  # fmt: skip
    parser.add_argument("--profile", help="py-spy raw output of the main job while behind under load")
    args = parser.parse_args(argv)
    extra: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        extra.setdefault(section, {})[name] = json.loads(value)
    unheld = {**extra, "api": {**extra.get("api", {}), "backlog_limit": 0}}

    result: dict[str, Any] = {"machine": machine(), "clients": args.clients, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="bench-api-load-") as tmp:
        folder = Path(tmp)
        address = f"127.0.0.1:{free_port()}"
        preload = write_config(folder, address, with_step=False, sleep=args.sleep, extra=extra)
        config = write_config(folder, address, with_step=True, sleep=args.sleep, extra=extra)
        with main_job(preload):
            run_clients(address, args.clients, 600, creates_only=max(1, args.preload // args.clients))
        with main_job(config) as (_proc, url):
            began = time.monotonic()
            done, last = wait_idle(url)
            result["unloaded"] = {"synced": done, "seconds": round(last - began, 2)}
            unloaded_rate = done / max(last - began, 1e-9)
            result["unloaded"]["rate"] = round(unloaded_rate, 1)

            before = [0]

            def on_start(_stop: Any) -> None:
                before[0] = step_counts(url)[0]

            calls, took = run_clients(address, args.clients, args.seconds, on_start=on_start)
            stopped = time.monotonic()
            at_stop, depth = step_counts(url)
            final, last = wait_idle(url)
            loaded_rate = (at_stop - before[0]) / took
            backlog = final - at_stop
            result["loaded"] = {
                "client_calls": calls,
                "client_calls_per_s": round(calls / took, 1),
                "synced": at_stop - before[0],
                "rate": round(loaded_rate, 1),
                "ratio": round(loaded_rate / unloaded_rate, 3),
            }
            result["when_stopped"] = {
                "queue_depth": depth,
                "backlog": backlog,
                "catch_up_s": round(max(0.0, last - stopped), 2),
                "backlog_in_unloaded_s": round(backlog / unloaded_rate, 2),
            }
        if args.standing:
            result["behind"] = behind(args, folder, address, unheld, unloaded_rate)
    print(json.dumps(result, indent=2))
    return 0


def behind(
    args: Any, folder: Path, address: str, extra: dict[str, Any], unloaded_rate: float
) -> dict[str, Any]:
    """The sync rate under load while the step is behind, beside its rate alone just before.

    ``--standing`` objects are created with the step off, in a fresh database; the main job
    starts with the step and ``api.backlog_limit`` 0 (writes never held back by the backlog).
    The step runs alone for ``--before-seconds`` (its unloaded rate in this phase), then the
    clients write for ``--behind-seconds`` (or until the queue is empty), then the step goes
    on alone for up to ``--after-seconds``. Rates count the stretches with objects queued.
    """
    (folder / "data").rename(folder / f"data-{time.time_ns()}")  # a fresh database
    preload = write_config(folder, address, with_step=False, sleep=args.sleep, extra=extra)
    config = write_config(folder, address, with_step=True, sleep=args.sleep, extra=extra)
    with main_job(preload):
        run_clients(address, args.clients, 600, creates_only=max(1, args.standing // args.clients))
    seconds = args.behind_seconds
    with main_job(config) as (proc, url):
        spies: list[subprocess.Popen[bytes]] = []
        sampler = Sampler(url)
        sampler.start()
        time.sleep(args.before_seconds)  # the step alone: its rate before the clients come
        went = [0.0]

        def on_start(stop: Any) -> None:
            if args.profile:
                spies.append(profile(proc.pid, min(seconds, 15), args.profile))
            sampler.stop_when_empty = stop
            went[0] = time.monotonic() - sampler.began

        calls, took = run_clients(address, args.clients, seconds, on_start=on_start)
        sampler.stop(args.after_seconds)
        for spy in spies:
            spy.wait(60)
        go = went[0]
        alone, alone_s = sampler.rate_while_behind(0.0, args.before_seconds)
        loaded, loaded_s = sampler.rate_while_behind(go, go + seconds)
        stopped = go + seconds + 0.5
        after, after_s = sampler.rate_while_behind(stopped, stopped + args.after_seconds)
        owed = max((queued for _t, _done, queued in sampler.samples), default=0)
    return {
        "most_owed": owed,
        "client_calls_per_s": round(calls / took, 1),
        "alone_before": {"rate": round(alone, 1), "seconds": round(alone_s, 2)},
        "loaded": {"rate": round(loaded, 1), "seconds": round(loaded_s, 2)},
        "after_load": {"rate": round(after, 1), "seconds": round(after_s, 2)},
        "ratio_to_alone_before": round(loaded / alone, 3) if alone else None,
        "ratio_to_unloaded": round(loaded / unloaded_rate, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
