"""The formatters: readable lines and JSON lines, events of our loggers rendered directly."""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from actors.logs._events import _NOTHING, _EventDict

# The keys a JSON line starts with.
_LEAD = ("timestamp", "level", "logger", "event")


def _record_time(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Foreign pre-chain processor: the timestamp of the stdlib record, as ISO 8601 UTC."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        event_dict["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return event_dict


def _leading_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: put timestamp, level, logger and event first (for JSON lines)."""
    lead = {k: event_dict.pop(k) for k in _LEAD if k in event_dict}
    return {**lead, **event_dict}


_FOREIGN_PRE_CHAIN: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.ExtraAdder(),
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _record_time,
]


class ConsoleFormatter(structlog.stdlib.ProcessorFormatter):
    """Renders events as readable lines: ``<time> [<level>] <event> [<logger>] key=value ...``.

    Use it in a dictConfig: ``{"()": "actors.logs.ConsoleFormatter"}``; add
    ``"colors": true`` for ANSI colours. Records from plain standard library
    loggers are rendered the same way.
    """

    def __init__(self, *, colors: bool = False, sort_keys: bool = False, **kwargs: Any) -> None:
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors,
            sort_keys=sort_keys,
            exception_formatter=structlog.dev.plain_traceback,
        )
        super().__init__(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=_FOREIGN_PRE_CHAIN,
            **kwargs,
        )
        self._plain = None if colors else _PlainConsole(renderer, sort_keys)
        self._fast = _direct(self)

    def format(self, record: logging.LogRecord) -> str:
        """The line of *record*; events of this module's loggers are rendered directly (same text)."""
        message = record.msg
        if self._plain is not None and type(message) is _EventDict and self._fast:
            text = self._plain(message)
            if text is not None:
                return text
        return super().format(record)


class JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """Renders events as one JSON object per line.

    The keys are ``event``, ``level``, ``logger``, ``timestamp`` (ISO 8601, UTC),
    the context, and ``exception`` (the formatted traceback) when there is one.
    Use it in a dictConfig: ``{"()": "actors.logs.JSONFormatter"}``; add
    ``"sort_keys": true`` for sorted keys.
    """

    def __init__(self, *, sort_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _leading_keys,
                structlog.processors.JSONRenderer(sort_keys=sort_keys, default=repr),
            ],
            foreign_pre_chain=_FOREIGN_PRE_CHAIN,
            **kwargs,
        )
        self._sort_keys = sort_keys
        self._fast = _direct(self)

    def format(self, record: logging.LogRecord) -> str:
        """The line of *record*; events of this module's loggers are rendered directly (same text)."""
        message = record.msg
        if type(message) is _EventDict and self._fast and "exc_info" not in message:
            lead = {k: message[k] for k in _LEAD if k in message}
            return json.dumps({**lead, **message}, sort_keys=self._sort_keys, default=repr)
        return super().format(record)


# Strings holding one of these are shown quoted (repr) by ConsoleRenderer, other strings bare.
_QUOTED = frozenset(" \t=\r\n\"'")


class _PlainConsole:
    """ConsoleRenderer's text without colours, for events without a traceback or a stack, quicker."""

    def __init__(self, renderer: structlog.dev.ConsoleRenderer, sort_keys: bool) -> None:
        self.level_width = len(renderer(None, "info", {"level": ""})) - 2
        self.event_width = len(renderer(None, "info", {"event": "", "logger": "x"})) - len(" [x]")
        self.sort_keys = sort_keys

    def __call__(self, message: Mapping[str, Any]) -> str | None:
        """The line of *message*, or ``None`` when it has an exception or a stack to show."""
        if "exc_info" in message or "exception" in message or "stack" in message:
            return None
        rest = dict(message)
        parts: list[str] = []
        value = rest.pop("timestamp", _NOTHING)
        if value is not _NOTHING:
            parts.append(str(value))
        value = rest.pop("level", _NOTHING)
        if value is not _NOTHING:
            parts.append(f"[{str(value).ljust(self.level_width)}]")
        value = rest.pop("event", _NOTHING)
        if value is not _NOTHING:
            parts.append(str(value).ljust(self.event_width))
        for key in ("logger", "logger_name"):
            value = rest.pop(key, _NOTHING)
            if value is not _NOTHING:
                parts.append(f"[{value}]")
        for key in sorted(rest) if self.sort_keys else rest:
            value = rest[key]
            if type(value) is str:
                parts.append(f"{key}={value!r}" if _QUOTED.intersection(value) else f"{key}={value}")
            else:
                parts.append(f"{key}={value!r}")
        return " ".join(p for p in parts if p).rstrip(" ")


def _direct(formatter: logging.Formatter) -> bool:
    """Whether *formatter* (a ProcessorFormatter) adds nothing to its processors' text for our events."""
    processor_formatter: Any = formatter
    return (
        formatter._fmt == formatter._style.default_format
        and processor_formatter.logger is None
        and not processor_formatter.keep_exc_info
        and not processor_formatter.keep_stack_info
    )
