"""The model accessor: model classes over one backend, as synchronizer code sees them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from actors.models import Schema
from actors.store import Caller, ChangeNotice, Pending, Row, Unsubscribe

from ._backend import Backend
from ._object import DoesNotExist, Field, Link, ORMWrapper, Reverse
from ._queryset import Manager
from ._wrappers import WrapperRegistry

__all__ = ["ModelAccessor"]


class ModelAccessor:
    """Model classes bound to ``backend``: ``accessor.MyModel.objects.all()``.

    ``caller`` is who writes by default: ``Caller.SYNCHRONIZER`` for synchronizer
    code (its saves do not make objects dirty again), ``Caller.CLIENT`` for
    people and other programs. Each accessor has its own classes and wrappers,
    so two synchronizers in one process do not see each other's.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        caller: Caller = Caller.SYNCHRONIZER,
        wrappers: WrapperRegistry | None = None,
    ) -> None:
        self.backend = backend
        self.caller = caller
        self.wrappers = wrappers if wrappers is not None else WrapperRegistry()
        self._lock = threading.RLock()
        self._classes: dict[str, type[ORMWrapper]] = {}
        self._built_for: tuple[int, int] = (-1, -1)

    @property
    def schema(self) -> Schema:
        return self.backend.schema

    # -- classes --------------------------------------------------------------
    def get_model_class(self, name: str) -> type[ORMWrapper]:
        """The class of model ``name``; ``KeyError`` naming it if there is no such model."""
        with self._lock:
            key = (id(self.schema), self.wrappers.version)
            if key != self._built_for:
                self._classes = {}
                self._built_for = key
            cls = self._classes.get(name)
            if cls is None:
                cls = self._build(name)
            return cls

    def from_row(self, name: str, row: Row) -> ORMWrapper:
        """The object of model ``name`` holding ``row`` as read from the backend (no query made)."""
        return self.get_model_class(name)._from_row(row)

    def has_model_class(self, name: str) -> bool:
        """Whether ``name`` is a concrete model; a remote core is asked again for a name it lacks.

        A client learns models uploaded after it connected this way (the backend's
        ``refresh_schema()``, where it has one: the gRPC client); the local store
        always knows its models.
        """
        schema = self.schema
        if name not in schema and not name.startswith("_"):
            refresh = getattr(self.backend, "refresh_schema", None)
            if callable(refresh):
                schema = refresh()
        return name in schema and not schema[name].abstract

    @property
    def all_model_classes(self) -> dict[str, type[ORMWrapper]]:
        return {spec.name: self.get_model_class(spec.name) for spec in self.schema.concrete()}

    def __getattr__(self, name: str) -> type[ORMWrapper]:
        if not name.startswith("_") and self.has_model_class(name):
            return self.get_model_class(name)
        raise AttributeError(f"no model named {name!r}")

    def _build(self, name: str) -> type[ORMWrapper]:
        schema = self.schema
        if not self.has_model_class(name):
            raise KeyError(f"unknown model {name!r}" if name not in schema else f"model {name} is abstract")
        bases: list[type] = []
        wrapper = self.wrappers.get(name)
        if wrapper is not None:
            bases.append(wrapper)
        parent = schema.parent(name)
        if parent is not None:
            bases.append(self.get_model_class(parent))
        else:  # a root model: also the wrappers of its abstract bases (XOSBase), nearest first
            for ancestor in schema.ancestors(name):
                inherited = self.wrappers.get(ancestor)
                if inherited is not None and not any(issubclass(b, inherited) for b in bases):
                    bases.append(inherited)
            if not bases:
                bases.append(ORMWrapper)
        fields = schema.fields(name)
        user_names = {
            attr
            for base in bases
            for k in base.__mro__
            if not _generated(k) and k is not ORMWrapper
            for attr in vars(k)
        }
        attrs: dict[str, Any] = {
            "_model": name,
            "_accessor": self,
            "_fields": dict(fields),
            "_columns": {f.column: f for f in fields.values()},
            "_defaults": {f.column: f.default for f in fields.values()},
            "__module__": "actors.models.generated",
            "__qualname__": name,
            "__doc__": schema[name].options.get("description") or f"Objects of model {name}.",
        }
        for f in fields.values():
            if f.is_link:
                if f.name not in user_names:
                    attrs[f.name] = Link(name, f)
                attrs[f.column] = Field(name, f, f.column)
            elif f.name not in user_names:
                attrs[f.name] = Field(name, f, f.column)
        for source, f in schema.reverse_links(name):
            reverse = f.link.reverse if f.link else None
            if not reverse or reverse in attrs or reverse in user_names:
                continue
            if self.has_model_class(source):
                attrs[reverse] = Reverse(source, f)
        parent_dne = bases[-1].DoesNotExist if hasattr(bases[-1], "DoesNotExist") else DoesNotExist
        attrs["DoesNotExist"] = type("DoesNotExist", (parent_dne,), {"__qualname__": f"{name}.DoesNotExist"})
        cls: type[ORMWrapper] = type(name, tuple(bases), attrs)
        cls.objects = Manager(cls)
        cls.deleted_objects = Manager(cls, deleted=True)
        self._classes[name] = cls
        return cls

    # -- helpers of the original's model accessor -----------------------------
    def pending(self, model: str, which: Pending | str, *, limit: int | None = None) -> list[ORMWrapper]:
        """Objects that one of the four synchronizer queries selects, as ``model`` objects."""
        cls = self.get_model_class(model)
        return [cls._from_row(row) for row in self.backend.pending(model, which, limit=limit)]

    def fetch_pending(self, main_objs: Any, deletion: bool = False) -> list[ORMWrapper]:
        """Objects of ``main_objs`` (a class, a name or a list of them) that need sync or delete."""
        which = Pending.SYNC_DELETED if deletion else Pending.SYNC
        return [obj for model in _model_names(main_objs) for obj in self.pending(model, which)]

    def fetch_policies(self, main_objs: Any, deletion: bool = False) -> list[ORMWrapper]:
        which = Pending.POLICY_DELETED if deletion else Pending.POLICY
        return [obj for model in _model_names(main_objs) for obj in self.pending(model, which)]

    def now(self) -> float:
        return self.backend.now()

    def obj_exists(self, o: ORMWrapper) -> bool:
        return o is not None and o.id is not None

    def obj_in_list(self, o: ORMWrapper, olist: Iterable[ORMWrapper]) -> bool:
        return any(o.id == x.id for x in olist)

    def is_type(self, obj: ORMWrapper, name: str) -> bool:
        return obj._model == name

    def is_instance(self, obj: ORMWrapper, name: str) -> bool:
        return self.schema.is_a(obj._model, name)

    def create_obj(self, cls: type[ORMWrapper], **kwargs: Any) -> ORMWrapper:
        return cls(**kwargs)

    def journal_object(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for compatibility; the store keeps its own journal."""

    def update_diag(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for compatibility; status is read from the supervisor instead."""

    def reset_queries(self) -> None:
        """Accepted for compatibility."""

    def connection_close(self) -> None:
        """Accepted for compatibility."""

    def check_db_connection_okay(self) -> None:
        """Accepted for compatibility."""

    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe:
        return self.backend.subscribe(callback)


def _generated(cls: type) -> bool:
    return "_model" in cls.__dict__ and cls.__module__ == "actors.models.generated"


def _model_names(main_objs: Any) -> list[str]:
    items = main_objs if isinstance(main_objs, list | tuple) else [main_objs]
    names = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, type) and issubclass(item, ORMWrapper) and "_model" in vars(item):
            names.append(item._model)
        else:
            raise TypeError(f"expected a model class or name, got {item!r}")
    return names
