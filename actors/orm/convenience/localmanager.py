"""A fixed list of objects by id, for the many-to-many relations the original emulates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._accessor import ModelAccessor
    from .._object import ORMWrapper

__all__ = ["LocalObjectManager"]


class LocalObjectManager:
    """The original's ``ORMLocalObjectManager``: objects of ``model`` with the ids ``ids``.

    ``all()`` reads them (once; objects since deleted are left out), ``count()``
    and ``exists()`` look at the ids only, as the original. ``add`` and
    ``remove`` change the id list of a ``writeable`` manager.
    """

    def __init__(self, stub: ModelAccessor, model: str, ids: list[int], writeable: bool = False) -> None:
        self._stub = stub
        self._model = model
        self._ids = list(ids)
        self._writeable = writeable
        self._cache: list[ORMWrapper] | None = None

    def all(self) -> list[ORMWrapper]:
        if self._cache is None:
            cls = self._stub.get_model_class(self._model)
            by_id = {obj.id: obj for obj in cls.objects.filter(id__in=self._ids)} if self._ids else {}
            self._cache = [by_id[i] for i in self._ids if i in by_id]
        return list(self._cache)

    def __iter__(self) -> Iterator[ORMWrapper]:
        return iter(self.all())

    def exists(self) -> bool:
        return bool(self._ids)

    def count(self) -> int:
        return len(self._ids)

    def first(self) -> ORMWrapper | None:
        found = self.all()
        return found[0] if found else None

    def _id(self, model: Any) -> int:
        if not self._writeable:
            raise TypeError(f"this list of {self._model} objects is read-only")
        if isinstance(model, int):
            return model
        if getattr(model, "id", None) is None:
            raise ValueError(f"{model!r} has no id (save it first)")
        return int(model.id)

    def add(self, model: Any) -> None:
        self._ids.append(self._id(model))
        self._cache = None

    def remove(self, model: Any) -> None:
        self._ids.remove(self._id(model))
        self._cache = None
