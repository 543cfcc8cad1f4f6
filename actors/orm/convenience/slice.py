"""``Slice``: its name with the site prefix, its networks."""

from __future__ import annotations

from .localmanager import LocalObjectManager
from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperSlice"]


class ORMWrapperSlice(ORMWrapperXOSBase):
    @property
    def slicename(self) -> str:
        """``"<site login_base>_<slice name>"``."""
        return f"{self.site.login_base}_{self.name}"

    @property
    def networks(self) -> LocalObjectManager:
        """The networks joined to this slice through ``NetworkSlice``."""
        ids = [ns.network_id for ns in self.networkslices.all()]
        return LocalObjectManager(self._accessor, "Network", ids)
