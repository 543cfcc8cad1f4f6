"""``Instance`` (a VM or container): the addresses of its ports, its controller."""

from __future__ import annotations

from typing import Any

from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperInstance"]


class ORMWrapperInstance(ORMWrapperXOSBase):
    """Reads the instance's ``ports`` (``Port`` objects with ``ip`` and ``network``)."""

    def all_ips(self) -> dict[str, str]:
        """``{network name: ip}`` for each port that has an address."""
        return {port.network.name: port.ip for port in self.ports.all() if port.ip}

    def all_ips_string(self) -> str:
        """The addresses of :meth:`all_ips`, in network-name order, comma-separated."""
        ips = self.all_ips()
        return ", ".join(ips[name] for name in sorted(ips))

    def get_public_ip(self) -> str | None:
        """The address on a public network without address translation."""
        for port in self.ports.all():
            template = port.network.template if port.ip else None
            if template is not None and template.visibility == "public" and template.translation == "none":
                return str(port.ip)
        return None

    def get_network_ip(self, pattern: str) -> str | None:
        """The address on the first network whose name contains ``pattern`` (case-insensitive name)."""
        for port in self.ports.all():
            if pattern in port.network.name.lower():
                ip: str | None = port.ip
                return ip
        return None

    def get_ssh_ip(self) -> str | None:
        """Where to SSH to: a MANAGEMENT_LOCAL network, else one named management, else nat."""
        for port in self.ports.all():
            template = port.network.template
            if template is not None and template.vtn_kind == "MANAGEMENT_LOCAL":
                ip: str | None = port.ip
                return ip
        return self.get_network_ip("management") or self.get_network_ip("nat")

    @property
    def controller(self) -> Any:
        """The controller of the node's site deployment, or None."""
        node = self.node
        deployment = node.site_deployment if node is not None else None
        return deployment.controller if deployment is not None else None
