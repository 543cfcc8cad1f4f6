"""The test kit (``actors.testing``): its harness, in-process bus, faults, determinism and plugin.

Each test writes a small synchronizer of its own (models, steps, config) and runs it
with :class:`SyncHarness`, as a user's test would; the plugin is checked in a pytest
subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from actors.testing import InProcessBus, SyncHarness, SynchronizerTestError

ROOT = Path(__file__).resolve().parent.parent

XPROTO = """
message Widget (XOSBase) {
    required string name = 1 [null = False, blank = False];
}
message Part (XOSBase) {
    required string name = 1 [null = False, blank = False];
    required manytoone widget->Widget:parts = 2 [null = False, blank = False];
}
"""

HEADER = """
from synchronizers.new_base.syncstep import SyncStep
from synchronizers.new_base.eventstep import EventStep
from synchronizers.new_base.modelaccessor import Widget, Part
"""


def make_synchronizer(
    tmp: Path,
    steps: str = "",
    events: str = "",
    config: str = "",
    name: str = "kit",
    endpoint: str = "127.0.0.1:9",
) -> Path:
    """A synchronizer folder: Widget and Part (Part depends on its Widget), the given step code."""
    (tmp / "models").mkdir(parents=True)
    (tmp / "models" / "kit.xproto").write_text(XPROTO)
    (tmp / "steps").mkdir()
    (tmp / "steps" / "sync_kit.py").write_text(HEADER + textwrap.dedent(steps))
    (tmp / "event_steps").mkdir()
    (tmp / "event_steps" / "kit_events.py").write_text(HEADER + textwrap.dedent(events))
    (tmp / "deps.json").write_text('{"Part": [["Widget", "widget", "parts"]]}')
    (tmp / "config.yaml").write_text(
        textwrap.dedent(
            """
            name: {name}
            models_dir: models
            steps_dir: steps
            event_steps_dir: event_steps
            dependency_graph: deps.json
            event_bus:
              kind: kafka
              endpoint: "{endpoint}"
            """
        ).format(name=name, endpoint=endpoint)
        + textwrap.dedent(config)
    )
    return tmp / "config.yaml"


WIDGET_STEP = """
def talk_to_backend(o):
    if o.name == "bad":
        raise ValueError("the backend refused " + o.name)

class SyncWidget(SyncStep):
    provides = [Widget]
    observes = Widget

    def sync_record(self, o):
        self.log.info("syncing widget", name=o.name)
        talk_to_backend(o)

    def delete_record(self, o):
        pass

class SyncPart(SyncStep):
    provides = [Part]
    observes = Part

    def sync_record(self, o):
        pass
