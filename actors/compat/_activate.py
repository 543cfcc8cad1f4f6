"""``activated``: run synchronizer code with the original's import paths and this synchronizer's state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from actors.config import Config, use_config
from actors.orm import ModelAccessor, registering_into

from . import _finder, _state

__all__ = ["activated"]


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
    _finder.enter()
    try:
        with use_config(config), registering_into(accessor.wrappers):
            accessor_token = _state.set_accessor(accessor)
            active_token = _state.set_active(True)
            try:
                yield accessor
            finally:
                _state.reset_active(active_token)
                _state.reset_accessor(accessor_token)
    finally:
        _finder.leave()
