"""A synchronizer shaped like a real CORD service (tests/service_shape.py), loaded and run.

What real services rely on beyond the reference's examples: a ``models.py`` with
``custom_python`` methods and save hooks, convenience modules extending the core's
(``xosapi.convenience.service``), a ``helpers.py`` imported by plain name from every step
kind, and ``xoskafka.XOSKafkaProducer`` publishing from a pull step (to a real broker).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.compat import Loaded, load_synchronizer
from actors.config import load_config
from actors.models import load_schema
from actors.orm import ModelAccessor
from actors.runtime import Synchronizer
from actors.store import Caller, Store, ValidationError

from .helpers import wait_for
from .service_shape import write_service
from .test_events_kafka import read_topic

pytestmark = pytest.mark.usefixtures("keep_root_logging")


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[Loaded]:
    config = load_config(write_service(tmp_path))
    store = Store("sqlite://", load_schema([config.get("models_dir")]))
    result = load_synchronizer(config, ModelAccessor(store, caller=Caller.CLIENT))
    try:
        yield result
    finally:
        result.unload()
        store.close()


def _module(loaded: Loaded, name: str) -> Any:
    return sys.modules[f"{loaded.namespace}.{name}"]


def test_every_kind_loads(loaded: Loaded) -> None:
    assert [str(e) for e in loaded.errors] == []
    assert [f.name for f in loaded.sync_steps] == ["SyncVOLTServiceInstance"]
    assert [f.name for f in loaded.policies] == ["VOLTServiceInstancePolicy"]
    assert [f.name for f in loaded.pull_steps] == ["ONUDevicePullStep"]
    assert [f.name for f in loaded.event_steps] == ["ONUEventStep"]
    assert sorted(loaded.custom_python) == ["ONUDevice", "VOLTService", "VOLTServiceInstance"]


def test_helpers_next_to_the_config_import_from_every_kind(loaded: Loaded) -> None:
    helpers = _module(loaded, "pull_steps.pull_onus").VoltHelpers
    assert _module(loaded, "event_steps.onu_event").VoltHelpers is helpers, "one module, shared"
    assert _module(loaded, "steps.sync_volt_si").IMPORTS == [
        "steps",
        "model_policies",
        "pull_steps",
        "event_steps",
    ]
    assert "helpers" not in sys.modules, "not left behind for another synchronizer"
    assert not any(p.endswith("synchronizer") for p in sys.path)


def test_models_py_methods_and_hooks(loaded: Loaded) -> None:
    assert loaded.accessor is not None
    orm = loaded.accessor
    with loaded.activated():
        volt = orm.VOLTService(name="volt")
        volt.save()
        onu = orm.ONUDevice(serial_number="BRCM1234", oper_status="up", volt_service=volt)
        onu.save()
        # Methods of models.py, on objects of the model and reached through the base class.
        assert volt.has_access_device("BRCM1234") and not volt.has_access_device("nope")
        assert orm.Service.objects.get(id=volt.id).leaf_model.get_onu_status("BRCM1234") == "up"
        with pytest.raises(LookupError, match="Can't find ONU nope"):
            volt.get_onu_status("nope")
        # The convenience wrapper and the core's methods are there too.
        assert volt.onos_app_names == [] and volt.get_service_instance_class() is orm.VOLTServiceInstance
        # Save hooks: validation, and the chain to the ORM's own save.
        bad = orm.ONUDevice(serial_number="no such", volt_service=volt)
        with pytest.raises(ValidationError, match="The serial number no such is not valid"):
            bad.save()
        assert bad.is_new and orm.ONUDevice.objects.count() == 1
        si = orm.VOLTServiceInstance(name="si-1", owner=volt, onu_device=onu, service_specific_id="S1")
        si.save()
        assert _module(loaded, "models.models").SAVES == ["si-1"]
        dup = orm.VOLTServiceInstance(name="si-2", owner=volt, service_specific_id="S1")
        with pytest.raises(ValidationError, match="service_specific_id S1 already exists"):
            dup.save()
        # A delete hook.
        with pytest.raises(ValidationError, match="can't be deleted as it has subscribers"):
            onu.delete()
        assert not orm.ONUDevice.objects.get(id=onu.id).deleted


def test_the_service_runs_and_its_pull_step_publishes_with_xoskafka(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    name = f"volt-{uuid.uuid4().hex[:8]}"
    topic = f"xos.alarms.{name}"
    path = write_service(tmp_path, name=name, bootstrap=kafka_bootstrap, pull_period=0.5, alarm_topic=topic)
    config = load_config(path)
    sync = Synchronizer(config).start()
    try:
        assert sync.load_errors == []
        orm = ModelAccessor(sync.model_accessor.backend, caller=Caller.CLIENT)
        with sync.user_context():
            volt = orm.VOLTService(name="volt")
            volt.save()
            rcord = orm.Service(name="rcord")
            rcord.save()
            onu = orm.ONUDevice(serial_number="ALPHe3d1cfa7", oper_status="down", volt_service=volt)
            onu.save()
            sub = orm.RCORDSubscriber(name="sub", owner=rcord, c_tag=222, onu_device="ALPHe3d1cfa7")
            sub.save()
            si = orm.VOLTServiceInstance(name="si", owner=volt, onu_device=onu)
            si.save()
            orm.ServiceInstanceLink(provider_service_instance=si, subscriber_service_instance=sub).save()
        # The pull step: XOSKafkaProducer.produce(topic, key, value) reaches the broker.
        [record] = read_topic(kafka_bootstrap, topic, 1)[:1]
        assert record.key == b"ALPHe3d1cfa7"
        assert json.loads(record.value) == {"id": "xos.voltservice.ALPHe3d1cfa7.ONU_LOS", "state": "down"}
        # The sync step reads the subscriber's c_tag through the convenience wrapper.
        synced = wait_for(
            lambda: orm.VOLTServiceInstance.objects.filter(id=si.id, backend_status="OK").first(),
            timeout=30,
            description="the sync step",
        )
        assert synced.description == "c_tag 222"
    finally:
        sync.stop()
