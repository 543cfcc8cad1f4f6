"""One synchronizer replica in a process of its own, for the replica tests.

``python -m tests.replica_worker URL LOG SECONDS [K]``: a supervisor with one sync step for
``MyModel`` on the store at ``URL`` (``concurrency`` K, default 1). Every ``sync_record``
appends ``b <id> <pid> <time>`` to ``LOG`` when it starts and ``e <id> <pid> <time>`` when
it ends (one ``write`` each, so a SIGKILL leaves whole lines), and sleeps ``SECONDS`` in
between: the backend call.
It prints ``ready`` once started and runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime.sync import SyncStepActor
from actors.steps import StepFactory, SyncStep
from actors.store import Caller, Store

from .runtime_support import make_store


def main(url: str, log_path: str, seconds: float, k: int = 1) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # stdout is a pipe nobody reads after "ready": log lines go to /dev/null instead.
    ready = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    pid = os.getpid()

    class SyncMyModel(SyncStep):
        observes = "MyModel"
        concurrency = k

        def sync_record(self, o: Any) -> None:
            os.write(fd, f"b {o.id} {pid} {time.time():.6f}\n".encode())
            if seconds:
                time.sleep(seconds)
            os.write(fd, f"e {o.id} {pid} {time.time():.6f}\n".encode())

    store = Store(url, make_store().schema)
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings()
    factory = StepFactory(SyncMyModel, "<replica>/SyncMyModel.py")
    spec = ChildSpec(
        "SyncMyModel",
        SyncStepActor,
        (factory,),
        interests=SyncStepActor.interests(factory, accessor, settings),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sup = Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings)
    os.write(ready, b"ready\n")
    stop.wait()
    sup.stop()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), *(int(a) for a in sys.argv[4:5]))
