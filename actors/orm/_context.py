"""Who is writing: the runtime marks step and policy code so saves get the right stamps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from actors.store import Caller

__all__ = ["acting_as", "current_caller"]

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
