"""The core's convenience methods over gRPC: the same results as over the local store."""

from __future__ import annotations

from typing import Any

import pytest

from actors.orm import ModelAccessor
from actors.store import Caller, Store


@pytest.fixture(params=["local", "remote"])
def accessor(request: pytest.FixtureRequest, api_store: Store) -> ModelAccessor:
    if request.param == "local":
        return ModelAccessor(api_store, caller=Caller.CLIENT)
    remote = request.getfixturevalue("remote")
    return ModelAccessor(remote("admin"), caller=Caller.CLIENT)


def _save(obj: Any) -> Any:
    obj.save()
    return obj


def test_service_graph_navigation(accessor: ModelAccessor) -> None:
    onos = _save(accessor.Service(name="onos"))
    volt = _save(accessor.Service(name="volt"))
    _save(accessor.ServiceDependency(subscriber_service=volt, provider_service=onos))
    assert volt.provider_services == [onos] and onos.subscriber_services == [volt]
    assert volt.get_service_instance_class() is accessor.ServiceInstance, "Service -> ServiceInstance"
    _save(accessor.ServiceAttribute(service=onos, name="rest_port", value="8181"))
    assert onos.serviceattribute_dict == {"rest_port": "8181"}

    west = _save(accessor.ServiceInstance(name="west", owner=volt))
    onos.acquire_service_instance(west)
    [east] = onos.validate_links(west)
    assert east.owner_id == onos.id and west.eastbound_service_instances == [east]
    assert east.westbound_service_instances == [west]
    west.set_attribute("c_tag", 111)
    west.save()
    assert east.get_westbound_service_instance_properties("service_specific_attribute") is not None
    assert accessor.ServiceInstance.objects.get(id=west.id).get_attribute("c_tag") == 111
    assert east.tologdict() == {"model_name": "ServiceInstance", "pk": east.id}
    assert east.ansible_tag == f"ServiceInstance_{east.id}" and east.stub is accessor
