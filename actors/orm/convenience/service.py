"""``Service``: its attributes, the services it depends on, and the class of its instances."""

from __future__ import annotations

from typing import Any

from ._attributes import AttributeMixin
from .xosbase import ORMWrapperXOSBase

__all__ = ["ORMWrapperService"]

#: Network kinds ``get_composable_networks`` takes (as the original).
COMPOSABLE_VTN_KINDS = ("VSG", "PRIVATE")


class ORMWrapperService(AttributeMixin, ORMWrapperXOSBase):
    """Built into ``Service`` and every model derived from it."""

    @property
    def serviceattribute_dict(self) -> dict[str, Any]:
        """``{name: value}`` of the service's ``ServiceAttribute`` objects."""
        return {a.name: a.value for a in self.serviceattributes.all()}

    @property
    def provider_services(self) -> list[Any]:
        """The services this one subscribes to (``ServiceDependency.provider_service``)."""
        return [dep.provider_service for dep in self.subscribed_dependencies.all()]

    @property
    def subscriber_services(self) -> list[Any]:
        """The services subscribing to this one (``ServiceDependency.subscriber_service``)."""
        return [dep.subscriber_service for dep in self.provided_dependencies.all()]

    def get_service_instance_class_name(self) -> str:
        """``"<leaf model>Instance"`` (``VSGService`` -> ``VSGServiceInstance``); override if not so."""
        return f"{self.leaf_model_name or self._model}Instance"

    def get_service_instance_class(self) -> Any:
        """The model class named by :meth:`get_service_instance_class_name`."""
        name = self.get_service_instance_class_name()
        if not self._accessor.has_model_class(name):
            raise AttributeError(
                f"{self._model} {self.name!r}: no model named {name!r} for its service instances "
                "(override get_service_instance_class_name in the service's convenience wrapper)"
            )
        return self._accessor.get_model_class(name)

    def acquire_service_instance(self, subscriber_service_instance: Any) -> None:
        """Create a new service instance of this service and link ``subscriber_service_instance`` to it.

        The base never reuses an existing instance; a service's wrapper overrides
        this to share them.
        """
        eastbound = self.get_service_instance_class()(owner_id=self.id)
        eastbound.save()
        link = self._accessor.get_model_class("ServiceInstanceLink")(
            provider_service_instance=eastbound, subscriber_service_instance=subscriber_service_instance
        )
        link.save()

    def validate_links(self, subscriber_service_instance: Any) -> list[Any]:
        """The leaf objects of this service's instances that ``subscriber_service_instance`` links to."""
        matched = []
        for link in subscriber_service_instance.subscribed_links.all():
            provider = link.provider_service_instance
            if provider is not None and provider.owner_id == self.id:
                matched.append(provider.leaf_model)
        return matched

    def get_composable_networks(self) -> list[Any]:
        """Networks of the service's slices that VTN can compose (kind VSG or PRIVATE, owned by the slice)."""
        nets = []
        for slice_ in self.slices.all():
            for net in slice_.networks.all():
                template = net.template
                if template is None or template.vtn_kind not in COMPOSABLE_VTN_KINDS:
                    continue
                if net.owner_id != slice_.id or not net.controllernetworks.exists():
                    continue
                nets.append(net)
        return nets
