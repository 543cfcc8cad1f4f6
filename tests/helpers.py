"""Small helpers shared by the tests: waiting on a condition, picking free ports, reading a topic."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# The port helpers live with the local servers (scripts/), which the tests use anyway.
_SCRIPTS = str(Path(__file__).resolve().parent.parent / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.append(_SCRIPTS)
from _local_server import free_port, free_ports  # noqa: E402 - needs _SCRIPTS on sys.path

__all__ = ["free_port", "free_ports", "read_topic", "wait_for"]

T = TypeVar("T")


#: The default deadline of :func:`wait_for`: a condition that holds returns at once, and on a
#: loaded 2-core CI machine a step, a subprocess or a broker round trip can take many seconds.
WAIT_TIMEOUT = 30.0


def wait_for(
    condition: Callable[[], T],
    timeout: float = WAIT_TIMEOUT,
    interval: float = 0.05,
    description: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that value.

    Polls every ``interval`` seconds for at most ``timeout`` seconds (the condition is
    always tried at least once, and once more at the deadline). On timeout it raises
    ``AssertionError`` naming ``description`` (default: the condition's name), the last
    value it returned and the last exception it raised. Exceptions of the types in
    ``ignore`` count as "not yet"; any other exception propagates at once.
    """
    what = description or getattr(condition, "__qualname__", None) or repr(condition)
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_error: BaseException | None = None
    while True:
        at_deadline = time.monotonic() >= deadline
        try:
            value = condition()
        except ignore as exc:
            last_error = exc
        else:
            if value:
                return value
            last_value = value
        if at_deadline:
            break
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
    message = f"timed out after {timeout:g}s waiting for {what}; last value: {last_value!r}"
    if last_error is not None:
        message += f"; last error: {last_error!r}"
    raise AssertionError(message)


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[Any]:
    """The first ``count`` records of ``topic`` (from the earliest offset), read by a fresh consumer."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.subscribe([topic])
    records: list[Any] = []
    try:

        def enough() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= count

        wait_for(enough, timeout=timeout, description=f"{count} records on {topic}")
    finally:
        consumer.close(autocommit=False)
    return records
