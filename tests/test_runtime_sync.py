"""Message tests of the sync-step actor: send it messages, check calls and status fields."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from actors.runtime._status import DEFERRED_RETRY
from actors.runtime.messages import Changed, Resync
from actors.runtime.sync import SyncStepActor
from actors.steps import DeferredException, InnocuousException, SyncStep
from actors.store import ChangeNotice

from .runtime_support import GRAPH, client, factory, make_ctx, make_store, settle


class Calls:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, str, int]] = []

    def add(self, kind: str, o: Any) -> None:
        with self.lock:
            self.items.append((kind, o.model_name, o.id))

    def of(self, kind: str) -> list[int]:
        with self.lock:
            return [i for k, _, i in self.items if k == kind]


def step_class(observes: Any, calls: Calls, fail: dict[int, BaseException] | None = None) -> type[SyncStep]:
    failures = fail if fail is not None else {}

    class Step(SyncStep):
        def sync_record(self, o: Any) -> None:
            calls.add("sync", o)
            if o.id in failures:
                raise failures[o.id]

        def delete_record(self, o: Any) -> None:
            calls.add("delete", o)

    Step.observes = observes
    return Step


@pytest.fixture
def store():
    s = make_store()
    yield s
    s.close()


def start(store, step, **settings):
    ctx = make_ctx(store, name="SyncStep", **settings)
    ref = SyncStepActor.start(ctx, factory(step))
    settle(ref)
    return ctx, ref


def notice(obj, kind="update", origin=None):
    return Changed(ChangeNotice(seq=0, model=obj._model, id=obj.id, kind=kind, at=0.0, origin=origin))


def test_start_syncs_every_dirty_object_and_writes_status(store):
    people = client(store).MyModel
    a = people(first_name="John", last_name="Doe")
    a.save()
    b = people(first_name="Jane", last_name="Doe", no_sync=True)
    b.save()
    calls = Calls()
    ctx, ref = start(store, step_class("MyModel", calls))
    try:
        assert calls.of("sync") == [a.id]
        row = store.get("MyModel", a.id)
        assert row["enacted"] == row["updated"]
        assert (row["backend_status"], row["backend_code"], row["backend_need_delete"]) == ("OK", 1, True)
        assert json.loads(row["backend_register"]) == {
            "next_run": 0,
            "exponent": 0,
            "last_success": ctx.clock.now(),
            "failures": 0,
        }
        assert store.get("MyModel", b.id)["enacted"] is None
        assert ctx.state.done == 1
    finally:
        ref.stop()


def test_a_change_notice_syncs_the_object_once(store):
    calls = Calls()
    _, ref = start(store, step_class("MyModel", calls))
    try:
        obj = client(store).MyModel(first_name="A", last_name="B")
        obj.save()
        ref.tell(notice(obj, "create"))
        settle(ref)
        assert calls.of("sync") == [obj.id]
        # The notice of our own status write is ignored; a repeated notice finds nothing to do.
        ref.tell(notice(obj, origin="SyncStep"))
        ref.tell(notice(obj))
        settle(ref)
        assert calls.of("sync") == [obj.id]
        obj.last_name = "C"
        obj.save()
        ref.tell(notice(obj))
        settle(ref)
        assert calls.of("sync") == [obj.id, obj.id]
    finally:
        ref.stop()


def test_a_synchronizer_save_does_not_make_the_object_dirty(store):
    calls = Calls()
    _, ref = start(store, step_class("MyModel", calls))
    try:
        obj = client(store).MyModel(first_name="A", last_name="B")
        obj.save()
        ref.tell(notice(obj, "create"))
        settle(ref)
        mine = make_ctx(store).accessor.MyModel.objects.get(id=obj.id)
        mine.backend_handle = "h-1"
        mine.save()
        ref.tell(notice(obj))
        settle(ref)
        assert calls.of("sync") == [obj.id]
        mine.first_name = "Z"
        mine.save(always_update_timestamp=True)
        ref.tell(notice(obj))
        settle(ref)
        assert calls.of("sync") == [obj.id, obj.id]
    finally:
        ref.stop()


@pytest.mark.parametrize(
    ("error", "code"),
    [(RuntimeError("boom"), 2), (InnocuousException("meh"), 1)],
)
def test_failure_status_and_code(store, error, code):
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    calls = Calls()
    _, ref = start(store, step_class("MyModel", calls, {obj.id: error}))
    try:
        row = store.get("MyModel", obj.id)
        assert row["backend_status"] == str(error)
        assert row["backend_code"] == code
        assert row["enacted"] is None
        register = json.loads(row["backend_register"])
        # The first failure retried at once; the second set the backoff.
        assert calls.of("sync") == [obj.id, obj.id]
        assert register["failures"] == 2
        assert register["exponent"] == 2
    finally:
        ref.stop()


def test_backoff_timing_and_last_two_errors(store):
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    calls = Calls()
    errors = {obj.id: RuntimeError("first")}
    ctx, ref = start(store, step_class("MyModel", calls, errors))
    clock = ctx.clock
    try:
        assert len(calls.of("sync")) == 2  # failure 1 retried at once, failure 2 waits 1 x 600 s
        start_time = clock.now()
        assert json.loads(store.get("MyModel", obj.id)["backend_register"])["next_run"] == start_time + 600
        errors[obj.id] = RuntimeError("second")
        clock.advance(599)
        settle(ref)
        assert len(calls.of("sync")) == 2
        clock.advance(1)
        settle(ref)
        assert len(calls.of("sync")) == 3
        row = store.get("MyModel", obj.id)
        assert row["backend_status"] == "first // second"
        assert json.loads(row["backend_register"])["next_run"] == clock.now() + 1200  # exponent 2
        errors[obj.id] = RuntimeError("third")
        clock.advance(1200)
        settle(ref)
        assert store.get("MyModel", obj.id)["backend_status"] == "second // third"
        # A client change does not bypass the backoff: it waits for next_run.
        client(store).MyModel.objects.get(id=obj.id).save()
        ref.tell(notice(obj))
        settle(ref)
        assert len(calls.of("sync")) == 4
        del errors[obj.id]
        clock.advance(1800)
        settle(ref)
        assert len(calls.of("sync")) == 5
        row = store.get("MyModel", obj.id)
        assert (row["backend_status"], row["backend_code"]) == ("OK", 1)
        assert json.loads(row["backend_register"])["failures"] == 0
    finally:
        ref.stop()


def test_innocuous_backoff_is_a_minute_and_capped(store):
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    store.update("MyModel", obj.id, {"backend_register": json.dumps({"failures": 3, "exponent": 1000})})
    calls = Calls()
    ctx, ref = start(store, step_class("MyModel", calls, {obj.id: InnocuousException("x")}))
    try:
        register = json.loads(store.get("MyModel", obj.id)["backend_register"])
        assert register["next_run"] == ctx.clock.now() + 8 * 3600
        assert calls.of("sync") == [obj.id]
    finally:
        ref.stop()


def test_backoff_disabled_retries_on_resync_only(store):
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    calls = Calls()
    ctx, ref = start(store, step_class("MyModel", calls, {obj.id: RuntimeError("x")}), backoff_disabled=True)
    try:
        assert calls.of("sync") == [obj.id]
        ctx.clock.advance(3600)  # the periodic resync (30 s) retries it
        settle(ref)
        assert len(calls.of("sync")) >= 2
    finally:
        ref.stop()


def test_no_sync_and_lazy_blocked_are_skipped(store):
    people = client(store).MyModel
    people(first_name="A", last_name="B", no_sync=True).save()
    people(first_name="C", last_name="D", lazy_blocked=True).save()
    calls = Calls()
    _, ref = start(store, step_class("MyModel", calls))
    try:
        assert calls.items == []
    finally:
        ref.stop()


def test_deletion_runs_delete_record_then_the_object_is_purged(store):
    people = client(store).MyModel
    obj = people(first_name="A", last_name="B")
    obj.save()
    never = people(first_name="C", last_name="D", no_sync=True)
    never.save()
    calls = Calls()
    _, ref = start(store, step_class("MyModel", calls))
    try:
        obj.delete()
        never.delete()
        assert store.get("MyModel", never.id) is None  # never reached the backend: gone at once
        ref.tell(notice(obj, "delete"))
        settle(ref)
        assert calls.of("delete") == [obj.id]
        assert store.get("MyModel", obj.id) is None
    finally:
        ref.stop()


def test_dependency_order_with_one_actor_for_three_models(store):
    c = client(store)
    a = c.Alpha(name="a")
    a.save()
    b = c.Beta(name="b", alpha=a)
    b.save()
    g = c.Gamma(name="g", beta=b)
    g.save()
    calls = Calls()
    _, ref = start(store, step_class(["Gamma", "Beta", "Alpha"], calls), dependency_graph=GRAPH)
    try:
        assert [m for k, m, _ in calls.items if k == "sync"] == ["Alpha", "Beta", "Gamma"]
        for model in ("Gamma", "Beta", "Alpha"):
            getattr(c, model).objects.get(name=model[0].lower()).delete()
        ref.tell(Resync("test"))
        settle(ref)
        assert [m for k, m, _ in calls.items if k == "delete"] == ["Gamma", "Beta", "Alpha"]
    finally:
        ref.stop()


def test_a_failure_blocks_dependents_until_it_succeeds(store):
    c = client(store)
    a = c.Alpha(name="a")
    a.save()
    b = c.Beta(name="b", alpha=a)
    b.save()
    calls = Calls()
    errors = {a.id: RuntimeError("backend down")}
    ctx, ref = start(store, step_class(["Alpha", "Beta"], calls, errors), dependency_graph=GRAPH)
    try:
        beta = store.get("Beta", b.id)
        assert beta["backend_status"] == f"Failed due to error in model Alpha id {a.id}: backend down"
        assert beta["backend_code"] == 2
        assert ("sync", "Beta", b.id) not in calls.items
        del errors[a.id]
        ctx.clock.advance(600)
        settle(ref)
        assert calls.items[-2:] == [("sync", "Alpha", a.id), ("sync", "Beta", b.id)]
        assert store.get("Beta", b.id)["backend_status"] == "OK"
    finally:
        ref.stop()


def test_custom_fetch_pending_decides_what_is_synced(store):
    people = client(store).MyModel
    for name in ("keep", "skip"):
        people(first_name=name, last_name="x").save()
    calls = Calls()

    class Picky(SyncStep):
        observes = "MyModel"

        def fetch_pending(self, deleted=False):
            return [] if deleted else list(self.model_accessor.MyModel.objects.filter(first_name="keep"))

        def sync_record(self, o):
            calls.add("sync", o)

    _, ref = start(store, Picky)
    try:
        assert len(calls.of("sync")) == 1
    finally:
        ref.stop()


def test_a_step_without_delete_record_lets_deleted_objects_go(store):
    """As in the original, the default ``delete_record`` logs; deletion is not blocked forever."""
    synced: list[int] = []

    class OnlySync(SyncStep):
        observes = "MyModel"

        def sync_record(self, o: Any) -> None:
            synced.append(o.id)

    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ctx, ref = start(store, OnlySync)
    try:
        assert synced == [obj.id]
        assert store.get("MyModel", obj.id)["backend_need_delete"] is True
        obj.delete()
        ref.tell(notice(obj, "delete"))
        settle(ref)
        assert store.get("MyModel", obj.id) is None  # reaped, not stuck with an error
        assert ctx.state.failed == 0
    finally:
        ref.stop()


def test_a_deferred_object_is_retried_promptly_without_backoff(store):
    """A ``DeferredException`` is not an error: retried 1 s after each attempt, the exponent untouched."""
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    calls = Calls()
    errors: dict[int, BaseException] = {obj.id: DeferredException("waiting for the policy")}
    ctx, ref = start(store, step_class("MyModel", calls, errors))
    clock = ctx.clock
    try:
        row = store.get("MyModel", obj.id)
        assert (row["backend_status"], row["backend_code"]) == ("waiting for the policy", 0)
        register = json.loads(row["backend_register"])
        assert register["exponent"] == 0 and register["failures"] == 1
        assert register["next_run"] == clock.now() + DEFERRED_RETRY
        assert calls.of("sync") == [obj.id]
        # Not a hot loop: a change notice inside the second does not call the step again.
        client(store).MyModel.objects.get(id=obj.id).save()
        ref.tell(notice(obj))
        settle(ref)
        assert calls.of("sync") == [obj.id]
        for attempt in range(2, 12):  # ten more passes: still one second apart, never a minute
            clock.advance(DEFERRED_RETRY)
            settle(ref)
            assert len(calls.of("sync")) == attempt
        register = json.loads(store.get("MyModel", obj.id)["backend_register"])
        assert register["exponent"] == 0 and register["next_run"] == clock.now() + DEFERRED_RETRY
        del errors[obj.id]
        clock.advance(DEFERRED_RETRY)
        settle(ref)
        row = store.get("MyModel", obj.id)
        assert (row["backend_status"], row["backend_code"]) == ("OK", 1)
        assert row["enacted"] == row["updated"]
    finally:
        ref.stop()


def test_a_real_error_after_deferrals_backs_off_as_usual(store):
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    calls = Calls()
    errors: dict[int, BaseException] = {obj.id: DeferredException("later")}
    ctx, ref = start(store, step_class("MyModel", calls, errors))
    clock = ctx.clock
    try:
        clock.advance(DEFERRED_RETRY)
        settle(ref)
        errors[obj.id] = RuntimeError("broken")
        clock.advance(DEFERRED_RETRY)
        settle(ref)
        # The first real error retries at once, the second waits 1 x 600 s.
        assert len(calls.of("sync")) == 4
        row = store.get("MyModel", obj.id)
        assert (row["backend_status"], row["backend_code"]) == ("later // broken", 2)
        register = json.loads(row["backend_register"])
        assert register["exponent"] == 2 and register["next_run"] == clock.now() + 600
    finally:
        ref.stop()


def test_a_deferred_object_is_retried_even_with_backoff_disabled(store):
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    calls = Calls()
    ctx, ref = start(
        store, step_class("MyModel", calls, {obj.id: DeferredException("later")}), backoff_disabled=True
    )
    try:
        assert calls.of("sync") == [obj.id]
        ctx.clock.advance(DEFERRED_RETRY)  # well before the 30 s resync
        settle(ref)
        assert calls.of("sync") == [obj.id, obj.id]
    finally:
        ref.stop()


DEFERRING_STEP = """
from xossynchronizer.steps.syncstep import SyncStep, DeferredException
import {shared} as shared

