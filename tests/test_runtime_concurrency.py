"""Concurrency per sync step (K workers) and per-step rate limits.

Message tests send the sync-step actor ``WorkDone`` replies from fake workers; the
others run real worker actors, and a supervisor where restarts are concerned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pykka
import pytest
import sqlalchemy as sa

from actors.runtime import FakeClock, RuntimeSettings, _sync_slots
from actors.runtime._ratelimit import TokenBucket
from actors.runtime._status import success_fields
from actors.runtime._workers import ACTOR, WORKER, HeldClaim, SyncWorker
from actors.runtime.messages import Changed, IsIdle, Resync, Shutdown, Work, WorkDone
from actors.runtime.sync import LOCK_RETRY, SyncStepActor
from actors.steps import SyncStep, limit_problems
from actors.store import Caller, ChangeNotice, WriteContext

from .helpers import wait_for
from .runtime_support import GRAPH, Recorder, client, factory, make_ctx, make_store, settle
from .store_support import postgres_stores
from .test_runtime_supervisor import start_supervisor, status


@pytest.fixture
def store():
    s = make_store()
    yield s
    s.close()


class Tracker:
    """Which objects are inside a handler now, the most at once, and the order calls started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: dict[tuple[str, int], int] = {}
        self.most = 0
        self.most_per_object = 0
        self.started: list[tuple[str, int]] = []
        self.ended: list[tuple[str, int]] = []

    def enter(self, o: Any) -> None:
        key = (o.model_name, o.id)
        with self.lock:
            self.inside[key] = self.inside.get(key, 0) + 1
            self.most = max(self.most, sum(self.inside.values()))
            self.most_per_object = max(self.most_per_object, self.inside[key])
            self.started.append(key)

    def leave(self, o: Any) -> None:
        key = (o.model_name, o.id)
        with self.lock:
            self.inside[key] -= 1
            if not self.inside[key]:
                del self.inside[key]
            self.ended.append(key)

    def running(self) -> int:
        with self.lock:
            return sum(self.inside.values())


def gated_step(
    observes: Any, tracker: Tracker, gate: threading.Event, k: int, **attrs: Any
) -> type[SyncStep]:
    class Step(SyncStep):
        concurrency = k

        def sync_record(self, o: Any) -> None:
            tracker.enter(o)
            try:
                gate.wait(10)
            finally:
                tracker.leave(o)

        def delete_record(self, o: Any) -> None:
            self.sync_record(o)

    Step.observes = observes
    for name, value in attrs.items():
        setattr(Step, name, value)
    return Step


def dirty(store, n: int, model: str = "MyModel") -> list[Any]:
    c = client(store)
    out = []
    for i in range(n):
        obj = c.MyModel(first_name=f"n{i}", last_name="x") if model == "MyModel" else c.Alpha(name=f"a{i}")
        obj.save()
        out.append(obj)
    return out


# -- real workers ---------------------------------------------------------------
def test_k_objects_run_at_once_never_more_and_status_is_right(store):
    objs = dirty(store, 12)
    tracker, gate = Tracker(), threading.Event()
    ctx = make_ctx(store, name="Step")
    ref = SyncStepActor.start(ctx, factory(gated_step("MyModel", tracker, gate, 4)))
    try:
        wait_for(lambda: tracker.running() == 4, description="4 handlers at once")
        # The other 8 wait for a slot; in flight they count in the depth, and busy_for runs.
        assert ctx.state.queue_depth == 12
        assert ctx.state.busy_since is not None and len(ctx.state.busy) == 4
        assert not ref.ask(IsIdle())
        gate.set()
        settle(ref)
        assert tracker.most == 4
        assert tracker.most_per_object == 1
        assert (ctx.state.done, ctx.state.failed, ctx.state.queue_depth) == (12, 0, 0)
        assert ctx.state.busy_since is None
        for obj in objs:
            row = store.get("MyModel", obj.id)
            assert (row["backend_status"], row["enacted"]) == ("OK", row["updated"])
    finally:
        gate.set()
        ref.stop()


def test_two_steps_on_one_model_never_handle_an_object_at_once(store):
    """The process's object locks hold across steps whatever their concurrency."""
    dirty(store, 30)
    tracker, gate = Tracker(), threading.Event()
    gate.set()
    first = make_ctx(store, name="First")
    second = make_ctx(store, name="Second")
    second.locks = first.locks
    refs = [
        SyncStepActor.start(first, factory(gated_step("MyModel", tracker, gate, 8))),
        SyncStepActor.start(second, factory(gated_step("MyModel", tracker, gate, 8))),
    ]
    try:
        for ref in refs:
            settle(ref)
        wait_for(lambda: all(ref.ask(IsIdle()) for ref in refs))
        assert tracker.most_per_object == 1
        assert len(set(tracker.started)) == 30
    finally:
        for ref in refs:
            ref.stop()


