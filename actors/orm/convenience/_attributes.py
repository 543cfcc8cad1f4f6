"""``get_attribute`` / ``set_attribute``: named values kept as JSON in ``service_specific_attribute``."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["AttributeMixin"]


class AttributeMixin:
    """The XOS core's ``AttributeMixin`` of ``Service`` and ``ServiceInstance``.

    The attributes are one JSON object stored in the text field
    ``service_specific_attribute``; a missing or empty field is ``{}``.
    """

    _data: dict[str, Any]
    _loaded: dict[str, Any]
    service_specific_attribute: str | None

    @staticmethod
    def _parse(raw: str | None) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"service_specific_attribute is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"service_specific_attribute is not a JSON object: {raw[:60]!r}")
        return value

    def get_attribute(self, name: str, default: Any = None) -> Any:
        """The attribute ``name`` (``default`` if it is not set)."""
        return self._parse(self.service_specific_attribute).get(name, default)

    def set_attribute(self, name: str, value: Any) -> None:
        """Set attribute ``name`` (saved with the object's next ``save()``)."""
        attributes = self._parse(self.service_specific_attribute)
        attributes[name] = value
        self.service_specific_attribute = json.dumps(attributes)

    def get_initial_attribute(self, name: str, default: Any = None) -> Any:
        """The attribute ``name`` as it was stored when the object was read."""
        return self._parse(self._loaded.get("service_specific_attribute")).get(name, default)
