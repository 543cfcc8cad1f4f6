"""``xoskafka.XOSKafkaProducer``: the original's shared producer, over the runtime's ``produce``.

The compat layer sits below the runtime, so it cannot import
``actors.runtime.produce``. The runtime registers its send function here
instead (:func:`set_event_producer`, called when ``actors.runtime`` is
imported); until then :meth:`XOSKafkaProducer.produce` raises a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._xosconfig import create_logger

__all__ = ["XOSKafkaProducer", "set_event_producer"]

#: ``send(topic, key, value)``: publish without waiting, return a future (or None).
EventSender = Callable[[str, Any, Any], Any]

_sender: EventSender | None = None


def set_event_producer(sender: EventSender | None) -> None:
    """Register the function :class:`XOSKafkaProducer` publishes with (the runtime does, at import)."""
    global _sender
    _sender = sender


def _current_sender() -> EventSender:
    sender = _sender
    if sender is None:
        raise RuntimeError(
            "XOSKafkaProducer: no event producer is registered; it comes with the actors runtime "
            "(import actors.runtime)"
        )
    return sender


def _is_kafka_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "kafka"


class XOSKafkaProducer:
    """Publish to the synchronizer's event bus: ``XOSKafkaProducer.produce(topic, key, value)``.

    The bus is the one ``actors.runtime.produce`` uses (``event_bus.endpoint`` of the
    synchronizer's config, see ``docs/events.md``); one producer is shared by the
    process. As the original, ``produce`` does not wait for the broker: a failed
    delivery, like a Kafka error while sending, is logged and not raised. A
    missing event bus configuration is raised.
    """

    @staticmethod
    def init() -> None:
        """Accepted for compatibility: the producer connects at first use.

        The original connected here and refused a second call; here any number of
        calls is fine (several synchronizers may share a process).
        """
        _current_sender()

    @classmethod
    def produce(cls, topic: str, key: Any, value: Any) -> None:
        """Send ``value`` (``str``, ``bytes`` or JSON-able) with ``key`` to ``topic``."""
        log = create_logger()
        try:
            future = _current_sender()(topic, key, value)
        except Exception as exc:
            if not _is_kafka_error(exc):
                raise
            log.error("Kafka Error", topic=topic, error=f"{type(exc).__name__}: {exc}")
            return
        if hasattr(future, "add_errback"):
            future.add_errback(
                lambda exc: log.error(
                    "Message failed delivery", topic=topic, error=f"{type(exc).__name__}: {exc}"
                )
            )
