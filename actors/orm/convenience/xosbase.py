"""What every model object has beyond its fields (the original ``ORMWrapper`` base)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._object import ORMWrapper

if TYPE_CHECKING:
    from .._accessor import ModelAccessor

__all__ = ["ORMWrapperXOSBase"]


class ORMWrapperXOSBase(ORMWrapper):
    """Built into every model that derives from ``XOSBase``.

    ``model_name``, ``leaf_model``, ``tologdict()``, ``is_new``, ``changed_fields``,
    ``diff`` and the rest of the original's base are on :class:`~actors.orm.ORMWrapper`.
    """

    @property
    def stub(self) -> ModelAccessor:
        """The model accessor: ``self.stub.ServiceInstance`` is a model class (the original's gRPC stub)."""
        return self._accessor

    @property
    def ansible_tag(self) -> str:
        """``"<model>_<id>"``: the tag the original's Ansible steps named their runs with."""
        return f"{self._model}_{self.id}"

    @property
    def has_changed(self) -> bool:
        """Whether any column differs from the stored value."""
        return bool(self.changed_fields)

    def fields_differ(self, f1: Any, f2: Any) -> bool:
        return bool(f1 != f2)

    def recompute_initial(self) -> None:
        """Take the current values as the stored ones: ``changed_fields`` becomes empty."""
        object.__setattr__(self, "_loaded", dict(self._data))

    def invalidate_cache(self, name: str | None = None) -> None:
        """Forget the linked object cached for link ``name`` (all of them when ``None``)."""
        if name is None:
            self._links.clear()
        else:
            self._links.pop(name, None)

    def dumpstr(self) -> str:
        """Every column and its value, one ``name: value`` per line."""
        return "\n".join(f"{column}: {value!r}" for column, value in sorted(self._data.items()))

    def dump(self) -> None:
        print(self.dumpstr())

    def get_generic_foreignkeys(self) -> list[dict[str, str]]:
        """The generic (content type, object id) links of the model; none unless a wrapper says so."""
        return []
