"""Property tests of the store: random histories of writes, then the four synchronizer queries.

A history is a list of operations on a handful of objects (``Widget``, a one-table model,
and ``SubInstance``, a three-table chain under ``ServiceInstance``): client saves,
synchronizer saves with or without ``always_update_timestamp``, step and policy saves,
``update_fields`` saves, status writes of a sync or a policy, flag toggles, deletes and
reaps. The same history is played on the store and on an oracle written here from the
rules of ``xos-semantics.md``; afterwards

* every object's bookkeeping fields are what the oracle computed,
* ``Store.pending(model, which)`` returns exactly the objects the oracle says, and
* :func:`row_is_pending` on the rows of ``Store.select`` agrees with both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.store import Caller, Pending, Store, WriteContext, row_is_pending

from .store_support import StepClock, open_store, postgres_database, sqlite_url

PENDING = tuple(p.value for p in Pending)
CALLERS = (Caller.CLIENT, Caller.SYNCHRONIZER, Caller.STEP, Caller.POLICY)

#: Fields whose writes do not count as "a step/policy changed the object" (the XOS
#: bookkeeping_state and feedback_state fields the operations below touch).
NOT_MODEL_FIELDS = frozenset(
    {
        "backend_status",
        "backend_code",
        "backend_register",
        "enacted",
        "policed",
        "policy_status",
        "policy_code",
        "backend_need_delete",
        "backend_need_reap",
        "backend_need_delete_policy",
        "no_sync",
        "no_policy",
        "lazy_blocked",
        "deleted",
    }
)
#: The fields compared between store and oracle after a history.
TRACKED = (
    "updated",
    "enacted",
    "policed",
    "changed_by_step",
    "changed_by_policy",
    "deleted",
    "no_sync",
    "no_policy",
    "lazy_blocked",
    "backend_need_delete",
    "backend_need_reap",
    "backend_need_delete_policy",
)
#: The model field a "model" save writes, per model (``level`` lives in the third table).
MODEL_FIELD = {"Widget": "size", "SubInstance": "level"}


# -- the oracle -------------------------------------------------------------------------


@dataclass
class Obj:
    model: str
    id: int
    updated: float
    enacted: float | None = None
    policed: float | None = None
    changed_by_step: float | None = None
    changed_by_policy: float | None = None
    deleted: bool = False
    no_sync: bool = False
    no_policy: bool = False
    lazy_blocked: bool = False
    backend_need_delete: bool = False
    backend_need_reap: bool = False
    backend_need_delete_policy: bool = False
    purged: bool = False

    def tracked(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TRACKED}


def _before(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and a < b


def oracle_pending(o: Obj, which: str) -> bool:
    """The four queries, from the rules as written in xos-semantics.md."""
    if o.purged:
        return False
    if which == "sync":
        if o.deleted or o.no_sync or o.lazy_blocked:
            return False
        return o.enacted is None or _before(o.enacted, o.updated) or _before(o.enacted, o.changed_by_policy)
    if which == "sync_deleted":
        # Soft-deleted, not purged, and owing the backend a delete that has not been done.
        return o.deleted and o.backend_need_delete and not o.backend_need_reap
    if which == "policy":
        if o.deleted or o.no_policy:
            return False
        return o.policed is None or _before(o.policed, o.updated) or _before(o.policed, o.changed_by_step)
    if which == "policy_deleted":
        return o.deleted and not o.no_policy and (o.policed is None or _before(o.policed, o.updated))
    raise AssertionError(which)


@dataclass
class Oracle:
    objects: list[Obj] = field(default_factory=list)

    def create(self, model: str, id: int, now: float, caller: Caller, values: dict[str, Any]) -> None:
        o = Obj(model, id, updated=now)
        for name, value in values.items():
            if hasattr(o, name):
                setattr(o, name, value)
        self._stamp(o, caller, set(values), now)
        self.objects.append(o)

    def update(self, o: Obj, now: float, caller: Caller, written: dict[str, Any], always: bool) -> None:
        was_deleted = o.deleted
        for name, value in written.items():
            if hasattr(o, name):
                setattr(o, name, value)
        if caller is Caller.CLIENT or always:
            o.updated = now
        self._stamp(o, caller, set(written), now)
        if was_deleted:
            self._reap_if_done(o)

    def delete(self, o: Obj, now: float, caller: Caller, always: bool) -> None:
        if o.deleted:
            return
        o.deleted, o.enacted, o.policed = True, None, None
        if caller is Caller.CLIENT or always:
            o.updated = now
        self._reap_if_done(o)

    @staticmethod
    def _stamp(o: Obj, caller: Caller, written: set[str], now: float) -> None:
        if not written - NOT_MODEL_FIELDS:
            return
        if caller is Caller.STEP:
            o.changed_by_step = now
        elif caller is Caller.POLICY:
            o.changed_by_policy = now

    @staticmethod
    def _reap_if_done(o: Obj) -> None:
        backend_done = not o.backend_need_delete or o.backend_need_reap
        policy_done = not o.backend_need_delete_policy or o.policed is not None
        if backend_done and policy_done:
            o.purged = True

    def live(self, model: str) -> list[Obj]:
        return [o for o in self.objects if o.model == model and not o.purged]


# -- operations -------------------------------------------------------------------------

index = st.integers(min_value=0, max_value=7)
callers = st.sampled_from(CALLERS)
creators = st.sampled_from((Caller.CLIENT, Caller.SYNCHRONIZER, Caller.STEP))

creates = st.tuples(
    st.just("create"), st.sampled_from(("Widget", "SubInstance")), creators, st.booleans(), st.booleans()
)
operations = st.one_of(
    creates,
    st.tuples(
        st.just("save"),
        index,
        callers,
        st.sampled_from(("model", "feedback", "both", "partial")),
        st.booleans(),
    ),
    st.tuples(st.just("sync_done"), index),
    st.tuples(st.just("sync_failed"), index),
    st.tuples(st.just("policy_done"), index),
    st.tuples(st.just("toggle"), index, st.sampled_from(("no_sync", "no_policy", "lazy_blocked")), callers),
    st.tuples(st.just("need_delete"), index),
    st.tuples(st.just("need_delete_policy"), index, st.booleans()),
    st.tuples(st.just("delete"), index, callers, st.booleans()),
    st.tuples(st.just("reap"), index),
)
#: A few objects first, then anything (more objects included).
histories = st.builds(
    lambda first, rest: first + rest,
    st.lists(creates, min_size=1, max_size=4),
    st.lists(operations, max_size=30),
)


class Player:
    """Plays one history on a store and on the oracle, side by side."""

    def __init__(self, store: Store, clock: StepClock, owner: int) -> None:
        self.store, self.clock, self.owner = store, clock, owner
        self.oracle = Oracle()
        self.counter = 0

    def now(self) -> float:
        # One second per operation: the store's timestamp of the write is exactly this.
        return self.clock.tick()

    def pick(self, i: int) -> Obj | None:
        """The ``i``-th object not purged (modulo their number), if any."""
        live = [o for o in self.oracle.objects if not o.purged]
        return live[i % len(live)] if live else None

    def write(
        self, o: Obj, values: dict[str, Any], caller: Caller, always: bool = False, only: Any = None
    ) -> None:
        now = self.now()
        ctx = WriteContext(caller, always, tuple(only) if only is not None else None)
        self.store.update(o.model, o.id, values, ctx)
        written = {k: v for k, v in values.items() if only is None or k in only}
        self.oracle.update(o, now, caller, written, always)

    def play(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        self.counter += 1
        if kind == "create":
            _, model, caller, need_delete, need_delete_policy = op
            values: dict[str, Any] = {
                MODEL_FIELD[model]: self.counter,
                "backend_need_delete": need_delete,
                "backend_need_delete_policy": need_delete_policy,
            }
            if model == "SubInstance":
                values["owner_id"] = self.owner
            now = self.now()
            row = self.store.create(model, values, WriteContext(caller))
            self.oracle.create(model, row["id"], now, caller, values)
            return
        o = self.pick(op[1])
        if o is None:
            return
        field_name = MODEL_FIELD[o.model]
        if kind == "save":
            _, _, caller, what, always = op
            status = {"backend_status": f"status {self.counter}"}
            model_value = {field_name: self.counter}
            if what == "model":
                self.write(o, model_value, caller, always)
            elif what == "feedback":
                self.write(o, status, caller, always)
            elif what == "both":
                self.write(o, {**model_value, **status}, caller, always)
            else:  # update_fields keeps only the feedback field: no model field is written
                self.write(o, {**model_value, **status}, caller, always, only=("backend_status",))
        elif kind in ("sync_done", "policy_done"):
            row = self.store.get(o.model, o.id)
            assert row is not None
            if kind == "sync_done":  # enacted = max(updated, changed_by_policy)
                stamp = max(x for x in (row["updated"], row["changed_by_policy"]) if x is not None)
                values = {
                    "enacted": stamp,
                    "backend_status": "OK",
                    "backend_code": 1,
                    "backend_register": "{}",
                }
            else:  # policed = max(updated, changed_by_step)
                stamp = max(x for x in (row["updated"], row["changed_by_step"]) if x is not None)
                values = {"policed": stamp, "policy_status": "done", "policy_code": 1}
            self.write(o, values, Caller.SYNCHRONIZER, only=tuple(values))
        elif kind == "sync_failed":
            self.write(o, {"backend_status": "boom", "backend_code": 2}, Caller.SYNCHRONIZER)
        elif kind == "toggle":
            _, _, flag, caller = op
            self.write(o, {flag: not getattr(o, flag)}, caller)
        elif kind == "need_delete":
            self.write(o, {"backend_need_delete": True}, Caller.SYNCHRONIZER, only=("backend_need_delete",))
        elif kind == "need_delete_policy":
            self.write(o, {"backend_need_delete_policy": op[2]}, Caller.CLIENT)
        elif kind == "delete":
            _, _, caller, always = op
            now = self.now()
            self.store.delete(o.model, o.id, WriteContext(caller, always))
            self.oracle.delete(o, now, caller, always)
        elif kind == "reap":
            self.write(o, {"backend_need_reap": True}, Caller.SYNCHRONIZER, only=("backend_need_reap",))
        else:
            raise AssertionError(kind)

    def check(self) -> None:
        store, oracle = self.store, self.oracle
        for model, query_models in (
            ("Widget", ("Widget",)),
            ("SubInstance", ("SubInstance", "ServiceInstance")),
        ):
            live = oracle.live(model)
            rows = store.select(model)
            assert [r["id"] for r in rows] == [o.id for o in live], f"{model}: purged or lost objects"
            for row, o in zip(rows, live, strict=True):
                assert {k: row[k] for k in TRACKED} == o.tracked(), f"{model} id {o.id}"
            for which in PENDING:
                expected = [o.id for o in live if oracle_pending(o, which)]
                by_python = [r["id"] for r in rows if row_is_pending(r, which)]
                assert by_python == expected, f"row_is_pending {model} {which}"
                for query_model in query_models:
                    got = [r["id"] for r in store.pending(query_model, which)]
                    assert got == expected, f"Store.pending({query_model!r}, {which!r})"


def clear(store: Store) -> None:
    """Remove every object (between examples, faster than a new database)."""
    with store.engine.begin() as conn:
        for table in reversed(store.tables.metadata.sorted_tables):
            conn.execute(sa.delete(table))


def run_history(store: Store, clock: StepClock, history: list[tuple[Any, ...]]) -> None:
    clear(store)
    owner = store.create("Service", {"name": "owner"})["id"]
    player = Player(store, clock, owner)
    for op in history:
        player.play(op)
    player.check()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, StepClock]]:
    clock = StepClock()
    with open_store(sqlite_url(Path(tmp_path_factory.mktemp("props"))), clock=clock) as store:
        yield store, clock


@pytest.fixture(scope="module")
def postgres_store(postgres_url: str) -> Iterator[tuple[Store, StepClock]]:
    clock = StepClock()
    with postgres_database(postgres_url) as url, open_store(url, clock=clock) as store:
        yield store, clock


COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@settings(max_examples=250, **COMMON)  # type: ignore[arg-type]
@given(history=histories)
def test_pending_agrees_with_the_oracle_on_sqlite(
    sqlite_store: tuple[Store, StepClock], history: list[tuple[Any, ...]]
) -> None:
    run_history(*sqlite_store, history)


@pytest.mark.postgres
@settings(max_examples=80, **COMMON)  # type: ignore[arg-type]
@given(history=histories)
def test_pending_agrees_with_the_oracle_on_postgresql(
    postgres_store: tuple[Store, StepClock], history: list[tuple[Any, ...]]
) -> None:
    run_history(*postgres_store, history)


def test_a_fixed_history_makes_every_query_non_empty(sqlite_store: tuple[Store, StepClock]) -> None:
    """The harness is not vacuous: this history leaves objects in each of the four queries."""
    store, clock = sqlite_store
    history: list[tuple[Any, ...]] = [
        ("create", "Widget", Caller.CLIENT, False, False),  # 0: never synced
        ("create", "Widget", Caller.CLIENT, True, False),  # 1: in the backend, then deleted
        ("create", "SubInstance", Caller.SYNCHRONIZER, False, True),  # 2: owes a delete policy
        ("create", "SubInstance", Caller.CLIENT, False, False),  # 3: synced, then changed by a step
        ("delete", 1, Caller.CLIENT, False),
        ("delete", 2, Caller.SYNCHRONIZER, False),
        ("sync_done", 3),
        ("policy_done", 3),
        ("save", 3, Caller.STEP, "model", False),
    ]
    run_history(store, clock, history)
    assert [r["id"] for r in store.pending("Widget", "sync")] != []
    assert [r["id"] for r in store.pending("Widget", "sync_deleted")] != []
    assert len(store.pending("SubInstance", "policy")) == 1
    assert len(store.pending("SubInstance", "policy_deleted")) == 1
    assert store.pending("SubInstance", "sync") == []


def test_the_oracle_is_independent_of_the_store() -> None:
    """Spot checks of the oracle against the rules, by hand."""
    o = Obj("Widget", 1, updated=10.0, enacted=10.0, policed=10.0, changed_by_policy=12.0)
    assert oracle_pending(o, "sync") and not oracle_pending(o, "policy")
    o.enacted = 12.0
    assert not oracle_pending(o, "sync")
    o.changed_by_step = 11.0
    assert oracle_pending(o, "policy")
    o.no_policy = True
    assert not oracle_pending(o, "policy")
    oracle = Oracle([o])
    oracle.delete(o, 20.0, Caller.SYNCHRONIZER, always=False)
    assert o.purged and not any(oracle_pending(o, w) for w in PENDING), "never in the backend: purged"
