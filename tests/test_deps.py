"""The dependency graph applied to objects (``actors.runtime._deps``), on a real store."""

from __future__ import annotations

import pytest

from actors.orm import ModelAccessor
from actors.runtime._deps import Dependencies
from actors.store import Caller, WriteContext

from .runtime_support import GRAPH, client, make_store


@pytest.fixture
def store():
    s = make_store()
    yield s
    s.close()


def deps(store) -> Dependencies:
    return Dependencies(ModelAccessor(store, caller=Caller.SYNCHRONIZER), GRAPH)


def enact(store, model: str, id: int) -> None:
    row = store.get(model, id)
    store.update(model, id, {"enacted": row["updated"]}, WriteContext(Caller.SYNCHRONIZER))


def chain(store):
    api = client(store)
    alpha = api.Alpha(name="a")
    alpha.save()
    beta = api.Beta(name="b", alpha=alpha)
    beta.save()
    gamma = api.Gamma(name="g", beta=beta)
    gamma.save()
    return alpha, beta, gamma


def test_key_is_the_root_model_and_id(store):
    assert deps(store).key("Beta", 7) == (store.schema.root("Beta"), 7)


def test_models_involved_are_dependencies_and_dependents(store):
    d = deps(store)
    assert d.models_involved(["Beta"]) == {"Alpha", "Gamma"}
    assert d.models_involved(["Alpha"]) == {"Beta"}
    assert d.models_involved(["MyModel"]) == set()


def test_unsynced_dependencies_until_the_dependency_is_enacted(store):
    alpha, beta, gamma = chain(store)
    d = deps(store)
    sync = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    [(model, row)] = d.unsynced_dependencies(sync.Beta.objects.get(id=beta.id))
    assert (model, row["id"]) == ("Alpha", alpha.id)
    assert d.unsynced_dependencies(sync.Alpha.objects.get(id=alpha.id)) == []
    enact(store, "Alpha", alpha.id)
    assert d.unsynced_dependencies(sync.Beta.objects.get(id=beta.id)) == []
    # only direct links count: Gamma waits for Beta, not for Alpha
    [(model, row)] = d.unsynced_dependencies(sync.Gamma.objects.get(id=gamma.id))
    assert (model, row["id"]) == ("Beta", beta.id)


def test_undeleted_dependents_while_their_delete_is_owed(store):
    alpha, beta, _ = chain(store)
    d = deps(store)
    sync = ModelAccessor(store, caller=Caller.SYNCHRONIZER)
    assert d.undeleted_dependents(sync.Alpha.objects.get(id=alpha.id)) == []
    ctx = WriteContext(Caller.SYNCHRONIZER)
    store.update("Beta", beta.id, {"backend_need_delete": True}, ctx)
    client(store).Beta.objects.get(id=beta.id).delete()
    alpha_obj = sync.Alpha.objects.get(id=alpha.id)
    [(model, row)] = d.undeleted_dependents(alpha_obj)
    assert (model, row["id"]) == ("Beta", beta.id)
    store.update("Beta", beta.id, {"backend_need_reap": True}, ctx)
    assert d.undeleted_dependents(alpha_obj) == []