"""


@pytest.fixture
def widgets(tmp_path: Path, keep_root_logging: None):
    with SyncHarness(make_synchronizer(tmp_path, WIDGET_STEP)) as sync:
        yield sync


def test_a_failing_step_is_reported_with_its_traceback(widgets: SyncHarness) -> None:
    obj = widgets.objects.Widget.create(name="bad")
    widgets.run_until_idle()

    widgets.assert_failed(obj, match="the backend refused bad")
    with pytest.raises(SynchronizerTestError) as caught:
        widgets.assert_enacted(obj)
    message = str(caught.value)
    assert "Widget id 1 is not enacted" in message
    assert "SyncWidget.sync_record raised" in message
    # the step's own frames, down to the line that raised
    assert "sync_kit.py" in message and "in talk_to_backend" in message
    assert 'raise ValueError("the backend refused " + o.name)' in message
    (call,) = widgets.calls("SyncWidget.sync_record")[:1]
    assert isinstance(call.error, ValueError) and "talk_to_backend" in (call.traceback or "")


def test_calls_logs_and_enacted(widgets: SyncHarness) -> None:
    obj = widgets.objects.Widget.create(name="w1")
    widgets.run_until_idle()

    widgets.assert_enacted(obj)
    with pytest.raises(SynchronizerTestError, match="did not fail"):
        widgets.assert_failed(obj)
    (call,) = widgets.calls("SyncWidget")
    assert call.method == "sync_record" and call.arg.name == "w1" and call.error is None
    lines = widgets.logs("SyncWidget")
    assert [(line.event, line.fields.get("name")) for line in lines] == [("syncing widget", "w1")]

    obj.name = "w2"
    obj.save()
    widgets.run_until_idle()
    assert [c.arg.name for c in widgets.calls("SyncWidget.sync_record")] == ["w1", "w2"]
    widgets.assert_enacted(obj)


def test_assert_blocked_by_a_failed_dependency(widgets: SyncHarness) -> None:
    widget = widgets.objects.Widget.create(name="bad")
    part = widgets.objects.Part.create(name="p", widget=widget)
    widgets.run_until_idle()

    widgets.assert_blocked(part, by=widget)
    with pytest.raises(SynchronizerTestError, match="is not blocked"):
        widgets.assert_blocked(widget)
    assert widgets.calls("SyncPart") == []

    widget.name = "good"
    widget.save()
    widgets.advance(600)  # the widget's backoff after its second failure
    widgets.assert_enacted(widget)
    widgets.assert_enacted(part)
    with pytest.raises(SynchronizerTestError, match="is enacted, not blocked"):
        widgets.assert_blocked(part)


def test_injected_failure_for_the_next_calls_then_backoff(widgets: SyncHarness) -> None:
    widgets.fail("SyncWidget.sync_record", times=2, error=RuntimeError("injected"))
    obj = widgets.objects.Widget.create(name="w")
    widgets.run_until_idle()

    widgets.assert_failed(obj, match="injected")
    assert [c.fault for c in widgets.calls("SyncWidget")] == ["raise", "raise"]  # at once, then backoff
    widgets.advance(599)
    assert len(widgets.calls("SyncWidget")) == 2
    widgets.advance(1)  # exponent 1 x 600 s
    widgets.assert_enacted(obj)
    assert widgets.calls("SyncWidget")[-1].fault is None


def test_injected_exit_replaces_the_actor(widgets: SyncHarness) -> None:
    widgets.exit("SyncWidget")
    obj = widgets.objects.Widget.create(name="w")
    widgets.run_until_idle()

    status = widgets.status()["SyncWidget"]
    assert status.state == "restarting" and "SystemExit" in (status.last_error or "")
    widgets.advance(widgets.synchronizer.settings.restart_backoff)
    assert widgets.status()["SyncWidget"].state == "running"
    assert widgets.status()["SyncWidget"].restarts == 1
    widgets.assert_enacted(obj)  # the replacement synced it


def test_injected_hang_trips_the_deadline(tmp_path: Path, keep_root_logging: None) -> None:
    config = make_synchronizer(tmp_path, WIDGET_STEP, config="runtime:\n  step_deadline: 30\n")
    with SyncHarness(config) as sync:
        sync.hang("SyncWidget")
        obj = sync.objects.Widget.create(name="w")
        call = sync.wait_for_call("SyncWidget.sync_record")
        assert not call.done
        sync.advance(31)
        status = sync.status()["SyncWidget"]
        assert "deadline of 30 s" in (status.last_error or "") and status.restarts == 1
        sync.release()  # the hung call returns (raising); its lock is freed
        assert call.done and "hung, then released" in str(call.error)
        sync.advance(600)
        sync.assert_enacted(obj)

        sync.hang("SyncWidget")  # after a release, a new hang hangs again
        obj.name = "w2"
        obj.save()
        again = sync.wait_for_call("SyncWidget.sync_record", count=3)
        assert again.fault == "hang" and not again.done


def test_fault_on_an_unknown_step_is_refused(widgets: SyncHarness) -> None:
    with pytest.raises(ValueError, match="no step named 'SyncNothing'"):
        widgets.fail("SyncNothing")


ORDER_STEPS = """
import threading
ORDER = []
RUNNING = []

def record(step, o):
    RUNNING.append(step)
    ORDER.append((step, o.name, len(RUNNING)))
    RUNNING.remove(step)

class SyncWidget(SyncStep):
    provides = [Widget]
    observes = Widget
    def sync_record(self, o):
        record("w", o)

class SyncPart(SyncStep):
    provides = [Part]
    observes = Part
    def sync_record(self, o):
        record("p", o)
"""


def _run_order(tmp: Path) -> list[tuple[str, ...]]:
    with SyncHarness(make_synchronizer(tmp, ORDER_STEPS)) as sync:
        for i in range(5):
            widget = sync.objects.Widget.create(name=f"w{i}")
            sync.objects.Part.create(name=f"p{i}", widget=widget)
        sync.run_until_idle()
        loaded = sync.synchronizer._loaded
        assert loaded is not None
        module = sys.modules[loaded.sync_steps[0].cls.__module__]
        assert {running for _, _, running in module.ORDER} == {1}  # never two steps at once
        return [(c.step, c.arg.name) for c in sync.calls()]


def test_deterministic_mode_replays_the_same_order(tmp_path: Path, keep_root_logging: None) -> None:
    first = _run_order(tmp_path / "a")
    second = _run_order(tmp_path / "b")
    assert first == second
    assert sorted(first) == sorted(
        [("SyncWidget", f"w{i}") for i in range(5)] + [("SyncPart", f"p{i}") for i in range(5)]
    )


EVENT_STEP = """
import json

