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

============================  ===============================================
module                        adds
============================  ===============================================
:mod:`.xosbase`               every model: ``stub``, ``ansible_tag``, ``has_changed``...
:mod:`.service`               ``Service``: provider/subscriber services, service instance class;
                              ``ServiceInstance``: east/westbound instances, attributes;
                              ``ONOSApp``: no methods of its own (as the original)
:mod:`.infrastructure`        ``AddressPool``: ``get_address``, ``put_address``;
                              ``Controller``: ``auth_url_v3``;
                              ``Instance``: IPs of its ports, ``controller``;
                              ``Network``: ``slices``, ``instances``;
                              ``Port``: ``get_parameters``;
                              ``Slice``: ``slicename``, ``networks``;
                              ``Tag``: ``get_generic_foreignkeys``;
                              ``User``: ``remote_password``;
                              ``Privilege``: no methods of its own (as the original)
============================  ===============================================
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
