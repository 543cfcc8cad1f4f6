"""The original framework's import paths (actors.compat), and loading steps_examples with them."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.compat import Loaded, activated, load_synchronizer, set_event_producer
from actors.compat import _xoskafka as xoskafka_seam
from actors.compat._activate import FINDER
from actors.compat._modelaccessor import current_accessor, is_active
from actors.compat._modules import MODULES, SyncInstanceUsingAnsible
from actors.compat._xoskafka import XOSKafkaProducer
from actors.config import Config, current_config, load_config
from actors.models import load_schema, parse_xproto
from actors.orm import DoesNotExist, ModelAccessor, ORMWrapper, convenience, register_convenience_wrapper
from actors.steps import (
    DeferredException,
    EventStep,
    InnocuousException,
    Policy,
    PullStep,
    SyncStep,
    is_abstract_step,
)
from actors.store import Store, ValidationError

EXAMPLES = Path(__file__).resolve().parent.parent / "steps_examples"

XPROTO = """
message MyModel (XOSBase){
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""

#: Every import path and the names it must provide.
PATHS: dict[str, dict[str, Any]] = {
    "xosconfig": {},
    "multistructlog": {},
    "xosapi": {},
    "xosapi.orm": {"ORMWrapper": ORMWrapper, "register_convenience_wrapper": register_convenience_wrapper},
    "synchronizers": {},
    "synchronizers.new_base": {},
    "synchronizers.new_base.modelaccessor": {},
    "synchronizers.new_base.policy": {"Policy": Policy},
    "synchronizers.new_base.syncstep": {
        "SyncStep": SyncStep,
        "DeferredException": DeferredException,
        "InnocuousException": InnocuousException,
    },
    "synchronizers.new_base.SyncInstanceUsingAnsible": {
        "SyncStep": SyncStep,
        "SyncInstanceUsingAnsible": SyncInstanceUsingAnsible,
    },
    "synchronizers.new_base.pullstep": {"PullStep": PullStep},
    "synchronizers.new_base.eventstep": {"EventStep": EventStep},
    "xossynchronizer": {},
    "xossynchronizer.modelaccessor": {},
    "xossynchronizer.steps": {},
    "xossynchronizer.steps.syncstep": {
        "SyncStep": SyncStep,
        "DeferredException": DeferredException,
        "InnocuousException": InnocuousException,
    },
    "xossynchronizer.model_policies": {},
    "xossynchronizer.model_policies.policy": {"Policy": Policy},
    "xossynchronizer.pull_steps": {},
    "xossynchronizer.pull_steps.pullstep": {"PullStep": PullStep},
    "xossynchronizer.event_steps": {},
    "xossynchronizer.event_steps.eventstep": {"EventStep": EventStep},
    "xosapi.convenience": {},
    "xosapi.convenience.service": {
        "ORMWrapperService": convenience.ORMWrapperService,
        "ORMWrapper": ORMWrapper,
        "register_convenience_wrapper": register_convenience_wrapper,
    },
    "xosapi.convenience.serviceinstance": {
        "ORMWrapperServiceInstance": convenience.ORMWrapperServiceInstance
    },
    "xosapi.convenience.addresspool": {"ORMWrapperAddressPool": convenience.ORMWrapperAddressPool},
    "xosapi.convenience.controller": {"ORMWrapperController": convenience.ORMWrapperController},
    "xosapi.convenience.instance": {"ORMWrapperInstance": convenience.ORMWrapperInstance},
    "xosapi.convenience.network": {"ORMWrapperNetwork": convenience.ORMWrapperNetwork},
    "xosapi.convenience.onosapp": {"ORMWrapperONOSApp": convenience.ORMWrapperONOSApp},
    "xosapi.convenience.port": {"ORMWrapperPort": convenience.ORMWrapperPort},
    "xosapi.convenience.privilege": {"ORMWrapperPrivilege": convenience.ORMWrapperPrivilege},
    "xosapi.convenience.slice": {"ORMWrapperSlice": convenience.ORMWrapperSlice},
    "xosapi.convenience.tag": {"ORMWrapperTag": convenience.ORMWrapperTag},
    "xosapi.convenience.user": {"ORMWrapperUser": convenience.ORMWrapperUser},
    "xoskafka": {"XOSKafkaProducer": XOSKafkaProducer},
    "xoskafka.xoskafkaproducer": {"XOSKafkaProducer": XOSKafkaProducer},
    "xos": {},
    "xos.exceptions": {},
    "models_decl": {},
    "django": {},
    "django.core": {},
    "django.core.exceptions": {"ObjectDoesNotExist": DoesNotExist},
    "django.db": {},
    "django.db.models": {},
    "django.db.models.fields": {},
}

TOP_LEVEL = sorted({name.partition(".")[0] for name in PATHS})


pytestmark = pytest.mark.usefixtures("keep_root_logging")


def _accessor(xproto: str = XPROTO) -> ModelAccessor:
    return ModelAccessor(Store("sqlite://", load_schema([], extra=parse_xproto(xproto, "test.xproto"))))


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"name": "compat-test", "event_bus": {"endpoint": "kafka.example:9092"}})