def test_dependency_order_and_reverse_deletion_order_hold_with_k_slots(store):
    c = client(store)
    chains = []
    for i in range(6):
        a = c.Alpha(name=f"a{i}")
        a.save()
        b = c.Beta(name=f"b{i}", alpha=a)
        b.save()
        g = c.Gamma(name=f"g{i}", beta=b)
        g.save()
        chains.append((a, b, g))
    tracker, gate = Tracker(), threading.Event()
    ctx = make_ctx(store, name="Step", dependency_graph=GRAPH)
    ref = SyncStepActor.start(ctx, factory(gated_step(["Alpha", "Beta", "Gamma"], tracker, gate, 8)))
    try:
        # The six Alphas run side by side; no Beta starts while its Alpha runs.
        wait_for(lambda: tracker.running() == 6, description="the six Alphas at once")
        assert {model for model, _ in tracker.started} == {"Alpha"}
        gate.set()
        settle(ref)
        order = tracker.ended
        started = tracker.started
        for a, b, g in chains:
            # Each object starts only after what it depends on has ended.
            assert order.index(("Alpha", a.id)) < started.index(("Beta", b.id))
            assert order.index(("Beta", b.id)) < started.index(("Gamma", g.id))
        assert tracker.most == 6
        gate.clear()
        tracker.started.clear()
        tracker.ended.clear()
        for a, b, g in chains:
            for obj in (a, b, g):
                obj.delete()
        ref.tell(Resync("test"))
        # Deletes in reverse order: the six Gammas first, side by side.
        wait_for(lambda: tracker.running() == 6, description="the six Gammas at once")
        assert {model for model, _ in tracker.started} == {"Gamma"}
        gate.set()
        settle(ref)
        order, started = tracker.ended, tracker.started
        for a, b, g in chains:
            assert order.index(("Gamma", g.id)) < started.index(("Beta", b.id))
            assert order.index(("Beta", b.id)) < started.index(("Alpha", a.id))
    finally:
        ref.stop()


def test_a_failure_backs_off_for_its_object_only(store):
    objs = dirty(store, 6)
    clock = FakeClock()
    calls: list[int] = []
    lock = threading.Lock()

    class Step(SyncStep):
        observes = "MyModel"
        concurrency = 3

        def sync_record(self, o: Any) -> None:
            with lock:
                calls.append(o.id)
            if o.id == objs[0].id:
                raise ValueError("backend says no")

    ctx = make_ctx(store, name="Step", clock=clock)
    ref = SyncStepActor.start(ctx, factory(Step))
    try:
        # The first failure retries at once; the second waits exponent x 600 s.
        wait_for(lambda: calls.count(objs[0].id) == 2 and ref.ask(IsIdle()))
        assert (ctx.state.done, ctx.state.failed) == (5, 2)
        assert store.get("MyModel", objs[0].id)["backend_status"] == "backend says no"
        clock.advance(599)
        settle(ref)
        assert calls.count(objs[0].id) == 2
        clock.advance(2)
        wait_for(lambda: calls.count(objs[0].id) == 3)
        assert all(calls.count(o.id) == 1 for o in objs[1:])
    finally:
        ref.stop()


def test_a_hung_handler_takes_one_slot_is_reported_and_the_step_is_replaced_alone(store):
    clock = FakeClock()
    release = threading.Event()
    entered: list[str] = []
    lock = threading.Lock()

    class SyncMyModel(SyncStep):
        observes = "MyModel"
        concurrency = 2
        deadline = 30.0

        def sync_record(self, o: Any) -> None:
            with lock:
                entered.append(o.first_name)
            if o.first_name == "hang":
                release.wait(30)

    c = client(store)
    hung = c.MyModel(first_name="hang", last_name="b")
    hung.save()
    sup = start_supervisor(store, [SyncMyModel], clock, restart_backoff=1)
    try:
        wait_for(lambda: "hang" in entered, description="the hanging call")
        # The other slot keeps working while one handler hangs.
        others = [c.MyModel(first_name=f"ok{i}", last_name="c") for i in range(5)]
        for obj in others:
            obj.save()
        wait_for(
            lambda: all(store.get("MyModel", o.id)["backend_status"] == "OK" for o in others),
            description="the free slot syncs the others",
        )
        assert status(sup)["SyncMyModel"].busy_for is not None
        clock.advance(31)
        wait_for(lambda: status(sup)["SyncMyModel"].state == "restarting", description="the deadline to trip")
        assert "deadline of 30 s" in status(sup)["SyncMyModel"].last_error
        clock.advance(1)
        wait_for(lambda: status(sup)["SyncMyModel"].state == "running", description="the replacement")
        late = c.MyModel(first_name="late", last_name="c")
        late.save()
        wait_for(lambda: store.get("MyModel", late.id)["backend_status"] == "OK", description="new work")
        # The replacement never entered the object the hung call still holds.
        assert entered.count("hang") == 1
        release.set()
        clock.advance(0.1)
        wait_for(
            lambda: store.get("MyModel", hung.id)["backend_status"] == "OK", description="the hung object"
        )
    finally:
        release.set()
        sup.stop()


