#!/usr/bin/env python3
"""Data-layer benchmark: the ORM over the default store (an SQLite file, WAL) against bare SQL.

Run by hand::

    python benchmarks/bench_store.py            # full run (about a minute)
    python benchmarks/bench_store.py --quick    # smoke run (a few seconds)

It measures, on a temporary SQLite file:

* ORM ``create``, ``get`` and ``save`` per second over N objects of the reference's
  ``MyModel``, and the same work as bare SQL through SQLAlchemy Core on the same table
  definition in another file (one INSERT + COMMIT per create, SELECT by id, UPDATE +
  COMMIT) -- the ceiling -- with the ratio;
* the dirty-for-sync query ``Store.pending("MyModel", "sync")`` at 1k, 10k and 100k
  objects with 1 % dirty (median of several runs, in ms), beside the same query as bare
  SQL through SQLAlchemy (the ceiling), the sqlite3 driver alone fetching its rows (the
  floor: no Python object built from them) and the index alone (ids only).

Targets: ORM within 3x of bare SQL; the dirty query under 5 ms at 100k objects.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from actors.models import load_schema, parse_xproto
from actors.orm import ModelAccessor
from actors.store import Caller, Store, pending_condition
from actors.store._engine import make_engine as _make_engine
from actors.store._tables import Tables

MODELS = """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""

ORM_TARGET_RATIO = 3.0
DIRTY_TARGET_MS = 5.0


def interleaved_ms(fns: list[Callable[[], Any]], runs: int) -> list[float]:
    """Median milliseconds of each function, run in turn (so all see the same load)."""
    for fn in fns:
        fn()  # warm-up: statement caches, pages
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, times in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return [statistics.median(times) for times in samples]


# -- ORM against bare SQL -----------------------------------------------------------------


class OrmWork:
    """Creates, gets by id and saves (one changed field) through the ORM, as a client."""

    def __init__(self, folder: Path) -> None:
        self.store = Store(
            f"sqlite:///{folder / 'orm.db'}", load_schema([], extra=parse_xproto(MODELS, "b.xproto"))
        )
        self.MyModel = ModelAccessor(self.store, caller=Caller.CLIENT).MyModel

    def create(self, start: int, stop: int) -> list[int]:
        ids = []
        for i in range(start, stop):
            obj = self.MyModel(first_name=f"first{i}", last_name=f"last{i}")
            obj.save()
            assert obj.id is not None
            ids.append(obj.id)
        return ids

    def get(self, ids: list[int]) -> list[Any]:
        return [self.MyModel.objects.get(id=id) for id in ids]

    def save(self, objects: list[Any]) -> None:
        for obj in objects:
            obj.last_name = f"changed{obj.id}"
            obj.save()

    def close(self) -> None:
        assert self.MyModel.objects.filter(last_name="changed1").count() == 1
        self.store.close()


