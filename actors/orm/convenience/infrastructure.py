"""The convenience methods of the core's other models: compute, network, users and tags.

:class:`LocalObjectManager` is the original's ``ORMLocalObjectManager``: the
many-to-many relations the core keeps through other models, as a fixed list of ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .xosbase import ORMWrapperXOSBase

if TYPE_CHECKING:
    from .._accessor import ModelAccessor
    from .._object import ORMWrapper


class LocalObjectManager:
    """The original's ``ORMLocalObjectManager``: objects of ``model`` with the ids ``ids``.

    ``all()`` reads them (once; objects since deleted are left out), ``count()``
    and ``exists()`` look at the ids only, as the original. ``add`` and
    ``remove`` change the id list of a ``writeable`` manager.
    """

    def __init__(self, stub: ModelAccessor, model: str, ids: list[int], writeable: bool = False) -> None:
        self._stub = stub
        self._model = model
        self._ids = list(ids)
        self._writeable = writeable
        self._cache: list[ORMWrapper] | None = None

    def all(self) -> list[ORMWrapper]:
        if self._cache is None:
            cls = self._stub.get_model_class(self._model)
            by_id = {obj.id: obj for obj in cls.objects.filter(id__in=self._ids)} if self._ids else {}
            self._cache = [by_id[i] for i in self._ids if i in by_id]
        return list(self._cache)

    def __iter__(self) -> Iterator[ORMWrapper]:
        return iter(self.all())

    def exists(self) -> bool:
        return bool(self._ids)

    def count(self) -> int:
        return len(self._ids)

    def first(self) -> ORMWrapper | None:
        found = self.all()
        return found[0] if found else None

    def _id(self, model: Any) -> int:
        if not self._writeable:
            raise TypeError(f"this list of {self._model} objects is read-only")
        if isinstance(model, int):
            return model
        if getattr(model, "id", None) is None:
            raise ValueError(f"{model!r} has no id (save it first)")
        return int(model.id)

    def add(self, model: Any) -> None:
        self._ids.append(self._id(model))
        self._cache = None

    def remove(self, model: Any) -> None:
        self._ids.remove(self._id(model))
        self._cache = None


class ORMWrapperAddressPool(ORMWrapperXOSBase):
    """``addresses`` (free) and ``inuse`` are space-separated lists; save the pool after a change."""

    addresses: str | None
    inuse: str | None

    def get_address(self) -> str | None:
        """Move the first free address not already in use to ``inuse`` and return it (None if none)."""
        free = (self.addresses or "").split()
        inuse = (self.inuse or "").split()
        while free:
            address = free.pop(0)
            if address in inuse:  # the pool was refilled while the address was in use
                continue
            inuse.insert(0, address)
            self.inuse = " ".join(inuse)
            self.addresses = " ".join(free)
            return address
        return None

    def put_address(self, address: str) -> None:
        """Give ``address`` back: free again, no longer in use."""
        free = (self.addresses or "").split()
        if address not in free:
            free.insert(0, address)
            self.addresses = " ".join(free)
        inuse = (self.inuse or "").split()
        if address in inuse:
            inuse.remove(address)
            self.inuse = " ".join(inuse)


class ORMWrapperController(ORMWrapperXOSBase):
    """``Controller`` (an OpenStack controller): its Keystone v3 URL."""

    @property
    def auth_url_v3(self) -> str:
        """``auth_url`` with its last path part (the API version) replaced by ``v3/``."""
        url = self.auth_url or ""
        parts = url.split("/")[:-2] if url.endswith("/") else url.split("/")[:-1]
        return "/".join(parts) + "/v3/"


class ORMWrapperInstance(ORMWrapperXOSBase):
    """A VM or container: the addresses of its ``ports`` (``Port`` objects with ``ip`` and ``network``)."""

    def all_ips(self) -> dict[str, str]:
        """``{network name: ip}`` for each port that has an address."""
        return {port.network.name: port.ip for port in self.ports.all() if port.ip}

    def all_ips_string(self) -> str:
        """The addresses of :meth:`all_ips`, in network-name order, comma-separated."""
        ips = self.all_ips()
        return ", ".join(ips[name] for name in sorted(ips))

    def get_public_ip(self) -> str | None:
        """The address on a public network without address translation."""
        for port in self.ports.all():
            template = port.network.template if port.ip else None
            if template is not None and template.visibility == "public" and template.translation == "none":
                return str(port.ip)
        return None

    def get_network_ip(self, pattern: str) -> str | None:
        """The address on the first network whose name contains ``pattern`` (case-insensitive name)."""
        for port in self.ports.all():
            if pattern in port.network.name.lower():
                ip: str | None = port.ip
                return ip
        return None

    def get_ssh_ip(self) -> str | None:
        """Where to SSH to: a MANAGEMENT_LOCAL network, else one named management, else nat."""
        for port in self.ports.all():
            template = port.network.template
            if template is not None and template.vtn_kind == "MANAGEMENT_LOCAL":
                ip: str | None = port.ip
                return ip
        return self.get_network_ip("management") or self.get_network_ip("nat")

    @property
    def controller(self) -> Any:
        """The controller of the node's site deployment, or None."""
        node = self.node
        deployment = node.site_deployment if node is not None else None
        return deployment.controller if deployment is not None else None


