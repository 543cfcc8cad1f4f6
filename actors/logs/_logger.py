"""The structured logger: :class:`BoundLogger` and :func:`get_logger`."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Self

import structlog
from structlog.exceptions import DropEvent

from actors.logs._events import (
    _CALL_RESERVED,
    _LEVELS,
    _PLAIN_LOGGERS,
    _PROCESSORS,
    _event_dict,
    _handle,
    _method_for,
    _renamed,
)


def get_logger(name: str = "actors") -> BoundLogger:
    """A structured logger for the standard library logger *name*; the logging set-up is not touched.

    The framework's modules call it at import time: their events go to whatever
    handlers are configured when each event is logged. A level that is not
    enabled costs one :meth:`logging.Logger.isEnabledFor` call.
    """
    return BoundLogger(logging.getLogger(name), _PROCESSORS, {})


def traceback_if_debug(log: structlog.stdlib.BoundLogger, exc: BaseException) -> BaseException | None:
    """*exc* when *log* is enabled for DEBUG, else ``None``: pass it as ``exc_info=``.

    A failure line then carries its traceback only when debugging is on
    (``log.warning("sync failed", error=..., exc_info=traceback_if_debug(log, exc))``).
    """
    return exc if log.isEnabledFor(logging.DEBUG) else None


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

    def _emit(self, method_name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        """Log *args* / *kw* with *method_name*; the record names the caller of the level method."""
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
            return _handle(logger, level, method_name, event_dict, 2)
        try:
            out_args, out_kw = self._process_event(method_name, event, kw)
            # the record names the caller of info()/log()/..., not this module
            return getattr(self._logger, method_name)(*out_args, stacklevel=3, **out_kw)
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
