"""Convenience wrappers: user classes that add methods and properties to models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._object import ORMWrapper

__all__ = ["WrapperRegistry", "register_convenience_wrapper", "registering_into"]


class WrapperRegistry:
    """Model name -> wrapper class, for one model accessor."""

    def __init__(self) -> None:
        self._wrappers: dict[str, type[ORMWrapper]] = {}
        self.version = 0

    def register(self, model_name: str, wrapper: type[ORMWrapper]) -> None:
        from ._object import ORMWrapper

        if not (isinstance(wrapper, type) and issubclass(wrapper, ORMWrapper)):
            raise TypeError(f"convenience wrapper for {model_name} must subclass ORMWrapper, got {wrapper!r}")
        self._wrappers[model_name] = wrapper
        self.version += 1

    def get(self, model_name: str) -> type[ORMWrapper] | None:
        return self._wrappers.get(model_name)

    def __contains__(self, model_name: object) -> bool:
        return model_name in self._wrappers


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
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)
