"""The ORM over the local store (SQLite file): every call synchronizer code makes.

The gRPC backend is tested in ``tests/api``; the rules of what a save stamps are the
store's, tested in ``test_store.py`` -- here we check that the ORM asks for the right ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import actors.orm
from actors.orm import (
    DoesNotExist,
    Manager,
    ModelAccessor,
    ORMWrapper,
    QuerySet,
    WrapperRegistry,
    acting_as,
    current_caller,
    register_convenience_wrapper,
    registering_into,
)
from actors.store import Caller, NotFound, Store, ValidationError

from .store_support import StepClock, open_store, sqlite_url


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(tmp_path: Path, clock: StepClock) -> Iterator[Store]:
    with open_store(sqlite_url(tmp_path), clock=clock) as s:
        yield s


@pytest.fixture
def orm(store: Store) -> ModelAccessor:
    """Writes as a client: its saves make objects dirty."""
    return ModelAccessor(store, caller=Caller.CLIENT)


@pytest.fixture
def sync_orm(store: Store) -> ModelAccessor:
    """Writes as the synchronizer (the default caller), over the same store."""
    return ModelAccessor(store)


@pytest.fixture
def people(orm: ModelAccessor) -> list[Any]:
    MyModel = orm.MyModel
    out = []
    for first, last in [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Alan", "Kay")]:
        obj = MyModel(first_name=first, last_name=last)
        obj.save()
        out.append(obj)
    return out


@pytest.fixture
def services(orm: ModelAccessor) -> tuple[Any, Any]:
    one = orm.MyService(name="one", region="eu")
    one.save()
    two = orm.Service(name="two", kind="data")
    two.save()
    return one, two


def row(store: Store, model: str, id: int) -> dict[str, Any]:
    found = store.get(model, id)
    assert found is not None, f"{model} id {id} is not stored"
    return found


# -- managers and querysets -------------------------------------------------------------


def test_new_objects_and_save(orm: ModelAccessor, store: Store) -> None:
    MyModel = orm.MyModel
    a = MyModel(first_name="Ada", last_name="Lovelace")
    b = MyModel.objects.new(first_name="Alan", last_name="Turing")
    assert a.is_new and b.is_new and a.id is None and a.pk is None
    a.save()
    b.save()
    assert not a.is_new and isinstance(a.id, int) and a.pk == a.id and b.id != a.id
    assert row(store, "MyModel", a.id)["first_name"] == "Ada"
    assert a.leaf_model_name == "MyModel" and a.created == a.updated > 0
    assert a.backend_status == "Provisioning in progress" and a.enacted is None


def test_all_filter_exclude_get_first_count(orm: ModelAccessor, people: list[Any]) -> None:
    MyModel = orm.MyModel
    ada, turing, hopper, kay = people
    assert list(MyModel.objects.all()) == people
    assert list(MyModel.objects.filter(first_name="Alan")) == [turing, kay]
    assert list(MyModel.objects.filter(first_name="Alan", last_name="Kay")) == [kay]
    assert list(MyModel.objects.filter(first_name="Alan").filter(last_name="Kay")) == [kay]
    assert list(MyModel.objects.exclude(first_name="Alan")) == [ada, hopper]
    assert list(MyModel.objects.filter(first_name="Alan").exclude(last_name="Kay")) == [turing]
    assert MyModel.objects.get(last_name="Hopper") == hopper
    assert MyModel.objects.get(first_name="Alan") == turing, "get() gives the first match by id"
    assert MyModel.objects.get(id=kay.id) == kay and MyModel.objects.get(pk=kay.id) == kay
    assert MyModel.objects.first() == ada
    assert MyModel.objects.filter(first_name="Grace").first() == hopper
    assert MyModel.objects.filter(first_name="Nobody").first() is None
    assert MyModel.objects.count() == 4 and MyModel.objects.filter(first_name="Alan").count() == 2
    assert MyModel.objects.exclude(first_name="Alan").count() == 2
    assert list(MyModel.filter(last_name="Turing")) == [turing], "Model.filter() on the class"
    assert list(MyModel.objects.all().order_by("-last_name")) == [turing, ada, kay, hopper]
    assert isinstance(MyModel.objects, Manager) and isinstance(MyModel.objects.all(), QuerySet)


def test_returned_objects_carry_their_values(orm: ModelAccessor, people: list[Any]) -> None:
    got = orm.MyModel.objects.get(last_name="Turing")
    assert got is not people[1], "a new object per read"
    assert (got.first_name, got.last_name, got.id) == ("Alan", "Turing", people[1].id)
    assert got.changed_fields == [] and not got.is_new


@pytest.mark.parametrize(
    ("lookup", "expected"),
    [
        ({"size__gt": 2}, ["c", "d"]),
        ({"size__gte": 2}, ["b", "c", "d"]),
        ({"size__lt": 2}, ["a"]),
        ({"size__lte": 2}, ["a", "b"]),
        ({"name__iexact": "BIG_ONE"}, ["d"]),
        ({"name__contains": "o"}, ["b", "c", "d"]),
        ({"name__contains": "O"}, []),
        ({"name__contains": "% o"}, ["b"]),
        ({"name__icontains": "O"}, ["b", "c", "d"]),
        ({"name__icontains": "TWO"}, ["c"]),
        ({"name__icontains": "_"}, ["d"]),
        ({"name__icontains": "%"}, ["b"]),
        ({"name__in": ["alpha", "no", "zzz"]}, ["a"]),
        ({"size__in": (1, 4)}, ["a", "d"]),
        ({"ratio__isnull": True}, ["b", "d"]),
        ({"ratio__isnull": False}, ["a", "c"]),
        ({"ratio": None}, ["b", "d"]),
        ({"size": 3, "name__icontains": "o"}, ["c"]),
        ({"size__gte": 2, "ratio__isnull": True}, ["b", "d"]),
    ],
)
def test_lookup_operators(orm: ModelAccessor, lookup: dict[str, Any], expected: list[str]) -> None:
    Widget = orm.Widget
    tags = {}
    for tag, name, size, ratio in [
        ("a", "alpha", 1, 0.5),
        ("b", "50% off", 2, None),
        ("c", "two", 3, 1.0),
        ("d", "big_one", 4, None),
    ]:
        w = Widget(name=name, size=size, ratio=ratio)
        w.save()
        tags[w.id] = tag
    assert [tags[w.id] for w in Widget.objects.filter(**lookup)] == expected
    assert Widget.objects.filter(**lookup).count() == len(expected)
    if len(lookup) == 1:
        assert sorted(tags[w.id] for w in Widget.objects.exclude(**lookup)) == sorted(
            set("abcd") - set(expected)
        )


def test_exclude_with_several_lookups_drops_objects_matching_any(orm: ModelAccessor) -> None:
    """Each lookup of one exclude() is negated on its own, as the XOS client ORM did.

    (Django would drop only objects matching all of them.) NULL columns never match, so
    they are kept, as in Django.
    """
    Widget = orm.Widget
    for name, size in [("a", 1), ("b", 2), ("c", None), (None, 2)]:
        Widget(name=name, size=size).save()
    got = [w.name for w in Widget.objects.exclude(name="a", size=2)]
    assert got == ["c"]
    assert got == [w.name for w in Widget.objects.exclude(name="a").exclude(size=2)]
    assert [w.name for w in Widget.objects.exclude(size__gt=1)] == ["a", "c"]


def test_filter_by_link_id_object_and_id_lookup(orm: ModelAccessor, services: tuple[Any, Any]) -> None:
    one, two = services
    Widget = orm.Widget
    a = Widget(name="a", owner=one)
    a.save()
    b = Widget(name="b", owner_id=two.id)
    b.save()
    c = Widget(name="c")
    c.save()
    assert list(Widget.objects.filter(owner=one)) == [a]
    assert list(Widget.objects.filter(owner_id=two.id)) == [b]
    assert list(Widget.objects.filter(owner__id=two.id)) == [b]
    assert list(Widget.objects.filter(owner=None)) == [c]
    assert list(Widget.objects.filter(owner__in=[one, two])) == [a, b]
    assert list(Widget.objects.filter(owner__in=orm.Service.objects.filter(name="two"))) == [b]
    assert list(Widget.objects.exclude(owner=one)) == [b, c]


def test_numeric_strings_filter_numeric_fields(orm: ModelAccessor, services: tuple[Any, Any]) -> None:
    """Events carry numbers as text (``portId="1"``); the original converted them in filters."""
    one, _two = services
    Widget = orm.Widget
    a = Widget(name="a", size=1, weight=10, ratio=0.5, owner=one)
    a.save()
    b = Widget(name="b", size=2, weight=20, ratio=2.0)
    b.save()
    assert list(Widget.objects.filter(size="1")) == [a]
    assert list(Widget.objects.filter(size=" 2 ")) == [b]
    assert list(Widget.objects.filter(weight__gte="15")) == [b]
    assert list(Widget.objects.filter(ratio="0.5")) == [a]
    assert list(Widget.objects.filter(ratio__lt="1")) == [a]
    assert list(Widget.objects.filter(size__in=["1", 2])) == [a, b]
    assert list(Widget.objects.filter(owner_id=str(one.id))) == [a]
    assert list(Widget.objects.filter(owner=str(one.id))) == [a]
    assert list(Widget.objects.filter(id=str(b.id))) == [b]
    assert list(Widget.objects.filter(pk__in=[str(a.id)])) == [a]
    assert list(Widget.objects.exclude(size="1")) == [b]
    assert Widget.objects.get(size="2") == b
    assert Widget.objects.filter(size="-3").count() == 0
    # Text that is no number of the field's kind is still an error, named as before.
    with pytest.raises(ValidationError, match=r"Widget\.size: expected an integer, got '1\.5'"):
        list(Widget.objects.filter(size="1.5"))
    with pytest.raises(ValidationError, match=r"Widget\.ratio: expected a number, got 'nan'"):
        list(Widget.objects.filter(ratio="nan"))
    with pytest.raises(ValidationError, match=r"Widget\.id: expected an integer, got 'x'"):
        list(Widget.objects.filter(id="x"))
    # Strings stay strings for string fields.
    assert list(Widget.objects.filter(name="1")) == []


def test_unknown_lookups_are_rejected(orm: ModelAccessor) -> None:
    with pytest.raises(ValidationError, match=r"Widget has no field 'colour'"):
        orm.Widget.objects.filter(colour="red")
    with pytest.raises(ValidationError, match="Widget"):
        list(orm.Widget.objects.filter(size="big"))


def test_querysets_behave_like_lists(orm: ModelAccessor, people: list[Any]) -> None:
    qs = orm.MyModel.objects.all()
    assert len(qs) == 4
    assert qs[0] == people[0] and qs[3] == people[3]
    assert qs[-1] == people[-1] and qs[-2] == people[2]
    assert qs[1:3] == people[1:3] and qs[:2] == people[:2] and qs[2:] == people[2:]
    assert qs[::2] == people[::2] and qs[-2:] == people[-2:] and qs[3:1] == []
    assert list(iter(qs)) == people and [p.last_name for p in qs] == [p.last_name for p in people]
    assert qs.first() == people[0] and qs.last() == people[-1]
    assert qs.exists() and bool(qs)
    with pytest.raises(IndexError):
        qs[10]
    empty = orm.MyModel.objects.filter(first_name="Nobody")
    assert len(empty) == 0 and not empty and not empty.exists() and list(empty) == []
    with pytest.raises(IndexError):
        empty[0]
    # A lazy queryset, not yet read, reads only the rows it needs.
    fresh = orm.MyModel.objects.filter(first_name="Alan")
    assert fresh[1] == people[3] and fresh[1:] == [people[3]] and fresh[5:] == []


def test_querysets_are_evaluated_once_managers_every_time(orm: ModelAccessor, people: list[Any]) -> None:
    MyModel = orm.MyModel
    qs = MyModel.objects.filter(first_name="Alan")
    assert len(qs) == 2
    MyModel(first_name="Alan", last_name="Parsons").save()
    assert len(qs) == 2 and qs.count() == 2, "a queryset keeps what it read"
    assert len(MyModel.objects.filter(first_name="Alan")) == 3
    assert len(MyModel.objects) == 5 and MyModel.objects.count() == 5, "a manager reads again"


def test_get_without_a_match_raises_does_not_exist(orm: ModelAccessor, people: list[Any]) -> None:
    MyModel = orm.MyModel
    for catch in (IndexError, MyModel.DoesNotExist, DoesNotExist, actors.orm.DoesNotExist, LookupError):
        with pytest.raises(catch):
            MyModel.objects.get(first_name="Nobody")
    with pytest.raises(IndexError, match="MyModel"):
        MyModel.objects.filter(first_name="Ada").get(last_name="Turing")
    assert issubclass(MyModel.DoesNotExist, DoesNotExist)
    assert orm.Widget.DoesNotExist is not MyModel.DoesNotExist
    assert issubclass(orm.SubInstance.DoesNotExist, orm.ServiceInstance.DoesNotExist)


# -- fields and links -------------------------------------------------------------------


def test_typed_field_access(orm: ModelAccessor) -> None:
    w = orm.Widget(name="w")
    assert (w.size, w.active, w.color, w.ratio, w.owner_id, w.owner) == (7, True, "red", None, None, None)
    w.ratio = 2
    assert w.ratio == 2.0 and isinstance(w.ratio, float)
    cases: list[tuple[str, Any, str]] = [
        ("size", "seven", r"Widget\.size: expected an integer"),
        ("size", 2**40, r"Widget\.size: .* out of range"),
        ("active", "yes", r"Widget\.active: expected a boolean"),
        ("name", 3, r"Widget\.name: expected a string"),
        ("name", "x" * 30, r"Widget\.name: longer than max_length"),
        ("color", "green", r"Widget\.color: 'green' is not one of the choices"),
        ("color", None, r"Widget\.color: may not be null"),
        ("owner_id", "1", r"Widget\.owner_id: expected an object id"),
    ]
    for name, value, message in cases:
        with pytest.raises(ValueError, match=message):
            setattr(w, name, value)
    assert (w.size, w.name, w.color) == (7, "w", "red"), "a rejected value is not kept"
    with pytest.raises(ValueError, match=r"Widget\.size"):
        orm.Widget(size="big")
    with pytest.raises(ValidationError, match=r"Widget\.owner: expected a model object"):
        w.owner = 3


def test_unknown_attributes_raise_attribute_error(orm: ModelAccessor) -> None:
    w = orm.Widget(name="w")
    with pytest.raises(AttributeError, match="nope"):
        _ = w.nope
    assert not hasattr(w, "colour") and getattr(w, "colour", "dflt") == "dflt"
    with pytest.raises(AttributeError, match=r"Widget has no field 'colour'"):
        orm.Widget(colour="red")
    with pytest.raises(AttributeError, match="Nope"):
        _ = orm.Nope
    with pytest.raises(AttributeError):
        _ = orm.XOSBase  # abstract: no class
    with pytest.raises(KeyError, match="Nope"):
        orm.get_model_class("Nope")


def test_links_read_and_write(orm: ModelAccessor, store: Store, services: tuple[Any, Any]) -> None:
    one, two = services
    w = orm.Widget(name="w", owner=one)
    assert w.owner_id == one.id and w.owner is one
    w.save()
    got = orm.Widget.objects.get(id=w.id)
    assert got.owner_id == one.id
    assert got.owner == one and got.owner.name == "one" and got.owner.model_name == "Service"
    got.owner = two
    assert got.owner_id == two.id and got.changed_fields == ["owner_id"] and got.has_field_changed("owner")
    got.save()
    assert row(store, "Widget", w.id)["owner_id"] == two.id
    got.owner_id = one.id
    assert got.owner == one, "the link follows its id"
    got.owner = None
    got.save()
    assert orm.Widget.objects.get(id=w.id).owner is None


def test_reverse_relations(orm: ModelAccessor, services: tuple[Any, Any]) -> None:
    one, two = services
    a = orm.SubInstance(name="a", owner=one, level=1)
    a.save()
    b = orm.ServiceInstance(name="b", owner=one)
    b.save()
    c = orm.ServiceInstance(name="c", owner=two)
    c.save()
    w = orm.Widget(name="w", owner=one)
    w.save()
    assert [x.name for x in one.service_instances.all()] == ["a", "b"]
    assert one.service_instances.count() == 2 and two.service_instances.count() == 1
    assert [x.model_name for x in one.service_instances.all()] == ["ServiceInstance"] * 2
    assert list(one.service_instances.filter(name="b")) == [b]
    assert list(one.widgets.all()) == [w] and two.widgets.count() == 0
    assert list(a.child_serviceinstances.all()) == []
    c.master_serviceinstance = a
    c.save()
    assert [x.name for x in orm.ServiceInstance.objects.get(id=a.id).child_serviceinstances.all()] == ["c"]
    b.delete()
    assert one.service_instances.count() == 1, "deleted objects are not related any more"


# -- identity and inheritance -----------------------------------------------------------


def test_names_and_leaf_model(orm: ModelAccessor, services: tuple[Any, Any]) -> None:
    one, _ = services
    sub = orm.SubInstance(name="s", owner=one, flavor="big", level=2)
    sub.save()
    assert sub.model_name == "SubInstance" and sub.leaf_model_name == "SubInstance"
    assert sub.class_names == "SubInstance,MyInstance,ServiceInstance,XOSBase"
    assert one.class_names == "MyService,Service,XOSBase"
    base = orm.ServiceInstance.objects.get(id=sub.id)
    assert base.model_name == "ServiceInstance" and base.leaf_model_name == "SubInstance"
    assert not hasattr(base, "level")
    leaf = base.leaf_model
    assert type(leaf) is orm.SubInstance and leaf.model_name == "SubInstance"
    assert (leaf.id, leaf.name, leaf.flavor, leaf.level) == (sub.id, "s", "big", 2)
    assert leaf.leaf_model is leaf, "already the leaf"
    assert isinstance(leaf, orm.ServiceInstance) and isinstance(leaf, ORMWrapper)
    assert base == sub == leaf and hash(base) == hash(leaf), "equal: same object, seen as two models"
    assert orm.Service.objects.get(id=one.id).leaf_model.region == "eu"
    w = orm.Widget(name="w")
    assert w.is_new and w.leaf_model is w and w != orm.Widget(name="w")
    w.save()
    assert w.id == sub.id and w != base, "same id, other table: not the same object"
    assert w.tologdict() == {"model_name": "Widget", "pk": w.id}
    assert str(w) == "w" and repr(w) == f"<Widget id={w.id}>"


def test_is_type_and_is_instance_of_the_accessor(orm: ModelAccessor, services: tuple[Any, Any]) -> None:
    one, _ = services
    assert orm.is_type(one, "MyService") and not orm.is_type(one, "Service")
    assert orm.is_instance(one, "Service") and orm.is_instance(one, "XOSBase")
    assert orm.obj_exists(one) and not orm.obj_exists(orm.Service(name="x"))
    assert orm.obj_in_list(one, orm.Service.objects.all())


# -- saves ------------------------------------------------------------------------------


def test_client_save_bumps_updated_and_writes_only_changed_fields(
    orm: ModelAccessor, store: Store, clock: StepClock, people: list[Any]
) -> None:
    a1 = orm.MyModel.objects.get(id=people[0].id)
    a2 = orm.MyModel.objects.get(id=people[0].id)
    a1.first_name = "Augusta"
    a2.last_name = "King"
    clock.t = 5000.0
    a1.save()
    a2.save()
    stored = row(store, "MyModel", people[0].id)
    assert (stored["first_name"], stored["last_name"]) == ("Augusta", "King"), "neither save undid the other"
    assert a1.updated == 5000.0 and stored["updated"] == a2.updated > a1.updated
    assert a2.changed_fields == [] and a2.diff == {}


def test_changed_fields_diff_and_has_field_changed(orm: ModelAccessor, people: list[Any]) -> None:
    ada = orm.MyModel.objects.get(id=people[0].id)
    assert ada.changed_fields == [] and not ada.has_field_changed("first_name")
    ada.first_name = "Augusta"
    ada.last_name = "Lovelace"  # same value: not a change
    assert ada.changed_fields == ["first_name"]
    assert ada.has_field_changed("first_name") and not ada.has_field_changed("last_name")
    assert ada.diff == {"first_name": ("Ada", "Augusta")}
    assert ada.get_field_diff("first_name") == ("Ada", "Augusta")
    ada.first_name = "Ada"
    assert ada.changed_fields == [], "back to the stored value"
    new = orm.MyModel(first_name="N", last_name="M")
    assert {"first_name", "last_name"} <= set(new.changed_fields)


def test_save_with_update_fields_writes_only_those(
    orm: ModelAccessor, store: Store, people: list[Any]
) -> None:
    ada = orm.MyModel.objects.get(id=people[0].id)
    ada.first_name = "Augusta"
    ada.last_name = "King"
    ada.save(update_fields=["first_name"])
    stored = row(store, "MyModel", ada.id)
    assert (stored["first_name"], stored["last_name"]) == ("Augusta", "Lovelace")
    assert ada.changed_fields == ["last_name"], "the field not saved is still changed"
    ada.save_changed_fields()
    assert row(store, "MyModel", ada.id)["last_name"] == "King" and ada.changed_fields == []


def test_save_with_update_fields_by_link_name(
    orm: ModelAccessor, store: Store, services: tuple[Any, Any]
) -> None:
    one, two = services
    w = orm.Widget(name="w", owner=one)
    w.save()
    w.owner = two
    w.name = "v"
    w.save(update_fields=["owner"])
    stored = row(store, "Widget", w.id)
    assert (stored["owner_id"], stored["name"]) == (two.id, "w")


def test_synchronizer_save_does_not_make_the_object_dirty(
    sync_orm: ModelAccessor, store: Store, clock: StepClock, people: list[Any]
) -> None:
    ada = sync_orm.MyModel.objects.get(id=people[0].id)
    before = ada.updated
    clock.tick()
    ada.enacted = max(ada.updated, ada.changed_by_policy or 0)
    ada.backend_status = "OK"
    ada.save(update_fields=["enacted", "backend_status"])
    assert row(store, "MyModel", ada.id)["updated"] == before
    assert store.pending("MyModel", "sync")[0]["id"] != ada.id
    clock.tick()
    ada.last_name = "King"
    ada.save()
    assert row(store, "MyModel", ada.id)["updated"] == before, "any synchronizer save"
    clock.t = 9000.0
    ada.save(always_update_timestamp=True)
    assert row(store, "MyModel", ada.id)["updated"] == 9000.0 == ada.updated
    assert ada.id in [r["id"] for r in store.pending("MyModel", "sync")]


def test_synchronizer_save_without_changes_writes_nothing(
    sync_orm: ModelAccessor, store: Store, people: list[Any]
) -> None:
    ada = sync_orm.MyModel.objects.get(id=people[0].id)
    seq = store.last_seq()
    ada.save()
    ada.save_changed_fields()
    assert store.last_seq() == seq
    ada.save_changed_fields(always_update_timestamp=True)
    assert store.last_seq() == seq + 1


def test_client_save_without_changes_still_bumps_updated(
    orm: ModelAccessor, store: Store, clock: StepClock, people: list[Any]
) -> None:
    ada = orm.MyModel.objects.get(id=people[0].id)
    clock.t = 8000.0
    ada.save()
    assert row(store, "MyModel", ada.id)["updated"] == 8000.0 == ada.updated


def test_acting_as_step_and_policy_stamps(
    sync_orm: ModelAccessor, store: Store, clock: StepClock, people: list[Any]
) -> None:
    ada = sync_orm.MyModel.objects.get(id=people[0].id)
    assert current_caller() is None
    clock.t = 6000.0
    with acting_as(Caller.STEP):
        assert current_caller() is Caller.STEP
        ada.last_name = "King"
        ada.save()
    assert current_caller() is None
    assert row(store, "MyModel", ada.id)["changed_by_step"] == 6000.0 == ada.changed_by_step
    clock.t = 6100.0
    with acting_as(Caller.STEP):
        ada.backend_status = "OK"
        ada.save()
    assert row(store, "MyModel", ada.id)["changed_by_step"] == 6000.0, "a feedback field stamps nothing"
    clock.t = 6200.0
    with acting_as(Caller.POLICY):
        ada.first_name = "Augusta"
        ada.save()
    stored = row(store, "MyModel", ada.id)
    assert stored["changed_by_policy"] == 6200.0 and stored["updated"] == people[0].updated
    clock.t = 6300.0
    ada.last_name = "Byron"
    ada.save(is_sync_save=True)
    assert row(store, "MyModel", ada.id)["changed_by_step"] == 6300.0
    ada.last_name = "Lovelace"
    ada.save(is_policy_save=True)
    assert row(store, "MyModel", ada.id)["changed_by_policy"] > 6200.0


def test_acting_as_client_overrides_the_accessor_default(
    sync_orm: ModelAccessor, store: Store, clock: StepClock, people: list[Any]
) -> None:
    ada = sync_orm.MyModel.objects.get(id=people[0].id)
    clock.t = 7000.0
    with acting_as(Caller.CLIENT):
        ada.last_name = "King"
        ada.save()
    assert row(store, "MyModel", ada.id)["updated"] == 7000.0


def test_delete_and_deleted_objects(orm: ModelAccessor, store: Store, people: list[Any]) -> None:
    MyModel = orm.MyModel
    ada, turing = people[0], people[1]
    turing.backend_need_delete = True  # it reached the backend: deletion must wait for it
    turing.save()
    ada.delete()
    turing.delete()
    assert store.get("MyModel", ada.id) is None, "never synced: purged at once"
    assert turing.deleted and row(store, "MyModel", turing.id)["deleted"]
    assert turing not in list(MyModel.objects.all()) and MyModel.objects.count() == 2
    assert list(MyModel.deleted_objects.all()) == [turing]
    assert MyModel.deleted_objects.get(id=turing.id).deleted
    with pytest.raises(MyModel.DoesNotExist):
        MyModel.objects.get(id=turing.id)
    orm.MyModel(first_name="x", last_name="y").delete()  # a new object: nothing to do
    turing.delete(purge=True)
    assert store.get("MyModel", turing.id) is None and MyModel.deleted_objects.count() == 0
    with pytest.raises(NotFound):
        turing.save()


def test_queryset_delete(orm: ModelAccessor, store: Store, people: list[Any]) -> None:
    assert orm.MyModel.objects.filter(first_name="Alan").delete() == 2
    assert [p.last_name for p in orm.MyModel.objects.all()] == ["Lovelace", "Hopper"]


# -- convenience wrappers ---------------------------------------------------------------


class FullName(ORMWrapper):
    """The reference's example."""

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class InstanceWrapper(ORMWrapper):
    @property
    def full_name(self) -> str:
        return f"instance {self.name}"

    @property
    def flavor(self) -> str:  # a field of MyInstance: the wrapper's property wins
        return "from the wrapper"

    def describe(self) -> str:
        return f"{self.model_name}:{self.id}"


