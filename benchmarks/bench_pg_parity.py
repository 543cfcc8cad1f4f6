"""PostgreSQL beside SQLite: the same sync work on both stores, side by side.

Run by hand: ``python benchmarks/bench_pg_parity.py [--postgres URL] [--rounds 3] [--quick]``
(without ``--postgres`` a throw-away server is started with ``scripts/local_postgres.py``).
Every round runs each piece of work on a SQLite file (WAL) and then on PostgreSQL, so the
two figures of a round share the machine's load; the report gives the median of the rounds
and the ratio PostgreSQL time / SQLite time (target: at most 1.5).

- *no-op N*: N dirty objects inserted before a supervisor starts with one sync step whose
  ``sync_record`` does nothing (``runtime.step_concurrency`` 1); from its start to the last
  status write. N = 2,000 and 10,000.
- *kill-restart*: 2,000 dirty objects; a synchronizer process (a supervisor with the same
  no-op step, each ``sync_record`` waiting 2 ms) is SIGKILLed once 1,000 are synced and a
  new one started; from the first start to the last object synced, both start-ups included.
- *I/O K=32*: 1,000 objects whose ``sync_record`` sleeps 20 ms, ``step_concurrency`` 32
  (the work of ``bench_concurrency.py``).

Before each PostgreSQL run (setup, not timed) the tables are vacuumed: see :func:`prepare`.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_concurrency as bc

from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, RealClock, RuntimeSettings, Supervisor
from actors.runtime.sync import SyncStepActor
from actors.steps import StepFactory, SyncStep
from actors.store import Caller, Store

#: What each ``sync_record`` of the kill-and-restart work waits (so the kill lands mid-sync).
RESTART_WAIT = 0.002


class NoopSync(SyncStep):
    """A step whose ``sync_record`` does nothing (or waits ``ACTORS_BENCH_WAIT`` seconds)."""

    observes = ["Parent"]

    def sync_record(self, o: Any) -> None:
        wait = float(os.environ.get("ACTORS_BENCH_WAIT", "0"))
        if wait:
            time.sleep(wait)


def supervisor(store: Store, k: int = 1) -> Any:
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    settings = RuntimeSettings(resync_period=3600, step_concurrency=k)
    factory = StepFactory(NoopSync, "bench")
    spec = ChildSpec(
        "NoopSync", SyncStepActor, (factory,), interests=SyncStepActor.interests(factory, accessor, settings)
    )
    return Supervisor.start([spec], accessor=accessor, clock=RealClock(), settings=settings)


def prepare(url: str, n: int) -> Store:
    """A store with ``n`` dirty ``Parent`` objects; on PostgreSQL the tables vacuumed.

    The test server runs without autovacuum, and every status write leaves a dead row
    version behind: without the VACUUM, each run would scan the previous runs' dead
    entries of the pending index (13,000 of them for 0 live rows after a few runs).
    """
    store = bc.new_store(url)
    bc.insert(store, "Parent", [{"name": f"p{i}"} for i in range(n)])
    vacuum(url)
    return store


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE`` the benchmark's tables (PostgreSQL only)."""
    if not url.startswith("postgresql"):
        return
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for table in ("actors_changes", "m_parent", "m_child"):
            if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None:
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")  # not made yet in a first run
    engine.dispose()


#: Statements per synced object of the last no-op run (see :func:`count_statements`).
STATEMENTS: dict[str, float] = {}


