"""``Port``: its network parameters."""

from __future__ import annotations

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperPort"]


class ORMWrapperPort(ORMWrapperXOSBase):
    def get_parameters(self) -> dict[str, str]:
        """``{parameter type name: value}`` of the ``NetworkParameter`` objects attached to this port."""
        parameters = self._accessor.get_model_class("NetworkParameter").objects.filter(
            content_type=self.self_content_type_id, object_id=self.id
        )
        return {p.parameter.name: p.value for p in parameters}
