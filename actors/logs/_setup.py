"""Applying a dictConfig: once per distinct configuration, with our defaults added."""

from __future__ import annotations

import json
import logging
import logging.config
import threading
from collections.abc import Mapping
from typing import Any

import structlog

from actors._logging_default import DEFAULT_LOGGING as _DEFAULT_LOGGING
from actors.logs._events import _NOTHING, _PROCESSORS
from actors.logs._logger import BoundLogger, get_logger
from actors.logs._render import ConsoleFormatter

_lock = threading.Lock()
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
