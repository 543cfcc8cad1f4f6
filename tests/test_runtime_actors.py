"""Message tests of the policy, pull-step and change-feed actors."""

from __future__ import annotations

import re
import threading

import pytest

from actors.runtime._changefeed import ChangeFeedActor
from actors.runtime.messages import Changed, Route, Tick, Unroute
from actors.runtime.policy import POLICY_RETRY, PolicyActor
from actors.runtime.pull import PullStepActor
from actors.steps import DeferredException, Policy, PullStep
from actors.store import Caller, ChangeNotice, WriteContext

from .helpers import wait_for
from .runtime_support import Recorder, client, factory, make_ctx, make_store, settle


@pytest.fixture
def store():
    s = make_store()
    yield s
    s.close()


def changed(obj, kind="update"):
    return Changed(ChangeNotice(seq=0, model=obj._model, id=obj.id, kind=kind, at=0.0))


# -- policy -------------------------------------------------------------------
class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = False


def policy_class(seen: Seen) -> type[Policy]:
    class MyModelPolicy(Policy):
        model_name = "MyModel"

        def handle_create(self, o):
            seen.calls.append(("create", o.id))
            if seen.fail:
                raise ValueError("cannot create")

        def handle_update(self, o):
            seen.calls.append(("update", o.id))

        def handle_delete(self, o):
            seen.calls.append(("delete", o.id))

    return MyModelPolicy


def test_policy_create_update_delete_and_status(store):
    seen = Seen()
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ref = PolicyActor.start(make_ctx(store, name="policies"), [factory(policy_class(seen))])
    try:
        settle(ref)
        assert seen.calls == [("create", obj.id)]
        row = store.get("MyModel", obj.id)
        assert (row["policy_status"], row["policy_code"]) == ("done", 1)
        assert row["policed"] == row["updated"]
        assert row["backend_need_delete_policy"] is True
        obj.last_name = "C"
        obj.save()
        ref.tell(changed(obj))
        settle(ref)
        assert seen.calls[-1] == ("update", obj.id)
        obj.delete()
        ref.tell(changed(obj, "delete"))
        settle(ref)
        assert seen.calls[-1] == ("delete", obj.id)
        # Never synced and its delete policy done: the row is purged.
        assert store.get("MyModel", obj.id) is None
    finally:
        ref.stop()


def test_policy_failure_status_and_no_retry_on_its_own_write(store):
    seen = Seen()
    seen.fail = True
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ctx = make_ctx(store, name="policies")
    ref = PolicyActor.start(ctx, [factory(policy_class(seen))])
    try:
        settle(ref)
        row = store.get("MyModel", obj.id)
        assert row["policy_code"] == 2
        # As the original wrote it (traceback.format_exc(limit=1)): the exception with one frame.
        assert re.fullmatch(
            r"Traceback \(most recent call last\):\n"
            r'  File ".*test_runtime_actors\.py", line \d+, in handle_create\n'
            r'    raise ValueError\("cannot create"\)\nValueError: cannot create\n',
            row["policy_status"],
        ), row["policy_status"]
        assert ctx.state.failed == 1
        assert seen.calls == [("create", obj.id)]
        seen.fail = False
        obj.first_name = "Z"
        obj.save()
        ref.tell(changed(obj))
        settle(ref)
        assert seen.calls == [("create", obj.id)], "the change waits for the retry, as in the original"
        ctx.clock.advance(POLICY_RETRY)
        settle(ref)
        assert seen.calls == [("create", obj.id), ("create", obj.id)]
        assert store.get("MyModel", obj.id)["policy_code"] == 1
    finally:
        ref.stop()


def test_policy_failure_inside_the_framework_shows_the_policy_line(store):
    """An error raised deep in the ORM is shown at the policy's own line, not at a framework frame."""

    class Broken(Policy):
        model_name = "MyModel"

        def handle_create(self, o):
            return o.no_such_field_here

    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ref = PolicyActor.start(make_ctx(store, name="policies"), [factory(Broken)])
    try:
        settle(ref)
        status = store.get("MyModel", obj.id)["policy_status"]
        lines = status.splitlines()
        assert lines[0] == "Traceback (most recent call last):"
        assert lines[1].endswith(", in handle_create") and "test_runtime_actors.py" in lines[1]
        assert lines[2].strip() == "return o.no_such_field_here"
        assert lines[-1].startswith("AttributeError: ") and "no_such_field_here" in lines[-1]
        assert "/actors/" not in status
    finally:
        ref.stop()


