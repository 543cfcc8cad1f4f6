"""Holding records back until logging is configured, and collecting events for tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def held_records(name: str = "actors") -> Iterator[list[logging.LogRecord]]:
    """Hold the records of logger *name* (and below) back; re-log them when the block ends.

    For events logged before the logging configuration is known (the warnings of
    ``load_config`` about the very file that holds it): configure logging inside
    the block, and the held records then go through the configured handlers (those
    the configured levels let through). Yields the list of held records.
    """
    logger = logging.getLogger(name)
    held: list[logging.LogRecord] = []
    holder = _Appender(held)
    propagate = logger.propagate
    logger.addHandler(holder)
    logger.propagate = False
    try:
        yield held
    finally:
        logger.removeHandler(holder)
        logger.propagate = propagate
        for record in held:
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)


@contextmanager
def capture_logs(name: str = "actors", level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Collect the events of logger *name* (and below) as dicts, for tests.

    Like ``structlog.testing.capture_logs`` for the loggers of :func:`get_logger`:
    each entry has ``event``, ``log_level`` (``"info"``...), ``logger`` and the
    context. The logger's level is lowered to *level* inside the block; the
    events still reach the configured handlers too.
    """
    logger = logging.getLogger(name)
    captured: list[dict[str, Any]] = []
    collector = _Appender(captured, _as_event)
    previous = logger.level
    logger.addHandler(collector)
    logger.setLevel(level)
    try:
        yield captured
    finally:
        logger.removeHandler(collector)
        logger.setLevel(previous)


class _Appender(logging.Handler):
    """Appends every record it handles, passed through *convert*, to a list."""

    def __init__(self, into: list[Any], convert: Any = None) -> None:
        super().__init__()
        self.into = into
        self.convert = convert

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record if self.convert is None else self.convert(record))


def _as_event(record: logging.LogRecord) -> dict[str, Any]:
    """A record as ``capture_logs`` returns it: the event dict, ``log_level``, ``logger``."""
    message = record.msg
    entry = dict(message) if isinstance(message, dict) else {"event": record.getMessage()}
    entry.pop("_from_structlog", None)
    entry.pop("_record", None)
    entry["log_level"] = record.levelname.lower()
    entry.setdefault("logger", record.name)
    return entry
