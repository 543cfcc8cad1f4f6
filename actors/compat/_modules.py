"""The module objects the original's import paths resolve to, built once."""

from __future__ import annotations

import importlib.machinery
import types
from collections.abc import Mapping
from typing import Any

from actors.orm import DoesNotExist, ModelAccessor, ORMWrapper, convenience, register_convenience_wrapper
from actors.steps import (
    DeferredException,
    EventStep,
    InnocuousException,
    Policy,
    PullStep,
    SyncStep,
    abstract_step,
)

from ._custom_python import models_decl_getattr
from ._modelaccessor import ModelLink, module_dir, module_getattr
from ._xos_exceptions import EXCEPTIONS
from ._xosconfig import XOSConfig, create_logger
from ._xoskafka import XOSKafkaProducer

__all__ = ["MODULES", "TOP_LEVEL", "SyncInstanceUsingAnsible"]


@abstract_step
class SyncInstanceUsingAnsible(SyncStep):
    """The original's Ansible-driven base step, accepted so that steps deriving from it load.

    It is a plain :class:`~actors.steps.SyncStep`: the Ansible machinery
    (``run_playbook``, templates, ``map_sync_inputs``) is not provided, so a step
    ported from it overrides ``sync_record`` and ``delete_record``. Discovery
    never takes this class itself as a step.
    """


_SYNCSTEP: dict[str, Any] = {
    "SyncStep": SyncStep,
    "DeferredException": DeferredException,
    "InnocuousException": InnocuousException,
}
_ANSIBLE: dict[str, Any] = {"SyncStep": SyncStep, "SyncInstanceUsingAnsible": SyncInstanceUsingAnsible}

_ORM: dict[str, Any] = {
    "ORMWrapper": ORMWrapper,
    "register_convenience_wrapper": register_convenience_wrapper,
}

#: ``xosapi.convenience.<module>``: the core's convenience class of each (``ORMWrapperService``...).
_CONVENIENCE: dict[str, Mapping[str, Any]] = {
    f"xosapi.convenience.{module}": {**_ORM, name: getattr(convenience, name)}
    for module, name in {
        "addresspool": "ORMWrapperAddressPool",
        "controller": "ORMWrapperController",
        "instance": "ORMWrapperInstance",
        "network": "ORMWrapperNetwork",
        "onosapp": "ORMWrapperONOSApp",
        "port": "ORMWrapperPort",
        "privilege": "ORMWrapperPrivilege",
        "service": "ORMWrapperService",
        "serviceinstance": "ORMWrapperServiceInstance",
        "slice": "ORMWrapperSlice",
        "tag": "ORMWrapperTag",
        "user": "ORMWrapperUser",
    }.items()
}


class NOT_PROVIDED:
    """``django.db.models.fields.NOT_PROVIDED``: a field default that was not given."""


#: Module name -> its attributes; the packages above each name are made too.
_TABLE: dict[str, Mapping[str, Any]] = {
    "xosconfig": {"Config": XOSConfig},
    "multistructlog": {"create_logger": create_logger},
    "xosapi.orm": {**_ORM, "ORMLocalObjectManager": convenience.LocalObjectManager},
    **_CONVENIENCE,
    "xoskafka": {"XOSKafkaProducer": XOSKafkaProducer},
    "xoskafka.xoskafkaproducer": {"XOSKafkaProducer": XOSKafkaProducer},
    # What a service's models/models.py imports (see _custom_python.py).
    "models_decl": {},
    "xos.exceptions": EXCEPTIONS,
    "django.core.exceptions": {
        "ObjectDoesNotExist": DoesNotExist,
        "ValidationError": EXCEPTIONS["XOSValidationError"],
    },
    "django.db.models.fields": {"NOT_PROVIDED": NOT_PROVIDED},
    "synchronizers.new_base.modelaccessor": {},
    "synchronizers.new_base.policy": {"Policy": Policy},
    "synchronizers.new_base.syncstep": _SYNCSTEP,
    "synchronizers.new_base.SyncInstanceUsingAnsible": _ANSIBLE,
    "synchronizers.new_base.pullstep": {"PullStep": PullStep},
    "synchronizers.new_base.eventstep": {"EventStep": EventStep},
    "xossynchronizer.modelaccessor": {},
    "xossynchronizer.steps.syncstep": _SYNCSTEP,
    "xossynchronizer.steps.SyncInstanceUsingAnsible": _ANSIBLE,
    "xossynchronizer.model_policies.policy": {"Policy": Policy},
    "xossynchronizer.pull_steps.pullstep": {"PullStep": PullStep},
    "xossynchronizer.event_steps.eventstep": {"EventStep": EventStep},
}


#: The modules whose other names are the current accessor's model classes.
_ACCESSOR_MODULES = ("synchronizers.new_base.modelaccessor", "xossynchronizer.modelaccessor")


def _build() -> dict[str, types.ModuleType]:
    packages = {name.rsplit(".", i)[0] for name in _TABLE for i in range(1, name.count(".") + 1)}
    modules: dict[str, types.ModuleType] = {}
    for name in sorted(packages | set(_TABLE)):
        module = types.ModuleType(name, f"{name} as provided by actors.compat (see docs/porting.md).")
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name in packages)
        if name in packages:
            module.__path__ = []
        module.__dict__.update(_TABLE.get(name, {}))
        if name in _ACCESSOR_MODULES:
            module.__dict__.update({"ModelAccessor": ModelAccessor, "ModelLink": ModelLink})
            module.__dict__["__getattr__"] = module_getattr(name)
            module.__dict__["__dir__"] = module_dir(module)
        modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:  # sorted: the parent package is made first
            setattr(modules[parent], child, module)
    modules["models_decl"].__dict__["__getattr__"] = models_decl_getattr
    return modules


#: Every module name the compat layer answers for, with its (shared) module object.
MODULES: Mapping[str, types.ModuleType] = types.MappingProxyType(_build())

#: The top-level names: any other module below them is reported as not provided.
TOP_LEVEL: frozenset[str] = frozenset(name.partition(".")[0] for name in MODULES)