class MyInstanceWrapper(InstanceWrapper):
    @property
    def full_name(self) -> str:
        return f"my instance {self.name}"


class EveryModel(ORMWrapper):
    @property
    def full_name(self) -> str:
        return f"any {self.model_name}"


@pytest.fixture
def wrapped(store: Store) -> ModelAccessor:
    orm = ModelAccessor(store, caller=Caller.CLIENT)
    with registering_into(orm.wrappers):
        register_convenience_wrapper("MyModel", FullName)
        register_convenience_wrapper("ServiceInstance", InstanceWrapper)
        register_convenience_wrapper("MyInstance", MyInstanceWrapper)
        register_convenience_wrapper("XOSBase", EveryModel)
    return orm


def test_wrapper_on_every_object_returned(wrapped: ModelAccessor) -> None:
    MyModel = wrapped.MyModel
    new = MyModel(first_name="Ada", last_name="Lovelace")
    assert new.full_name == "Ada Lovelace"
    new.save()
    MyModel(first_name="Alan", last_name="Turing").save()
    assert [p.full_name for p in MyModel.objects.all()] == ["Ada Lovelace", "Alan Turing"]
    assert MyModel.objects.get(first_name="Alan").full_name == "Alan Turing"
    assert MyModel.objects.first().full_name == "Ada Lovelace"  # type: ignore[union-attr]
    assert MyModel.objects.all()[-1].full_name == "Alan Turing"
    assert MyModel.objects.all()[0:1][0].full_name == "Ada Lovelace"
    assert MyModel.filter(last_name="Turing")[0].full_name == "Alan Turing"
    assert wrapped.pending("MyModel", "sync")[0].full_name == "Ada Lovelace"
    assert wrapped.fetch_pending(MyModel)[1].full_name == "Alan Turing"
    assert isinstance(new, FullName) and isinstance(new, MyModel)


