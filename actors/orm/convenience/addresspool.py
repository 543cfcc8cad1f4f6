"""``AddressPool``: hand out and take back addresses of the pool."""

from __future__ import annotations

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperAddressPool"]


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