class ORMWrapperNetwork(ORMWrapperXOSBase):
    """``Network``: the many-to-many relations the core keeps through other models."""

    @property
    def slices(self) -> LocalObjectManager:
        """The slices joined to this network through ``NetworkSlice``."""
        ids = [ns.slice_id for ns in self.networkslices.all()]
        return LocalObjectManager(self._accessor, "Slice", ids)

    @property
    def instances(self) -> LocalObjectManager:
        """The instances with a port on this network (``Port.instance``, where ports have that link)."""
        ids = [i for port in self.links.all() if (i := getattr(port, "instance_id", None)) is not None]
        return LocalObjectManager(self._accessor, "Instance", ids)


class ORMWrapperPort(ORMWrapperXOSBase):
    """``Port``: its network parameters."""

    def get_parameters(self) -> dict[str, str]:
        """``{parameter type name: value}`` of the ``NetworkParameter`` objects attached to this port."""
        parameters = self._accessor.get_model_class("NetworkParameter").objects.filter(
            content_type=self.self_content_type_id, object_id=self.id
        )
        return {p.parameter.name: p.value for p in parameters}


class ORMWrapperPrivilege(ORMWrapperXOSBase):
    """Registered so that services extending it find a base class."""


class ORMWrapperSlice(ORMWrapperXOSBase):
    """``Slice``: its name with the site prefix, its networks."""

    @property
    def slicename(self) -> str:
        """``"<site login_base>_<slice name>"``."""
        return f"{self.site.login_base}_{self.name}"

    @property
    def networks(self) -> LocalObjectManager:
        """The networks joined to this slice through ``NetworkSlice``."""
        ids = [ns.network_id for ns in self.networkslices.all()]
        return LocalObjectManager(self._accessor, "Network", ids)


class ORMWrapperTag(ORMWrapperXOSBase):
    """``Tag``: a name and value attached to any object (content type and id)."""

    def get_generic_foreignkeys(self) -> list[dict[str, str]]:
        """The tagged object is named by the fields ``content_type`` and ``object_id``."""
        return [{"name": "content_object", "content_type": "content_type", "id": "object_id"}]


class ORMWrapperUser(ORMWrapperXOSBase):
    """``User``: the password form handed to remote systems."""

    @property
    def remote_password(self) -> str:
        """The first 12 hex digits of the MD5 of ``password`` (as the original)."""
        password = self.password or ""
        data = password.encode("utf-8") if isinstance(password, str) else bytes(password)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()[:12]
