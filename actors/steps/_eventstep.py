"""Event steps: called for each message on the event bus topics they listen to."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ._base import StepBase

__all__ = ["TOPIC_NAME", "EventStep", "validate_event_step"]


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


#: What Kafka accepts as a topic name.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def validate_event_step(cls: type) -> str | None:
    """Why the event step class ``cls`` cannot run, in one line, or ``None`` if it can.

    Checks ``technology`` (only ``"kafka"``), that exactly one of ``topics``
    (a non-empty list of topic names) and ``pattern`` (a regular expression)
    is set, and that ``process_event`` is overridden. The message does not
    repeat the class name: wrap it as ``LoadError(path, cls.__name__, message)``.
    """
    out: list[str] = []
    technology = getattr(cls, "technology", None)
    if technology != "kafka":
        out.append(f"technology = {technology!r} is not supported (only 'kafka')")
    topics = getattr(cls, "topics", None)
    pattern = getattr(cls, "pattern", None)
    has_topics = topics is not None and topics != [] and topics != ()
    has_pattern = pattern is not None and pattern != ""
    if has_topics and has_pattern:
        out.append("both topics and pattern are set; set exactly one of them")
    elif not has_topics and not has_pattern:
        out.append("neither topics nor pattern is set; set topics = [...] or pattern = '...'")
    elif has_topics:
        if isinstance(topics, str | bytes):
            out.append(f"topics must be a list of topic names, not a string: write topics = [{topics!r}]")
        elif not isinstance(topics, list | tuple | set | frozenset):
            out.append(f"topics must be a list of topic names, got {type(topics).__name__}")
        else:
            bad = [t for t in topics if not isinstance(t, str) or not TOPIC_NAME.match(t)]
            if bad:
                out.append(
                    f"topics: {', '.join(repr(t) for t in bad)} "
                    "not a Kafka topic name (1-249 letters, digits, '.', '_' or '-')"
                )
    else:
        if not isinstance(pattern, str):
            out.append(f"pattern must be a regular expression string, got {type(pattern).__name__}")
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                out.append(f"pattern {pattern!r} is not a valid regular expression: {exc}")
    process = getattr(cls, "process_event", None)
    if not callable(process):
        out.append("process_event is not a method")
    elif process is EventStep.process_event:
        out.append("process_event is not overridden")
    return "; ".join(out) if out else None