def test_step_code_exiting_in_a_worker_replaces_the_step(store):
    clock = FakeClock()

    class SyncMyModel(SyncStep):
        observes = "MyModel"
        concurrency = 4

        def sync_record(self, o: Any) -> None:
            if o.first_name == "exit":
                raise SystemExit(3)

    c = client(store)
    bad = c.MyModel(first_name="exit", last_name="x")
    bad.save()
    sup = start_supervisor(store, [SyncMyModel], clock, restart_backoff=1)
    try:
        wait_for(lambda: status(sup)["SyncMyModel"].restarts == 1, description="the restart")
        assert "SystemExit: 3" in status(sup)["SyncMyModel"].last_error
        assert "SystemExit" in store.get("MyModel", bad.id)["backend_status"]
    finally:
        sup.stop()


def test_shutdown_lets_every_handler_in_flight_finish_and_starts_no_new_one(store):
    tracker, gate = Tracker(), threading.Event()
    dirty(store, 10)
    step = gated_step("MyModel", tracker, gate, 3)
    step.__name__ = "SyncMyModel"
    sup = start_supervisor(store, [step], FakeClock())
    wait_for(lambda: tracker.running() == 3, description="3 handlers in flight")
    timer = threading.Timer(0.3, gate.set)
    timer.start()
    sup.ask(Shutdown(timeout=10))
    timer.join()
    rows = store.select("MyModel")
    assert sum(r["backend_status"] == "OK" for r in rows) == 3
    assert len(tracker.started) == 3
    sup.stop()


# -- message tests with fake workers -------------------------------------------
class FakeWorker(pykka.ThreadingActor):
    """Keeps the Work it is sent; the test answers for it.

    It takes the ticket of a Work queued behind another at once (as if it began it),
    unless ``take_tickets`` is off.
    """

    use_daemon_thread = True
    works: list[Work] = []
    slots: dict[tuple[str, int], int] = {}
    lock = threading.Lock()
    take_tickets = True

    def __init__(self, ctx: Any, factory: Any, slot: int) -> None:
        super().__init__()
        self.slot = slot

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Work):
            if message.ticket is not None and FakeWorker.take_tickets:
                assert message.ticket.acquire(blocking=False)
            with FakeWorker.lock:
                FakeWorker.works.append(message)
                FakeWorker.slots[message.key] = self.slot
        return None


class FakeWorkerStep(SyncStepActor):
    worker_class = FakeWorker


def sent() -> list[Work]:
    with FakeWorker.lock:
        return list(FakeWorker.works)


def reply(ref: Any, key: tuple[str, int], outcome: str, **fields: Any) -> None:
    """Answer as the fake worker that got the work for ``key``."""
    with FakeWorker.lock:
        slot = FakeWorker.slots[key]
    ref.tell(WorkDone(key, slot, outcome, **fields))


@pytest.fixture
def fake_workers(monkeypatch):
    # Objects are queued behind a busy worker whatever this host's speed (see test_message_withdraw_*).
    monkeypatch.setattr(_sync_slots, "AHEAD_WINDOW", 600.0)
    FakeWorker.works, FakeWorker.slots, FakeWorker.take_tickets = [], {}, True
    yield
    FakeWorker.works, FakeWorker.slots, FakeWorker.take_tickets = [], {}, True


class Plain(SyncStep):
    observes = ["Alpha", "Beta"]
    concurrency = 2

    def sync_record(self, o: Any) -> None:
        pass


def done(store, model: str, id: int) -> None:
    """What a worker writes after the handler returned."""
    row = store.get(model, id)
    store.update(model, id, success_fields(row, 0.0), WriteContext(Caller.SYNCHRONIZER, origin="Step"))


