"""Synchronizers shaped like the public CORD services, loaded with their own config and xproto.

Each folder of ``tests/services/`` is a small synchronizer of our own, written in the shape
of a real service that uses ``xossynchronizer`` (see docs/porting.md, "Real services tried"):

* ``probe`` -- the XOS ``testservice``: a sync step and a policy that wait for each other
  through signal files, saves during sync and policy, a policy that creates and deletes a
  duplicate object, every kind of field option, ``[]`` as an option list;
* ``webpage`` -- ``simpleexampleservice``: a policy that builds a compute instance of another
  service (``get_service_instance_class``) from the core's Slice, Image and TrustDomain, a
  config map and a secret; a sync step without ``delete_record``; a Kafka event step;
  ``sys_dir`` in the config; a pull step importing a helper module of the steps folder (as
  fabric's pull step does, which worked because the original left ``steps_dir`` on
  ``sys.path``);
* ``onboarding`` -- ``att-workflow-driver``: event steps and policies that import a helpers
  module of the synchronizer's folder, a helper raising ``DeferredException``, a policy that
  asks for its delete policy (``backend_need_delete_policy``) and reaps;
* ``access`` -- ``olt-service`` (with pieces of ``fabric`` and ``rcord``): convenience modules
  extending ``xosapi.convenience.service``/``serviceinstance``, a ``models.py`` of
  ``custom_python`` save hooks, a pull step talking HTTP to a device manager, event steps
  publishing alarms with ``XOSKafkaProducer`` and filtering an integer field by a numeric
  string, the service chain through ``acquire_service_instance`` and
  ``get_westbound_service_instance_properties``, a sync step that defers until another
  object is synced.

The tests drive them the way the services' own scripts do (create objects as a client, wait
for the log lines' effects on the models), on the embedded store and against a core in
another process over gRPC.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka.errors import TopicAlreadyExistsError

from actors.api import RemoteBackend
from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import Synchronizer
from actors.store import Caller
from tests.helpers import wait_for
from tests.test_e2e_examples import client_of
from tests.test_e2e_remote import USER, Core
from tests.test_events_kafka import create_topic, read_topic, send_all

SERVICES = Path(__file__).resolve().parent / "services"
CREDENTIALS = {"username": USER["username"], "password": USER["password"]}


# -- running a service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    """One core for the module: every service uploads models of its own names to it."""
    server = Core(tmp_path_factory.mktemp("core"))
    server.start()
    yield server
    server.stop()


@dataclass
class Service:
    """A running synchronizer and a client's view of its models."""

    sync: Synchronizer
    models: Any
    backends: list[Any] = field(default_factory=list)

    def reload(self, obj: Any) -> Any:
        """The object as stored now (deleted ones included)."""
        model = getattr(self.models, obj.model_name)
        found = model.objects.filter(id=obj.id) or model.deleted_objects.filter(id=obj.id)
        return found[0] if found else None

    def gone_or_deleted(self, obj: Any) -> bool:
        """The object is purged or marked deleted (one read: a purge may come between two)."""
        now = self.reload(obj)
        return now is None or bool(now.deleted)


def service_config(
    name: str, data_dir: Path, *, kafka: str | None = None, core: Core | None = None, **extra: Any
) -> Config:
    """The service's own config.yaml, pointed at a data folder, a broker and maybe a core."""
    data = yaml.safe_load((SERVICES / name / "config.yaml").read_text())
    data["data_dir"] = str(data_dir)
    if kafka is None:
        data.pop("event_steps_dir", None)
    else:
        data["event_bus"] = {"kind": "kafka", "endpoint": kafka}
    if core is not None:
        # As the services' own configs give it (simpleexampleservice...): no kind, so grpcapi.
        data["accessor"] = {"endpoint": core.endpoint, **CREDENTIALS}
    data.update(extra)
    return Config.from_dict(data, base_dir=SERVICES / name)


