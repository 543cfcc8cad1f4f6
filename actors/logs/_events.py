"""The event dicts of the structured loggers: the processors, and the same steps in one call."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Keys the processors set: a context value under one of these names is kept
# under the name with "_" appended instead of being overwritten.
_RESERVED = ("event", "level", "logger", "timestamp", "_record", "_from_structlog")
_RESERVED_SET = frozenset(_RESERVED)
# Keys a log call sets itself (the message, %-format arguments).
_CALL_RESERVED = ("event", "positional_args")
# Keys not repeated as key=value when an event is shown by a plain formatter.
_META = frozenset({"event", "level", "logger", "timestamp", "exc_info", "stack_info"})
_NOTHING = object()


class _EventDict(dict[str, Any]):
    """An event dict as a stdlib record's message.

    :class:`structlog.stdlib.ProcessorFormatter` reads it as a mapping; any other
    formatter (pytest's ``caplog``, a handler configured elsewhere) gets
    ``event key=value ...`` from ``str()``.
    """

    def __str__(self) -> str:
        parts = [str(self.get("event", ""))]
        parts.extend(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in self.items() if k not in _META)
        text = " ".join(p for p in parts if p)
        exc_info = self.get("exc_info")
        if isinstance(exc_info, tuple) and exc_info[0] is not None:
            text += "\n" + logging.Formatter().formatException(exc_info)
        return text


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _method_for(level: int) -> str:
    """The logging method for a numeric level (custom levels: the standard one below)."""
    for threshold, method in ((50, "critical"), (40, "error"), (30, "warning"), (20, "info")):
        if level >= threshold:
            return method
    return "debug"


def _renamed(values: Mapping[str, Any], reserved: tuple[str, ...]) -> dict[str, Any]:
    """A copy of *values* with each *reserved* key moved to the first free name with ``_`` appended."""
    values = dict(values)
    for key in reserved:
        if key in values:
            free = key + "_"
            while free in values:
                free += "_"
            values[free] = values.pop(key)
    return values


def _keep_reserved(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: move context keys the later processors set to ``<key>_``."""
    event = event_dict.pop("event", _NOTHING)
    if not _RESERVED_SET.isdisjoint(event_dict):
        event_dict = _renamed(event_dict, _RESERVED)
    if event is not _NOTHING:
        event_dict["event"] = event
    return event_dict


_POSITIONAL = structlog.stdlib.PositionalArgumentsFormatter()


def _format_positional(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: ``log.info("%d items", 3)``; arguments that do not fit are kept, not raised."""
    try:
        return _POSITIONAL(logger, method_name, event_dict)
    except (TypeError, ValueError, KeyError):
        event_dict["format_args"] = event_dict.pop("positional_args", ())
        return event_dict


def _capture_exc_info(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: turn ``exc_info=True`` (or an exception) into the exception tuple, now."""
    exc_info = event_dict.get("exc_info")
    if isinstance(exc_info, BaseException):
        event_dict["exc_info"] = (type(exc_info), exc_info, exc_info.__traceback__)
    elif exc_info and not isinstance(exc_info, tuple):
        current = sys.exc_info()
        if current[0] is None:
            del event_dict["exc_info"]
        else:
            event_dict["exc_info"] = current
    elif "exc_info" in event_dict and not exc_info:
        del event_dict["exc_info"]
    return event_dict


def _to_stdlib(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Final processor: hand the event dict to the stdlib logger for ProcessorFormatter."""
    args, kwargs = structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method_name, event_dict)
    return (_EventDict(args[0]),), kwargs


_second_text: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def _now_iso() -> str:
    """Now as ISO 8601 UTC, microseconds (none when zero), ``Z``; the date part is formatted once a second."""
    global _second_text
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached, text = _second_text
    if cached != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_text = (second, text)
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


def _timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: ``timestamp``, now, as ISO 8601 UTC (as ``TimeStamper(fmt="iso", utc=True)``)."""
    event_dict["timestamp"] = _now_iso()
    return event_dict


_STACK_INFO = structlog.processors.StackInfoRenderer()

# No level filter: BoundLogger._emit checks the level before building the event.
_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    _keep_reserved,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _timestamp,
    _format_positional,
    _STACK_INFO,
    _capture_exc_info,
    _to_stdlib,
]

# Level names as add_log_level sets them.
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
# The standard library loggers whose log methods do no more than makeRecord() and handle().
_PLAIN_LOGGERS = (logging.Logger, logging.RootLogger, structlog.stdlib._FixedFindCallerLogger)


def _event_dict(
    logger: logging.Logger, method_name: str, context: Mapping[str, Any], event: Any, kw: dict[str, Any]
) -> EventDict:
    """The event dict :data:`_PROCESSORS` make, in one call (their steps that have nothing to do skipped)."""
    event_dict: EventDict = {**context, **kw}
    if event is not None:
        event_dict["event"] = event
    if structlog.contextvars._CONTEXT_VARS:
        event_dict = structlog.contextvars.merge_contextvars(logger, method_name, event_dict)
    event_dict = _keep_reserved(logger, method_name, event_dict)
    event_dict["level"] = _LEVEL_NAMES.get(method_name, method_name)
    event_dict["logger"] = logger.name
    event_dict["timestamp"] = _now_iso()
    if "positional_args" in event_dict:
        event_dict = _format_positional(logger, method_name, event_dict)
    if "stack_info" in event_dict:
        event_dict = _STACK_INFO(logger, method_name, event_dict)
    if "exc_info" in event_dict:
        event_dict = _capture_exc_info(logger, method_name, event_dict)
    return event_dict


def _handle(logger: logging.Logger, level: int, method_name: str, event_dict: EventDict, depth: int) -> None:
    """Log *event_dict* as ``logger.<method_name>(...)`` after :func:`_to_stdlib`, without the frame walk.

    The record names the frame *depth* levels above the caller of this function.
    """
    frame = sys._getframe(1)
    for _ in range(depth):
        frame = frame.f_back or frame
    code = frame.f_code
    record = logger.makeRecord(
        logger.name, level, code.co_filename, frame.f_lineno, _EventDict(event_dict), (), None, code.co_name
    )
    # what ProcessorFormatter.wrap_for_formatter passes as extra=
    record._logger = logger
    record._name = method_name
    logger.handle(record)