def test_message_the_actor_dispatches_k_works_and_the_next_on_work_done(store, fake_workers):
    objs = dirty(store, 6, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        # Two slots: one Work each, and one more queued behind each (with a ticket).
        wait_for(lambda: len(sent()) == 4, description="two works and two queued behind them")
        settle_messages(ref)
        works = sorted(sent(), key=lambda w: w.key)  # the workers' threads receive in any order
        assert len(works) == 4
        first, second = works[:2]
        assert {first.key, second.key} == {("Alpha", objs[0].id), ("Alpha", objs[1].id)}
        assert first.ticket is None and second.ticket is None
        assert {FakeWorker.slots[w.key] for w in works[:2]} == {1, 2}
        assert all(w.ticket is not None for w in works[2:])
        assert sorted(FakeWorker.slots[w.key] for w in works[2:]) == [1, 2]  # one behind each
        assert first.reply_to == ref and first.model == "Alpha"
        assert {w.row["id"] for w in works} == {o.id for o in objs[:4]}
        assert ctx.state.queue_depth == 6
        assert not ref.ask(IsIdle())
        done(store, "Alpha", first.key[1])
        reply(ref, first.key, "done")
        wait_for(lambda: len(sent()) == 5, description="the freed place gets the next object")
        assert sent()[4].key == ("Alpha", objs[4].id)
        assert FakeWorker.slots[sent()[4].key] == FakeWorker.slots[first.key]
        assert ctx.state.done == 1
        # A failure: counted, due again at retry_at (a timer), the place freed.
        reply(ref, second.key, "failed", retry_at=ctx.clock.now() + 60)
        wait_for(lambda: len(sent()) == 6)
        assert ctx.state.failed == 1
        assert ctx.state.queue_depth == 5  # 1 deferred, 4 handed out
    finally:
        ref.stop()


def settle_messages(ref: Any) -> None:
    """Wait until the actor has handled what it was sent so far (it answers in order)."""
    ref.ask(IsIdle())


def test_message_work_done_writes_are_committed_before_the_outcome_applies(store, fake_workers):
    """The status writes a worker leaves in WorkDone are stored in the actor's next drain, then counted."""
    c = client(store)
    a = c.Alpha(name="a")
    a.save()
    b = c.Beta(name="b", alpha=a)
    b.save()
    ctx = make_ctx(store, name="Step", dependency_graph=GRAPH)
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 1)
        (work,) = sent()
        # The mark is committed before the Work is sent, and the Work's row says so.
        assert work.row["backend_need_delete"] is True
        assert store.get("Alpha", a.id)["backend_need_delete"] is True
        fields = success_fields(store.get("Alpha", a.id), 0.0)
        reply(ref, work.key, "done", writes=(("Alpha", a.id, fields),))
        # Beta waits on Alpha: it is handed out only once Alpha's status is stored.
        wait_for(lambda: len(sent()) == 2, description="Beta once Alpha's status is committed")
        assert sent()[1].key == ("Beta", b.id)
        row = store.get("Alpha", a.id)
        assert (row["backend_status"], row["enacted"]) == ("OK", row["updated"])
        assert ctx.state.done == 1
    finally:
        ref.stop()


def test_message_work_done_writes_received_while_stopping_are_committed_at_the_stop(store, fake_workers):
    (obj,) = dirty(store, 1, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    wait_for(lambda: len(sent()) == 1)
    ctx.stopping.set()  # shutdown: the actor takes no new work, but keeps what its workers did
    fields = success_fields(store.get("Alpha", obj.id), 0.0)
    reply(ref, ("Alpha", obj.id), "done", writes=(("Alpha", obj.id, fields),))
    ref.stop()
    assert store.get("Alpha", obj.id)["backend_status"] == "OK"
    assert ctx.state.done == 1


def test_message_withdraw_gives_an_object_queued_behind_a_busy_worker_to_another(
    store, fake_workers, monkeypatch
):
    """A Work not begun within AHEAD_WINDOW is taken back (its ticket) and goes to the next free worker."""
    monkeypatch.setattr(_sync_slots, "AHEAD_WINDOW", 0.2)
    FakeWorker.take_tickets = False  # the workers never get to the Works queued behind
    objs = dirty(store, 3, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 3, description="two works and one queued behind")
        works = sorted(sent(), key=lambda w: w.key)
        queued = works[2]
        assert queued.ticket is not None and queued.key == ("Alpha", objs[2].id)
        behind = FakeWorker.slots[queued.key]
        other = next(w for w in works[:2] if FakeWorker.slots[w.key] != behind)
        # The actor takes the ticket when the window is over (a real-time timer).
        wait_for(lambda: queued.ticket.locked(), description="the queued Work withdrawn")
        settle_messages(ref)
        assert len(sent()) == 3  # no free worker yet: it waits at the front of the queue
        done(store, "Alpha", other.key[1])
        reply(ref, other.key, "done")
        wait_for(lambda: len(sent()) == 4, description="handed to the worker that is free")
        again = sent()[3]
        assert again.key == queued.key and again.ticket is None
        assert FakeWorker.slots[again.key] != behind
        # The slow worker's answer for the withdrawn Work frees its place and changes nothing else.
        ref.tell(WorkDone(queued.key, behind, "withdrawn"))
        settle_messages(ref)
        assert queued.key in ref.proxy().in_flight.get()
    finally:
        ref.stop()


def test_message_an_object_finding_no_worker_after_all_goes_back_to_the_front(store, fake_workers):
    """The window of a busy worker may close between ``may_drain`` and the dispatch (a slow host)."""

    class Closing(FakeWorkerStep):
        """The busy workers' windows close right after ``may_drain`` looks (and stay closed)."""

        in_may_drain = False
        closed: set[int] = set()

        def may_drain(self) -> bool:
            self.in_may_drain = True
            try:
                return super().may_drain()
            finally:
                self.in_may_drain = False

        def _next_slot(self) -> int | None:
            slot = super()._next_slot()
            if slot is not None and self.load[slot - 1]:
                if slot in self.closed:
                    return None
                if not self.in_may_drain:
                    self.closed.add(slot)
                    return None
            return slot

    objs = dirty(store, 3, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = Closing.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) >= 2)
        settle_messages(ref)
        assert ref.is_alive()
        running = {w.key for w in sent() if w.ticket is None}
        (first,) = [w for w in sent() if w.key == ("Alpha", objs[0].id)]
        done(store, "Alpha", first.key[1])
        reply(ref, first.key, "done")
        wait_for(lambda: ("Alpha", objs[2].id) in {w.key for w in sent()}, description="the third one")
        assert len(running) == 2 and ref.is_alive()
        assert next(w for w in sent() if w.key == ("Alpha", objs[2].id)).ticket is None
    finally:
        ref.stop()


