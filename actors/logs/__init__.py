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

The package is split by job: ``_events`` builds the event dicts, ``_logger`` holds
:class:`BoundLogger`, ``_render`` the formatters, ``_setup`` applies dictConfigs and
``_capture`` holds and collects records. It is the lowest layer: it imports no other
``actors`` module but the default dictConfig it shares with :mod:`actors.config`
(:mod:`actors._logging_default`).
"""

from actors.logs._capture import capture_logs, held_records
from actors.logs._logger import BoundLogger, get_logger, traceback_if_debug
from actors.logs._render import ConsoleFormatter, JSONFormatter
from actors.logs._setup import configure_logging, create_logger, default_logging_config

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