@pytest.fixture
def accessor() -> ModelAccessor:
    return _accessor()


def threading_result(func: Any) -> Any:
    """``func()`` run in a new thread (outside this thread's context variables)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(func()))
    thread.start()
    thread.join(timeout=10)
    return result[0]


def _installed(top: str) -> bool:
    """Whether the original package ``top`` is installed (outside our context)."""
    assert not is_active()
    return importlib.util.find_spec(top) is not None


def _compat_in_sys_modules() -> list[str]:
    return [name for name in MODULES if sys.modules.get(name) is MODULES[name]]


# -- import paths -------------------------------------------------------------------
def test_every_path_is_provided() -> None:
    assert set(MODULES) >= set(PATHS)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_path_resolves_inside_activated(name: str, config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        module = importlib.import_module(name)
        assert module is MODULES[name]
        for attr, value in PATHS[name].items():
            assert getattr(module, attr) is value
    assert _compat_in_sys_modules() == []


@pytest.mark.parametrize("top", TOP_LEVEL)
def test_paths_do_not_resolve_outside(top: str) -> None:
    if _installed(top):
        pytest.skip(f"the original {top} is installed")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(top)


def test_from_imports_as_synchronizer_code_writes_them(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        from multistructlog import create_logger
        from synchronizers.new_base.eventstep import EventStep as OldEventStep
        from synchronizers.new_base.modelaccessor import MyModel, ServiceInstanceLink, model_accessor
        from synchronizers.new_base.policy import Policy as OldPolicy
        from synchronizers.new_base.pullstep import PullStep as OldPullStep
        from synchronizers.new_base.SyncInstanceUsingAnsible import SyncStep as AnsibleSyncStep
        from xosapi.orm import ORMWrapper as OrmWrapper
        from xosconfig import Config as XOSConfig
        from xossynchronizer.steps.syncstep import SyncStep as NewSyncStep

        assert MyModel is accessor.MyModel
        assert ServiceInstanceLink is accessor.ServiceInstanceLink
        assert model_accessor is accessor
        assert (OldEventStep, OldPolicy, OldPullStep) == (EventStep, Policy, PullStep)
        assert AnsibleSyncStep is SyncStep and NewSyncStep is SyncStep
        assert OrmWrapper is ORMWrapper
        log = create_logger(XOSConfig().get("logging"))
        log.info("compat logger works", key="value")


def test_finder_only_answers_inside(config: Config, accessor: ModelAccessor) -> None:
    assert FINDER.find_spec("xosconfig", None) is None
    with activated(config, accessor):
        spec = FINDER.find_spec("xosconfig", None)
        assert spec is not None and spec.name == "xosconfig"
        assert FINDER.find_spec("json", None) is None
        assert sys.meta_path[0] is FINDER
    assert FINDER.find_spec("xosconfig", None) is None


def test_unknown_module_under_a_compat_package(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor), pytest.raises(ModuleNotFoundError, match="does not provide"):
        importlib.import_module("synchronizers.new_base.ansible_helper")


def test_original_module_is_shadowed_inside_and_restored(config: Config, accessor: ModelAccessor) -> None:
    original = types.ModuleType("xosconfig")
    previous = sys.modules.get("xosconfig")
    sys.modules["xosconfig"] = original
    try:
        with activated(config, accessor):
            import xosconfig

            assert xosconfig is MODULES["xosconfig"]
        assert sys.modules["xosconfig"] is original
    finally:
        if previous is None:
            sys.modules.pop("xosconfig", None)
        else:
            sys.modules["xosconfig"] = previous


# -- xosconfig --------------------------------------------------------------------
def test_xosconfig_reads_the_current_config(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        from xosconfig import Config as XOSConfig

        assert XOSConfig.get("name") == "compat-test"
        assert XOSConfig().get("name") == "compat-test"
        assert XOSConfig.get("event_bus.endpoint") == "kafka.example:9092"
        assert XOSConfig().get("logging")["version"] == 1
        assert XOSConfig.get("no_such_key") is None
        assert XOSConfig.get("no_such_key", "dflt") == "dflt"
        assert XOSConfig.get_config_file() is None


def test_xosconfig_reads_defaults_and_the_original_keys_users_give(accessor: ModelAccessor) -> None:
    cfg = Config.from_dict(
        {
            "name": "x",
            "event_bus": {"endpoint": "k:1", "consumer": {"client_id": "me"}},
            "database": {"name": "xos", "username": "u", "password": "p"},
            "feefie": {"client_id": "c", "any": {"nested": [1, 2]}},
            "logging": {"version": 1, "loggers": {"my.service": {"level": "DEBUG"}}},
        }
    )
    with activated(cfg, accessor):
        from xosconfig import Config as XOSConfig

        assert XOSConfig.get("event_bus.max_retries") == 3  # the model's default
        assert XOSConfig.get("event_bus.consumer.client_id") == "me"
        assert XOSConfig.get("database.name") == "xos"
        assert XOSConfig.get("feefie.any.nested.1") == 2
        assert XOSConfig.get("logging.loggers.my.service.level") == "DEBUG"
        assert XOSConfig.get("http.address") == "127.0.0.1:8080"
        assert XOSConfig.get("api.tls") is None and XOSConfig.get("sys_dir", "-") == "-"


def test_xosconfig_init_loads_a_file_as_the_default(
    tmp_path: Path, config: Config, accessor: ModelAccessor
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("name: from-file\n")
    with activated(config, accessor):
        from xosconfig import Config as XOSConfig

        try:
            XOSConfig.init(str(path), "synchronizer-config-schema.yaml")
            # Inside activated the synchronizer's own configuration still wins...
            assert XOSConfig.get("name") == "compat-test"
            with activated(Config.from_dict({"name": "inner"}), accessor):
                assert XOSConfig.get("name") == "inner"
            # ...the file is the process-wide default.
            assert threading_result(lambda: current_config().name) == "from-file"
        finally:
            XOSConfig.clear()
    assert current_config().name != "from-file"


# -- modelaccessor -------------------------------------------------------------------
def test_modelaccessor_class_level_filter(config: Config, accessor: ModelAccessor) -> None:
    accessor.MyModel(first_name="John", last_name="Doe").save()
    accessor.MyModel(first_name="Jane", last_name="Roe").save()
    with activated(config, accessor):
        from synchronizers.new_base.modelaccessor import MyModel

        assert [o.last_name for o in MyModel.filter(first_name="John")] == ["Doe"]
        assert MyModel.objects.count() == 2
        obj = MyModel()
        obj.first_name, obj.last_name = "New", "Person"
        obj.save()
    assert accessor.MyModel.objects.count() == 3


def test_modelaccessor_star_import(config: Config, accessor: ModelAccessor) -> None:
    namespace: dict[str, Any] = {}
    with activated(config, accessor):
        exec("from xossynchronizer.modelaccessor import *", namespace)
    assert namespace["MyModel"] is accessor.MyModel
    assert namespace["Service"] is accessor.Service
    assert namespace["model_accessor"] is accessor
    assert "XOSBase" not in namespace  # abstract


def test_modelaccessor_unknown_model(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        import synchronizers.new_base.modelaccessor as modelaccessor

        with pytest.raises(ImportError, match=r"'Nobody'.*models: .*MyModel"):
            from synchronizers.new_base.modelaccessor import Nobody  # noqa: F401
        with pytest.raises(AttributeError, match=r"'Nobody'.*models: .*MyModel"):
            _ = modelaccessor.Nobody
        assert not hasattr(modelaccessor, "Nobody")
        assert "MyModel" in dir(modelaccessor)
    with pytest.raises(AttributeError, match="no model accessor is active"):
        _ = modelaccessor.MyModel


def test_activations_nest(config: Config, accessor: ModelAccessor) -> None:
    other = _accessor("message Other (XOSBase) { optional string name = 1; }")
    with activated(config, accessor):
        import xossynchronizer.modelaccessor as modelaccessor

        assert modelaccessor.model_accessor is accessor
        with activated(Config.from_dict({"name": "inner"}), other):
            assert modelaccessor.model_accessor is other
            assert modelaccessor.Other is other.Other
            assert not hasattr(modelaccessor, "MyModel")
            assert current_config().name == "inner"
        assert modelaccessor.model_accessor is accessor
        assert current_config().name == "compat-test"
        assert is_active()
    assert not is_active() and current_accessor() is None
    assert _compat_in_sys_modules() == []


def test_threads_see_their_own_synchronizer(config: Config, accessor: ModelAccessor) -> None:
    other = _accessor("message MyModel (XOSBase) { optional string first_name = 1; }")
    barrier = threading.Barrier(2, timeout=10)
    seen: dict[str, Any] = {}

    def run(key: str, cfg: Config, acc: ModelAccessor) -> None:
        with activated(cfg, acc):
            barrier.wait()  # both threads are inside at once
            from synchronizers.new_base.modelaccessor import MyModel, model_accessor
            from xosconfig import Config as XOSConfig

            seen[key] = (MyModel, model_accessor, XOSConfig.get("name"))
            barrier.wait()

    threads = [
        threading.Thread(target=run, args=("a", config, accessor)),
        threading.Thread(target=run, args=("b", Config.from_dict({"name": "other"}), other)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert seen["a"] == (accessor.MyModel, accessor, "compat-test")
    assert seen["b"] == (other.MyModel, other, "other")
    assert _compat_in_sys_modules() == []


def test_wrappers_register_into_the_accessor(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        from xosapi.orm import ORMWrapper as Base
        from xosapi.orm import register_convenience_wrapper as register

        class Wrapper(Base):
            @property
            def initials(self) -> str:
                return self.first_name[0] + self.last_name[0]

        register("MyModel", Wrapper)
    assert accessor.wrappers.get("MyModel") is Wrapper
    assert accessor.MyModel(first_name="Ada", last_name="Lovelace").initials == "AL"
    assert "MyModel" not in _accessor().wrappers


def test_service_wrapper_extends_the_core_one(config: Config) -> None:
    accessor = _accessor(
        XPROTO + "message MyService (Service) {}\nmessage MyServiceInstance (ServiceInstance) {}"
    )
    with activated(config, accessor):
        from xosapi.convenience.service import ORMWrapperService
        from xosapi.convenience.serviceinstance import ORMWrapperServiceInstance
        from xosapi.orm import register_convenience_wrapper as register

        class ORMWrapperMyService(ORMWrapperService):
            def get_service_instance_class_name(self) -> str:
                return "MyServiceInstance"

            @property
            def first_provider(self) -> Any:
                return self.provider_services[0] if self.provider_services else None

        class ORMWrapperMyServiceInstance(ORMWrapperServiceInstance):
            pass

        register("MyService", ORMWrapperMyService)
        register("MyServiceInstance", ORMWrapperMyServiceInstance)
    mine = accessor.MyService(name="mine")
    mine.save()
    onos = accessor.Service(name="onos")
    onos.save()
    accessor.ServiceDependency(subscriber_service=mine, provider_service=onos).save()
    assert mine.first_provider == onos and onos.subscriber_services == [mine]
    assert mine.get_service_instance_class() is accessor.MyServiceInstance
    si = accessor.MyServiceInstance(owner=mine)
    si.save()
    assert si.eastbound_service_instances == [] and si.tologdict()["model_name"] == "MyServiceInstance"


def test_xos_exceptions(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        from django.core.exceptions import ObjectDoesNotExist
        from django.db.models.fields import NOT_PROVIDED
        from xos.exceptions import APIException, XOSNotFound, XOSPermissionDenied, XOSValidationError

    error = XOSValidationError("The IP specified is not valid: x", fields={"ip": "invalid"})
    assert str(error) == "The IP specified is not valid: x" and error.status_code == 403
    assert error.detail == {
        "error": "XOSValidationError",
        "specific_error": "The IP specified is not valid: x",
        "fields": {"ip": "invalid"},
    }
    assert json.loads(error.json_detail)["fields"] == {"ip": "invalid"}
    assert isinstance(error, ValidationError) and isinstance(error, APIException)
    assert str(XOSPermissionDenied()) == "permission error" and isinstance(
        XOSPermissionDenied(), PermissionError
    )
    assert isinstance(XOSNotFound("gone"), LookupError)
    assert XOSValidationError.__module__ == "xos.exceptions"
    assert NOT_PROVIDED is not None
    with pytest.raises(ObjectDoesNotExist):
        accessor.MyModel.objects.get(first_name="nobody")


def test_models_decl(config: Config, accessor: ModelAccessor) -> None:
    with activated(config, accessor):
        from models_decl import MyModel, MyModel_decl

        assert MyModel is MyModel_decl and MyModel_decl.__name__ == "MyModel_decl"
        assert MyModel_decl.objects.count() == 0
        accessor.MyModel(first_name="Ada", last_name="Lovelace").save()
        assert [m.first_name for m in MyModel_decl.objects.all()] == ["Ada"]
        with pytest.raises(MyModel_decl.DoesNotExist):
            MyModel_decl.objects.get(first_name="nobody")
        with pytest.raises(ImportError, match="no model named 'Nope'"):
            from models_decl import Nope_decl  # noqa: F401
        import models_decl

        other = _accessor()
        with activated(config, other):
            assert models_decl.MyModel_decl is not MyModel_decl, "one per accessor"


def test_models_py_classes_join_their_models(tmp_path: Path, config: Config) -> None:
    (tmp_path / "models.py").write_text(
        "from models_decl import MyModel_decl\n"
        "class MyModel(MyModel_decl):\n"
        "    class Meta:\n"
        "        proxy = True\n"
        "    def initials(self):\n"
        "        return self.first_name[0] + self.last_name[0]\n"
        "    def save(self, *args, **kwargs):\n"
        "        self.last_name = self.last_name.upper()\n"
        "        super(MyModel, self).save(*args, **kwargs)\n"
        "class Helper(object):\n"
        "    pass\n"
    )
    from actors.compat import load_models_py

    accessor = _accessor()
    with activated(config, accessor):
        models, errors = load_models_py(tmp_path / "models.py", accessor, namespace="test_models_py_join")
    assert (models, errors) == (["MyModel"], [])
    ada = accessor.MyModel(first_name="Ada", last_name="Lovelace")
    ada.save()
    assert ada.initials() == "AL" and accessor.MyModel.objects.get(id=ada.id).last_name == "LOVELACE"
    assert "MyModel" in accessor.wrappers
    # A file that fails is one error naming it; nothing is registered.
    (tmp_path / "bad.py").write_text("from models_decl import Missing_decl\n")
    other = _accessor()
    with activated(config, other):
        models, errors = load_models_py(tmp_path / "bad.py", other, namespace="test_models_py_bad")
    assert models == [] and len(errors) == 1
    assert "bad.py" in str(errors[0]) and "no model named 'Missing'" in str(errors[0])


class _Future:
    def __init__(self) -> None:
        self.errbacks: list[Any] = []

    def add_errback(self, callback: Any) -> None:
        self.errbacks.append(callback)


class KafkaTimeoutError(Exception):
    """Looks like kafka-python's error (its module is set below)."""


