"""``activated``, and the import hook it turns on: the original's module names, answered only inside.

A :class:`CompatFinder` sits at the front of ``sys.meta_path``. Outside
``activated`` it answers nothing, so the normal import system runs (and finds
the original packages if they are installed). Inside, it hands out the
pre-built modules of :mod:`._modules`. When the last ``activated`` block in the
process exits, those modules are taken out of ``sys.modules`` again, and any
original module they shadowed is put back.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from actors.config import Config, use_config
from actors.orm import ModelAccessor, registering_into

from ._modelaccessor import ACCESSOR, ACTIVE, is_active
from ._modules import MODULES, TOP_LEVEL

__all__ = ["FINDER", "CompatFinder", "activated", "enter", "leave"]


class _Loader(importlib.abc.Loader):
    """Returns the pre-built module; there is nothing to execute."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return MODULES[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class CompatFinder(importlib.abc.MetaPathFinder):
    """Finds the original framework's module names while the compat layer is active."""

    def __init__(self) -> None:
        self._loader = _Loader()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not is_active():
            return None
        module = MODULES.get(fullname)
        if module is None:
            if fullname.partition(".")[0] in TOP_LEVEL:
                raise ModuleNotFoundError(
                    f"No module named {fullname!r}: actors.compat does not provide it "
                    "(see docs/porting.md for the import paths it provides)",
                    name=fullname,
                )
            return None
        return importlib.machinery.ModuleSpec(fullname, self._loader, is_package=hasattr(module, "__path__"))

    def __repr__(self) -> str:
        return "<actors.compat finder>"


FINDER = CompatFinder()

_lock = threading.Lock()
_users = 0
_shadowed: dict[str, types.ModuleType] = {}


def enter() -> None:
    """Start one ``activated`` block: make sure the finder is first, shadow original modules."""
    global _users
    with _lock:
        if not sys.meta_path or sys.meta_path[0] is not FINDER:
            while FINDER in sys.meta_path:
                sys.meta_path.remove(FINDER)
            sys.meta_path.insert(0, FINDER)
        for name, ours in MODULES.items():
            other = sys.modules.get(name)
            if other is not None and other is not ours:
                _shadowed.setdefault(name, other)
                del sys.modules[name]
        _users += 1


def leave() -> None:
    """End one ``activated`` block; after the last one, take our modules out of ``sys.modules``."""
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        for name, ours in MODULES.items():
            if sys.modules.get(name) is ours:
                del sys.modules[name]
        for name, original in _shadowed.items():
            sys.modules.setdefault(name, original)
        _shadowed.clear()


@contextmanager
def activated(config: Config, accessor: ModelAccessor) -> Iterator[ModelAccessor]:
    """Run the ``with`` block as code of the synchronizer ``config`` / ``accessor``.

    Inside: the original framework's import paths (``xosconfig``,
    ``synchronizers.new_base.modelaccessor``, ``xossynchronizer...``) resolve to
    this package's modules; ``Config.get`` reads ``config``; the modelaccessor
    modules give ``accessor``'s model classes; ``register_convenience_wrapper``
    registers into ``accessor.wrappers``. Blocks nest (the innermost wins) and
    every setting is a context variable, so threads running different
    synchronizers do not see each other's. Yields ``accessor``.
    """
    enter()
    try:
        with use_config(config), registering_into(accessor.wrappers):
            accessor_token = ACCESSOR.set(accessor)
            active_token = ACTIVE.set(True)
            try:
                yield accessor
            finally:
                ACTIVE.reset(active_token)
                ACCESSOR.reset(accessor_token)
    finally:
        leave()
