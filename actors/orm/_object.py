"""Model objects: typed field access, links, saves with the original's bookkeeping.

Who is writing: the runtime marks step and policy code (:func:`acting_as`) so saves
get the right stamps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from actors.models import FieldSpec
from actors.store import Caller, Row, ValidationError, WriteContext, as_dict, check_id, check_value

if TYPE_CHECKING:
    from ._accessor import ModelAccessor
    from ._queryset import Manager, QuerySet

__all__ = ["DoesNotExist", "ORMWrapper", "acting_as", "current_caller", "row_of"]

_caller: ContextVar[Caller | None] = ContextVar("actors_caller", default=None)


def current_caller() -> Caller | None:
    """The caller set by :func:`acting_as` in this context, if any."""
    return _caller.get()


@contextmanager
def acting_as(caller: Caller) -> Iterator[None]:
    """Saves made inside count as made by ``caller`` (``Caller.STEP`` in ``sync_record``...)."""
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


class DoesNotExist(IndexError, LookupError):
    """``get()`` found nothing. An ``IndexError``, as the original's code expects."""


def row_of(obj: ORMWrapper) -> dict[str, Any]:
    """The object's row as the ORM holds it (column -> value; the runtime reads bookkeeping from it)."""
    return obj._data


class ORMWrapper:
    """The base class of every model object, and of convenience wrappers.

    A convenience wrapper subclasses it and is registered with
    ``register_convenience_wrapper("Model", Wrapper)``; the model accessor then
    builds the class of ``Model`` on top of it, so its methods and properties
    are available on every ``Model`` object.
    """

    # Set on the classes a ModelAccessor builds.
    _accessor: ClassVar[ModelAccessor]
    _model: ClassVar[str]
    _fields: ClassVar[dict[str, FieldSpec]] = {}
    _columns: ClassVar[dict[str, FieldSpec]] = {}
    #: Column -> default value, computed once per class (``FieldSpec.default`` parses each time).
    _defaults: ClassVar[dict[str, Any]] = {}
    objects: ClassVar[Manager[Any]]
    deleted_objects: ClassVar[Manager[Any]]
    DoesNotExist: ClassVar[type[DoesNotExist]] = DoesNotExist

    _data: dict[str, Any]
    _loaded: dict[str, Any]
    _links: dict[str, Any]

    def __init__(self, **values: Any) -> None:
        if "_model" not in type(self).__dict__:
            raise TypeError(f"{type(self).__name__} is not bound to a model; use accessor.get_model_class()")
        data: dict[str, Any] = {"id": None, **self._defaults}
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_loaded", {})
        object.__setattr__(self, "_links", {})
        for name, value in values.items():
            if name not in self._fields and name not in self._columns and name != "id":
                raise AttributeError(f"{self._model} has no field {name!r}")
            setattr(self, name, value)

    @classmethod
    def _from_row(cls, row: Row) -> ORMWrapper:
        obj = cls.__new__(cls)
        data = as_dict(row)
        object.__setattr__(obj, "_data", data)
        object.__setattr__(obj, "_loaded", dict(data))
        object.__setattr__(obj, "_links", {})
        return obj

    @classmethod
    def filter(cls, **lookups: Any) -> QuerySet[Any]:
        """``Model.filter(...)``: the same as ``Model.objects.filter(...)``."""
        return cls.objects.filter(**lookups)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: fields are descriptors on the class.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"'{type(self).__name__}' object ({self._model}) has no attribute {name!r}")

    # -- identity -------------------------------------------------------------
    @property
    def id(self) -> int | None:
        return self._data.get("id")

    @id.setter
    def id(self, value: int | None) -> None:
        self._data["id"] = value if value is None else check_id(self._model, value)

    @property
    def pk(self) -> int | None:
        return self.id

    @property
    def is_new(self) -> bool:
        return self.id is None

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def class_names(self) -> str:
        """The model and every base it inherits from, comma-separated (``"MyModel,XOSBase"``)."""
        return ",".join([self._model, *self._accessor.schema.ancestors(self._model)])

    @property
    def self_content_type_id(self) -> str:
        return self._model

    @property
    def leaf_model(self) -> ORMWrapper:
        """This object as an instance of its most derived model."""
        leaf = self._data.get("leaf_model_name") or self._model
        if leaf == self._model or self.id is None:
            return self
        cls = self._accessor.get_model_class(leaf)
        row = self._accessor.backend.get(leaf, self.id)
        if row is None:
            raise cls.DoesNotExist(f"{leaf} id {self.id} does not exist")
        return cls._from_row(row)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ORMWrapper):
            return NotImplemented
        if self.id is None or other.id is None:
            return self is other
        schema = self._accessor.schema
        return self.id == other.id and schema.root(self._model) == schema.root(other._model)

    def __hash__(self) -> int:
        if self.id is None:
            return id(self)
        return hash((self._accessor.schema.root(self._model), self.id))

    def __str__(self) -> str:
        name = self._data.get("name")
        if isinstance(name, str) and name:
            return name
        return f"{self._model}-{self.id}" if self.id is not None else f"{self._model}-new"

    def __repr__(self) -> str:
        return f"<{self._model} id={self.id}>"

    def tologdict(self) -> dict[str, Any]:
        """Context for log lines: ``log.info("...", **o.tologdict())``."""
        return {"model_name": self._model, "pk": self.id}

    # -- changes --------------------------------------------------------------
    @property
    def changed_fields(self) -> list[str]:
        """Columns whose value differs from the stored one (every set column for a new object)."""
        if self.is_new:
            return [c for c in self._data if c != "id"]
        return [c for c, v in self._data.items() if c != "id" and self._loaded.get(c) != v]

    def has_field_changed(self, name: str) -> bool:
        return self._column_name(name) in self.changed_fields

    @property
    def diff(self) -> dict[str, tuple[Any, Any]]:
        """``{column: (stored value, current value)}`` for each changed column."""
        return {c: (self._loaded.get(c), self._data[c]) for c in self.changed_fields}

    def get_field_diff(self, name: str) -> tuple[Any, Any] | None:
        return self.diff.get(self._column_name(name))

    def _column_name(self, name: str) -> str:
        f = self._fields.get(name)
        return f.column if f is not None else name

    # -- writes ---------------------------------------------------------------
    def save(
        self,
        update_fields: list[str] | tuple[str, ...] | None = None,
        always_update_timestamp: bool = False,
        is_sync_save: bool = False,
        is_policy_save: bool = False,
    ) -> None:
        """Create or update the object.

        Only changed columns are written (or only ``update_fields``). A save from
        synchronizer code does not make the object dirty again unless
        ``always_update_timestamp=True``; see ``docs/orm.md``.
        """
        accessor = self._accessor
        caller = (
            Caller.STEP
            if is_sync_save
            else Caller.POLICY
            if is_policy_save
            else current_caller() or accessor.caller
        )
        columns = tuple(self._column_name(n) for n in update_fields) if update_fields else None
        ctx = WriteContext(caller, always_update_timestamp, columns)
        if self.is_new:
            row = accessor.backend.create(
                self._model, {c: v for c, v in self._data.items() if c != "id"}, ctx
            )
            self._data.update(row)
            object.__setattr__(self, "_loaded", dict(self._data))
            return
        names = columns if columns is not None else tuple(self.changed_fields)
        values = {c: self._data[c] for c in names if c in self._data}
        if not values and caller is not Caller.CLIENT and not always_update_timestamp:
            return
        written = accessor.backend.update(self._model, self.id, values, ctx)  # type: ignore[arg-type]
        self._data.update(written)
        for column in (*values, *written):
            self._loaded[column] = self._data[column]

    def save_changed_fields(self, always_update_timestamp: bool = False) -> None:
        """Save only the columns changed since the object was read."""
        changed = self.changed_fields
        if changed or always_update_timestamp:
            self.save(update_fields=changed, always_update_timestamp=always_update_timestamp)

    def delete(self, purge: bool = False) -> None:
        """Soft-delete: the synchronizer runs ``delete_record`` before the row goes."""
        if self.is_new:
            return
        ctx = WriteContext(current_caller() or self._accessor.caller)
        self._accessor.backend.delete(self._model, self.id, ctx, purge=purge)  # type: ignore[arg-type]
        if "deleted" in self._data:
            self._data["deleted"] = self._loaded["deleted"] = True