def test_message_a_rate_limited_step_queues_nothing_behind_a_busy_worker(store, fake_workers):
    class Limited(Plain):
        rate_limit = 1000.0
        rate_burst = 100

    dirty(store, 5, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Limited))
    try:
        wait_for(lambda: len(sent()) == 2)
        settle_messages(ref)
        assert len(sent()) == 2 and all(w.ticket is None for w in sent())
    finally:
        ref.stop()


@contextmanager
def one_worker(store: Any, handler: Callable[[Any], None], slot: int = 1) -> Iterator[tuple[Any, Any, Any]]:
    """``(ctx, worker, inbox)``: a real SyncWorker in ``slot`` of a MyModel step whose
    ``sync_record`` is ``handler``, answering to the Recorder ``inbox``; both stopped after."""

    class Step(SyncStep):
        observes = "MyModel"

        def sync_record(self, o: Any) -> None:
            handler(o)

    ctx = make_ctx(store, name="Step")
    inbox = Recorder.start()
    worker = SyncWorker.start(ctx, factory(Step), slot)
    try:
        yield ctx, worker, inbox
    finally:
        worker.stop()
        inbox.stop()


def test_a_worker_that_finds_its_ticket_taken_answers_withdrawn_and_runs_nothing(store):
    """The worker side of Withdraw: a real SyncWorker, sent a Work whose ticket the actor won."""
    (obj,) = dirty(store, 1)
    calls: list[int] = []
    with one_worker(store, lambda o: calls.append(o.id), 3) as (_ctx, worker, inbox):
        row = store.get("MyModel", obj.id)
        taken = threading.Lock()
        taken.acquire()
        worker.tell(Work(("MyModel", obj.id), "MyModel", row, inbox, ticket=taken))
        free = threading.Lock()
        worker.tell(Work(("MyModel", obj.id), "MyModel", row, inbox, ticket=free))
        wait_for(lambda: len(inbox.ask("messages")) == 2, description="two answers")
        withdrawn, done_ = inbox.ask("messages")
        assert (withdrawn.outcome, withdrawn.slot, withdrawn.writes) == ("withdrawn", 3, ())
        assert calls == [obj.id] and free.locked()
        # The mark (durable: before the handler) is written at once; the status is left to the
        # step actor: in the answer, not in the store.
        assert done_.outcome == "done"
        assert [w[:2] for w in done_.writes] == [("MyModel", obj.id)]
        assert done_.writes[0][2]["backend_status"] == "OK"
        row = store.get("MyModel", obj.id)
        assert row["backend_need_delete"] is True and row["backend_status"] != "OK"


def test_message_a_refused_object_is_looked_at_again_after_lock_retry(store, fake_workers):
    clock = FakeClock()
    (obj,) = dirty(store, 1, "Alpha")
    ctx = make_ctx(store, name="Step", clock=clock)
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 1)
        reply(ref, ("Alpha", obj.id), "refused")
        settle(ref)
        assert len(sent()) == 1
        clock.advance(LOCK_RETRY)
        wait_for(lambda: len(sent()) == 2, description="retried after LOCK_RETRY")
    finally:
        ref.stop()


def test_message_a_dependent_waits_for_the_work_done_of_its_dependency(store, fake_workers):
    c = client(store)
    a = c.Alpha(name="a")
    a.save()
    b = c.Beta(name="b", alpha=a)
    b.save()
    ctx = make_ctx(store, name="Step", dependency_graph=GRAPH)
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 1)
        ref.ask(IsIdle())
        assert [w.key for w in sent()] == [("Alpha", a.id)]  # Beta waits although a slot is free
        done(store, "Alpha", a.id)
        reply(ref, ("Alpha", a.id), "done")
        wait_for(lambda: len(sent()) == 2, description="Beta once Alpha is done")
        assert sent()[1].key == ("Beta", b.id)
    finally:
        ref.stop()


def test_message_a_change_during_its_work_looks_at_the_object_again_after(store, fake_workers):
    (obj,) = dirty(store, 1, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 1)
        obj.name = "changed"
        obj.save()
        ref.tell(Changed(ChangeNotice(seq=0, model="Alpha", id=obj.id, kind="update", at=0.0)))
        ref.ask(IsIdle())
        assert len(sent()) == 1  # never two works for one object
        # The worker synced the earlier version; the object is still dirty after the change.
        row = store.get("Alpha", obj.id)
        store.update(
            "Alpha", obj.id, {"enacted": row["updated"] - 1}, WriteContext(Caller.SYNCHRONIZER, origin="Step")
        )
        reply(ref, ("Alpha", obj.id), "done")
        wait_for(lambda: len(sent()) == 2, description="looked at again")
    finally:
        ref.stop()