def test_policy_save_makes_the_object_need_sync(store):
    class Renamer(Policy):
        model_name = "MyModel"

        def handle_create(self, o):
            o.last_name = "Policed"
            o.save()

    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    synced = {"enacted": store.get("MyModel", obj.id)["updated"]}
    store.update("MyModel", obj.id, synced, WriteContext(Caller.SYNCHRONIZER))  # as if synced
    assert store.pending("MyModel", "sync") == []
    ref = PolicyActor.start(make_ctx(store, name="policies"), [factory(Renamer)])
    try:
        settle(ref)
        row = store.get("MyModel", obj.id)
        assert row["last_name"] == "Policed"
        assert row["changed_by_policy"] is not None
        assert [r["id"] for r in store.pending("MyModel", "sync")] == [obj.id]
        assert store.pending("MyModel", "policy") == []
    finally:
        ref.stop()


def test_failed_policy_is_retried_every_five_seconds_without_backoff(store):
    """As the original's policy loop (a pass over what is still to police every 5 s): no backoff."""
    seen = Seen()
    seen.fail = True
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ctx = make_ctx(store, name="policies")
    ref = PolicyActor.start(ctx, [factory(policy_class(seen))])
    try:
        settle(ref)
        assert seen.calls == [("create", obj.id)]
        assert ctx.state.queue_depth == 1, "the object waiting for its retry is counted"
        ctx.clock.advance(POLICY_RETRY - 0.1)
        settle(ref)
        assert len(seen.calls) == 1, "not before its time"
        for attempts in (2, 3, 4):  # the same wait each time, one run per wait
            ctx.clock.advance(0.1)
            settle(ref)
            assert len(seen.calls) == attempts
            ctx.clock.advance(POLICY_RETRY - 0.1)
        seen.fail = False
        ctx.clock.advance(0.1)
        settle(ref)
        assert len(seen.calls) == 5 and store.get("MyModel", obj.id)["policy_code"] == 1
        assert ctx.state.queue_depth == 0
        ctx.clock.advance(POLICY_RETRY * 3)
        settle(ref)
        assert len(seen.calls) == 5, "done: no more retries"
    finally:
        ref.stop()


def test_deferred_policy_is_retried_and_its_own_saves_do_not_make_it_spin(store):
    waiting = {"for": True}
    calls: list[float] = []
    ctx = make_ctx(store, name="policies")

    class Waiter(Policy):
        model_name = "MyModel"

        def handle_create(self, o):
            calls.append(ctx.clock.now())
            o.last_name = f"attempt {len(calls)}"
            o.save()  # its notice reaches the actor after the failure
            if waiting["for"]:
                raise DeferredException("waiting for the other object")

        def handle_delete(self, o):
            calls.append(-1)

    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ref = PolicyActor.start(ctx, [factory(Waiter)])
    try:
        settle(ref)
        row = store.get("MyModel", obj.id)
        assert (
            row["policy_code"] == 2
            and "DeferredException: waiting for the other object" in row["policy_status"]
        )
        for _ in range(3):
            ref.tell(changed(obj))  # the policy's own save, or anyone's: the retry is soon
        settle(ref)
        assert len(calls) == 1
        ctx.clock.advance(POLICY_RETRY)
        settle(ref)
        assert calls == [calls[0], calls[0] + POLICY_RETRY]
        waiting["for"] = False
        ref.tell(changed(obj))
        ctx.clock.advance(POLICY_RETRY)
        settle(ref)
        assert len(calls) == 3 and store.get("MyModel", obj.id)["policy_status"] == "done"
        # Done: a change is handled at once again (it is not a create any more: no handle_update here).
        waiting["for"] = True
        client(store).MyModel.objects.get(id=obj.id).delete()
        ref.tell(changed(obj, "delete"))
        settle(ref)
        assert calls[-1] == -1
    finally:
        ref.stop()


