"""The default logging dictConfig: the `logging` default of actors.config and the default of actors.logs."""

from typing import Any

#: Readable lines on stderr, level INFO: used when the configuration gives no ``logging``.
DEFAULT_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"()": "actors.logs.ConsoleFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console", "stream": "ext://sys.stderr"}
    },
    "root": {"level": "INFO", "handlers": ["console"]},
}