def test_message_work_done_exit_stops_the_actor(store, fake_workers):
    (obj,) = dirty(store, 1, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    wait_for(lambda: len(sent()) == 1)
    reply(ref, ("Alpha", obj.id), "exit", error="SystemExit: 1")
    wait_for(lambda: not ref.is_alive(), description="the actor stops")
    assert ctx.state.failed == 1
    assert "SystemExit: 1" in (ctx.state.last_error or "")


# -- claims on a shared backend (PostgreSQL): message tests and the worker's side ---------
@pytest.fixture
def pg_pair(postgres_url):
    """Two stores on one PostgreSQL namespace: the step's and another process's."""
    with postgres_stores(postgres_url, make_store().schema) as stores:
        yield stores


def test_message_on_postgresql_a_work_takes_its_claim_held_across_drains_until_its_status_is_committed(
    pg_pair, fake_workers
):
    store, other = pg_pair
    ids = [o.id for o in dirty(store, 3, "Alpha")]
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 3, description="two works and one queued behind")
        settle_messages(ref)
        works = {w.key: w for w in sent()}
        for key, work in works.items():
            # The actor claimed it and read it afresh; the mark was committed before the Work went.
            assert isinstance(work.claim, HeldClaim) and (work.claim.model, work.claim.id) == key
            assert work.claim.owner is None
            assert work.row["backend_need_delete"] is True
            assert store.get("Alpha", key[1])["backend_need_delete"] is True
        assert other.claim_many("Alpha", ids) == []  # another process cannot have any of them
        first = works[("Alpha", ids[0])]
        assert first.claim.settle(ACTOR)  # as its worker does: the object handed back
        fields = success_fields(store.get("Alpha", ids[0]), 0.0)
        reply(ref, first.key, "done", writes=(("Alpha", ids[0], fields),))
        wait_for(lambda: other.claim_many("Alpha", [ids[0]]) == [ids[0]], description="its claim let go")
        # Let go after the commit: the process that claims it next reads it synced.
        row = other.get("Alpha", ids[0])
        assert (row["backend_status"], row["enacted"]) == ("OK", row["updated"])
        other.release_many("Alpha", [ids[0]])
        settle_messages(ref)
        assert other.claim_many("Alpha", ids[1:]) == []  # the others are still in their workers' hands
        # Those that come back with nothing to commit (refused by this process's lock) let it go too,
        # each claim once: once every Work is answered, nothing is left held.
        answered = {id(first)}
        while True:
            settle_messages(ref)
            waiting = [w for w in sent() if id(w) not in answered]
            if not waiting and not ref.proxy().in_flight.get():
                break
            for work in waiting:
                answered.add(id(work))
                assert work.claim.settle(ACTOR)
                reply(ref, work.key, "refused")
        assert sorted(other.claim_many("Alpha", ids)) == sorted(ids)
    finally:
        ref.stop()


def test_message_on_postgresql_a_stopping_step_lets_go_its_claims_but_those_of_handlers_still_running(
    pg_pair, fake_workers
):
    FakeWorker.take_tickets = False  # the Work queued behind a busy worker is never begun
    store, other = pg_pair
    dirty(store, 3, "Alpha")
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    wait_for(lambda: len(sent()) == 3)
    settle_messages(ref)
    handed, running, queued = sorted(sent(), key=lambda w: w.key)
    assert queued.ticket is not None
    assert handed.claim.settle(ACTOR)  # its worker handed it back; the actor stops before hearing it
    ref.stop()
    assert other.claim_many("Alpha", [handed.key[1]]) == [handed.key[1]]
    # The one never begun: the actor takes it back (its ticket) and lets its claim go.
    assert queued.ticket.locked() and queued.claim.owner == ACTOR
    assert other.claim_many("Alpha", [queued.key[1]]) == [queued.key[1]]
    # The other handler still runs: its claim is left to its worker, which lets it go after its call.
    assert running.claim.owner == WORKER
    assert other.claim_many("Alpha", [running.key[1]]) == []
    running.claim.let_go(store)
    assert other.claim_many("Alpha", [running.key[1]]) == [running.key[1]]


