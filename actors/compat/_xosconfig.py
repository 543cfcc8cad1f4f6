"""``xosconfig.Config`` and ``multistructlog.create_logger`` as the original's code calls them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from actors.config import current_config, load_config, set_default_config
from actors.logs import BoundLogger
from actors.logs import create_logger as _create_logger

__all__ = ["XOSConfig", "create_logger"]


class XOSConfig:
    """The original's ``Config``: every method works on the class and on an instance.

    ``Config.get("event_bus.endpoint")`` and ``Config().get("logging")`` read the
    current configuration (:func:`actors.config.current_config`): inside
    ``actors.compat.activated`` the synchronizer's own.
    """

    @staticmethod
    def get(key: str, default: Any = None) -> Any:
        """The value of ``key`` (dots for nested keys), or ``default`` (``None``) if not set."""
        return current_config().get(key, default)

    @staticmethod
    def init(config_file: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        """Load ``config_file`` and make it the process-wide default configuration.

        The original's further arguments (a schema file, an override file) are
        accepted and ignored: the configuration is checked against our schema.
        Inside ``activated`` the synchronizer's configuration still takes precedence.
        """
        set_default_config(load_config(config_file))

    @staticmethod
    def clear() -> None:
        """Forget the configuration set by :meth:`init`."""
        set_default_config(None)

    @staticmethod
    def get_config_file() -> str | None:
        """The path of the current configuration file (``None`` if it was not read from a file)."""
        path = current_config().path
        return os.fspath(path) if path is not None else None


def create_logger(
    _config: Mapping[str, Any] | None = None,
    extra_processors: Iterable[Any] = (),
    force_create: bool = False,
    level: Any = None,
) -> BoundLogger:
    """The original ``multistructlog.create_logger``: a structured logger.

    ``_config`` is a logging dictConfig (``Config().get("logging")``), applied
    once (see :func:`actors.logs.create_logger`). The logger is named after the
    current synchronizer. ``extra_processors``, ``force_create`` and ``level``
    are accepted for compatibility and ignored: set levels in the dictConfig.
    """
    return _create_logger(_config, name=current_config().name)
