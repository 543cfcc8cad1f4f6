"""``Privilege``: no methods of its own (as the original)."""

from __future__ import annotations

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperPrivilege"]


class ORMWrapperPrivilege(ORMWrapperXOSBase):
    """Registered so that services extending it find a base class."""
