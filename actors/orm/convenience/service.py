"""``Service`` and ``ServiceInstance``: their attributes, the services a service depends on, the chain.

``get_attribute`` / ``set_attribute`` (:class:`AttributeMixin`) keep named values as
JSON in ``service_specific_attribute``; ``ONOSApp`` is a service instance of the ONOS
service, with no methods of its own.
"""

from __future__ import annotations

import json
from typing import Any

from actors.store import ValidationError, choose_owner

from .xosbase import ORMWrapperXOSBase

__all__ = ["AttributeMixin", "ORMWrapperONOSApp", "ORMWrapperService", "ORMWrapperServiceInstance"]


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


class ORMWrapperServiceInstance(AttributeMixin, ORMWrapperXOSBase):
    """Built into ``ServiceInstance`` and every model derived from it.

    The chain runs west (subscriber, towards the customer) to east (provider):
    a ``ServiceInstanceLink`` has a ``provider_service_instance`` (east) and a
    ``subscriber_service_instance`` (west). ``self.provided_links`` are the
    links where this instance is the provider, ``self.subscribed_links`` those
    where it is the subscriber.
    """

    @property
    def serviceinstanceattribute_dict(self) -> dict[str, Any]:
        """``{name: value}`` of the instance's ``ServiceInstanceAttribute`` objects."""
        return {a.name: a.value for a in self.service_instance_attributes.all()}

    @property
    def tenantattribute_dict(self) -> dict[str, Any]:
        """The old name of :attr:`serviceinstanceattribute_dict`."""
        return self.serviceinstanceattribute_dict

    @property
    def westbound_service_instances(self) -> list[Any]:
        """The subscribers of this instance, each as its leaf model."""
        subscribers = (link.subscriber_service_instance for link in self.provided_links.all())
        return [si.leaf_model for si in subscribers if si is not None]

    @property
    def eastbound_service_instances(self) -> list[Any]:
        """The providers this instance subscribes to, each as its leaf model."""
        providers = (link.provider_service_instance for link in self.subscribed_links.all())
        return [si.leaf_model for si in providers if si is not None]

    def get_westbound_service_instance_properties(self, prop_name: str, include_self: bool = False) -> Any:
        """The value of ``prop_name`` on the first westbound instance that has it, walking west.

        With ``include_self``, this instance is looked at first. As the original,
        only the first westbound instance of each step is followed. Raises
        ``LookupError`` naming the instance when the chain ends without one.
        """
        if include_self and hasattr(self, prop_name):
            return getattr(self, prop_name)
        current: Any = self
        seen = {self.id}
        while True:
            west = current.westbound_service_instances
            if not west:
                raise LookupError(
                    f"ServiceInstance with id {current.id} has no westbound service instances"
                    f" (looking for {prop_name!r} from {self._model} id {self.id})"
                )
            current = west[0]
            if hasattr(current, prop_name):
                return getattr(current, prop_name)
            if current.id in seen:
                raise LookupError(f"the service chain west of ServiceInstance {self.id} is a cycle")
            seen.add(current.id)

    def create_eastbound_instance(self) -> None:
        """Unless already in a chain: a new instance of each provider of its owner, linked east of it."""
        if self.eastbound_service_instances and not self.is_new:
            return
        link_class = self._accessor.get_model_class("ServiceInstanceLink")
        for dependency in self.owner.subscribed_dependencies.all():
            provider = dependency.provider_service
            eastbound = provider.get_service_instance_class()(owner_id=provider.id)
            eastbound.save()
            link_class(provider_service_instance=eastbound, subscriber_service_instance=self).save()

    def validate_unique_service_specific_id(self, none_okay: bool = False) -> None:
        """The core's check: ``service_specific_id`` set (unless ``none_okay``) and unique in the model."""
        value = self.service_specific_id
        if value is None:
            if not none_okay:
                raise ValidationError(
                    f"{self._model}: service_specific_id is None, and it's a required field"
                )
            return
        conflicts = type(self).objects.filter(service_specific_id=value)
        if self.id is not None:
            conflicts = conflicts.exclude(id=self.id)
        if conflicts.exists():
            raise ValidationError(f"{self._model}: service_specific_id {value} already exists")

    def set_owner(self) -> None:
        """The core's owner rule (:func:`actors.store.choose_owner`, as the store applies on create).

        An owner of the model's ``owner_class_name`` (the first one) unless ``owner``
        already is one; nothing happens for a model without that option.
        """
        accessor = self._accessor

        def is_live(wanted: str, id: int) -> bool:
            return bool(accessor.get_model_class(wanted).objects.filter(id=id).exists())

        def first_live(wanted: str) -> int | None:
            first = accessor.get_model_class(wanted).objects.order_by("id").first()
            return None if first is None else int(first.id)

        this: Any = self  # owner_id is a field of the model, not of this class
        owner = choose_owner(
            accessor.schema, self._model, this.owner_id, is_live=is_live, first_live=first_live
        )
        if owner != this.owner_id:
            this.owner_id = owner


class ORMWrapperONOSApp(ORMWrapperServiceInstance):
    """So that ``ONOSApp`` objects have the service-instance methods whatever their xproto base."""
