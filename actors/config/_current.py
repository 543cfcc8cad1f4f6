"""The "current" configuration, for code that cannot be handed one."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

from ._config import Config

_context: contextvars.ContextVar[Config | None] = contextvars.ContextVar("actors_config", default=None)
_default: Config | None = None
_builtin: Config | None = None
_lock = threading.Lock()


def current_config() -> Config:
    """The configuration in effect here: the innermost :func:`use_config` of this context, else the
    :func:`set_default_config` one, else the defaults alone, named ``"actors"`` (made at the first call)."""
    cfg = _context.get()
    if cfg is not None:
        return cfg
    if _default is not None:
        return _default
    return _builtin_config()


def _builtin_config() -> Config:
    global _builtin
    with _lock:
        if _builtin is None:
            _builtin = Config.from_dict({"name": "actors"})
        return _builtin


@contextlib.contextmanager
def use_config(cfg: Config) -> Iterator[Config]:
    """Make *cfg* the current configuration inside the ``with`` block, in this context only (a
    :mod:`contextvars` variable: this thread or task; other threads see :func:`set_default_config`)."""
    token = _context.set(cfg)
    try:
        yield cfg
    finally:
        _context.reset(token)


def set_default_config(cfg: Config | None) -> None:
    """Set (or with ``None`` clear) the process-wide current configuration."""
    global _default
    _default = cfg