def test_wrappers_by_class_name_then_by_base_class(wrapped: ModelAccessor) -> None:
    service = wrapped.Service(name="s")
    service.save()
    plain = wrapped.ServiceInstance(name="plain", owner=service)
    plain.save()
    mine = wrapped.MyInstance(name="mine", owner=service)
    mine.save()
    sub = wrapped.SubInstance(name="sub", owner=service)
    sub.save()
    assert service.full_name == "any Service", "from the abstract base's wrapper"
    assert plain.full_name == "instance plain"
    assert mine.full_name == "my instance mine", "its own wrapper first"
    assert sub.full_name == "my instance sub", "then its base model's"
    assert sub.describe() == f"SubInstance:{sub.id}"
    assert mine.flavor == sub.flavor == "from the wrapper", "a wrapper property overrides a field"
    assert plain.full_name == "instance plain"
    # Through reverse relations (objects of the link's model) and leaf_model.
    related = list(service.service_instances.all())
    assert [x.full_name for x in related] == ["instance plain", "instance mine", "instance sub"]
    assert [x.leaf_model.full_name for x in related] == [
        "instance plain",
        "my instance mine",
        "my instance sub",
    ]
    assert type(related[2].leaf_model) is wrapped.SubInstance
    assert wrapped.Widget(name="w").full_name == "any Widget"


