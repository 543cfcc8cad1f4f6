"""What an event step is handed (:class:`Event`), the error of one that cannot run, error text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventStepError", "describe"]

_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class Event:
    """One record from the bus, as ``process_event(event)`` receives it.

    ``value`` and ``key`` are the raw bytes (``json.loads(event.value)`` works
    on bytes); ``timestamp`` is Kafka's, in milliseconds since the epoch;
    ``headers`` is a tuple of ``(name, bytes)``.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int | None
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, record: Any) -> Event:
        """An event from a kafka-python ``ConsumerRecord`` (or anything with the same attributes)."""
        event: Event = _new(cls)
        _set(event, "topic", record.topic)
        _set(event, "key", record.key)
        _set(event, "value", record.value)
        _set(event, "timestamp", record.timestamp)
        _set(event, "partition", record.partition)
        _set(event, "offset", record.offset)
        headers = record.headers
        _set(event, "headers", tuple(headers) if headers else ())
        return event


class EventStepError(Exception):
    """An event step that cannot run: its class (topics/pattern/technology) or the ``event_bus`` config."""


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line (kafka-python's errors already start with their type)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
