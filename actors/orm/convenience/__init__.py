"""The convenience methods the XOS core adds to its models (the original's ``xosapi/convenience``).

One module per core model, each with the wrapper class of the original's name
(``ORMWrapperService``, ``ORMWrapperServiceInstance``...). They are built into
every :class:`~actors.orm.ModelAccessor` by model name: a model named ``Slice``
gets :class:`~.slice.ORMWrapperSlice` whether it comes from the built-in core
models or from a synchronizer's xproto. A synchronizer's own convenience
wrappers (``register_convenience_wrapper``) come first, then its
``models.py`` classes (``custom_python``), then these; a service wrapper that
subclasses one of them (``class ORMWrapperMyService(ORMWrapperService)``)
extends it. See ``docs/orm.md``.

============================  ===============================================
module                        adds
============================  ===============================================
:mod:`.xosbase`               every model: ``stub``, ``ansible_tag``, ``has_changed``...
:mod:`.service`               ``Service``: provider/subscriber services, service instance class
:mod:`.serviceinstance`       ``ServiceInstance``: east/westbound instances, attributes
:mod:`.addresspool`           ``AddressPool``: ``get_address``, ``put_address``
:mod:`.controller`            ``Controller``: ``auth_url_v3``
:mod:`.instance`              ``Instance``: IPs of its ports, ``controller``
:mod:`.network`               ``Network``: ``slices``, ``instances``
:mod:`.port`                  ``Port``: ``get_parameters``
:mod:`.slice`                 ``Slice``: ``slicename``, ``networks``
:mod:`.tag`                   ``Tag``: ``get_generic_foreignkeys``
:mod:`.user`                  ``User``: ``remote_password``
:mod:`.onosapp`, :mod:`.privilege`  no methods of their own (as the original)
============================  ===============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._object import ORMWrapper
from .addresspool import ORMWrapperAddressPool
from .controller import ORMWrapperController
from .instance import ORMWrapperInstance
from .localmanager import LocalObjectManager
from .network import ORMWrapperNetwork
from .onosapp import ORMWrapperONOSApp
from .port import ORMWrapperPort
from .privilege import ORMWrapperPrivilege
from .service import ORMWrapperService
from .serviceinstance import ORMWrapperServiceInstance
from .slice import ORMWrapperSlice
from .tag import ORMWrapperTag
from .user import ORMWrapperUser
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
