"""Kafka producers: the dead-letter seam, and the one place a kafka-python ``KafkaProducer`` is made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import kafka

from ._kafka_client import BusOptions

__all__ = ["DeadLetterSink", "KafkaDeadLetterSink", "SinkFactory", "new_producer"]


# -- the dead-letter seam -------------------------------------------------------
class DeadLetterSink(Protocol):
    """Where an event that keeps failing is written."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        callback: Callable[[BaseException | None], None],
    ) -> None:
        """Write one record; ``callback(None)`` once the broker stored it, ``callback(error)`` if not.

        The callback may run on any thread (it should only send a message).
        """
        ...

    def close(self, timeout: float) -> None: ...


SinkFactory = Callable[[BusOptions], DeadLetterSink]


def new_producer(**config: Any) -> Any:
    """A kafka-python ``KafkaProducer`` built with ``config`` (the one place producers are made)."""
    return kafka.KafkaProducer(**config)


class KafkaDeadLetterSink:
    """:class:`DeadLetterSink` on a kafka-python ``KafkaProducer`` (``acks="all"``), built at first use."""

    def __init__(self, options: BusOptions) -> None:
        self._options = options
        self._producer: Any = None

    def _ensure(self) -> Any:
        if self._producer is None:
            timeout_ms = max(1, int(self._options.dead_letter_timeout * 1000))
            config: dict[str, Any] = {
                "bootstrap_servers": list(self._options.servers),
                "client_id": f"{self._options.group}.dead-letters",
                "acks": "all",
                "max_block_ms": timeout_ms,
                "bootstrap_timeout_ms": max(1, int(self._options.connect_timeout * 1000)),
                **self._options.producer,
            }
            self._producer = new_producer(**config)
        return self._producer

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        callback: Callable[[BaseException | None], None],
    ) -> None:
        try:
            future = self._ensure().send(topic, key=key, value=value, headers=headers)
        except Exception as exc:
            callback(exc)
            return
        future.add_callback(lambda _metadata: callback(None))
        future.add_errback(callback)

    def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout)