class Field:
    """A stored column: typed get and set."""

    def __init__(self, model: str, spec: FieldSpec, column: str) -> None:
        self.model, self.spec, self.column = model, spec, column

    def __get__(self, obj: ORMWrapper | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._data.get(self.column)

    def __set__(self, obj: ORMWrapper, value: Any) -> None:
        if self.spec.is_link and isinstance(value, ORMWrapper):
            value = value.id
        obj._data[self.column] = check_value(self.model, self.spec, value)


class Link:
    """A ``manytoone``/``onetoone`` field: ``obj.owner`` is the linked object."""

    def __init__(self, model: str, spec: FieldSpec) -> None:
        self.model, self.spec = model, spec

    def __get__(self, obj: ORMWrapper | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        target_id = obj._data.get(self.spec.column)
        if target_id is None:
            return None
        cached = obj._links.get(self.spec.name)
        if cached is not None and cached.id == target_id:
            return cached
        assert self.spec.link is not None
        cls = obj._accessor.get_model_class(self.spec.link.model)
        row = obj._accessor.backend.get(self.spec.link.model, target_id)
        target = cls._from_row(row) if row is not None else None
        obj._links[self.spec.name] = target
        return target

    def __set__(self, obj: ORMWrapper, value: Any) -> None:
        if value is not None and not isinstance(value, ORMWrapper):
            raise ValidationError(
                f"{self.model}.{self.spec.name}: expected a model object or None, got {value!r}"
            )
        obj._data[self.spec.column] = value.id if value is not None else None
        obj._links[self.spec.name] = value


class Reverse:
    """The other side of a link: ``service.service_instances.all()``."""

    def __init__(self, source: str, spec: FieldSpec) -> None:
        self.source, self.spec = source, spec

    def __get__(self, obj: ORMWrapper | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        cls = obj._accessor.get_model_class(self.source)
        return cls.objects.filter(**{self.spec.column: obj.id})
