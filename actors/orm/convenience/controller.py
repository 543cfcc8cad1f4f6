"""``Controller`` (an OpenStack controller): its Keystone v3 URL."""

from __future__ import annotations

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperController"]


class ORMWrapperController(ORMWrapperXOSBase):
    @property
    def auth_url_v3(self) -> str:
        """``auth_url`` with its last path part (the API version) replaced by ``v3/``."""
        url = self.auth_url or ""
        parts = url.split("/")[:-2] if url.endswith("/") else url.split("/")[:-1]
        return "/".join(parts) + "/v3/"
