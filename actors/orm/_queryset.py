"""Querysets and managers: lazy, list-like results of ``Model.objects.filter(...)``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from actors.store import Condition, Query, ValidationError, parse_lookup

if TYPE_CHECKING:
    from ._object import ORMWrapper

__all__ = ["Manager", "QuerySet", "conditions"]

T = TypeVar("T", bound="ORMWrapper")


def conditions(cls: type[ORMWrapper], lookups: Mapping[str, Any]) -> tuple[Condition, ...]:
    """Django-style keyword lookups -> conditions on stored columns.

    ``owner=obj`` and ``owner__id=3`` become ``owner_id``; ``pk`` is ``id``.
    """
    from ._object import ORMWrapper

    out = []
    for key, value in lookups.items():
        name, op = parse_lookup(key)
        if name == "pk":
            name = "id"
        if name.endswith("__id") and name[:-4] in cls._fields and cls._fields[name[:-4]].is_link:
            name = name[:-4]
        f = cls._fields.get(name)
        if f is not None:
            column = f.column
        elif name in cls._columns or name == "id":
            column = name
        else:
            raise ValidationError(f"model {cls._model} has no field {name!r}")
        if isinstance(value, ORMWrapper):
            value = value.id
        elif op == "in" and isinstance(value, list | tuple | set | frozenset | QuerySet):
            value = [v.id if isinstance(v, ORMWrapper) else v for v in value]
        out.append(Condition(column, op, value))
    return tuple(out)


class QuerySet(Generic[T]):
    """A lazy query; evaluated once on first use as a list (``len``, index, iteration...)."""

    def __init__(self, cls: type[T], query: Query = Query()) -> None:
        self._cls = cls
        self._query = query
        self._cache: list[T] | None = None

    def _clone(self, **changes: Any) -> QuerySet[T]:
        return QuerySet(self._cls, replace(self._query, **changes))

    # -- refining -------------------------------------------------------------
    def all(self) -> QuerySet[T]:
        return self._clone()

    def filter(self, **lookups: Any) -> QuerySet[T]:
        return self._clone(where=self._query.where + conditions(self._cls, lookups))

    def exclude(self, **lookups: Any) -> QuerySet[T]:
        return self._clone(exclude=self._query.exclude + conditions(self._cls, lookups))

    def order_by(self, *names: str) -> QuerySet[T]:
        return self._clone(order_by=tuple(names))

    # -- evaluating -----------------------------------------------------------
    def _fetch(self) -> list[T]:
        if self._cache is None:
            cls = self._cls
            rows = cls._accessor.backend.select(cls._model, self._query)
            self._cache = [cast(T, cls._from_row(row)) for row in rows]
        return self._cache

    def get(self, **lookups: Any) -> T:
        """The first match (by id); raises ``Model.DoesNotExist`` (an ``IndexError``) if none."""
        found = (self.filter(**lookups) if lookups else self).first()
        if found is None:
            raise self._cls.DoesNotExist(f"{self._cls._model} matching {lookups or 'query'} does not exist")
        return found

    def first(self) -> T | None:
        found = self._clone(limit=1)._fetch() if self._cache is None else self._cache[:1]
        return found[0] if found else None

    def last(self) -> T | None:
        items = self._fetch()
        return items[-1] if items else None

    def count(self) -> int:
        if self._cache is not None:
            return len(self._cache)
        cls = self._cls
        query = replace(self._query, order_by=())
        if query.limit is not None or query.offset:
            return len(self._fetch())
        return cls._accessor.backend.count(cls._model, query)

    def exists(self) -> bool:
        return self.first() is not None

    def delete(self) -> int:
        """Delete every object of the query (soft delete); returns how many."""
        items = self._fetch()
        for obj in items:
            obj.delete()
        return len(items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._fetch())

    def __len__(self) -> int:
        return len(self._fetch())

    def __bool__(self) -> bool:
        return bool(self._fetch())

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if self._cache is not None:
            return self._cache[index]
        if isinstance(index, slice):
            start, stop, step = index.start or 0, index.stop, index.step
            if start >= 0 and (stop is None or stop >= 0) and step in (None, 1):
                limit = None if stop is None else max(0, stop - start)
                return self._clone(offset=self._query.offset + start, limit=limit)._fetch()
            return self._fetch()[index]
        if index >= 0:
            found = self._clone(offset=self._query.offset + index, limit=1)._fetch()
            if not found:
                raise IndexError(f"{self._cls._model} query index {index} out of range")
            return found[0]
        return self._fetch()[index]

    def __repr__(self) -> str:
        return f"<QuerySet {self._cls._model} {self._fetch()!r}>"


class Manager(QuerySet[T]):
    """``Model.objects`` (objects not deleted) and ``Model.deleted_objects``."""

    def __init__(self, cls: type[T], *, deleted: bool = False) -> None:
        base = (Condition("deleted", "eq", deleted),) if "deleted" in cls._columns else ()
        super().__init__(cls, Query(where=base))

    def _fetch(self) -> list[T]:
        # A manager is never cached: every use reads the current state.
        items = super()._fetch()
        self._cache = None
        return items

    def new(self, **values: Any) -> T:
        """A new, unsaved object (same as ``Model(**values)``)."""
        return self._cls(**values)