@pytest.fixture
def start(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """``start(name, where="embedded"|"remote", kafka=None, **config)`` -> a running Service.

    The clock is the real one, as in production: a failed or deferred object is retried
    at its time (a race in a service's own code, as in the probe's signal folder, heals
    as it would in a deployment). ``config`` entries are added to the service's config
    (``runtime={"pull_period": 0.2}`` for the tests of pull steps).
    """
    running: list[Service] = []

    def _start(name: str, where: str = "embedded", *, kafka: str | None = None, **extra: Any) -> Service:
        core = request.getfixturevalue("shared_core") if where == "remote" else None
        config = service_config(name, tmp_path / f"{name}-{len(running)}", kafka=kafka, core=core, **extra)
        sync = Synchronizer(config).start()
        if core is None:
            service = Service(sync, client_of(sync))
        else:
            backend = RemoteBackend(core.endpoint, **CREDENTIALS)
            service = Service(sync, ModelAccessor(backend, caller=Caller.CLIENT), [backend])
        running.append(service)
        assert sync.load_errors == [], sync.load_errors
        return service

    yield _start
    for service in reversed(running):
        service.sync.stop()
        for backend in service.backends:
            backend.close()


def ensure_topics(bootstrap: str, *names: str) -> None:
    for name in names:
        try:
            create_topic(bootstrap, name, partitions=1)
        except TopicAlreadyExistsError:
            pass


def send_json(bootstrap: str, topic: str, *values: dict[str, Any]) -> None:
    send_all(bootstrap, topic, [json.dumps(value).encode() for value in values])


WHERE = pytest.mark.parametrize("where", ["embedded", "remote"])


# -- probe: the XOS testservice --------------------------------------------------------------


def _synced_and_policed(svc: Service, obj: Any) -> Any:
    now = svc.reload(obj)
    done = (
        now.backend_code == 1
        and now.policy_code == 1
        and (now.enacted or 0) >= now.updated
        and (now.policed or 0) >= now.updated
    )
    return now if done else None


@WHERE
def test_probe_sync_and_policy_orderings_as_the_testservice_scripts_check(start, where):
    svc = start("probe", where)
    status = svc.sync.status()
    assert {"SyncProbeServiceInstance", "policies"} <= set(status)
    assert (svc.sync.store is None) == (where == "remote"), "an accessor with an endpoint is the core's"
    models = svc.models
    owner = models.ProbeService(name="probe", kind="generic")
    owner.save()
    cases = {
        "test-no-constraints": {},
        "test-sync-after-policy": {"sync_after_policy": True},
        "test-policy-after-sync": {"policy_after_sync": True},
        "test-sync-after-policy-update": {"sync_after_policy": True, "update_during_sync": True},
        "test-policy-after-sync-update": {"policy_after_sync": True, "update_during_policy": True},
    }
    created = {}
    for name, flags in cases.items():
        si = models.ProbeServiceInstance(name=name, owner=owner, **flags)
        si.save()
        created[name] = si
    done = {
        name: wait_for(lambda si=si: _synced_and_policed(svc, si), timeout=20, description=name)
        for name, si in created.items()
    }
    # The sync step's save (some_integer) runs the policy again after the sync: policed >= enacted.
    updated = done["test-sync-after-policy-update"]
    assert (updated.some_integer, updated.some_other_integer) == (1, 0)
    assert updated.policed >= updated.enacted
    # The policy's save (some_other_integer) runs the sync again after the policy: enacted >= policed.
    updated = done["test-policy-after-sync-update"]
    assert (updated.some_integer, updated.some_other_integer) == (0, 1)
    assert updated.enacted >= updated.policed
    assert all(o.backend_status == "OK" for o in done.values())


def test_probe_policy_creates_and_deletes_its_duplicate(start):
    svc = start("probe")
    models = svc.models
    owner = models.ProbeService(name="probe", kind="generic")
    owner.save()
    si = models.ProbeServiceInstance(
        name="test-create-dup", owner=owner, create_duplicate=True, some_integer=1234, some_other_integer=5678
    )
    si.save()
    dup = wait_for(lambda: models.ProbeDuplicate.objects.filter(serviceinstance_id=si.id).first())
    assert (dup.name, dup.some_integer, dup.some_other_integer) == ("test-create-dup", 1234, 5678)
    assert dup.optional_float_with_default == pytest.approx(3.3)
    assert [d.id for d in svc.reload(si).duplicates.all()] == [dup.id]
    stored = svc.reload(si)
    stored.create_duplicate = False
    stored.save()
    wait_for(lambda: models.ProbeDuplicate.objects.filter(serviceinstance_id=si.id).count() == 0)


def test_probe_field_options_of_the_xproto_are_honoured(start):
    models = start("probe").models
    owner = models.ProbeService(name="probe", kind="generic")
    owner.save()
    si = models.ProbeServiceInstance(name="defaults", owner=owner)
    si.save()
    si = models.ProbeServiceInstance.objects.get(id=si.id)
    assert si.optional_string is None and si.optional_int is None and si.optional_float is None
    assert si.optional_string_with_default == "some_default"
    assert si.required_string == "some_default"
    assert si.required_bool_default_true is True
    assert si.required_int_with_default == 456
    assert si.optional_float_with_default == pytest.approx(3.3)
    for name, bad in [
        ("optional_string_with_choices", "three"),
        ("optional_string_max_length", "x" * 33),
        ("optional_int_with_min", 99),
        ("optional_int_with_max", 200),
    ]:
        with pytest.raises(Exception, match=name):
            models.ProbeServiceInstance(name="bad", owner=owner, **{name: bad}).save()


def test_probe_instance_without_owner_gets_the_owner_class_name_service(start):
    models = start("probe").models
    owner = models.ProbeService(name="probe", kind="generic")
    owner.save()
    si = models.ProbeServiceInstance(name="no-owner")  # as TOSCA does when the recipe names no owner
    si.save()
    assert models.ProbeServiceInstance.objects.get(id=si.id).owner_id == owner.id


def test_probe_delete_runs_delete_record_and_a_deleted_service_takes_its_instances(start, tmp_path):
    svc = start("probe")
    models = svc.models
    owner = models.ProbeService(name="probe", kind="generic")
    owner.save()
    first = models.ProbeServiceInstance(name="first", owner=owner)
    second = models.ProbeServiceInstance(name="second", owner=owner)
    first.save()
    second.save()
    for si in (first, second):
        wait_for(lambda si=si: _synced_and_policed(svc, si), timeout=20)
    models.ProbeServiceInstance.objects.get(id=first.id).delete()
    wait_for(lambda: svc.reload(first) is None, description="the purge after delete_record")
    signals = Path(svc.sync.config.get("data_dir")) / "signals"
    assert (signals / f"signal_ProbeServiceInstance_{first.id}_deleted").exists()
    # XOS cascades a soft delete to the objects that link to the deleted one.
    models.ProbeService.objects.get(id=owner.id).delete()
    wait_for(lambda: svc.gone_or_deleted(second), description="the cascade")


def test_services_with_a_helpers_module_each_load_in_one_process(start, kafka_bootstrap):
    """probe, onboarding and access each import *their own* ``helpers`` module by that plain name.

    The original ran one synchronizer per process; here several run in one, side by side or
    one after another (tests, embedding), so a module imported from one synchronizer's folder
    must not stand in for another's, during its run or after it stopped.
    """
    probe = start("probe")
    onboarding = start("onboarding")
    probe.sync.stop()
    access = start("access")
    for svc in (onboarding, access):
        assert svc.sync.load_errors == []
    assert {"SyncOltUnit", "OnuUnitPullStep"} <= set(access.sync.status())
    # Loaded again after the others (its event steps import helpers too): still its own.
    again = start("onboarding", kafka=kafka_bootstrap)
    assert {"ONUEventStep", "SubscriberAuthEventStep", "policies"} <= set(again.sync.status())


# -- webpage: simpleexampleservice ------------------------------------------------------------


def _page_world(models: Any) -> dict[str, Any]:
    """The objects the simpleexampleservice TOSCA recipes and the core's bootstrap provide."""
    pods = models.PodService(name="kubernetes")
    pods.save()
    service = models.WebPageService(name="webpage", service_message="hello", service_secret="s3cret")
    service.save()
    site = models.Site(name="mysite", login_base="my", abbreviated_name="my")
    site.save()
    image = models.Image(name="httpd", kind="container")
    image.save()
    domain = models.TrustDomain(name="default", owner=pods)
    domain.save()
    page_slice = models.Slice(name="mysite_webpage", site=site, service=service, trust_domain=domain)
    page_slice.default_image = image
    page_slice.save()
    return {"pods": pods, "service": service, "image": image, "domain": domain, "slice": page_slice}


def _policed_with_compute(svc: Service, si: Any) -> Any:
    now = svc.reload(si)
    return now if now.compute_instance_id and now.policy_code == 1 else None


def _page_of(models: Any, si: Any) -> str:
    mount = models.PodConfigVolumeMount.objects.filter(service_instance_id=si.compute_instance_id)[0]
    return json.loads(models.PodConfigMap.objects.get(id=mount.config_id).data)["index.html"]


@WHERE
def test_webpage_policy_builds_the_compute_instance_and_deleting_purges(start, where):
    svc = start("webpage", where, runtime={"pull_period": 0.2})  # the pull step runs soon
    models = svc.models
    world = _page_world(models)
    red = models.PageColor(name="red", html_code="#ff0000")
    red.save()
    si = models.WebPageServiceInstance(
        name="My Web Page", owner=world["service"], tenant_message="world", tenant_secret="p@ssw0rd"
    )
    si.foreground_color = red
    si.save()
    # The policy saves compute_instance_id before its status is written: wait for both.
    done = wait_for(lambda: _policed_with_compute(svc, si), timeout=20, description="the policy")
    compute = models.PodServiceInstance.objects.get(id=done.compute_instance_id)
    assert compute.owner_id == world["pods"].id and compute.slice_id == world["slice"].id
    assert compute.image_id == world["image"].id and compute.no_sync is False
    page = _page_of(models, done)
    assert "hello" in page and "world" in page and "#ff0000" in page
    secret_mount = models.PodSecretVolumeMount.objects.filter(service_instance_id=compute.id)[0]
    secret = json.loads(models.PodSecret.objects.get(id=secret_mount.secret_id).data)
    assert secret["tenant_secret.txt"] == "cEBzc3cwcmQ="
    # The pod service reports the pod's IP: the pull step (importing a helper of steps/) records it.
    pods = Path(svc.sync.config.get("data_dir")) / "pods.json"
    pods.parent.mkdir(parents=True, exist_ok=True)  # a remote synchronizer has no store there
    pods.write_text(json.dumps({compute.name: "10.42.0.7"}))
    wait_for(lambda: svc.reload(compute).pod_ip == "10.42.0.7", description="the pull step")
    # A client changes the message: the policy renders the page again.
    done.tenant_message = "again"
    done.save()
    wait_for(lambda: "again" in _page_of(models, svc.reload(si)), description="the page re-rendered")
    # The sync step has no delete_record: the default one lets the delete through.
    wait_for(lambda: svc.reload(si).backend_code == 1, description="the sync")
    models.WebPageServiceInstance.objects.get(id=si.id).delete()
    wait_for(lambda: svc.reload(si) is None, timeout=20, description="the purge")
    wait_for(lambda: svc.gone_or_deleted(compute), description="compute deleted")


def test_webpage_event_step_changes_the_page(start, kafka_bootstrap):
    ensure_topics(kafka_bootstrap, "WebPageEvent")
    svc = start("webpage", kafka=kafka_bootstrap)
    assert "WebPageEventStep" in svc.sync.status()
    models = svc.models
    world = _page_world(models)
    si = models.WebPageServiceInstance(name="evented-page", owner=world["service"], tenant_message="world")
    si.save()
    wait_for(lambda: svc.reload(si).compute_instance_id, timeout=20, description="the policy")
    send_json(
        kafka_bootstrap, "WebPageEvent", {"service_instance": "evented-page", "tenant_message": "kafka"}
    )
    wait_for(lambda: "kafka" in _page_of(models, svc.reload(si)), timeout=20, description="event -> policy")
    assert svc.reload(si).tenant_message == "kafka"


# -- onboarding: att-workflow-driver ----------------------------------------------------------


def _onboarding_world(models: Any) -> dict[str, Any]:
    service = models.OnboardingService(name="onboarding")
    service.save()
    pon = models.PonRecord(name="pon1", port_no=1)
    pon.save()
    return {"service": service, "pon": pon}


@WHERE
def test_onboarding_workflow_runs_from_kafka_events(start, kafka_bootstrap, where):
    auth, onu = "onboarding.authentication.events", "onboarding.onu.events"
    ensure_topics(kafka_bootstrap, auth, onu)
    svc = start("onboarding", where, kafka=kafka_bootstrap)
    serial = f"ONU-1-{where}"  # both runs read the same topics
    assert {"SubscriberAuthEventStep", "ONUEventStep", "policies"} <= set(svc.sync.status())
    models = svc.models
    world = _onboarding_world(models)
    models.OnuRecord(serial_number=serial, pon_port=world["pon"]).save()
    entry = models.OnboardingWhiteListEntry(
        owner=world["service"], serial_number=serial, pon_port_id=1, device_id="of:0001"
    )
    entry.save()
    # The ONU comes up: the event creates the instance (portNumber is a string in events).
    send_json(
        kafka_bootstrap,
        onu,
        {"status": "activated", "serialNumber": serial, "deviceId": "of:0001", "portNumber": "16"},
    )
    si = wait_for(
        lambda: models.OnboardingServiceInstance.objects.filter(serial_number=serial).first(),
        timeout=20,
        description="the instance the ONU event creates",
    )
    assert si.uni_port_id == 16 and si.owner_id == world["service"].id
    wait_for(
        lambda: svc.reload(si).status_message == "ONU has been validated - Awaiting Authentication",
        timeout=20,
        description="the policy",
    )
    assert svc.reload(si).admin_onu_state == "ENABLED"
    send_json(kafka_bootstrap, auth, {"serialNumber": serial, "authenticationState": "APPROVED"})
    wait_for(
        lambda: svc.reload(si).status_message == "ONU has been validated - Authentication succeeded",
        timeout=20,
        description="the authentication event, then the policy",
    )
    # The whitelist policy asked for its delete policy: deleting the entry disables the ONU, then reaps.
    assert svc.reload(entry).backend_need_delete_policy is True
    models.OnboardingWhiteListEntry.objects.get(id=entry.id).delete()
    wait_for(lambda: svc.reload(si).admin_onu_state == "DISABLED", timeout=20, description="handle_delete")
    assert svc.reload(si).status_message.startswith("ONU not found in whitelist")
    wait_for(lambda: svc.reload(entry) is None, description="the reaped entry")


def test_onboarding_policy_waiting_for_its_onu_is_retried_promptly(start):
    svc = start("onboarding")  # the retry must come well before a minute
    models = svc.models
    world = _onboarding_world(models)
    models.OnboardingWhiteListEntry(
        owner=world["service"], serial_number="ONU-2", pon_port_id=1, device_id="of:0002"
    ).save()
    si = models.OnboardingServiceInstance(serial_number="ONU-2", of_dpid="of:0002", uni_port_id=1)
    si.owner = world["service"]
    si.save()
    wait_for(lambda: "not know to XOS yet" in (svc.reload(si).policy_status or ""), description="deferred")
    models.OnuRecord(serial_number="ONU-2", pon_port=world["pon"]).save()
    wait_for(
        lambda: svc.reload(si).admin_onu_state == "ENABLED",
        timeout=20,
        description="the deferred policy, retried",
    )


# -- access: olt-service ----------------------------------------------------------------------


class DeviceManager:
    """A VOLTHA-like device manager over HTTP on 127.0.0.1: devices added, listed, deleted."""

    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.onus: list[dict[str, Any]] = []
        manager = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer({"items": list(manager.onus)})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("/delete"):
                    manager.deleted.append(self.path.split("/")[-2])
                    self._answer({})
                else:
                    manager.added.append(body)
                    self._answer({"id": f"olt-{len(manager.added)}"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def device_manager() -> Iterator[DeviceManager]:
    manager = DeviceManager()
    yield manager
    manager.close()


def _access_world(models: Any, manager: DeviceManager) -> dict[str, Any]:
    onos = models.ControllerService(name="onos", rest_hostname="onos.local", rest_port=8181)
    onos.save()
    access = models.AccessService(name="access", manager_url="127.0.0.1", manager_port=manager.port)
    access.save()
    home = models.HomeService(name="home")
    home.save()
    models.ServiceDependency(provider_service=onos, subscriber_service=access).save()
    models.ServiceDependency(provider_service=access, subscriber_service=home).save()
    profile = models.UnitProfile(technology="xgspon", profile_id=64)
    profile.save()
    # The OLT's sync step waits for its profile: let the profile be synced first.
    wait_for(lambda: models.UnitProfile.objects.get(id=profile.id).backend_code == 1, description="profile")
    return {"onos": onos, "access": access, "home": home, "profile": profile}


def _olt(svc: Service, world: dict[str, Any]) -> Any:
    models = svc.models
    olt = models.OltUnit(
        name="olt1", access_service=world["access"], host="10.0.0.1", port=9191, switch_datapath_id="of:0001"
    )
    olt.switch_port = "16"
    olt.save()
    return wait_for(
        lambda: svc.reload(olt).backend_code == 1 and svc.reload(olt), timeout=20, description="sync"
    )


@WHERE
def test_access_devices_sync_pull_and_delete_through_the_device_manager(start, where, device_manager):
    svc = start("access", where, runtime={"pull_period": 0.2})  # the pull step runs soon
    models = svc.models
    world = _access_world(models, device_manager)
    olt = _olt(svc, world)
    assert olt.device_id == "olt-1" and olt.backend_status == "OK"
    # The sync step found the controller among the AccessService's provider services.
    assert device_manager.added == [
        {"type": "openolt", "host_and_port": "10.0.0.1:9191", "controller": "onos.local:8181"}
    ]
    pon = models.AccessPonPort(name="pon1", port_no=1, olt_unit=olt)
    pon.save()
    device_manager.onus.append(
        {"type": "onu", "serial_number": "ONU-1", "parent_id": "olt-1", "parent_port_no": 1}
        | {"vendor": "acme", "id": "onu-1", "oper_status": "ACTIVE"}
    )
    onu = wait_for(lambda: models.OnuUnit.objects.filter(serial_number="ONU-1").first(), description="pull")
    assert (onu.pon_port_id, onu.vendor, onu.xos_managed) == (pon.id, "acme", False)
    models.OltUnit.objects.get(id=olt.id).delete()
    wait_for(lambda: device_manager.deleted == ["olt-1"], description="delete_record")


def test_access_custom_python_save_hooks_of_models_py(start, device_manager):
    models = start("access").models
    world = _access_world(models, device_manager)
    bad = models.OltUnit(name="both", access_service=world["access"], host="10.0.0.2", mac_address="aa:bb")
    with pytest.raises(Exception, match="can't specify both host/port and mac_address"):
        bad.save()
    assert models.OltUnit.objects.filter(name="both").count() == 0
    assert models.AccessService.objects.get(id=world["access"].id).has_access_device("none") is False


def test_access_sync_step_waiting_for_another_object_is_retried_promptly(start, device_manager):
    svc = start("access")  # the original retried a deferred object on the next pass
    models = svc.models
    onos = models.ControllerService(name="onos", rest_hostname="onos.local", rest_port=8181)
    onos.save()
    access = models.AccessService(name="access", manager_url="127.0.0.1", manager_port=device_manager.port)
    access.save()
    models.ServiceDependency(provider_service=onos, subscriber_service=access).save()
    olt = models.OltUnit(name="early", access_service=access, host="10.0.0.3", port=1, technology="gpon")
    olt.save()
    wait_for(lambda: "Waiting for a UnitProfile" in svc.reload(olt).backend_status, description="deferred")
    models.UnitProfile(technology="gpon", profile_id=65).save()
    wait_for(lambda: svc.reload(olt).device_id, timeout=20, description="the deferred sync, retried")


def test_access_service_chain_convenience_methods_and_alarms(start, kafka_bootstrap, device_manager):
    uplink, pon_topic, alarms = "access.events.uplink", "access.events.pon", "xos.alarms.access-service"
    ensure_topics(kafka_bootstrap, uplink, pon_topic, alarms)
    svc = start("access", kafka=kafka_bootstrap)
    models = svc.models
    world = _access_world(models, device_manager)
    olt = _olt(svc, world)
    pon = models.AccessPonPort(name="pon1", port_no=1, olt_unit=olt)
    pon.save()
    onu = models.OnuUnit(serial_number="ONU-9", vendor="acme", pon_port=pon)
    onu.save()
    # A subscriber appears: its policy acquires an AccessServiceInstance from the provider service.
    alice = models.HomeSubscriber(name="alice", owner=world["home"], onu_device="ONU-9")
    alice.save()
    link = wait_for(
        lambda: models.ServiceInstanceLink.objects.filter(subscriber_service_instance_id=alice.id).first(),
        timeout=20,
        description="acquire_service_instance",
    )
    access_si = models.AccessServiceInstance.objects.get(id=link.provider_service_instance_id)
    assert access_si.owner_id == world["access"].id
    # Its own policy finds the ONU through the westbound instance's onu_device.
    wait_for(lambda: svc.reload(access_si).onu_unit_id == onu.id, timeout=20, description="the ONU attached")
    # The convenience modules, through the synchronizer's own accessor.
    own = svc.sync.model_accessor
    assert (
        own.AccessService.objects.get(id=world["access"].id).get_onu_sn_from_openflow("of:0001", 1) == "ONU-9"
    )
    assert own.AccessServiceInstance.objects.get(id=access_si.id).switch_datapath_id == "of:0001"
    # The uplink goes down: an alarm naming the affected subscribers.
    stamp = "2026-12-01T10:00:00.000Z"
    send_json(
        kafka_bootstrap, uplink, {"deviceId": "of:0001", "portId": "16", "enabled": False, "timestamp": stamp}
    )
    wait_for(lambda: svc.reload(olt).link_status == "down", timeout=20, description="the uplink event")
    alarm = json.loads(read_topic(kafka_bootstrap, alarms, 1)[0].value)
    assert alarm["state"] == "RAISED" and alarm["context"]["affected_subscribers"] == ["alice"]
    # A PON port event carries the port number as a string: the filter on port_no converts it.
    send_json(kafka_bootstrap, pon_topic, {"deviceId": "olt-1", "portId": "1", "enabled": False})
    wait_for(lambda: svc.reload(pon).oper_status == "disabled", timeout=20, description="the PON event")
    # The link goes away: the instance counts the deleted link and its policy deletes it.
    models.ServiceInstanceLink.objects.get(id=link.id).delete()
    wait_for(
        lambda: svc.gone_or_deleted(access_si),
        timeout=20,
        description="link_deleted_count -> the policy deletes the instance",
    )