def test_message_on_postgresql_a_withdrawn_works_claim_is_let_go_and_taken_again_by_the_next(
    pg_pair, fake_workers, monkeypatch
):
    monkeypatch.setattr(_sync_slots, "AHEAD_WINDOW", 0.2)
    FakeWorker.take_tickets = False
    store, other = pg_pair
    ids = [o.id for o in dirty(store, 3, "Alpha")]
    ctx = make_ctx(store, name="Step")
    ref = FakeWorkerStep.start(ctx, factory(Plain))
    try:
        wait_for(lambda: len(sent()) == 3, description="two works and one queued behind")
        queued = next(w for w in sent() if w.ticket is not None)
        wait_for(lambda: queued.ticket.locked(), description="the queued Work withdrawn")
        settle_messages(ref)
        # No worker is free: withdrawn, its claim was let go (no drain was coming).
        assert other.claim_many("Alpha", [queued.key[1]]) == [queued.key[1]]
        other.release_many("Alpha", [queued.key[1]])
        free = next(w for w in sent() if w.ticket is None)
        assert free.claim.settle(ACTOR)
        reply(ref, free.key, "done", writes=((*free.key, success_fields(store.get(*free.key), 0.0)),))
        wait_for(lambda: len(sent()) == 4, description="handed to the worker that is free")
        again = sent()[3]
        assert again.key == queued.key and again.claim is not queued.claim
        settle_messages(ref)
        assert other.claim_many("Alpha", [again.key[1]]) == []  # claimed again, for its new worker
        assert other.claim_many("Alpha", [free.key[1]]) == [free.key[1]]
        other.release_many("Alpha", [free.key[1]])
        for work in sent():
            work.claim.settle(ACTOR)  # as the workers do when their calls return: back to the actor
    finally:
        ref.stop()
    # Each claim was let go once: by the withdrawal, the commit, and the stop.
    assert sorted(other.claim_many("Alpha", ids)) == sorted(ids)


def claim_statements(store, counts: dict[str, int]) -> None:
    """Count the claim statements and the reads of MyModel rows the store's worker threads send."""
    table = store.tables.by_model["MyModel"].name

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not threading.current_thread().name.startswith("SyncWorker"):
            return
        if "pg_try_advisory_lock" in statement:
            counts["claims"] += 1
        elif statement.lstrip().startswith("SELECT") and f"FROM {table}" in statement:
            counts["reads"] += 1


def test_a_worker_on_postgresql_runs_under_the_actors_claim_and_neither_claims_nor_reads_again(pg_pair):
    store, other = pg_pair
    (obj,) = dirty(store, 1)
    calls: list[int] = []
    counts = {"claims": 0, "reads": 0}
    claim_statements(store, counts)
    with one_worker(store, lambda o: calls.append(o.id)) as (_ctx, worker, inbox):
        assert store.claim_many("MyModel", [obj.id]) == [obj.id]  # as the step actor does
        claim = HeldClaim("MyModel", obj.id)
        row = store.get("MyModel", obj.id)
        worker.tell(Work(("MyModel", obj.id), "MyModel", row, inbox, claim=claim))
        wait_for(lambda: len(inbox.ask("messages")) == 1, description="the answer")
        (answer,) = inbox.ask("messages")
        assert answer.outcome == "done" and calls == [obj.id]
        assert counts == {"claims": 0, "reads": 0}
        # The status is left to the actor, and so is the claim: held until the actor commits it.
        assert [w[:2] for w in answer.writes] == [("MyModel", obj.id)]
        assert claim.owner == ACTOR
        assert other.claim_many("MyModel", [obj.id]) == []


@pytest.mark.parametrize("how", ["replaced", "stopping"])
def test_a_worker_on_postgresql_lets_go_the_claim_of_a_work_it_will_not_run(pg_pair, how):
    """A Work reaching a worker of a replaced or stopping step is not run; its claim goes."""
    store, other = pg_pair
    (obj,) = dirty(store, 1)
    calls: list[int] = []
    with one_worker(store, lambda o: calls.append(o.id)) as (ctx, worker, inbox):
        assert store.claim_many("MyModel", [obj.id]) == [obj.id]
        claim = HeldClaim("MyModel", obj.id)
        (ctx.retired if how == "replaced" else ctx.stopping).set()
        worker.tell(Work(("MyModel", obj.id), "MyModel", store.get("MyModel", obj.id), inbox, claim=claim))
        wait_for(lambda: other.claim_many("MyModel", [obj.id]) == [obj.id], description="the claim let go")
        assert calls == [] and claim.owner == WORKER


@pytest.mark.parametrize("how", ["replaced", "given-up"])
def test_a_worker_on_postgresql_whose_step_is_replaced_writes_its_status_then_lets_its_claim_go(pg_pair, how):
    store, other = pg_pair
    (obj,) = dirty(store, 1)
    inside, gate = threading.Event(), threading.Event()

    def handler(_o: Any) -> None:
        inside.set()
        gate.wait(10)

    with one_worker(store, handler) as (ctx, worker, inbox):
        try:
            assert store.claim_many("MyModel", [obj.id]) == [obj.id]
            claim = HeldClaim("MyModel", obj.id)
            row = store.get("MyModel", obj.id)
            worker.tell(Work(("MyModel", obj.id), "MyModel", row, inbox, claim=claim))
            wait_for(inside.is_set, description="the handler under way")
            if how == "replaced":
                ctx.retired.set()  # the supervisor replaced the step: its actor commits nothing more
            else:
                assert claim.settle(WORKER)  # the step actor stopped, leaving the claim to the worker
            assert other.claim_many("MyModel", [obj.id]) == []  # held while the handler runs
            gate.set()
            wait_for(lambda: other.claim_many("MyModel", [obj.id]) == [obj.id], description="let go")
            # Its status was written before: the next holder reads it synced.
            row = other.get("MyModel", obj.id)
            assert (row["backend_status"], row["enacted"]) == ("OK", row["updated"])
            assert claim.owner == WORKER
            wait_for(lambda: len(inbox.ask("messages")) == 1)
            assert inbox.ask("messages")[0].writes == ()
        finally:
            gate.set()


