"""``ONOSApp``: a service instance of the ONOS service, with no methods of its own."""

from __future__ import annotations

from .serviceinstance import ORMWrapperServiceInstance

__all__ = ["ORMWrapperONOSApp"]


class ORMWrapperONOSApp(ORMWrapperServiceInstance):
    """So that ``ONOSApp`` objects have the service-instance methods whatever their xproto base."""
