"""Supervision: failing, exiting and hanging steps are isolated and replaced alone."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from actors.orm import ModelAccessor
from actors.runtime import ChildSpec, ChildState, FakeClock, RuntimeSettings, Supervisor
from actors.runtime.messages import ChildDied, GetStatus, IsIdle, Phase, PhaseChanged, Shutdown
from actors.runtime.sync import SyncStepActor
from actors.steps import SyncStep
from actors.store import Caller

from .helpers import wait_for
from .runtime_support import client, factory, make_store


@pytest.fixture
def store():
    s = make_store()
    yield s
    s.close()


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[int] = []

    def add(self, o: Any) -> None:
        with self.lock:
            self.ids.append(o.id)

    def __len__(self) -> int:
        with self.lock:
            return len(self.ids)


def healthy_step(counter: Counter) -> type[SyncStep]:
    class SyncAlpha(SyncStep):
        observes = "Alpha"

        def sync_record(self, o):
            counter.add(o)

    return SyncAlpha


def start_supervisor(store, steps, clock, **settings):
    accessor = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    specs = []
    runtime = RuntimeSettings(**settings)
    for step in steps:
        f = factory(step)
        specs.append(
            ChildSpec(
                step.__name__,
                SyncStepActor,
                (f,),
                interests=SyncStepActor.interests(f, accessor, runtime),
                deadline=getattr(step, "deadline", None),
            )
        )
    return Supervisor.start(specs, accessor=accessor, clock=clock, settings=runtime)


def status(sup) -> dict:
    return sup.ask(GetStatus())


def test_a_step_that_always_raises_only_fails_its_objects(store):
    clock = FakeClock()
    counter = Counter()

    class SyncMyModel(SyncStep):
        observes = "MyModel"

        def sync_record(self, o):
            raise RuntimeError("always")

    c = client(store)
    c.MyModel(first_name="a", last_name="b").save()
    sup = start_supervisor(store, [SyncMyModel, healthy_step(counter)], clock)
    try:
        c.Alpha(name="x").save()
        wait_for(lambda: status(sup)["SyncAlpha"].done == 1, description="the healthy step syncs")
        wait_for(lambda: status(sup)["SyncMyModel"].failed == 2, description="two failed attempts")
        st = status(sup)
        assert st["SyncMyModel"].state == "running"
        assert st["SyncMyModel"].restarts == 0
        assert store.get("MyModel", 1)["backend_status"] == "always"
    finally:
        sup.stop()


def test_sys_exit_in_a_step_restarts_that_step_alone(store):
    clock = FakeClock()
    counter = Counter()
    exits = Counter()

    class SyncMyModel(SyncStep):
        observes = "MyModel"

        def sync_record(self, o):
            exits.add(o)
            if len(exits) == 1:
                sys.exit(3)

    c = client(store)
    c.MyModel(first_name="a", last_name="b").save()
    sup = start_supervisor(store, [SyncMyModel, healthy_step(counter)], clock, restart_backoff=1.0)
    try:
        wait_for(
            lambda: status(sup)["SyncMyModel"].state == "restarting",
            description="the exiting step to be restarting",
        )
        st = status(sup)
        assert "SystemExit: 3" in st["SyncMyModel"].last_error
        assert store.get("MyModel", 1)["backend_status"] == "SystemExit: 3"
        # The other step keeps syncing while this one waits for its restart.
        c.Alpha(name="x").save()
        wait_for(lambda: len(counter) == 1, description="the healthy step syncs")
        assert sup.is_alive()
        clock.advance(1.0)
        wait_for(lambda: status(sup)["SyncMyModel"].state == "running", description="the restart")
        # The new actor re-reads its dirty set: the object is retried and now succeeds.
        wait_for(lambda: store.get("MyModel", 1)["backend_status"] == "OK", description="the retried object")
        assert status(sup)["SyncMyModel"].restarts == 1
    finally:
        sup.stop()


def test_keyboard_interrupt_and_crashes_stop_restarting_after_the_limit(store):
    clock = FakeClock()
    counter = Counter()

    class SyncMyModel(SyncStep):
        observes = "MyModel"

        def sync_record(self, o):
            raise KeyboardInterrupt

    client(store).MyModel(first_name="a", last_name="b").save()
    sup = start_supervisor(
        store,
        [SyncMyModel, healthy_step(counter)],
        clock,
        max_restarts=2,
        restart_window=3600,
        restart_backoff=1,
    )
    try:
        for expected in (1, 2):
            wait_for(lambda: status(sup)["SyncMyModel"].state == "restarting", description="restarting")
            assert status(sup)["SyncMyModel"].restarts == expected
            clock.advance(2.0 * expected)
            wait_for(lambda: status(sup)["SyncMyModel"].state != "restarting", description="restarted")
        clock.advance(600)  # the object's backoff after two failures: the third attempt crashes again
        wait_for(lambda: status(sup)["SyncMyModel"].state == "failed", description="failed for good")
        st = status(sup)["SyncMyModel"]
        assert st.restarts == 2
        assert st.last_error == "StepExit: KeyboardInterrupt: "
        client(store).Alpha(name="still works").save()
        wait_for(lambda: len(counter) == 1, description="the healthy step syncs")
        clock.advance(100)
        assert status(sup)["SyncMyModel"].state == "failed"
    finally:
        sup.stop()


def test_a_hung_handler_is_replaced_after_its_deadline(store):
    clock = FakeClock()
    counter = Counter()
    release = threading.Event()
    entered = Counter()

    class SyncMyModel(SyncStep):
        observes = "MyModel"
        deadline = 30.0

        def sync_record(self, o):
            entered.add(o)
            if o.first_name == "hang":
                release.wait(30)

    c = client(store)
    c.MyModel(first_name="hang", last_name="b").save()
    sup = start_supervisor(store, [SyncMyModel, healthy_step(counter)], clock, restart_backoff=1)
    try:
        wait_for(lambda: len(entered) == 1, description="the hanging call")
        c.Alpha(name="x").save()
        wait_for(lambda: len(counter) == 1, description="the healthy step syncs while the other hangs")
        clock.advance(31)
        wait_for(lambda: status(sup)["SyncMyModel"].state == "restarting", description="the deadline to trip")
        assert "deadline of 30 s" in status(sup)["SyncMyModel"].last_error
        clock.advance(1)
        wait_for(lambda: status(sup)["SyncMyModel"].state == "running", description="the replacement")
        # The replacement does not sync the object the hung call still holds...
        other = c.MyModel(first_name="ok", last_name="c")
        other.save()
        wait_for(lambda: store.get("MyModel", other.id)["backend_status"] == "OK", description="new work")
        assert entered.ids.count(1) == 1
        # ...and once the hung call returns, the object can be synced again.
        release.set()
        clock.advance(0.1)
        wait_for(lambda: store.get("MyModel", 1)["backend_status"] == "OK", description="the hung object")
    finally:
        release.set()
        sup.stop()


def test_a_late_death_report_of_an_old_generation_is_ignored(store):
    sup = start_supervisor(store, [healthy_step(Counter())], FakeClock())
    try:
        wait_for(lambda: status(sup)["SyncAlpha"].state == "running")
        sup.tell(ChildDied("SyncAlpha", 0, "old news"))
        sup.tell(ChildDied("nobody", 1, "unknown child"))
        st = status(sup)["SyncAlpha"]
        assert (st.state, st.restarts, st.last_error) == ("running", 0, None)
    finally:
        sup.stop()


def test_status_and_idle(store):
    counter = Counter()
    sup = start_supervisor(store, [healthy_step(counter)], FakeClock())
    try:
        st = status(sup)
        assert set(st) == {"changefeed", "SyncAlpha"}
        assert st["SyncAlpha"].kind == "sync"
        client(store).Alpha(name="a").save()
        # The work first, then idleness: asked the other way round, IsIdle may answer before
        # the change reached the step and the count be read while sync_record is still running.
        wait_for(lambda: len(counter) == 1 and sup.ask(IsIdle()), description="idle after the work")
        assert status(sup)["SyncAlpha"].queue_depth == 0
    finally:
        sup.stop()


def test_graceful_shutdown_lets_the_running_handler_finish(store):
    clock = FakeClock()
    inside = threading.Event()
    finished = threading.Event()

    class SyncMyModel(SyncStep):
        observes = "MyModel"
        concurrency = 1  # one slot: one handler in flight (test_runtime_concurrency has K slots)

        def sync_record(self, o):
            inside.set()
            finished.wait(0.5)  # a short handler still running when shutdown starts
            finished.set()

    c = client(store)
    for i in range(5):
        c.MyModel(first_name=f"n{i}", last_name="x").save()
    sup = start_supervisor(store, [SyncMyModel], clock)
    assert inside.wait(10)
    sup.ask(Shutdown(timeout=10))
    assert finished.is_set()
    st = status(sup)["SyncMyModel"]
    assert st.state == "stopped"
    # The handler in flight finished and wrote its status; no new object was started.
    rows = store.select("MyModel")
    assert sum(r["backend_status"] == "OK" for r in rows) == 1
    sup.stop()


# -- phases: the supervisor owns them, children report theirs by PhaseChanged --------
def test_a_reported_phase_becomes_the_status_of_the_current_generation_only(store):
    sup = start_supervisor(store, [healthy_step(Counter())], FakeClock())
    try:
        wait_for(lambda: status(sup)["SyncAlpha"].state == Phase.RUNNING)
        sup.tell(PhaseChanged("SyncAlpha", 1, Phase.DEGRADED))
        assert status(sup)["SyncAlpha"].state == "degraded"
        sup.tell(PhaseChanged("SyncAlpha", 0, Phase.STALLED))  # an old generation: ignored
        sup.tell(PhaseChanged("SyncAlpha", 1, Phase.FAILED))  # not a child's to report: ignored
        sup.tell(PhaseChanged("nobody", 1, Phase.STALLED))
        assert status(sup)["SyncAlpha"].state == Phase.DEGRADED
        sup.tell(PhaseChanged("SyncAlpha", 1, Phase.RUNNING))
        assert status(sup)["SyncAlpha"].state == Phase.RUNNING
    finally:
        sup.stop()


def test_a_phase_written_by_the_child_reaches_the_supervisor_as_a_message(store):
    sup = start_supervisor(store, [healthy_step(Counter())], FakeClock())
    try:
        wait_for(lambda: status(sup)["SyncAlpha"].state == Phase.RUNNING)
        child = sup.proxy().children.get()["SyncAlpha"]
        child.state.state = "stalled"  # as an event step writes it, in its own thread
        wait_for(lambda: status(sup)["SyncAlpha"].state == Phase.STALLED)
        assert child.state.state is Phase.STALLED
    finally:
        sup.stop()


def test_shutdown_phases_are_the_supervisors(store):
    sup = start_supervisor(store, [healthy_step(Counter())], FakeClock())
    wait_for(lambda: status(sup)["SyncAlpha"].state == Phase.RUNNING)
    child = sup.proxy().children.get()["SyncAlpha"]
    sup.ask(Shutdown(5.0))
    st = status(sup)
    assert {s.state for s in st.values()} == {Phase.STOPPED}
    assert child.ctx.stopping.is_set()
    sup.tell(PhaseChanged("SyncAlpha", child.generation, Phase.RUNNING))  # too late: stays stopped
    assert status(sup)["SyncAlpha"].state == Phase.STOPPED
    sup.stop()


def test_child_state_reports_each_phase_change_once():
    seen: list[Phase] = []
    state = ChildState("x", "test", on_phase=seen.append)
    state.state = "running"
    state.state = Phase.RUNNING
    state.state = Phase.DEGRADED
    assert seen == [Phase.RUNNING, Phase.DEGRADED]
    assert state.state is Phase.DEGRADED
    with pytest.raises(ValueError):
        state.state = "sleeping"