def test_a_deleted_object_waiting_for_its_retry_runs_its_delete_policy_at_once(store):
    calls: list[str] = []

    class FailsOnUpdate(Policy):
        model_name = "MyModel"

        def handle_create(self, o):
            calls.append("create")

        def handle_update(self, o):
            calls.append("update")
            raise ValueError("cannot update")

        def handle_delete(self, o):
            calls.append("delete")

    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ref = PolicyActor.start(make_ctx(store, name="policies"), [factory(FailsOnUpdate)])
    try:
        settle(ref)
        obj.last_name = "C"
        obj.save()
        ref.tell(changed(obj))
        settle(ref)
        assert calls == ["create", "update"]
        obj.delete()
        ref.tell(changed(obj, "delete"))
        settle(ref)
        assert calls == ["create", "update", "delete"]
    finally:
        ref.stop()


def test_a_purged_object_is_not_retried(store):
    seen = Seen()
    seen.fail = True
    obj = client(store).MyModel(first_name="A", last_name="B")
    obj.save()
    ctx = make_ctx(store, name="policies")
    ref = PolicyActor.start(ctx, [factory(policy_class(seen))])
    try:
        settle(ref)
        ref.tell(changed(obj, "purge"))
        settle(ref)
        assert ctx.state.queue_depth == 0
        ctx.clock.advance(POLICY_RETRY)
        settle(ref)
        assert seen.calls == [("create", obj.id)]
    finally:
        ref.stop()


# -- pull ---------------------------------------------------------------------
def test_pull_ticks_on_its_own_period_without_overlap(store):
    runs: list[float] = []
    ctx = make_ctx(store, name="pull", pull_period=5)

    class Puller(PullStep):
        def __init__(self):
            super().__init__(observed_model="MyModel")

        def pull_records(self):
            runs.append(ctx.clock.now())
            o = self.model_accessor.MyModel()
            o.first_name, o.last_name, o.no_sync = "John", "Doe", True
            o.save()

    ref = PullStepActor.start(ctx, factory(Puller))
    try:
        wait_for(lambda: len(runs) == 1, description="first pull")
        settle(ref)
        start = ctx.clock.now()
        ctx.clock.advance(4.9)
        settle(ref)
        assert len(runs) == 1
        ctx.clock.advance(0.1)
        wait_for(lambda: len(runs) == 2, description="second pull")
        assert runs[1] == start + 5
        rows = store.select("MyModel")
        assert len(rows) == 2 and all(r["no_sync"] for r in rows)
        assert ctx.state.done >= 1
    finally:
        ref.stop()


def test_pull_failure_is_counted_and_the_ticker_goes_on(store):
    ctx = make_ctx(store, name="pull", pull_period=5)
    attempts: list[int] = []

    class Broken(PullStep):
        def pull_records(self):
            attempts.append(1)
            raise OSError("unreachable")

    ref = PullStepActor.start(ctx, factory(Broken))
    try:
        wait_for(lambda: ctx.state.failed == 1, description="a failed pull")
        assert ctx.state.detail["last_pull_error"] == "unreachable"
        ctx.clock.advance(5)
        wait_for(lambda: ctx.state.failed == 2, description="a second pull")
        assert ref.is_alive()
    finally:
        ref.stop()


def test_a_manual_tick_while_running_is_queued_not_overlapping(store):
    ctx = make_ctx(store, name="pull", pull_period=5)
    inside = threading.Event()
    release = threading.Event()
    active: list[int] = []
    overlaps: list[int] = []

    class Slow(PullStep):
        def pull_records(self):
            active.append(1)
            if len(active) > 1:
                overlaps.append(1)
            inside.set()
            release.wait(10)
            active.pop()

    ref = PullStepActor.start(ctx, factory(Slow))
    try:
        assert inside.wait(10)
        ref.tell(Tick())
        release.set()
        wait_for(lambda: ctx.state.done == 2, description="two pulls")
        assert overlaps == []
    finally:
        release.set()
        ref.stop()


