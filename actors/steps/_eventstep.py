"""Event steps: called for each message on the event bus topics they listen to."""

from __future__ import annotations

from typing import Any, ClassVar

from ._base import StepBase

__all__ = ["EventStep"]


class EventStep(StepBase):
    """Subclass it, set ``technology = "kafka"`` and ``topics`` (or ``pattern``), override
    ``process_event(event)``; ``event`` has ``topic``, ``key``, ``value`` (bytes),
    ``timestamp``, ``partition`` and ``offset``.
    """

    technology: ClassVar[str] = "kafka"
    topics: ClassVar[list[str]] = []
    pattern: ClassVar[str | None] = None

    def process_event(self, event: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement process_event")