class BareWork:
    """The same work as bare SQLAlchemy Core on the same table, one connection: the ceiling.

    Statements are built once with bound parameters (as fast as Core goes); each operation
    is its own transaction: INSERT + COMMIT, SELECT by id, UPDATE + COMMIT.
    """

    def __init__(self, folder: Path) -> None:
        schema = load_schema([], extra=parse_xproto(MODELS, "b.xproto"))
        table = Tables(schema, covering=True).by_model["MyModel"]  # same columns and indexes as the store's
        self.engine = _make_engine(f"sqlite:///{folder / 'bare.db'}")  # same pragmas: WAL, synchronous=NORMAL
        table.create(self.engine)
        self.defaults = {f.column: f.default for f in schema.fields("MyModel").values()}
        self.insert = table.insert()
        self.select = sa.select(table).where(table.c.id == sa.bindparam("_id"))
        self.update = (
            table.update()
            .where(table.c.id == sa.bindparam("_id"))
            .values(last_name=sa.bindparam("_last_name"), updated=sa.bindparam("_updated"))
        )
        self.conn = self.engine.connect()

    def create(self, start: int, stop: int) -> list[int]:
        ids = []
        conn = self.conn
        for i in range(start, stop):
            now = time.time()
            row = {**self.defaults, "created": now, "updated": now, "leaf_model_name": "MyModel"}
            row.update(first_name=f"first{i}", last_name=f"last{i}")
            with conn.begin():
                key = conn.execute(self.insert, row).inserted_primary_key
                assert key is not None
                ids.append(int(key[0]))
        return ids

    def get(self, ids: list[int]) -> list[Any]:
        conn = self.conn
        rows = []
        for id in ids:
            with conn.begin():
                rows.append(dict(conn.execute(self.select, {"_id": id}).mappings().one()))
        return rows

    def save(self, rows: list[Any]) -> None:
        conn = self.conn
        for row in rows:
            with conn.begin():
                conn.execute(
                    self.update,
                    {"_id": row["id"], "_last_name": f"changed{row['id']}", "_updated": time.time()},
                )

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def bench_crud(folder: Path, n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per operation (median over rounds) for ORM and bare SQL, and their ratio.

    Each round does n/rounds creates, gets and saves with one then the other, so both
    see the same machine load; the ratio is the median of the rounds' ratios.
    """
    orm, bare = OrmWork(folder), BareWork(folder)
    per = max(1, n // rounds)
    samples: dict[str, dict[str, list[float]]] = {
        op: {"orm": [], "bare": []} for op in ("create", "get", "save")
    }
    for r in range(rounds):
        for name, work in (("orm", orm), ("bare", bare)):
            start = time.perf_counter()
            ids = work.create(r * per, (r + 1) * per)
            mid = time.perf_counter()
            objects = work.get(ids)
            mid2 = time.perf_counter()
            work.save(objects)
            end = time.perf_counter()
            samples["create"][name].append((mid - start) / per)
            samples["get"][name].append((mid2 - mid) / per)
            samples["save"][name].append((end - mid2) / per)
    orm.close()
    bare.close()
    out = {}
    for op, s in samples.items():
        out[op] = {
            "orm": statistics.median(s["orm"]),
            "bare": statistics.median(s["bare"]),
            "ratio": statistics.median(o / b for o, b in zip(s["orm"], s["bare"], strict=True)),
        }
    return out


# -- the dirty query ----------------------------------------------------------------------


def fill(store: Store, start: int, stop: int, dirty_every: int = 100) -> None:
    """Insert objects start..stop-1 directly; every ``dirty_every``-th one needs sync."""
    table = store.tables.by_model["MyModel"]
    defaults = {f.column: f.default for f in store.schema.fields("MyModel").values()}
    batch = []
    for i in range(start, stop):
        now = 1_000_000.0 + i
        dirty = i % dirty_every == 0
        batch.append(
            {
                **defaults,
                "id": i + 1,
                "created": now,
                "updated": now,
                "enacted": None if dirty else now,
                "policed": now,
                "leaf_model_name": "MyModel",
                "first_name": f"first{i}",
                "last_name": f"last{i}",
            }
        )
    with store.engine.begin() as conn:
        for k in range(0, len(batch), 5000):
            conn.execute(table.insert(), batch[k : k + 5000])


def bench_dirty(folder: Path, sizes: list[int], runs: int) -> list[dict[str, Any]]:
    store = Store(
        f"sqlite:///{folder / 'dirty.db'}", load_schema([], extra=parse_xproto(MODELS, "bench.xproto"))
    )
    table = store.tables.by_model["MyModel"]
    cond = pending_condition("sync", lambda name: table.c[name])
    stmt = sa.select(table).where(cond).order_by(table.c.id)
    bare_sql = str(stmt.compile(store.engine))
    # Just finding the dirty set: the partial index alone answers it.
    ids_sql = str(sa.select(table.c.id).where(cond).order_by(table.c.id).compile(store.engine))
    results: list[dict[str, Any]] = []
    have = 0
    driver = store.engine.raw_connection()  # a pooled sqlite3 connection, same pragmas as the store's

    def floor() -> list[Any]:
        # The driver alone: the rows as sqlite3 hands them over, nothing built from them.
        cursor = driver.cursor()
        try:
            return cursor.execute(bare_sql).fetchall()
        finally:
            cursor.close()

    with store.engine.connect() as conn:

        def bare(sql: str) -> list[Any]:
            with conn.begin():  # a transaction per query: each sees the current data
                return list(conn.exec_driver_sql(sql).fetchall())

        with conn.begin():
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + bare_sql))
        for size in sizes:
            fill(store, have, size)
            have = size
            with store.engine.begin() as c:
                c.exec_driver_sql("ANALYZE")
            found = len(store.pending("MyModel", "sync"))
            assert found == size // 100 == len(bare(bare_sql)) == len(bare(ids_sql)), (found, size)
            store_ms, bare_ms, driver_ms, ids_ms = interleaved_ms(
                [
                    lambda: store.pending("MyModel", "sync"),
                    lambda: bare(bare_sql),
                    floor,
                    lambda: bare(ids_sql),
                ],
                runs,
            )
            results.append(
                {
                    "objects": size,
                    "dirty": found,
                    "store_ms": store_ms,
                    "bare_ms": bare_ms,
                    "driver_ms": driver_ms,
                    "ids_ms": ids_ms,
                }
            )
    driver.close()
    store.close()
    results[0]["plan"] = plan
    return results


# -- report -------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown RAM"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {ram}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sa.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run (few objects, 1k and 10k only)"
    )
    parser.add_argument("-n", type=int, default=None, help="objects for the create/get/save rows")
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 5000)
    rounds = 3 if args.quick else 10
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    runs = 5 if args.quick else 101

    print(f"machine: {machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"store: SQLite file in a temporary folder (WAL, synchronous=NORMAL); N = {n} in {rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        folder = Path(tmp)
        crud = bench_crud(folder, n, rounds)
        dirty = bench_dirty(folder, sizes, runs)

    print()
    print(
        f"{'operation':<10} {'ORM /s':>8} {'bare SQL /s':>12} {'ORM µs':>8} {'bare µs':>8} {'ratio':>6}"
        f"  target <= {ORM_TARGET_RATIO:g}x"
    )
    ok = True
    for op, r in crud.items():
        met = r["ratio"] <= ORM_TARGET_RATIO
        ok &= met
        print(
            f"{op:<10} {1 / r['orm']:>8,.0f} {1 / r['bare']:>12,.0f} {r['orm'] * 1e6:>8.0f} "
            f"{r['bare'] * 1e6:>8.0f} {r['ratio']:>5.2f}x  {'met' if met else 'MISSED'}"
        )
    print()
    print(
        f"{'objects':>8} {'dirty':>6} {'pending() ms':>13} {'bare SQL ms':>12} {'driver ms':>10}"
        f" {'ids only ms':>12}"
        f"  target < {DIRTY_TARGET_MS:g} ms at 100k"
    )
    for r in dirty:
        met = r["store_ms"] < DIRTY_TARGET_MS
        if r["objects"] == 100_000:
            ok &= met
        print(
            f"{r['objects']:>8,} {r['dirty']:>6,} {r['store_ms']:>13.2f} {r['bare_ms']:>12.2f}"
            f" {r['driver_ms']:>10.2f} {r['ids_ms']:>12.2f}"
            f"  {'met' if met else 'MISSED'}"
        )
    print(f"\nquery plan: {dirty[0]['plan']}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
