"""Benchmark of the test kit: how long a user's test of each kind of step takes.

Run by hand: ``python benchmarks/bench_testing_kit.py [--runs 10]``.

Each "test" is what a user's test does with the ``sync`` fixture on
``steps_examples/config.yaml``: start the synchronizer (temporary store, fake
clock, in-process bus), act, assert, stop. Measured, median and worst of
``--runs`` runs (the first run of the process, which pays the imports, is
not counted; it is printed apart):

* sync step: create a MyModel, run until idle, assert it is enacted;
* policy: create a Service and a MyServiceInstance, run until idle, assert policed;
* pull step: advance the clock one pull period, check the second pull ran;
* event step: send an event, run until idle, check the object it creates.

Baseline, in the same run: the sync-step test written by hand as
``docs/embedding.md`` shows (``Synchronizer`` with a ``FakeClock``, its own
data_dir, ``wait_idle``, stop), with no event bus (its event step would look
for a broker).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from actors import Caller, Config, FakeClock, ModelAccessor, Synchronizer, load_config
from actors.testing import SyncHarness

CONFIG = Path(__file__).resolve().parent.parent / "steps_examples" / "config.yaml"


def kit_sync() -> None:
    with SyncHarness(CONFIG) as sync:
        obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
        sync.run_until_idle()
        sync.assert_enacted(obj)


def kit_policy() -> None:
    with SyncHarness(CONFIG) as sync:
        service = sync.objects.Service.create(name="svc")
        instance = sync.objects.MyServiceInstance.create(owner=service)
        sync.run_until_idle()
        sync.assert_policed(instance)


def kit_pull() -> None:
    with SyncHarness(CONFIG) as sync:
        sync.advance(60)
        assert len(sync.calls("MyModelPullStep.pull_records")) == 2


def kit_event() -> None:
    with SyncHarness(CONFIG) as sync:
        sync.send_event("MyTopic", {"first_name": "Ann", "last_name": "Lee"})
        sync.run_until_idle()
        assert len(sync.objects.MyModel.objects.filter(first_name="Ann")) == 1


def by_hand_sync() -> None:
    base = load_config(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        data = base.as_dict()
        data.update(data_dir=tmp, store={})
        data.pop("event_steps_dir")
        sync = Synchronizer(Config.from_dict(data, base_dir=base.base_dir), clock=FakeClock()).start()
        try:
            client = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
            obj = client.MyModel(first_name="Jane", last_name="Roe")
            obj.save()
            assert sync.wait_idle(timeout=10)
            row = sync.model_accessor.backend.get("MyModel", obj.id)
            assert row is not None and row["backend_code"] == 1
        finally:
            sync.stop()


def measure(fn: Callable[[], None], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    root = logging.getLogger()
    started = time.perf_counter()
    kit_sync()  # the first one pays the imports
    first = time.perf_counter() - started
    root.handlers[:] = [logging.NullHandler()]
    root.setLevel(logging.WARNING)
    print(f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {platform.machine()}")
    print(f"first test of the process (imports included): {first * 1000:.0f} ms")
    print(f"{'test':<32}{'median ms':>12}{'worst ms':>12}")
    for name, fn in (
        ("sync step (kit)", kit_sync),
        ("policy (kit)", kit_policy),
        ("pull step (kit)", kit_pull),
        ("event step (kit)", kit_event),
        ("sync step by hand (baseline)", by_hand_sync),
    ):
        median, worst = measure(fn, args.runs)
        print(f"{name:<32}{median * 1000:>12.0f}{worst * 1000:>12.0f}")


if __name__ == "__main__":
    main()
