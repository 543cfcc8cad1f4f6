"""The reference document's examples, tested with the actors test kit (``sync`` fixture).

The config is ``steps_examples/config.yaml`` (``actors_config`` in pyproject.toml);
each test gets its own temporary store, a fake clock and an in-process event bus.
"""

import json


def test_sync_step_enacts_a_new_object(sync):
    obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
    sync.run_until_idle()

    sync.assert_enacted(obj)
    (call,) = [c for c in sync.calls("SyncMyModel.sync_record") if c.arg.id == obj.id]
    assert call.arg.first_name == "Jane"
    assert "sync'ing object" in [line.event for line in sync.logs("SyncMyModel")]


def test_sync_step_deletes(sync):
    obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
    sync.run_until_idle()
    obj.delete()
    sync.run_until_idle()

    assert [c.arg.id for c in sync.calls("SyncMyModel.delete_record")] == [obj.id]


def test_a_failing_sync_is_retried_after_its_backoff(sync):
    sync.fail("SyncMyModel.sync_record", times=2, error=RuntimeError("backend down"))
    obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
    sync.run_until_idle()  # the first failure is retried at once, the second waits 600 s
    sync.assert_failed(obj, match="backend down")
    assert len(sync.calls("SyncMyModel.sync_record")) == 2

    sync.advance(600)
    sync.assert_enacted(obj)


def test_policy_handles_a_new_service_instance(sync):
    service = sync.objects.Service.create(name="svc")
    instance = sync.objects.MyServiceInstance.create(owner=service, greeting="hi")
    sync.run_until_idle()

    sync.assert_policed(instance)
    (call,) = sync.calls("MyServiceInstancePolicy.handle_create")
    assert call.arg.greeting == "hi"
    assert "MyServiceInstance created" in [line.event for line in sync.logs("MyServiceInstancePolicy")]


def test_pull_step_runs_once_a_period(sync):
    assert len(sync.calls("MyModelPullStep.pull_records")) == 1  # at start
    sync.advance(60)  # runtime.pull_period
    assert len(sync.calls("MyModelPullStep.pull_records")) == 2

    pulled = sync.objects.MyModel.objects.filter(first_name="John", last_name="Doe")
    assert len(pulled) == 2
    assert sync.calls("SyncMyModel.sync_record") == []  # no_sync: the sync step leaves them alone


def test_event_step_creates_an_object_once(sync):
    event = {"first_name": "Ann", "last_name": "Lee"}
    sync.send_event("MyTopic", event)
    sync.send_event("MyTopic", event)  # the object exists: nothing more
    sync.run_until_idle()

    assert len(sync.calls("MyModelEventStep.process_event")) == 2
    assert len(sync.objects.MyModel.objects.filter(first_name="Ann")) == 1


def test_a_bad_event_is_retried_then_dead_lettered(sync):
    sync.send_event("MyTopic", b"not json", key="k1")
    sync.run_until_idle()
    sync.advance(10)  # event_bus.retry_backoff 0.5 s, doubling, max_retries 3

    (letter,) = sync.dead_letters("MyTopic")
    assert letter.value == b"not json" and letter.key == b"k1"
    assert letter.attempts == 4 and letter.error_type == "JSONDecodeError"
    sync.send_event("MyTopic", json.dumps({"first_name": "Bo", "last_name": "Ek"}))
    sync.run_until_idle()  # the step goes on past it
    assert len(sync.objects.MyModel.objects.filter(first_name="Bo")) == 1


def test_convenience_method(sync):
    obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
    assert obj.full_name == "Jane Roe"


def test_injected_exit_replaces_the_actor(sync):
    sync.exit("SyncMyModel")
    obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
    sync.run_until_idle()
    assert sync.status()["SyncMyModel"].state == "restarting"

    sync.advance(sync.synchronizer.settings.restart_backoff)
    assert sync.status()["SyncMyModel"].restarts == 1
    sync.assert_enacted(obj)  # the replacement synced it
