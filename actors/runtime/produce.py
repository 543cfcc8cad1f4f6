"""Publishing events from step code: ``produce(topic, key, value)``.

>>> from actors.runtime.produce import produce
>>> produce("MyTopic", key="john", value={"first_name": "John", "last_name": "Doe"})

The bus is the synchronizer's own (``event_bus.endpoint`` of the current
configuration: inside step code run by the runtime that is the synchronizer's
config), unless ``endpoint`` names another; outside any synchronizer the
``KAFKA_BOOTSTRAP_SERVERS`` environment variable is used. One thread-safe
``KafkaProducer`` per set of bootstrap servers is shared by the whole process,
created at first use and closed at exit (or by :func:`close_producers`).

By default :func:`produce` returns once the broker stored the record
(``acks="all"``), so an event step that produces and then returns has its
output safely written before its input's offset is committed. Pass
``wait=False`` to get kafka-python's future instead.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from actors.compat import set_event_producer
from actors.config import current_config

from ._kafka_client import EventBusError, bootstrap_servers
from ._kafka_producer import new_producer

__all__ = ["close_producers", "event_bus_servers", "produce", "using_event_bus"]

#: Bootstrap servers set by the runtime around step code (see :func:`using_event_bus`).
_current: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "actors_event_bus", default=None
)
_producers: dict[tuple[str, ...], Any] = {}
_lock = threading.Lock()

Headers = Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]


@contextlib.contextmanager
def using_event_bus(endpoint: Any) -> Iterator[tuple[str, ...]]:
    """Make ``endpoint`` (``"host:port"`` or a list) the bus of :func:`produce` inside the block."""
    servers = bootstrap_servers(endpoint)
    token = _current.set(servers)
    try:
        yield servers
    finally:
        _current.reset(token)


def event_bus_servers(endpoint: Any = None) -> tuple[str, ...]:
    """The bootstrap servers :func:`produce` would use for ``endpoint`` (``None``: the current bus).

    In order: ``endpoint``; the bus set by :func:`using_event_bus` (the
    event-step actor sets it around ``process_event``); ``event_bus.endpoint``
    of the current configuration; ``$KAFKA_BOOTSTRAP_SERVERS``.
    """
    if endpoint is not None:
        return bootstrap_servers(endpoint)
    current = _current.get()
    if current is not None:
        return current
    configured = current_config().settings.event_bus.endpoint
    if configured:
        return bootstrap_servers(configured)
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return bootstrap_servers(env)
    raise EventBusError(
        "no event bus to produce to: set event_bus.endpoint in the config, "
        "pass endpoint=..., or set KAFKA_BOOTSTRAP_SERVERS"
    )


def _producer(servers: tuple[str, ...]) -> Any:
    with _lock:
        producer = _producers.get(servers)
        if producer is None:
            producer = new_producer(bootstrap_servers=list(servers), acks="all", client_id="actors.produce")
            _producers[servers] = producer
        return producer


def _encode(value: Any, what: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if what == "value" and isinstance(value, dict | list | int | float | bool):
        return json.dumps(value).encode("utf-8")
    if what == "key" and isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode("ascii")
    raise TypeError(
        f"produce: {what} must be bytes, str or None (a value may also be a dict, list or number: JSON),"
        f" got {value!r}"
    )


def _headers(headers: Headers | None) -> list[tuple[str, bytes]] | None:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name), _encode(value, "header") or b"") for name, value in items]


def produce(
    topic: str,
    key: bytes | str | int | None = None,
    value: Any = None,
    *,
    headers: Headers | None = None,
    endpoint: Any = None,
    wait: bool = True,
    timeout: float = 10.0,
) -> Any:
    """Publish one record to ``topic`` on the synchronizer's event bus.

    ``key`` and ``value``: ``bytes``, ``str`` (UTF-8), or ``None``; a ``value``
    that is a ``dict``, ``list`` or number is sent as JSON; an ``int`` key as
    its decimal text. ``headers``: a mapping or ``(name, value)`` pairs.
    With ``wait`` (the default) returns kafka-python's ``RecordMetadata``
    (topic, partition, offset) once the broker stored the record, raising
    ``KafkaError`` after ``timeout`` seconds; without, returns the future.
    """
    servers = event_bus_servers(endpoint)
    future = _producer(servers).send(
        topic, key=_encode(key, "key"), value=_encode(value, "value"), headers=_headers(headers)
    )
    if not wait:
        return future
    return future.get(timeout=timeout)


def close_producers(timeout: float = 5.0) -> None:
    """Flush and close every producer :func:`produce` created (a later call creates new ones)."""
    with _lock:
        producers = list(_producers.values())
        _producers.clear()
    for producer in producers:
        with contextlib.suppress(Exception):
            producer.close(timeout=timeout)


atexit.register(close_producers)


def _send_without_waiting(topic: str, key: Any, value: Any) -> Any:
    return produce(topic, key, value, wait=False)


# The compat layer's xoskafka.XOSKafkaProducer publishes through produce (compat cannot import runtime).
set_event_producer(_send_without_waiting)
