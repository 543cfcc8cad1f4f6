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
_CONVENIENCE: dict[str, tuple[Mapping[str, Any], bool, bool]] = {
    f"xosapi.convenience.{module}": ({**_ORM, name: getattr(convenience, name)}, False, False)
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


#: Module name -> (attributes, is a package, is a modelaccessor module).
_TABLE: dict[str, tuple[Mapping[str, Any], bool, bool]] = {
    "xosconfig": ({"Config": XOSConfig}, False, False),
    "multistructlog": ({"create_logger": create_logger}, False, False),
    "xosapi": ({}, True, False),
    "xosapi.orm": ({**_ORM, "ORMLocalObjectManager": convenience.LocalObjectManager}, False, False),
    "xosapi.convenience": ({}, True, False),
    **_CONVENIENCE,
    "xoskafka": ({"XOSKafkaProducer": XOSKafkaProducer}, True, False),
    "xoskafka.xoskafkaproducer": ({"XOSKafkaProducer": XOSKafkaProducer}, False, False),
    # What a service's models/models.py imports (see _custom_python.py).
    "models_decl": ({}, False, False),
    "xos": ({}, True, False),
    "xos.exceptions": (EXCEPTIONS, False, False),
    "django": ({}, True, False),
    "django.core": ({}, True, False),
    "django.core.exceptions": (
        {"ObjectDoesNotExist": DoesNotExist, "ValidationError": EXCEPTIONS["XOSValidationError"]},
        False,
        False,
    ),
    "django.db": ({}, True, False),
    "django.db.models": ({}, True, False),
    "django.db.models.fields": ({"NOT_PROVIDED": NOT_PROVIDED}, False, False),
    "synchronizers": ({}, True, False),
    "synchronizers.new_base": ({}, True, False),
    "synchronizers.new_base.modelaccessor": ({}, False, True),
    "synchronizers.new_base.policy": ({"Policy": Policy}, False, False),
    "synchronizers.new_base.syncstep": (_SYNCSTEP, False, False),
    "synchronizers.new_base.SyncInstanceUsingAnsible": (_ANSIBLE, False, False),
    "synchronizers.new_base.pullstep": ({"PullStep": PullStep}, False, False),
    "synchronizers.new_base.eventstep": ({"EventStep": EventStep}, False, False),
    "xossynchronizer": ({}, True, False),
    "xossynchronizer.modelaccessor": ({}, False, True),
    "xossynchronizer.steps": ({}, True, False),
    "xossynchronizer.steps.syncstep": (_SYNCSTEP, False, False),
    "xossynchronizer.steps.SyncInstanceUsingAnsible": (_ANSIBLE, False, False),
    "xossynchronizer.model_policies": ({}, True, False),
    "xossynchronizer.model_policies.policy": ({"Policy": Policy}, False, False),
    "xossynchronizer.pull_steps": ({}, True, False),
    "xossynchronizer.pull_steps.pullstep": ({"PullStep": PullStep}, False, False),
    "xossynchronizer.event_steps": ({}, True, False),
    "xossynchronizer.event_steps.eventstep": ({"EventStep": EventStep}, False, False),
}


def _build() -> dict[str, types.ModuleType]:
    modules: dict[str, types.ModuleType] = {}
    for name, (attrs, package, accessor_module) in _TABLE.items():
        module = types.ModuleType(name, f"{name} as provided by actors.compat (see docs/porting.md).")
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
        if package:
            module.__path__ = []
        module.__dict__.update(attrs)
        if accessor_module:
            module.__dict__.update({"ModelAccessor": ModelAccessor, "ModelLink": ModelLink})
            module.__dict__["__getattr__"] = module_getattr(name)
            module.__dict__["__dir__"] = module_dir(module)
        modules[name] = module
    modules["models_decl"].__dict__["__getattr__"] = models_decl_getattr
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    return modules


#: Every module name the compat layer answers for, with its (shared) module object.
MODULES: Mapping[str, types.ModuleType] = types.MappingProxyType(_build())

#: The top-level names: any other module below them is reported as not provided.
TOP_LEVEL: frozenset[str] = frozenset(name.partition(".")[0] for name in MODULES)
