"""Structured logging: structlog loggers that write through the standard library.

:func:`create_logger` applies a Python logging dictConfig (once per distinct
configuration) and returns a :class:`BoundLogger` that takes key-value context::

    log = create_logger(Config().get("logging"))
    log.info("sync'ing object", object=str(o), **o.tologdict())
    log = log.bind(step="SyncMyModel")

Events go through :mod:`logging`, so the dictConfig's handlers, levels and
filters apply. Render them with :class:`ConsoleFormatter` (readable lines) or
:class:`JSONFormatter` (one JSON object per line) in the dictConfig's
``formatters``. The framework's own modules take their loggers from
:func:`get_logger` (which configures nothing); :func:`configure_logging` applies a
configuration fully, ``structlog.get_logger()`` included. See ``docs/logging.md``.

This module is the lowest layer: it imports no other ``actors`` module but the default
dictConfig it shares with :mod:`actors.config` (:mod:`actors._logging_default`).
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import logging.config
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

import structlog
from structlog.exceptions import DropEvent
from structlog.typing import EventDict, Processor, WrappedLogger

from actors._logging_default import DEFAULT_LOGGING as _DEFAULT_LOGGING

__all__ = [
    "BoundLogger",
    "ConsoleFormatter",
    "JSONFormatter",
    "capture_logs",
    "configure_logging",
    "create_logger",
    "default_logging_config",
    "get_logger",
    "held_records",
    "traceback_if_debug",
]

# Keys the processors set: a context value under one of these names is kept
# under the name with "_" appended instead of being overwritten.
_RESERVED = ("event", "level", "logger", "timestamp", "_record", "_from_structlog")
_RESERVED_SET = frozenset(_RESERVED)
# Keys a log call sets itself (the message, %-format arguments).
_CALL_RESERVED = ("event", "positional_args")
# Keys not repeated as key=value when an event is shown by a plain formatter.
_META = frozenset({"event", "level", "logger", "timestamp", "exc_info", "stack_info"})

_lock = threading.Lock()
_NOTHING = object()
_applied: object = _NOTHING  # the key of the dictConfig applied last


def default_logging_config() -> dict[str, Any]:
    """A copy of the default dictConfig: readable lines on stderr, level INFO."""
    copied: dict[str, Any] = _copy(_DEFAULT_LOGGING)
    return copied


def create_logger(logging_config: Mapping[str, Any] | None = None, name: str = "actors") -> BoundLogger:
    """Apply *logging_config* and return a structured logger named *name*.

    Args:
        logging_config: A :func:`logging.config.dictConfig` mapping. It is applied
            only if it differs from the one applied last, so every module may call
            ``create_logger(Config().get("logging"))`` at import time without
            duplicating handlers. Handlers without a formatter get
            :class:`ConsoleFormatter`; ``disable_existing_loggers`` defaults to
            false. With ``None``, the logging set-up is left alone, unless nothing
            configured logging yet: then the default (console, INFO) is applied.
        name: The name of the standard library logger the events go to.

    Returns:
        A :class:`BoundLogger` without context.

    Raises:
        ValueError: the dictConfig is invalid (raised by the standard library).
    """
    _apply(logging_config)
    return get_logger(name)


def get_logger(name: str = "actors") -> BoundLogger:
    """A structured logger for the standard library logger *name*; the logging set-up is not touched.

    The framework's modules call it at import time: their events go to whatever
    handlers are configured when each event is logged. A level that is not
    enabled costs one :meth:`logging.Logger.isEnabledFor` call.
    """
    return BoundLogger(logging.getLogger(name), _PROCESSORS, {})


def configure_logging(logging_config: Mapping[str, Any] | None = None) -> None:
    """Apply *logging_config* (``None``: the default) to the whole process, structlog included.

    The dictConfig is applied as by :func:`create_logger` (once per distinct
    configuration), and structlog is configured so that ``structlog.get_logger()``
    hands its events to the standard library too, with the processors of
    :func:`get_logger`: every handler then formats every event, whoever logged it.
    The main job and ``core`` call it before anything else logs; an embedded
    :class:`~actors.runtime.Synchronizer` only with ``configure_logging=True``.

    Raises:
        ValueError: the dictConfig is invalid (raised by the standard library).
    """
    _apply(_DEFAULT_LOGGING if logging_config is None else logging_config)
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        context_class=dict,
        cache_logger_on_first_use=False,
    )


def traceback_if_debug(log: structlog.stdlib.BoundLogger, exc: BaseException) -> BaseException | None:
    """*exc* when *log* is enabled for DEBUG, else ``None``: pass it as ``exc_info=``.

    A failure line then carries its traceback only when debugging is on
    (``log.warning("sync failed", error=..., exc_info=traceback_if_debug(log, exc))``).
    """
    return exc if log.isEnabledFor(logging.DEBUG) else None


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


class BoundLogger(structlog.stdlib.BoundLogger):
    """A structlog standard library logger with key-value context.

    Compared with :class:`structlog.stdlib.BoundLogger`: :meth:`new` exists and
    does not touch this logger's context, and any key can be passed as context
    (``event=``, ``level=``, ``self=``...): keys the processors use themselves are
    kept with ``_`` appended instead of clashing.
    """

    def new(self, /, **new_values: Any) -> Self:
        """Return a logger with only *new_values* as context (this one is unchanged)."""
        return self.__class__(self._logger, self._processors, {}).bind(**new_values)

    def bind(self, /, **new_values: Any) -> Self:
        """Return a logger with *new_values* added to this one's context."""
        context = {**self._context, **_renamed(new_values, _CALL_RESERVED)}
        return self.__class__(self._logger, self._processors, context)

    def _proxy_to_logger(self, /, *args: Any, **kw: Any) -> Any:
        """``_proxy_to_logger(method_name, event=None, *format_args, **context)``."""
        method_name, *rest = args
        return self._emit(method_name, tuple(rest), kw, 3)

    def _emit(self, method_name: str, args: tuple[Any, ...], kw: dict[str, Any], depth: int = 2) -> Any:
        """Log *args* / *kw* with *method_name*; *depth*: frames from here up to the caller to name."""
        logger = self._logger
        level = _LEVELS.get(method_name)
        if level is not None and not logger.isEnabledFor(level):
            return None
        event, *format_args = args or (None,)
        if _CALL_RESERVED[0] in kw or _CALL_RESERVED[1] in kw:
            kw = _renamed(kw, _CALL_RESERVED)
        if format_args:
            kw["positional_args"] = tuple(format_args)
        if (
            self._processors is _PROCESSORS
            and level is not None
            and type(logger) in _PLAIN_LOGGERS
            and logging.getLogRecordFactory() is logging.LogRecord
        ):
            event_dict = _event_dict(logger, method_name, self._context, event, kw)
            return _handle(logger, level, method_name, event_dict, depth)
        try:
            out_args, out_kw = self._process_event(method_name, event, kw)
            # the record names the caller of info()/log()/..., not this module
            return getattr(self._logger, method_name)(*out_args, stacklevel=depth + 1, **out_kw)
        except DropEvent:
            return None

    # The level methods are ``method(event, *format_args, **context)``. They take
    # ``*args`` so that no context key (``event=``, ``self=``...) can collide with
    # a parameter name.

    def debug(self, /, *args: Any, **kw: Any) -> Any:
        """``debug(event, *format_args, **context)``: log *event* at level DEBUG."""
        return self._emit("debug", args, kw)

    def info(self, /, *args: Any, **kw: Any) -> Any:
        """``info(event, *format_args, **context)``: log *event* at level INFO."""
        return self._emit("info", args, kw)

    def warning(self, /, *args: Any, **kw: Any) -> Any:
        """``warning(event, *format_args, **context)``: log *event* at level WARNING."""
        return self._emit("warning", args, kw)

    warn = warning

    def error(self, /, *args: Any, **kw: Any) -> Any:
        """``error(event, *format_args, **context)``: log *event* at level ERROR."""
        return self._emit("error", args, kw)

    def critical(self, /, *args: Any, **kw: Any) -> Any:
        """``critical(event, *format_args, **context)``: log *event* at level CRITICAL."""
        return self._emit("critical", args, kw)

    fatal = critical

    def exception(self, /, *args: Any, **kw: Any) -> Any:
        """``exception(event, *format_args, **context)``: log at level ERROR with the current exception."""
        kw.setdefault("exc_info", True)
        return self._emit("exception", args, kw)

    def log(self, /, *args: Any, **kw: Any) -> Any:
        """``log(level, event, *format_args, **context)``: log *event* at the numeric *level*."""
        level, *rest = args
        return self._emit(_method_for(level), tuple(rest), kw)

    async def _run_async(self, meth: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        event, *rest = args
        await self._dispatch_to_sync(meth, event, tuple(rest), kw)

    async def adebug(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`debug`, from a thread pool."""
        await self._run_async(self.debug, args, kw)

    async def ainfo(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`info`, from a thread pool."""
        await self._run_async(self.info, args, kw)

    async def awarning(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`warning`, from a thread pool."""
        await self._run_async(self.warning, args, kw)

    async def aerror(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`error`, from a thread pool."""
        await self._run_async(self.error, args, kw)

    async def acritical(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`critical`, from a thread pool."""
        await self._run_async(self.critical, args, kw)

    afatal = acritical

    async def aexception(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`exception`, from a thread pool."""
        if kw.get("exc_info", True) is True:
            kw["exc_info"] = sys.exc_info()
        await self._run_async(self.exception, args, kw)

    async def alog(self, /, *args: Any, **kw: Any) -> None:
        """Like :meth:`log`, from a thread pool."""
        level, *rest = args
        await self._run_async(functools.partial(self.log, level), tuple(rest), kw)


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


def _record_time(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Foreign pre-chain processor: the timestamp of the stdlib record, as ISO 8601 UTC."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        event_dict["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return event_dict


def _leading_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: put timestamp, level, logger and event first (for JSON lines)."""
    lead = {k: event_dict.pop(k) for k in ("timestamp", "level", "logger", "event") if k in event_dict}
    return {**lead, **event_dict}


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
# The keys a JSON line starts with.
_LEAD = ("timestamp", "level", "logger", "event")


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


_FOREIGN_PRE_CHAIN: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.ExtraAdder(),
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _record_time,
]


def _apply(logging_config: Mapping[str, Any] | None) -> None:
    global _applied
    with _lock:
        if logging_config is None:
            if _applied is _NOTHING and not logging.getLogger().handlers:
                logging.config.dictConfig(_prepared(_DEFAULT_LOGGING))
                _applied = _key(_DEFAULT_LOGGING)
            return
        key = _key(logging_config)
        if key is not _NOTHING and key == _applied:
            return
        logging.config.dictConfig(_prepared(logging_config))
        _applied = key


def _key(logging_config: Mapping[str, Any]) -> object:
    """A comparable form of a dictConfig (objects in it, such as streams, by identity)."""
    try:
        return json.dumps(logging_config, sort_keys=True, default=_by_identity)
    except (TypeError, ValueError):
        return _NOTHING


def _by_identity(value: object) -> str:
    return f"<{type(value).__name__} {id(value):#x}>"


def _prepared(logging_config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy for dictConfig (which modifies what it is given), with our defaults added."""
    config: dict[str, Any] = _copy(logging_config)
    config.setdefault("disable_existing_loggers", False)
    handlers = config.get("handlers")
    if not config.get("incremental") and isinstance(handlers, dict):
        bare = [h for h in handlers.values() if isinstance(h, dict) and not h.get("formatter")]
        if bare:
            formatters = config.setdefault("formatters", {})
            name = "actors_console"
            while name in formatters:
                name += "_"
            formatters[name] = {"()": ConsoleFormatter}
            for handler in bare:
                handler["formatter"] = name
    return config


def _copy(value: Any) -> Any:
    """Copy the mappings and lists of a dictConfig; keep other objects (streams...) as they are."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value
