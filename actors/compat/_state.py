"""The compat layer's state: all of it in context variables, so threads do not mix."""

from __future__ import annotations

from contextvars import ContextVar

from actors.orm import ModelAccessor

__all__ = ["current_accessor", "is_active", "set_accessor", "set_active"]

_active: ContextVar[bool] = ContextVar("actors_compat_active", default=False)
_accessor: ContextVar[ModelAccessor | None] = ContextVar("actors_compat_accessor", default=None)


def is_active() -> bool:
    """Whether the original framework's import paths resolve here (inside :func:`activated`)."""
    return _active.get()


def current_accessor() -> ModelAccessor | None:
    """The model accessor of the innermost :func:`activated` in this context, if any."""
    return _accessor.get()


# The tokens are only used by ``activated``.
set_active = _active.set
set_accessor = _accessor.set
reset_active = _active.reset
reset_accessor = _accessor.reset
