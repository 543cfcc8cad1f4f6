"""``User``: the password form handed to remote systems."""

from __future__ import annotations

import hashlib

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperUser"]


class ORMWrapperUser(ORMWrapperXOSBase):
    @property
    def remote_password(self) -> str:
        """The first 12 hex digits of the MD5 of ``password`` (as the original)."""
        password = self.password or ""
        data = password.encode("utf-8") if isinstance(password, str) else bytes(password)
        return hashlib.md5(data, usedforsecurity=False).hexdigest()[:12]