KafkaTimeoutError.__module__ = "kafka.errors"


@pytest.fixture
def sent() -> Iterator[list[Any]]:
    calls: list[Any] = []
    previous = xoskafka_seam._sender

    def sender(topic: str, key: Any, value: Any) -> Any:
        if topic == "fails":
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        if topic == "broken":
            raise TypeError("produce: key must be bytes, str or None")
        calls.append((topic, key, value, _Future()))
        return calls[-1][3]

    set_event_producer(sender)
    try:
        yield calls
    finally:
        set_event_producer(previous)


def test_xoskafka_producer_sends_through_the_seam(sent: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    XOSKafkaProducer.init()
    XOSKafkaProducer.init()  # the original refused a second call; several synchronizers share a process
    XOSKafkaProducer.produce("xos.alarms.volt", "onu-1", '{"state": "down"}')
    [(topic, key, value, future)] = sent
    assert (topic, key, value) == ("xos.alarms.volt", "onu-1", '{"state": "down"}')
    # A Kafka error is logged, not raised (as the original); a delivery failure too.
    XOSKafkaProducer.produce("fails", "k", "v")
    future.errbacks[0](KafkaTimeoutError("delivery timed out"))
    text = caplog.text
    assert "Kafka Error" in text and "Failed to update metadata" in text
    assert "Message failed delivery" in text and "delivery timed out" in text
    with pytest.raises(TypeError, match="key must be bytes"):
        XOSKafkaProducer.produce("broken", object(), "v")


def test_xoskafka_producer_without_a_runtime() -> None:
    previous = xoskafka_seam._sender
    set_event_producer(None)
    try:
        with pytest.raises(RuntimeError, match="no event producer is registered"):
            XOSKafkaProducer.produce("t", "k", "v")
    finally:
        set_event_producer(previous)


def test_the_runtime_registers_the_producer() -> None:
    import actors.runtime.produce as runtime_produce

    assert xoskafka_seam._sender is not None
    assert xoskafka_seam._sender.__module__ == runtime_produce.__name__


def test_ansible_alias_is_an_abstract_sync_step() -> None:
    assert issubclass(SyncInstanceUsingAnsible, SyncStep)
    assert is_abstract_step(SyncInstanceUsingAnsible)


# -- steps_examples -------------------------------------------------------------------
@pytest.fixture
def examples() -> Iterator[Loaded]:
    config = load_config(EXAMPLES / "config.yaml", env={})
    accessor = ModelAccessor(Store("sqlite://", load_schema([config.get("models_dir")])))
    loaded = load_synchronizer(config, accessor)
    yield loaded
    loaded.unload()


def test_examples_config(examples: Loaded) -> None:
    config = examples.config
    assert config is not None
    assert config.name == "mysynchronizer"
    assert (config.get("event_bus.kind"), config.get("event_bus.endpoint")) == ("kafka", "127.0.0.1:9092")
    assert config.get("runtime.pull_period") == 60
    assert config.get("data_dir") == str(EXAMPLES / "data")
    for key in ("models_dir", "steps_dir", "pull_steps_dir", "event_steps_dir", "model_policies_dir"):
        assert Path(config.get(key)).is_relative_to(EXAMPLES)


def test_examples_load_all_five_kinds(examples: Loaded) -> None:
    assert examples.errors == []
    assert [f.name for f in examples.sync_steps] == ["SyncMyModel"]
    assert [f.name for f in examples.policies] == ["MyServiceInstancePolicy"]
    assert [f.name for f in examples.pull_steps] == ["MyModelPullStep"]
    assert [f.name for f in examples.event_steps] == ["MyModelEventStep"]
    accessor = examples.accessor
    assert accessor is not None
    assert "MyModel" in accessor.wrappers  # the convenience module
    step: Any = examples.sync_steps[0].cls
    assert step.observes is accessor.MyModel and step.provides == [accessor.MyModel]
    policy: Any = examples.policies[0].cls
    assert policy.model_name == "MyServiceInstance"
    event: Any = examples.event_steps[0].cls
    assert event.technology == "kafka" and event.topics == ["MyTopic"]


def test_examples_full_name_wrapper(examples: Loaded) -> None:
    accessor = examples.accessor
    assert accessor is not None
    accessor.MyModel(first_name="Ada", last_name="Lovelace").save()
    (obj,) = accessor.MyModel.objects.all()
    assert obj.full_name == "Ada Lovelace"


def test_examples_pull_step(examples: Loaded) -> None:
    accessor = examples.accessor
    assert accessor is not None
    with examples.activated():
        step = examples.pull_steps[0].make()
        assert step.observed_model is accessor.OLTDevice
        assert step.model_accessor is accessor
        step.pull_records()
    (obj,) = accessor.MyModel.objects.all()
    assert (obj.full_name, obj.no_sync) == ("John Doe", True)


def test_examples_event_step(examples: Loaded) -> None:
    accessor = examples.accessor
    assert accessor is not None
    value = json.dumps({"first_name": "John", "last_name": "Doe"}).encode()
    event = types.SimpleNamespace(topic="MyTopic", key=None, timestamp=0, value=value)
    with examples.activated():
        step = examples.event_steps[0].make()
        step.process_event(event)
        step.process_event(event)  # the object exists: nothing more is created
    assert [o.full_name for o in accessor.MyModel.objects.all()] == ["John Doe"]


def test_examples_sync_step_and_policy_run(examples: Loaded) -> None:
    accessor = examples.accessor
    assert accessor is not None
    obj = accessor.MyModel(first_name="Ada", last_name="Lovelace")
    obj.save()
    service = accessor.Service(name="svc")
    service.save()
    instance = accessor.MyServiceInstance(owner=service)
    instance.save()
    with examples.activated():
        step = examples.sync_steps[0].make()
        step.sync_record(obj)
        step.delete_record(obj)
        policy = examples.policies[0].make()
        policy.handle_create(instance)
        policy.handle_update(instance)
        policy.handle_delete(instance)


def test_reference_typo_is_a_load_error(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("data", "__pycache__"))
    event_file = copy / "event_steps" / "mymodel_event.py"
    text = event_file.read_text()
    assert "super(MyModelEventStep, self).__init__(*args, **kwargs)" in text
    event_file.write_text(text.replace("super(MyModelEventStep, self)", "super(MyEventStep, self)"))
    config = load_config(copy / "config.yaml", env={})
    accessor = ModelAccessor(Store("sqlite://", load_schema([config.get("models_dir")])))
    loaded = load_synchronizer(config, accessor)
    try:
        assert loaded.event_steps == []
        names = [f.name for f in loaded.factories]
        assert names == ["SyncMyModel", "MyServiceInstancePolicy", "MyModelPullStep"]
        (error,) = loaded.errors
        assert str(error) == f"{event_file}: MyModelEventStep: NameError: name 'MyEventStep' is not defined"
    finally:
        loaded.unload()
