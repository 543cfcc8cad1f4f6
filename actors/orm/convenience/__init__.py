"""The convenience methods the XOS core adds to its models (the original's ``xosapi/convenience``).

The wrapper classes have the original's names (``ORMWrapperService``,
``ORMWrapperServiceInstance``...). They are built into
every :class:`~actors.orm.ModelAccessor` by model name: a model named ``Slice``
gets :class:`~.infrastructure.ORMWrapperSlice` whether it comes from the built-in core
models or from a synchronizer's xproto. A synchronizer's own convenience
wrappers (``register_convenience_wrapper``) come first, then its
``models.py`` classes (``custom_python``), then these; a service wrapper that
subclasses one of them (``class ORMWrapperMyService(ORMWrapperService)``)
extends it. See ``docs/orm.md``.

:mod:`.xosbase` holds what every model gets (``stub``, ``ansible_tag``, ``has_changed``...),
:mod:`.service` the methods of ``Service``, ``ServiceInstance`` and ``ONOSApp``, and
:mod:`.infrastructure` those of the other core models (``Slice``, ``Instance``, ``Network``...);
``docs/porting.md`` lists every method by model.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._object import ORMWrapper
from .infrastructure import (
    LocalObjectManager,
    ORMWrapperAddressPool,
    ORMWrapperController,
    ORMWrapperInstance,
    ORMWrapperNetwork,
    ORMWrapperPort,
    ORMWrapperPrivilege,
    ORMWrapperSlice,
    ORMWrapperTag,
    ORMWrapperUser,
)
from .service import ORMWrapperONOSApp, ORMWrapperService, ORMWrapperServiceInstance
from .xosbase import ORMWrapperXOSBase

__all__ = [
    "CORE_WRAPPERS",
    "LocalObjectManager",
    "ORMWrapperAddressPool",
    "ORMWrapperController",
    "ORMWrapperInstance",
    "ORMWrapperNetwork",
    "ORMWrapperONOSApp",
    "ORMWrapperPort",
    "ORMWrapperPrivilege",
    "ORMWrapperService",
    "ORMWrapperServiceInstance",
    "ORMWrapperSlice",
    "ORMWrapperTag",
    "ORMWrapperUser",
    "ORMWrapperXOSBase",
]

#: Model name -> the core's convenience class for it.
CORE_WRAPPERS: Mapping[str, type[ORMWrapper]] = MappingProxyType(
    {
        "XOSBase": ORMWrapperXOSBase,
        "Service": ORMWrapperService,
        "ServiceInstance": ORMWrapperServiceInstance,
        "AddressPool": ORMWrapperAddressPool,
        "Controller": ORMWrapperController,
        "Instance": ORMWrapperInstance,
        "Network": ORMWrapperNetwork,
        "ONOSApp": ORMWrapperONOSApp,
        "Port": ORMWrapperPort,
        "Privilege": ORMWrapperPrivilege,
        "Slice": ORMWrapperSlice,
        "Tag": ORMWrapperTag,
        "User": ORMWrapperUser,
    }
)