@contextmanager
def count_statements() -> Iterator[dict[str, int]]:
    """Counts of what the process's psycopg connections send meanwhile (PostgreSQL; any thread).

    ``statements``: each ``execute`` or ``executemany`` (one: psycopg pipelines it), on
    SQLAlchemy's path or on the driver's cursor (the store runs its batches and claims
    there, where SQLAlchemy's events do not see them). ``round trips``: each statement
    outside a pipeline, each pipeline once, and each ``BEGIN`` (psycopg sends one before
    the first statement of a transaction and waits for it, in a pipeline too) and ``COMMIT``.
    """
    import psycopg

    counts = {"statements": 0, "round trips": 0}
    cursor, connection = psycopg.Cursor, psycopg.Connection
    originals = (cursor.execute, cursor.executemany, connection.commit, connection.pipeline)

    def sent(conn: Any) -> None:
        counts["statements"] += 1
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        counts["round trips"] += (conn._pipeline is None) + (idle and not conn.autocommit)

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent(self.connection)
        return originals[0](self, *args, **kwargs)

    def executemany(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent(self.connection)
        return originals[1](self, *args, **kwargs)

    def commit(self: Any) -> None:
        counts["round trips"] += self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        originals[2](self)

    @contextmanager
    def pipeline(self: Any) -> Iterator[Any]:
        counts["round trips"] += self._pipeline is None
        with originals[3](self) as p:
            yield p

    cursor.execute, cursor.executemany = execute, executemany  # type: ignore[method-assign]
    connection.commit, connection.pipeline = commit, pipeline  # type: ignore[method-assign,assignment]
    try:
        yield counts
    finally:
        cursor.execute, cursor.executemany, connection.commit, connection.pipeline = originals  # type: ignore[method-assign]


def noop(url: str, n: int) -> float:
    """Seconds for one supervisor to sync ``n`` dirty objects with a no-op step."""
    store = prepare(url, n)
    with count_statements() as counts:
        begin = time.perf_counter()
        sup = supervisor(store)
        try:
            bc.wait_idle(sup)
            elapsed = time.perf_counter() - begin
            sent = dict(counts)
            assert not store.pending("Parent", "sync"), "objects left dirty"
        finally:
            sup.stop()
            store.close()
    if url.startswith("postgresql"):
        STATEMENTS.update({name: count / n for name, count in sent.items()})
    return elapsed


def dirty(engine: sa.Engine, table: sa.Table) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.c.updated > table.c.enacted)
    never = sa.select(sa.func.count()).select_from(table).where(table.c.enacted.is_(None))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one()) + int(conn.execute(never).scalar_one())


def kill_restart(url: str, n: int = 2000) -> float:
    """Seconds from a synchronizer's start, through its SIGKILL at n/2 synced and a restart, to all synced."""
    store = prepare(url, n)
    table = store.tables.by_model["Parent"]
    engine = sa.create_engine(url)
    env = {**os.environ, "ACTORS_BENCH_WAIT": str(RESTART_WAIT)}
    command = [sys.executable, __file__, "--worker", url]
    begin = time.perf_counter()
    first = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 600
        while dirty(engine, table) > n // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 600
        while dirty(engine, table) and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - begin
    finally:
        second.terminate()
        second.wait()
        engine.dispose()
        store.close()
    return elapsed


def io_bound(url: str, n: int = 1000, k: int = 32) -> float:
    """Seconds for ``n`` objects whose ``sync_record`` sleeps 20 ms, ``k`` at once."""
    vacuum(url)
    rate, _cpu = bc.run(url, n, k, dependent=False)
    return n / rate


def worker(url: str) -> None:
    """A synchronizer process for :func:`kill_restart`: runs until terminated."""
    schema = bc.load_schema([], extra=bc.parse_xproto(bc.MODELS, "bench.xproto"))
    store = Store(url, schema)
    sup = supervisor(store)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(1)
    finally:
        sup.stop()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=None, help="a running PostgreSQL's URL")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller N, one round")
    parser.add_argument("--work", nargs="*", default=["noop", "kill-restart", "io"])
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="the no-op work's N")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    if args.postgres:
        report(args, args.postgres)
        return
    from local_postgres import LocalPostgres

    with LocalPostgres() as pg:
        report(args, pg.url)


def report(args: argparse.Namespace, pg_url: str) -> None:
    with sa.create_engine(pg_url).connect() as conn:
        print("postgresql:", conn.execute(sa.text("SHOW server_version")).scalar_one())
    sizes = args.sizes or ([500, 2000] if args.quick else [2000, 10_000])
    works: list[tuple[str, Any]] = []
    if "noop" in args.work:
        works += [(f"no-op {n}", lambda url, n=n: noop(url, n)) for n in sizes]
    if "kill-restart" in args.work:
        works.append(("kill-restart 2000", kill_restart))
    if "io" in args.work:
        works.append(("I/O K=32 1000", io_bound))
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(1 if args.quick else args.rounds):
            for name, work in works:
                for store in ("sqlite", "postgresql"):
                    url = pg_url if store == "postgresql" else f"sqlite:///{folder}/{r}-{len(times)}.db"
                    STATEMENTS.clear()
                    seconds = work(url)
                    times.setdefault((name, store), []).append(seconds)
                    per = "".join(f", {v:.2f} {k}/object" for k, v in STATEMENTS.items())
                    print(f"round {r + 1} {name:>18} {store:>10} {seconds:8.2f} s{per}", flush=True)
    print(f"{'work':>18} {'sqlite s':>9} {'pg s':>9} {'pg/sqlite':>9}")
    for name, _ in works:
        lite = statistics.median(times[(name, "sqlite")])
        pg = statistics.median(times[(name, "postgresql")])
        print(f"{name:>18} {lite:9.2f} {pg:9.2f} {pg / lite:9.2f}")


if __name__ == "__main__":
    main()
