"""Convenience wrappers: user classes that add methods and properties to models.

Three sources, looked up by model name, first wins where they overlap:

1. the synchronizer's convenience wrappers (``register_convenience_wrapper``);
2. the classes of the synchronizer's ``models/models.py`` (``custom_python``,
   registered with :meth:`WrapperRegistry.register_model_class`);
3. the XOS core's convenience methods (:data:`actors.orm.convenience.CORE_WRAPPERS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .convenience import CORE_WRAPPERS

if TYPE_CHECKING:
    from ._object import ORMWrapper

__all__ = ["WrapperRegistry", "register_convenience_wrapper", "registering_into"]


class WrapperRegistry:
    """Model name -> the classes that extend it, for one model accessor."""

    def __init__(self) -> None:
        self._wrappers: dict[str, type[ORMWrapper]] = {}
        self._model_classes: dict[str, type[ORMWrapper]] = {}
        self._composed: dict[str, type[ORMWrapper] | None] = {}
        self.version = 0

    def register(self, model_name: str, wrapper: type[ORMWrapper]) -> None:
        """Make ``wrapper`` the convenience wrapper of ``model_name`` (replacing an earlier one).

        Raises ``TypeError`` (and registers nothing) if ``wrapper`` is not an
        ``ORMWrapper`` or cannot be combined with the model's other classes.
        """
        self._add(self._wrappers, model_name, wrapper, "convenience wrapper")

    def register_model_class(self, model_name: str, cls: type[ORMWrapper]) -> None:
        """Add ``cls`` (a class of the synchronizer's ``models.py``) to the objects of ``model_name``.

        Raises ``TypeError`` as :meth:`register` does.
        """
        self._add(self._model_classes, model_name, cls, "models.py class")

    def _add(
        self, table: dict[str, type[ORMWrapper]], model_name: str, cls: type[ORMWrapper], what: str
    ) -> None:
        from ._object import ORMWrapper

        if not (isinstance(cls, type) and issubclass(cls, ORMWrapper)):
            raise TypeError(f"{what} for {model_name} must subclass ORMWrapper, got {cls!r}")
        previous = table.get(model_name)
        table[model_name] = cls
        try:
            composed = self._compose(model_name)
        except TypeError:
            if previous is None:
                del table[model_name]
            else:
                table[model_name] = previous
            raise
        self._composed.clear()
        self._composed[model_name] = composed
        self.version += 1

    def get(self, model_name: str) -> type[ORMWrapper] | None:
        """The class every ``model_name`` object derives from (before the generated fields), or None.

        One class of the three sources, or a class deriving from each of them,
        the convenience wrapper first; a source that another already derives
        from (``class W(ORMWrapperService)``) is not repeated.
        """
        if model_name not in self._composed:
            self._composed[model_name] = self._compose(model_name)
        return self._composed[model_name]

    def _compose(self, model_name: str) -> type[ORMWrapper] | None:
        found = [
            cls
            for cls in (
                self._wrappers.get(model_name),
                self._model_classes.get(model_name),
                CORE_WRAPPERS.get(model_name),
            )
            if cls is not None
        ]
        parts = [cls for i, cls in enumerate(found) if not any(issubclass(o, cls) for o in found[:i])]
        if len(parts) <= 1:
            return parts[0] if parts else None
        try:
            return type(
                f"{model_name}Extensions",
                tuple(parts),
                {"__module__": __name__, "__doc__": f"The extensions of {model_name}."},
            )
        except TypeError as exc:
            names = ", ".join(p.__qualname__ for p in parts)
            raise TypeError(f"the extensions of {model_name} ({names}) cannot be combined: {exc}") from None

    def __contains__(self, model_name: object) -> bool:
        """Whether the synchronizer registered a convenience wrapper or ``models.py`` class for the model."""
        return model_name in self._wrappers or model_name in self._model_classes


_default = WrapperRegistry()
_current: ContextVar[WrapperRegistry | None] = ContextVar("actors_wrappers", default=None)


def register_convenience_wrapper(model_name: str, wrapper: type[ORMWrapper]) -> None:
    """Wrap every ``model_name`` object (and objects of models derived from it) in ``wrapper``.

    Called by convenience modules at import time; they are imported by the
    runtime inside :func:`registering_into`, so each synchronizer gets its own.
    """
    (_current.get() or _default).register(model_name, wrapper)


@contextmanager
def registering_into(registry: WrapperRegistry) -> Iterator[WrapperRegistry]:
    """Make ``register_convenience_wrapper`` register into ``registry`` inside the block."""
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)
