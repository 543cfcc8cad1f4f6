"""``Network``: the many-to-many relations the core keeps through other models."""

from __future__ import annotations

from .localmanager import LocalObjectManager
from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperNetwork"]


class ORMWrapperNetwork(ORMWrapperXOSBase):
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