class WidgetEvents(EventStep):
    technology = "kafka"
    topics = ["widgets"]

    def process_event(self, event):
        value = json.loads(event.value)
        if value.get("explode"):
            raise RuntimeError("cannot handle " + value["name"])
        Widget(name=value["name"]).save()
"""


@pytest.fixture
def events(tmp_path: Path, keep_root_logging: None):
    with SyncHarness(make_synchronizer(tmp_path, events=EVENT_STEP)) as sync:
        yield sync


def test_events_in_order_with_retries_and_dead_letters(events: SyncHarness) -> None:
    events.send_event("widgets", {"name": "a"}, key="1")
    events.send_event("widgets", {"name": "b", "explode": True}, key="2")
    events.send_event("widgets", {"name": "c"}, key="3")
    events.run_until_idle()
    # b fails and waits for its retry; c waits behind it (same partition)
    assert [w.name for w in events.objects.Widget.objects.all()] == ["a"]
    assert events.dead_letters() == []

    events.advance(0.5)  # first retry
    assert len(events.calls("WidgetEvents.process_event")) == 3
    events.advance(10)  # 1 s, 2 s: then the dead-letter topic
    (letter,) = events.dead_letters("widgets")
    assert letter.key == b"2" and letter.attempts == 4 and "cannot handle b" in letter.error
    assert letter.step == "WidgetEvents"
    assert [w.name for w in events.objects.Widget.objects.all()] == ["a", "c"]
    assert events.bus is not None and events.bus.committed("kit", "widgets") == 3


def test_an_event_step_that_exits_gets_the_event_again(events: SyncHarness) -> None:
    events.exit("WidgetEvents")
    events.send_event("widgets", {"name": "a"})
    events.run_until_idle()
    assert events.status()["WidgetEvents"].state == "restarting"

    events.advance(events.synchronizer.settings.restart_backoff)
    assert [c.fault for c in events.calls("WidgetEvents")] == ["exit", None]  # delivered again
    assert [w.name for w in events.objects.Widget.objects.all()] == ["a"]


@pytest.mark.kafka
def test_the_same_event_test_on_a_real_broker(
    tmp_path: Path, kafka_bootstrap: str, keep_root_logging: None
) -> None:
    unique = uuid.uuid4().hex[:8]
    topic = f"kit-widgets-{unique}"
    config = make_synchronizer(
        tmp_path,
        events=EVENT_STEP.replace('"widgets"', repr(topic)),
        name=f"kit-{unique}",
        endpoint=kafka_bootstrap,
    )
    with SyncHarness(config, bus="kafka", timeout=60) as sync:
        assert sync.bus is None
        sync.send_event(topic, {"name": "a"}, key="1")
        call = sync.wait_for_call("WidgetEvents.process_event")
        assert call.arg.key == b"1" and call.arg.topic == topic
        sync.run_until_idle()
        assert [w.name for w in sync.objects.Widget.objects.all()] == ["a"]
        with pytest.raises(SynchronizerTestError, match="needs the in-process bus"):
            sync.dead_letters()


@pytest.mark.kafka
def test_on_a_real_broker_a_failed_first_connection_is_tried_again_without_advance(
    tmp_path: Path, kafka_bootstrap: str, keep_root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker slow to answer (a loaded machine) fails the first attempt; the next comes in real time."""
    import kafka.errors

    import actors.runtime.events as events

    attempts = []

    def flaky(spec: Any) -> Any:
        attempts.append(spec)
        if len(attempts) == 1:
            raise kafka.errors.KafkaTimeoutError("no broker answered in time")
        return events.KafkaConsumerClient(spec)

    monkeypatch.setattr(events.EventStepActor, "__init__", _with_consumer_factory(flaky))
    unique = uuid.uuid4().hex[:8]
    topic = f"kit-late-{unique}"
    config = make_synchronizer(
        tmp_path,
        events=EVENT_STEP.replace('"widgets"', repr(topic)),
        name=f"kit-{unique}",
        endpoint=kafka_bootstrap,
    )
    with SyncHarness(config, bus="kafka", timeout=60) as sync:
        sync.send_event(topic, {"name": "late"}, key="1")
        sync.wait_for_call("WidgetEvents.process_event", timeout=60)
        assert len(attempts) == 2  # the second attempt came with no advance() of the fake clock