# -- change feed --------------------------------------------------------------
def test_changefeed_routes_notices_by_model_and_base(store):
    ctx = make_ctx(store, name="changefeed")
    feed = ChangeFeedActor.start(ctx)
    people = Recorder.start()
    services = Recorder.start()
    try:
        feed.ask(Route("people", people, frozenset({"MyModel"})))
        feed.ask(Route("services", services, frozenset({"Service"})))
        c = client(store)
        person = c.MyModel(first_name="A", last_name="B")
        person.save()
        service = c.Service(name="s")
        service.save()
        wait_for(lambda: len(people.ask("messages")) == 1 and len(services.ask("messages")) == 1)
        assert people.ask("messages")[0].notice.id == person.id
        assert services.ask("messages")[0].notice.model == "Service"
        feed.ask(Unroute("people"))
        person.last_name = "C"
        person.save()
        service.name = "t"
        service.save()
        wait_for(lambda: len(services.ask("messages")) == 2)
        assert len(people.ask("messages")) == 1
    finally:
        feed.stop()
        people.stop()
        services.stop()
    # Stopped: it unsubscribed, a write reaches nobody and raises nothing.
    client(store).MyModel(first_name="x", last_name="y").save()


def test_changefeed_routes_derived_models_to_base_observers(store):
    from actors.models import load_schema
    from actors.models._xproto import parse_xproto
    from actors.store import Store

    schema = load_schema(
        [], extra=parse_xproto("message MySI (ServiceInstance) { optional string color = 1; }")
    )
    derived = Store("sqlite://", schema)
    feed = ChangeFeedActor.start(make_ctx(derived, name="changefeed"))
    target = Recorder.start()
    try:
        feed.ask(Route("si", target, frozenset({"ServiceInstance"})))
        c = client(derived)
        owner = c.Service(name="s")
        owner.save()
        c.MySI(owner=owner, color="red").save()
        wait_for(lambda: len(target.ask("messages")) == 1)
        assert target.ask("messages")[0].notice.model == "MySI"
    finally:
        feed.stop()
        target.stop()
        derived.close()


def test_changefeed_forwards_a_changed_message_it_is_sent(store):
    feed = ChangeFeedActor.start(make_ctx(store, name="changefeed"))
    target = Recorder.start()
    try:
        feed.ask(Route("t", target, frozenset({"MyModel"})))
        feed.tell(Changed(ChangeNotice(seq=7, model="MyModel", id=3, kind="update", at=0.0)))
        feed.tell(Changed(ChangeNotice(seq=8, model="Service", id=3, kind="update", at=0.0)))
        wait_for(lambda: target.ask("messages"))
        feed.ask(Unroute("none"))  # a round trip: everything before it is handled
        assert [m.notice.seq for m in target.ask("messages")] == [7]
    finally:
        feed.stop()
        target.stop()


def test_unknown_messages_are_ignored(store):
    feed = ChangeFeedActor.start(make_ctx(store, name="changefeed"))
    try:
        assert feed.ask("something else") is None
        assert feed.is_alive()
    finally:
        feed.stop()


def test_changefeed_never_sends_an_actor_the_notice_of_its_own_write(store):
    """The one filter of own notices: the sync and policy actors do not look at ``origin`` again."""
    feed = ChangeFeedActor.start(make_ctx(store, name="changefeed"))
    step, other = Recorder.start(), Recorder.start()
    try:
        feed.ask(Route("SyncStep", step, frozenset({"MyModel"})))
        feed.ask(Route("other", other, frozenset({"MyModel"})))
        obj = client(store).MyModel(first_name="A", last_name="B")
        obj.save()
        store.update(
            "MyModel", obj.id, {"backend_status": "OK"}, WriteContext(Caller.SYNCHRONIZER, origin="SyncStep")
        )
        wait_for(lambda: len(other.ask("messages")) == 2)
        assert [m.notice.origin for m in other.ask("messages")] == [None, "SyncStep"]
        assert [m.notice.origin for m in step.ask("messages")] == [None]
    finally:
        feed.stop()
        step.stop()
        other.stop()