# -- rate limits ------------------------------------------------------------------
def test_token_bucket_on_the_fake_clock():
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.advance(0.25)
    assert bucket.take() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.take() == 0.0
    clock.advance(100)
    assert [bucket.take() for _ in range(4)][-1] == pytest.approx(0.5)  # never more than the burst
    with pytest.raises(ValueError, match="rate_limit must be > 0"):
        TokenBucket(0, 1, clock)


@pytest.mark.parametrize("k", [1, 4])
def test_a_rate_limited_step_calls_at_most_rate_per_second(store, k):
    objs = dirty(store, 10)
    clock = FakeClock()
    calls: list[float] = []
    lock = threading.Lock()

    class Step(SyncStep):
        observes = "MyModel"
        concurrency = k
        rate_limit = 2.0
        rate_burst = 3

        def sync_record(self, o: Any) -> None:
            with lock:
                calls.append(clock.now())

    ctx = make_ctx(store, name="Step", clock=clock)
    ref = SyncStepActor.start(ctx, factory(Step))
    try:
        wait_for(lambda: len(calls) == 3, description="the burst")
        assert not ref.ask(IsIdle())
        assert len(calls) == 3
        for expected in range(4, 11):
            clock.advance(0.5)
            wait_for(lambda n=expected: len(calls) == n, description=f"call {expected}")
        settle(ref)
        start = calls[0]
        assert [round(t - start, 3) for t in calls] == [0, 0, 0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
        assert all(store.get("MyModel", o.id)["backend_status"] == "OK" for o in objs)
    finally:
        ref.stop()


# -- settings and validation ---------------------------------------------------
def test_limits_come_from_config_then_class_then_default():
    class SyncA(SyncStep):
        concurrency = 3
        rate_limit = 5

    class SyncB(SyncStep):
        isolation = "process"
        concurrency = 16

    settings = RuntimeSettings(step_concurrency=6, steps={"SyncA": {"rate_limit": 1.5, "rate_burst": 4}})
    a = settings.limits("SyncA", SyncA)
    assert (a.concurrency, a.rate_limit, a.rate_burst) == (3, 1.5, 4)
    plain = settings.limits("SyncC", SyncStep)
    assert (plain.concurrency, plain.rate_limit, plain.rate_burst) == (6, None, 1)
    # A step in a child process runs one object at a time.
    assert settings.limits("SyncB", SyncB).concurrency == 1
    assert RuntimeSettings().limits("X", SyncStep).concurrency == 1


def test_bad_limits_on_a_step_class_are_named():
    class Bad(SyncStep):
        concurrency = 0
        rate_limit = "fast"
        rate_burst = 1.5

    assert limit_problems(Bad) == [
        "concurrency must be an integer >= 1 or None, got 0",
        "rate_limit must be a number > 0 (objects/s) or None, got 'fast'",
        "rate_burst must be an integer >= 1 or None, got 1.5",
    ]
    assert limit_problems(SyncStep) == []


# -- replicas on PostgreSQL -------------------------------------------------------
@pytest.mark.postgres
def test_two_replicas_with_k_workers_each_never_handle_an_object_twice(postgres_url):
    """Each replica's 8 workers claim objects on PostgreSQL: every object synced once, never twice at once."""
    from actors.orm import ModelAccessor
    from actors.runtime import ChildSpec, Supervisor
    from actors.store import Store

    from .store_support import postgres_database

    with postgres_database(postgres_url) as url:
        schema = make_store().schema
        stores = [Store(url, schema), Store(url, schema)]
        c = ModelAccessor(stores[0], caller=Caller.CLIENT)
        for i in range(120):
            c.MyModel(first_name=f"n{i}", last_name="x").save()
        tracker = Tracker()
        calls: dict[int, int] = {}

        class SyncMyModel(SyncStep):
            observes = "MyModel"
            concurrency = 8

            def sync_record(self, o: Any) -> None:
                tracker.enter(o)
                with tracker.lock:
                    calls[o.id] = calls.get(o.id, 0) + 1
                # A little real work against the database, so the replicas interleave.
                self.model_accessor.MyModel.objects.filter(id=o.id).count()
                tracker.leave(o)

        sups = []
        for store in stores:
            accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
            settings = RuntimeSettings()
            f = factory(SyncMyModel)
            spec = ChildSpec(
                "SyncMyModel", SyncStepActor, (f,), interests=SyncStepActor.interests(f, accessor, settings)
            )
            sups.append(Supervisor.start([spec], accessor=accessor, clock=FakeClock(), settings=settings))
        try:
            wait_for(lambda: not stores[0].pending("MyModel", "sync"), timeout=60, description="all synced")
            with tracker.lock:
                assert tracker.most_per_object == 1
                assert len(calls) == 120 and set(calls.values()) == {1}
        finally:
            for sup in sups:
                sup.stop()
            for store in stores:
                store.close()