def _with_consumer_factory(consumer_factory: Any) -> Any:
    """``EventStepActor.__init__`` building its consumers with ``consumer_factory``."""
    from actors.runtime.events import EventStepActor

    original = EventStepActor.__init__

    def __init__(self: Any, ctx: Any, factory: Any, **kwargs: Any) -> None:
        kwargs["consumer_factory"] = consumer_factory
        original(self, ctx, factory, **kwargs)

    return __init__


def test_in_process_bus_pattern_and_committed_offsets() -> None:
    from actors.runtime._kafka_client import BusOptions, ConsumerSpec

    class Handler:
        def revoking(self, partitions, lost):
            return {}

        def revoked(self, partitions, offsets, error):
            pass

        def assigned(self, partitions):
            pass

    bus = InProcessBus()
    options = BusOptions(servers=("x:1",), group="g", dead_letter_topic="g.dead-letters")
    bus.send("orders.eu", "1")
    bus.send("g.dead-letters", "x")
    consumer = bus.consumer(ConsumerSpec(options, "s", Handler(), pattern="^orders"))
    bus.send("orders.us", {"n": 2})
    batch = consumer.poll(0.0, 10)
    assert {tp.topic: [r.value for r in records] for tp, records in batch.items()} == {
        "orders.eu": [b"1"],
        "orders.us": [b'{"n": 2}'],
    }
    consumer.commit({tp: 1 for tp in batch}, 1.0)
    consumer.close(1.0)
    again = bus.consumer(ConsumerSpec(options, "s", Handler(), pattern="^orders"))
    assert again.poll(0.0, 10) == {}  # starts at the committed offsets
    bus.send("orders.eu", "3")
    assert [r.offset for rs in again.poll(0.0, 10).values() for r in rs] == [1]


def test_a_step_that_does_not_load_stops_the_start(tmp_path: Path, keep_root_logging: None) -> None:
    broken = WIDGET_STEP + "\nclass SyncBroken(SyncStep):\n    observes = Nothing\n"
    config = make_synchronizer(tmp_path, broken)
    with pytest.raises(SynchronizerTestError, match=r"1 step\(s\) not loaded: .*sync_kit.py.*Nothing"):
        SyncHarness(config).start()
    with SyncHarness(config, allow_load_errors=True) as sync:
        assert len(sync.load_errors) == 1


def test_bad_options_are_refused(tmp_path: Path) -> None:
    config = make_synchronizer(tmp_path, WIDGET_STEP)
    with pytest.raises(ValueError, match="bus: expected 'inprocess' or 'kafka'"):
        SyncHarness(config, bus="rabbit")
    with pytest.raises(SynchronizerTestError, match="not started"):
        SyncHarness(config).run_until_idle()


def test_plugin_module_imports_nothing_of_actors() -> None:
    code = (
        "import sys, actors_pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'actors'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env(), cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_plugin_fixture_in_a_users_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    make_synchronizer(project, WIDGET_STEP)
    (project / "pytest.ini").write_text("[pytest]\nactors_config = config.yaml\n")
    (project / "test_mine.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_widget(sync):
                obj = sync.objects.Widget.create(name="w")
                sync.run_until_idle()
                sync.assert_enacted(obj)

            @pytest.mark.actors(deterministic=False)
            def test_widget_concurrent(sync):
                assert not sync.deterministic
                obj = sync.objects.Widget.create(name="bad")
                sync.run_until_idle()
                sync.assert_enacted(obj)

            def test_without_the_kit():
                assert True
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "actors_pytest_plugin", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=project,
        timeout=120,
    )
    assert "1 failed, 2 passed" in run.stdout, run.stdout + run.stderr
    assert "SyncWidget.sync_record raised" in run.stdout and "talk_to_backend" in run.stdout

    (project / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "actors_pytest_plugin", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=project,
        timeout=120,
    )
    assert "1 passed, 2 errors" in run.stdout, run.stdout + run.stderr
    assert "needs a config: set `actors_config" in run.stdout
