"""``Tag``: a name and value attached to any object (content type and id)."""

from __future__ import annotations

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperTag"]


class ORMWrapperTag(ORMWrapperXOSBase):
    def get_generic_foreignkeys(self) -> list[dict[str, str]]:
        """The tagged object is named by the fields ``content_type`` and ``object_id``."""
        return [{"name": "content_object", "content_type": "content_type", "id": "object_id"}]