class SyncMyModel(SyncStep):
    observes = "MyModel"

    def sync_record(self, o):
        shared.attempts.append(o.id)
        if not o.policed:
            raise DeferredException("waiting for the policy")
    # No delete_record: the original's default lets deleted objects go.
"""

SLOW_POLICY = """
from xossynchronizer.model_policies.policy import Policy
import {shared} as shared

class MyModelPolicy(Policy):
    model_name = "MyModel"

    def handle_create(self, o):
        assert shared.release.wait(10)
"""


def test_a_synchronizer_syncs_a_deferring_step_a_second_after_its_policy(tmp_path):
    """End to end, as real services do: the step defers until the policy ran; deletion needs no step code."""
    import sys
    import types
    import uuid

    from actors.config import Config
    from actors.orm import ModelAccessor
    from actors.runtime import FakeClock, Synchronizer
    from actors.store import Caller

    from .helpers import wait_for
    from .runtime_support import MODELS

    shared = types.ModuleType(f"shared_{uuid.uuid4().hex}")
    shared.attempts = []  # type: ignore[attr-defined]
    shared.release = threading.Event()  # type: ignore[attr-defined]
    sys.modules[shared.__name__] = shared
    for folder, text in (("models", MODELS), ("steps", DEFERRING_STEP), ("policies", SLOW_POLICY)):
        (tmp_path / folder).mkdir()
        name = "m.xproto" if folder == "models" else f"{folder}.py"
        (tmp_path / folder / name).write_text(text.replace("{shared}", shared.__name__))
    config = Config.from_dict(
        {"name": "defer", "models_dir": "models", "steps_dir": "steps", "model_policies_dir": "policies"},
        base_dir=tmp_path,
    )
    sync = Synchronizer(config, clock=FakeClock()).start()
    try:
        assert not sync.load_errors
        c = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
        obj = c.MyModel(first_name="A", last_name="B")
        obj.save()
        wait_for(
            lambda: c.MyModel.objects.get(id=obj.id).backend_status == "waiting for the policy",
            description="deferred",
        )
        assert c.MyModel.objects.get(id=obj.id).backend_code == 0
        sync.clock.advance(1.0)  # type: ignore[attr-defined]
        wait_for(
            lambda: json.loads(c.MyModel.objects.get(id=obj.id).backend_register)["failures"] == 2,
            description="deferred again, a second later",
        )
        shared.release.set()
        wait_for(lambda: c.MyModel.objects.get(id=obj.id).policy_code == 1, description="the policy")
        sync.clock.advance(1.0)  # type: ignore[attr-defined]  # a second, not a minute
        wait_for(lambda: c.MyModel.objects.get(id=obj.id).backend_status == "OK", description="synced")
        assert len(shared.attempts) == 3  # one per second at most: no busy loop while deferred
        c.MyModel.objects.get(id=obj.id).delete()
        wait_for(lambda: c.MyModel.deleted_objects.count() == 0, description="reaped")
    finally:
        shared.release.set()
        sync.stop()
        del sys.modules[shared.__name__]
