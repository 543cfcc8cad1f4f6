"""The XOS core's convenience methods (actors.orm.convenience) on ORM objects over a real store.

Models the core does not have yet are declared here; a model the built-in core already
declares is taken from the core instead (``_schema``), so these tests keep working when
the core gains Slice, Site, Network... Objects are created with the fields upstream's
core.xproto requires; what upstream's core no longer has (Instance, Controller,
SiteDeployment, a Node with a site deployment) uses names the core will not take.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from actors.models import Schema, builtin_models, load_schema, parse_xproto
from actors.orm import ModelAccessor, ORMWrapper, register_convenience_wrapper, registering_into
from actors.orm.convenience import (
    CORE_WRAPPERS,
    LocalObjectManager,
    ORMWrapperService,
    ORMWrapperServiceInstance,
)
from actors.store import Caller, Store, ValidationError

#: Service models shaped like a real chain (subscriber -> vOLT -> fabric), plus the
#: infrastructure models of the core's other convenience modules.
XPROTO = """
message RCORDService (Service) {
    required string access = 1 [default = "voltha", max_length = 30];
}
message RCORDSubscriber (ServiceInstance) {
    option owner_class_name = "RCORDService";
    optional int32 c_tag = 1;
    optional string onu_device = 2 [max_length = 256];
}
message VOLTService (Service) {
    optional string voltha_url = 1 [max_length = 256];
}
message VOLTServiceInstance (ServiceInstance) {
    optional string description = 1 [max_length = 254];
}
message FabricService (Service) {
}
message FabricServiceInstance (ServiceInstance) {
    optional int32 s_tag = 1;
}
message OddService (Service) {
}
message Site (XOSBase) {
    required string name = 1 [max_length = 200];
    required string login_base = 2 [max_length = 50];
    required string abbreviated_name = 3 [max_length = 80];
}
message User (XOSBase) {
    required string email = 1 [max_length = 256];
    required string password = 2 [default = "Something", max_length = 256];
    required string firstname = 3 [max_length = 200];
    required string lastname = 4 [max_length = 200];
    required manytoone site->Site:users = 5 [db_index = True];
}
message Slice (XOSBase) {
    required string name = 1 [max_length = 80];
    required manytoone site->Site:slices = 2 [db_index = True];
    optional manytoone service->Service:slices = 3 [db_index = True];
}
message NetworkTemplate (XOSBase) {
    required string name = 1 [max_length = 32];
    required string visibility = 2 [default = "private", max_length = 30];
    required string translation = 3 [default = "none", max_length = 30];
    optional string vtn_kind = 4 [default = "PRIVATE", max_length = 30];
}
message Network (XOSBase) {
    required string name = 1 [max_length = 32];
    required manytoone template->NetworkTemplate:network = 2 [db_index = True];
    required manytoone owner->Slice:ownedNetworks = 3 [db_index = True];
}
message NetworkSlice (XOSBase) {
    required manytoone network->Network:networkslices = 1 [db_index = True];
    required manytoone slice->Slice:networkslices = 2 [db_index = True];
}
message ControllerNetwork (XOSBase) {
    required manytoone network->Network:controllernetworks = 1 [db_index = True];
}
message NetworkParameterType (XOSBase) {
    required string name = 1 [max_length = 128];
}
message NetworkParameter (XOSBase) {
    required manytoone parameter->NetworkParameterType:networkparameters = 1 [db_index = True];
    required string value = 2 [max_length = 1024];
    required string content_type = 3 [max_length = 1024];
    required uint32 object_id = 4;
}
message Port (XOSBase) {
    required manytoone network->Network:links = 1 [db_index = True];
    optional string ip = 2 [max_length = 39];
    optional manytoone service_instance->ServiceInstance:ports = 3 [db_index = True];
}
message Controller (XOSBase) {
    required string name = 1 [max_length = 200];
    required string auth_url = 2 [max_length = 200];
}
message SiteDeployment (XOSBase) {
    optional manytoone controller->Controller:sitedeployments = 1 [db_index = True];
}
message ComputeNode (XOSBase) {
    required string name = 1 [max_length = 200];
    optional manytoone site_deployment->SiteDeployment:nodes = 2 [db_index = True];
}
message Instance (XOSBase) {
    required string name = 1 [max_length = 200];
    optional manytoone node->ComputeNode:instances = 2 [db_index = True];
}
message InstancePort (XOSBase) {
    required manytoone network->Network:instance_ports = 1 [db_index = True];
    required manytoone instance->Instance:ports = 2 [db_index = True];
    optional string ip = 3 [max_length = 39];
}
message AddressPool (XOSBase) {
    required string name = 1 [max_length = 32];
    optional text addresses = 2;
    required string gateway_ip = 3 [max_length = 32];
    required string gateway_mac = 4 [max_length = 32];
    required string cidr = 5 [max_length = 32];
    optional text inuse = 6;
}
message Tag (XOSBase) {
    required manytoone service->Service:tags = 1 [db_index = True];
    required string name = 2 [max_length = 128];
    required string value = 3 [max_length = 1024];
    required string content_type = 4 [max_length = 1024];
    required uint32 object_id = 5;
}
message ONOSApp (ServiceInstance) {
    optional string app_id = 1 [max_length = 80];
}
"""


def _schema() -> Schema:
    """The built-in models plus those of ``XPROTO`` the built-in core does not declare."""
    core = {spec.name for spec in builtin_models()}
    return load_schema(
        [], extra=[s for s in parse_xproto(XPROTO, "test_convenience.xproto") if s.name not in core]
    )


@pytest.fixture
def orm() -> Iterator[ModelAccessor]:
    store = Store("sqlite://", _schema())
    try:
        yield ModelAccessor(store, caller=Caller.CLIENT)
    finally:
        store.close()


def _save(obj: Any) -> Any:
    obj.save()
    return obj


@pytest.fixture
def chain(orm: ModelAccessor) -> dict[str, Any]:
    """rcord -> volt -> fabric services with one subscriber -> volt si -> fabric si chain."""
    rcord = _save(orm.RCORDService(name="rcord"))
    volt = _save(orm.VOLTService(name="volt"))
    fabric = _save(orm.FabricService(name="fabric"))
    for subscriber, provider in ((rcord, volt), (volt, fabric)):
        _save(orm.ServiceDependency(subscriber_service=subscriber, provider_service=provider))
    sub = _save(orm.RCORDSubscriber(name="sub", owner=rcord, c_tag=111, onu_device="BRCM1"))
    volt_si = _save(orm.VOLTServiceInstance(name="volt-si", owner=volt))
    fabric_si = _save(orm.FabricServiceInstance(name="fabric-si", owner=fabric, s_tag=222))
    _save(orm.ServiceInstanceLink(provider_service_instance=volt_si, subscriber_service_instance=sub))
    _save(orm.ServiceInstanceLink(provider_service_instance=fabric_si, subscriber_service_instance=volt_si))
    return {
        "rcord": rcord,
        "volt": volt,
        "fabric": fabric,
        "sub": sub,
        "volt_si": volt_si,
        "fabric_si": fabric_si,
    }


# -- every model ----------------------------------------------------------------------
def test_base_methods(orm: ModelAccessor) -> None:
    service = _save(orm.Service(name="s"))
    assert service.tologdict() == {"model_name": "Service", "pk": service.id}
    assert service.ansible_tag == f"Service_{service.id}"
    assert service.model_name == "Service" and service.stub is orm
    assert service.stub.ServiceInstance is orm.ServiceInstance
    assert not service.has_changed
    service.description = "changed"
    assert service.has_changed and service.fields_differ(1, 2) and not service.fields_differ(1, 1)
    service.recompute_initial()
    assert not service.has_changed and service.changed_fields == []
    assert "description: 'changed'" in service.dumpstr().splitlines()
    assert service.get_generic_foreignkeys() == []


def test_leaf_model_through_the_base_class(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    base = orm.ServiceInstance.objects.get(id=chain["fabric_si"].id)
    assert type(base) is orm.ServiceInstance and base.model_name == "ServiceInstance"
    leaf = base.leaf_model
    assert type(leaf) is orm.FabricServiceInstance and leaf.s_tag == 222
    assert leaf.tologdict() == {"model_name": "FabricServiceInstance", "pk": base.id}
    assert leaf.ansible_tag == f"FabricServiceInstance_{base.id}"


def test_every_core_wrapper_is_built_in_by_model_name(orm: ModelAccessor) -> None:
    for name, wrapper in CORE_WRAPPERS.items():
        if orm.has_model_class(name):
            assert issubclass(orm.get_model_class(name), wrapper), name
    assert issubclass(orm.VOLTService, ORMWrapperService)
    assert issubclass(orm.ONOSApp, ORMWrapperServiceInstance)


# -- Service --------------------------------------------------------------------------
def test_provider_and_subscriber_services(chain: dict[str, Any]) -> None:
    rcord, volt, fabric = chain["rcord"], chain["volt"], chain["fabric"]
    assert rcord.provider_services == [volt] and rcord.subscriber_services == []
    assert volt.provider_services == [fabric] and volt.subscriber_services == [rcord]
    assert fabric.provider_services == [] and fabric.subscriber_services == [volt]
    # A base-class Service finds them too; leaf_model gives the service's own model.
    assert [s.leaf_model.voltha_url for s in rcord.provider_services] == [None]
    assert type(rcord.provider_services[0].leaf_model).__name__ == "VOLTService"


def test_service_instance_class(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    volt = chain["volt"]
    assert volt.get_service_instance_class_name() == "VOLTServiceInstance"
    assert volt.get_service_instance_class() is orm.VOLTServiceInstance
    # From a Service object of the base class, by leaf_model_name.
    base = orm.Service.objects.get(id=volt.id)
    assert base.get_service_instance_class() is orm.VOLTServiceInstance
    odd = _save(orm.OddService(name="odd"))
    with pytest.raises(AttributeError, match="no model named 'OddServiceInstance'"):
        odd.get_service_instance_class()


def test_service_attributes(orm: ModelAccessor) -> None:
    service = _save(orm.Service(name="s"))
    _save(orm.ServiceAttribute(service=service, name="color", value="blue"))
    _save(orm.ServiceAttribute(service=service, name="size", value="7"))
    assert service.serviceattribute_dict == {"color": "blue", "size": "7"}
    assert service.get_attribute("x", "none") == "none"
    service.set_attribute("x", [1, 2])
    service.save()
    again = orm.Service.objects.get(id=service.id)
    assert again.get_attribute("x") == [1, 2] and json.loads(again.service_specific_attribute) == {
        "x": [1, 2]
    }
    again.set_attribute("x", 3)
    assert again.get_attribute("x") == 3 and again.get_initial_attribute("x") == [1, 2]
    again.service_specific_attribute = "not json"
    with pytest.raises(ValueError, match="service_specific_attribute is not valid JSON"):
        again.get_attribute("x")


def test_acquire_service_instance_and_validate_links(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    volt, fabric, sub = chain["volt"], chain["fabric"], chain["sub"]
    assert [si.id for si in volt.validate_links(sub)] == [chain["volt_si"].id]
    assert type(volt.validate_links(sub)[0]) is orm.VOLTServiceInstance
    assert fabric.validate_links(sub) == []
    fabric.acquire_service_instance(sub)
    [made] = fabric.validate_links(sub)
    assert type(made) is orm.FabricServiceInstance and made.owner_id == fabric.id
    assert made.id in [si.id for si in orm.RCORDSubscriber.objects.get(id=sub.id).eastbound_service_instances]


def test_composable_networks(orm: ModelAccessor) -> None:
    service = _save(orm.Service(name="vsg"))
    site = _save(orm.Site(name="site", login_base="mysite", abbreviated_name="ms"))
    slice_ = _save(orm.Slice(name="mysite_vsg", site=site, service=service))
    other = _save(orm.Slice(name="mysite_other", site=site))
    private = _save(orm.NetworkTemplate(name="private", vtn_kind="PRIVATE"))
    public = _save(orm.NetworkTemplate(name="public", vtn_kind="PUBLIC"))
    good = _save(orm.Network(name="good", template=private, owner=slice_))
    no_controller = _save(orm.Network(name="no_ctl", template=private, owner=slice_))
    wrong_kind = _save(orm.Network(name="public", template=public, owner=slice_))
    not_owned = _save(orm.Network(name="shared", template=private, owner=other))
    for net in (good, no_controller, wrong_kind, not_owned):
        _save(orm.NetworkSlice(network=net, slice=slice_))
    for net in (good, wrong_kind, not_owned):
        _save(orm.ControllerNetwork(network=net))
    assert [n.name for n in service.get_composable_networks()] == ["good"]


# -- ServiceInstance --------------------------------------------------------------------
def test_east_and_westbound_service_instances(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    sub, volt_si, fabric_si = chain["sub"], chain["volt_si"], chain["fabric_si"]
    assert sub.eastbound_service_instances == [volt_si] and sub.westbound_service_instances == []
    assert volt_si.eastbound_service_instances == [fabric_si]
    assert volt_si.westbound_service_instances == [sub]
    assert fabric_si.westbound_service_instances == [volt_si]
    assert type(fabric_si.westbound_service_instances[0]) is orm.VOLTServiceInstance, "as leaf models"
    assert [link.subscriber_service_instance for link in volt_si.provided_links.all()] == [sub]
    assert [link.provider_service_instance for link in volt_si.subscribed_links.all()] == [fabric_si]


def test_westbound_properties(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    sub, volt_si, fabric_si = chain["sub"], chain["volt_si"], chain["fabric_si"]
    assert fabric_si.get_westbound_service_instance_properties("c_tag") == 111, "two hops west"
    assert volt_si.get_westbound_service_instance_properties("onu_device") == "BRCM1"
    assert fabric_si.get_westbound_service_instance_properties("s_tag", include_self=True) == 222
    assert fabric_si.get_westbound_service_instance_properties("description") is None, "volt si has it"
    base = orm.ServiceInstance.objects.get(id=fabric_si.id)
    assert base.get_westbound_service_instance_properties("c_tag") == 111
    with pytest.raises(LookupError, match=f"ServiceInstance with id {sub.id} has no westbound"):
        fabric_si.get_westbound_service_instance_properties("no_such_property")


def test_service_instance_attributes(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    sub = chain["sub"]
    _save(orm.ServiceInstanceAttribute(service_instance=sub, name="a", value="1"))
    assert sub.serviceinstanceattribute_dict == sub.tenantattribute_dict == {"a": "1"}
    sub.set_attribute("mode", "auto")
    assert sub.get_attribute("mode") == "auto"


def test_create_eastbound_instance(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    rcord = chain["rcord"]
    new = _save(orm.RCORDSubscriber(name="new", owner=rcord))
    new.create_eastbound_instance()
    [made] = new.eastbound_service_instances
    assert type(made) is orm.VOLTServiceInstance and made.owner_id == chain["volt"].id
    new.create_eastbound_instance()
    assert len(new.eastbound_service_instances) == 1, "already in a chain: nothing more"


def test_unique_service_specific_id_and_set_owner(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    sub = chain["sub"]
    with pytest.raises(ValidationError, match="service_specific_id is None"):
        sub.validate_unique_service_specific_id()
    sub.validate_unique_service_specific_id(none_okay=True)
    sub.service_specific_id = "S1"
    sub.save()
    sub.validate_unique_service_specific_id()
    other = orm.RCORDSubscriber(name="other", owner=chain["rcord"], service_specific_id="S1")
    with pytest.raises(ValidationError, match="service_specific_id S1 already exists"):
        other.validate_unique_service_specific_id()
    # set_owner: the first object of owner_class_name when owner is not one of them.
    orphan = orm.RCORDSubscriber(name="orphan", owner=chain["volt"])
    orphan.set_owner()
    assert orphan.owner_id == chain["rcord"].id
    plain = orm.VOLTServiceInstance(name="plain")
    plain.set_owner()
    assert plain.owner_id is None, "no owner_class_name: nothing to do"


# -- the other core models ----------------------------------------------------------------
def test_address_pool(orm: ModelAccessor) -> None:
    pool = orm.AddressPool(
        name="p", gateway_ip="10.0.0.254", gateway_mac="02:42:0a:00:00:fe", cidr="10.0.0.0/24"
    )
    pool.addresses, pool.inuse = "10.0.0.1 10.0.0.2 10.0.0.3", "10.0.0.2"
    pool.save()
    assert pool.get_address() == "10.0.0.1"
    assert pool.get_address() == "10.0.0.3", "10.0.0.2 is already in use"
    assert pool.get_address() is None
    assert pool.addresses == "" and pool.inuse.split() == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    pool.put_address("10.0.0.1")
    assert pool.addresses == "10.0.0.1" and "10.0.0.1" not in pool.inuse.split()
    pool.save()
    assert orm.AddressPool.objects.get(id=pool.id).get_address() == "10.0.0.1"


def test_controller_auth_url_v3(orm: ModelAccessor) -> None:
    assert (
        orm.Controller(name="c", auth_url="http://keystone:5000/v2.0").auth_url_v3
        == "http://keystone:5000/v3/"
    )
    assert (
        orm.Controller(name="c", auth_url="http://keystone:5000/v2.0/").auth_url_v3
        == "http://keystone:5000/v3/"
    )


def test_slice_network_port_instance(orm: ModelAccessor) -> None:
    site = _save(orm.Site(name="site", login_base="mysite", abbreviated_name="ms"))
    slice_ = _save(orm.Slice(name="vsg", site=site))
    assert slice_.slicename == "mysite_vsg"
    template = _save(orm.NetworkTemplate(name="public", visibility="public", vtn_kind="MANAGEMENT_LOCAL"))
    nat = _save(orm.NetworkTemplate(name="nat", translation="NAT"))
    management = _save(orm.Network(name="management", template=template, owner=slice_))
    natnet = _save(orm.Network(name="nat-net", template=nat, owner=slice_))
    _save(orm.NetworkSlice(network=management, slice=slice_))
    assert [n.name for n in slice_.networks.all()] == ["management"]
    assert [s.name for s in management.slices.all()] == ["vsg"] and natnet.slices.count() == 0
    # Instance: the addresses of its ports, its controller through node and site deployment.
    controller = _save(orm.Controller(name="ctl", auth_url="http://k/v2.0"))
    node = _save(orm.ComputeNode(name="n1", site_deployment=_save(orm.SiteDeployment(controller=controller))))
    vm = _save(orm.Instance(name="vm", node=node))
    _save(orm.InstancePort(network=natnet, instance=vm, ip="172.16.0.2"))
    assert vm.get_ssh_ip() == "172.16.0.2", "no management network: the nat one"
    assert vm.get_public_ip() is None
    _save(orm.InstancePort(network=management, instance=vm, ip="10.1.0.2"))
    assert vm.all_ips() == {"nat-net": "172.16.0.2", "management": "10.1.0.2"}
    assert vm.all_ips_string() == "10.1.0.2, 172.16.0.2"
    assert vm.get_public_ip() == "10.1.0.2" and vm.get_ssh_ip() == "10.1.0.2"
    assert vm.get_network_ip("nat") == "172.16.0.2" and vm.get_network_ip("nope") is None
    assert vm.controller == controller and orm.Instance(name="nowhere").controller is None
    # Port: its network parameters.
    port = _save(orm.Port(network=management, ip="10.1.0.3"))
    vlan = _save(orm.NetworkParameterType(name="vlan"))
    _save(orm.NetworkParameter(parameter=vlan, value="42", content_type="Port", object_id=port.id))
    _save(orm.NetworkParameter(parameter=vlan, value="43", content_type="Network", object_id=port.id))
    assert port.get_parameters() == {"vlan": "42"}


def test_tag_user_and_local_manager(orm: ModelAccessor) -> None:
    service = _save(orm.Service(name="s"))
    tag = _save(orm.Tag(service=service, name="t", value="v", content_type="Service", object_id=service.id))
    assert tag.get_generic_foreignkeys() == [
        {"name": "content_object", "content_type": "content_type", "id": "object_id"}
    ]
    site = _save(orm.Site(name="site", login_base="x", abbreviated_name="x"))
    user = orm.User(email="a@b", password="secret", firstname="A", lastname="B", site=site)
    assert user.remote_password == hashlib.md5(b"secret").hexdigest()[:12]
    other = _save(orm.Service(name="o"))
    manager = LocalObjectManager(orm, "Service", [other.id, service.id], writeable=True)
    assert [s.name for s in manager.all()] == ["o", "s"] and manager.count() == 2 and manager.exists()
    manager.remove(other)
    assert manager.first() == service
    read_only = LocalObjectManager(orm, "Service", [])
    assert not read_only.exists() and read_only.first() is None
    with pytest.raises(TypeError, match="read-only"):
        read_only.add(service)


# -- extending them -----------------------------------------------------------------------
class ORMWrapperVOLTService(ORMWrapperService):
    """A service's own wrapper, subclassing the core's as real services do."""

    def get_service_instance_class_name(self) -> str:
        return "VOLTServiceInstance"

    @property
    def volt_label(self) -> str:
        return f"volt:{self.name}"


class AnyModel(ORMWrapper):
    @property
    def everywhere(self) -> str:
        return self.model_name


def test_service_wrappers_extend_the_core_ones(orm: ModelAccessor, chain: dict[str, Any]) -> None:
    with registering_into(orm.wrappers):
        register_convenience_wrapper("VOLTService", ORMWrapperVOLTService)
        register_convenience_wrapper("XOSBase", AnyModel)
    volt = orm.VOLTService.objects.get(id=chain["volt"].id)
    assert volt.volt_label == "volt:volt" and volt.provider_services == [chain["fabric"]]
    assert volt.everywhere == "VOLTService", "the XOSBase wrapper reaches models with core wrappers too"
    assert orm.Service.objects.get(id=volt.id).everywhere == "Service"
    assert orm.RCORDSubscriber.objects.get(id=chain["sub"].id).eastbound_service_instances == [
        chain["volt_si"]
    ]


def test_extensions_that_cannot_be_combined_are_named() -> None:
    from actors.orm import WrapperRegistry

    class A(ORMWrapper):
        pass

    class B(ORMWrapper):
        pass

    class Wrapper(A, B):
        pass

    class FromModelsPy(B, A):
        pass

    registry = WrapperRegistry()
    registry.register("Service", Wrapper)
    assert registry.get("Service") is not None and "Service" in registry
    version = registry.version
    with pytest.raises(
        TypeError, match=r"the extensions of Service \(.*Wrapper, .*FromModelsPy, ORMWrapperService\)"
    ):
        registry.register_model_class("Service", FromModelsPy)
    assert registry.version == version and registry.get("Service").__mro__[1] is Wrapper, "nothing registered"
    with pytest.raises(TypeError, match="must subclass ORMWrapper"):
        registry.register_model_class("Service", object)  # type: ignore[arg-type]
    assert "Slice" not in registry and registry.get("Slice") is CORE_WRAPPERS["Slice"]
