"""Login flood benchmark: valid callers' latency while another client guesses passwords.

Run by hand: ``python benchmarks/bench_login_flood.py [--seconds 5]``. A core
(embedded SQLite store, two users) serves on 127.0.0.1; a separate process runs 8
threads that send ``Core/Login`` with wrong passwords for a configured user, back
to back. Meanwhile this process times sequential valid calls: ``Core/Now`` with a
token, and ``Core/Login`` of the other user with its (cached) password. Each is
measured unloaded, under the flood with the throttling as shipped, and under the
flood with throttling and the scrypt bound switched off (the server before them),
in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from actors.api import hash_password, serve
from actors.api._auth import LoginThrottle
from actors.models import load_schema
from actors.store import Store

ROOT = Path(__file__).resolve().parent.parent
FLOOD = """
import sys, threading, time, grpc
address, request, seconds = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3])
stop = time.monotonic() + seconds
sent = []
def flood():
    stub = grpc.insecure_channel(address).unary_unary("/actors.api.v1.Core/Login")
    n = 0
    while time.monotonic() < stop:
        try:
            stub(request, timeout=30)
        except grpc.RpcError:
            pass
        n += 1
    sent.append(n)
threads = [threading.Thread(target=flood) for _ in range(8)]
for t in threads: t.start()
print("flooding", flush=True)
for t in threads: t.join()
print(sum(sent), flush=True)
"""


def timed(call: Any, seconds: float) -> list[float]:
    out = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def summary(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    mean = statistics.fmean(samples)
    return (
        f"mean {mean * 1e3:6.2f} ms  p50 {statistics.median(samples) * 1e3:6.2f} ms"
        f"  p99 {p99 * 1e3:7.2f} ms  ({len(samples)} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args()
    users = [
        {"username": "victim", "password_hash": hash_password("victim-pw"), "role": "admin"},
        {"username": "worker", "password_hash": hash_password("worker-pw"), "role": "synchronizer"},
    ]
    print(f"python {platform.python_version()}, {platform.machine()}, {platform.system()}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/db.sqlite", load_schema([]))
        server = serve(store, address="127.0.0.1:0", users=users)
        try:
            protos = server.service.protos
            channel = grpc.insecure_channel(server.address)
            login = channel.unary_unary(
                "/actors.api.v1.Core/Login",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=protos.message("LoginResponse").FromString,
            )
            now = channel.unary_unary(
                "/actors.api.v1.Core/Now",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=protos.message("NowResponse").FromString,
            )
            good = protos.message("LoginRequest")(username="worker", password="worker-pw")
            token = login(good, timeout=30).token
            empty = protos.message("Empty")()
            bearer = (("authorization", f"Bearer {token}"),)
            calls = {
                "Now with a token": lambda: now(empty, metadata=bearer, timeout=30),
                "Login, cached password": lambda: login(good, timeout=30),
            }
            bad = protos.message("LoginRequest")(username="victim", password="guess").SerializeToString()
            for setting in ("unloaded", "flood, throttled (shipped)", "flood, no throttle (before)"):
                auth = server.auth
                auth.throttle = LoginThrottle()
                if setting.endswith("(before)"):
                    auth.throttle = LoginThrottle(max_keys=0)  # forgets every failure at once
                    auth._scrypt_slots = threading.BoundedSemaphore(1000)
                for name, call in calls.items():
                    flood = None
                    if setting != "unloaded":
                        flood = subprocess.Popen(
                            [sys.executable, "-c", FLOOD, server.address, bad.hex(), str(args.seconds + 1)],
                            stdout=subprocess.PIPE,
                            text=True,
                        )
                        assert flood.stdout is not None and flood.stdout.readline().strip() == "flooding"
                    samples = timed(call, args.seconds)
                    guesses = ""
                    if flood is not None:
                        out, _ = flood.communicate(timeout=120)
                        guesses = f", {int(out.split()[-1]) / (args.seconds + 1):.0f} guesses/s"
                    print(f"{setting:<28} {name:<24} {summary(samples)}{guesses}")
            channel.close()
        finally:
            server.stop(grace=0)
            store.close()


if __name__ == "__main__":
    main()