def test_wrapper_registry_is_per_accessor(store: Store, wrapped: ModelAccessor) -> None:
    plain = ModelAccessor(store)
    assert not hasattr(plain.MyModel(first_name="a", last_name="b"), "full_name")
    assert plain.MyModel is not wrapped.MyModel
    registry = WrapperRegistry()
    with registering_into(registry):
        register_convenience_wrapper("MyModel", FullName)
    assert "MyModel" in registry and "Widget" not in registry
    with pytest.raises(TypeError, match="ORMWrapper"):
        registry.register("MyModel", object)  # type: ignore[arg-type]


def test_registering_after_classes_were_built_rebuilds_them(store: Store) -> None:
    orm = ModelAccessor(store, caller=Caller.CLIENT)
    before = orm.MyModel
    assert not hasattr(before(first_name="a", last_name="b"), "full_name")
    with registering_into(orm.wrappers):
        register_convenience_wrapper("MyModel", FullName)
    assert orm.MyModel is not before
    assert orm.MyModel(first_name="a", last_name="b").full_name == "a b"


# -- accessors --------------------------------------------------------------------------


def test_two_accessors_over_two_stores_are_separate(tmp_path: Path) -> None:
    with open_store(sqlite_url(tmp_path, "one.db")) as s1, open_store(sqlite_url(tmp_path, "two.db")) as s2:
        one = ModelAccessor(s1, caller=Caller.CLIENT)
        two = ModelAccessor(s2, caller=Caller.CLIENT)
        assert one.MyModel is not two.MyModel
        assert one.MyModel.DoesNotExist is not two.MyModel.DoesNotExist
        one.MyModel(first_name="only", last_name="one").save()
        assert one.MyModel.objects.count() == 1 and two.MyModel.objects.count() == 0
        assert one.get_model_class("MyModel") is one.MyModel, "classes are built once"
        assert set(one.all_model_classes) >= {"MyModel", "Widget", "Service", "SubInstance"}
        assert "XOSBase" not in one.all_model_classes


def test_accessor_pending_helpers(orm: ModelAccessor, sync_orm: ModelAccessor, people: list[Any]) -> None:
    MyModel = sync_orm.MyModel
    assert [o.id for o in sync_orm.fetch_pending(MyModel)] == [p.id for p in people]
    assert [o.id for o in sync_orm.fetch_pending(["MyModel"])] == [p.id for p in people]
    done = MyModel.objects.get(id=people[0].id)
    done.enacted = done.updated
    done.save()
    assert [o.id for o in sync_orm.fetch_pending("MyModel")] == [p.id for p in people[1:]]
    assert [o.id for o in sync_orm.fetch_policies("MyModel")] == [p.id for p in people]
    people[1].backend_need_delete = True
    people[1].save()
    people[1].delete()
    assert [o.id for o in sync_orm.fetch_pending("MyModel", deletion=True)] == [people[1].id]
    assert [o.id for o in sync_orm.fetch_policies("MyModel", deletion=True)] == [people[1].id]
    with pytest.raises(TypeError):
        sync_orm.fetch_pending(3)
