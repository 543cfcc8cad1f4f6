"""Synchronizer configuration: a YAML file validated by one typed model (pydantic).

Load a file with :func:`load_config` (or :func:`load_config_or_exit` in a
command-line entry point); code reads its typed sections from
``Config.settings`` (:class:`Settings`: ``settings.event_bus``,
``settings.runtime``...), the XOS shim and user code read dotted keys with
:meth:`Config.get` (``cfg.get("event_bus.endpoint")``). ``ACTORS_<KEY>``
environment variables override keys (``ACTORS_HTTP__ADDRESS``). Every problem
raises :class:`ConfigError`. See ``docs/configuration.md`` for the keys.

This package is the lowest layer: it imports no other ``actors`` module.
"""

from ._config import Config, load_config, load_config_or_exit
from ._current import current_config, set_default_config, use_config
from ._env import PREFIX as ENV_PREFIX
from ._errors import ConfigError
from ._model import (
    Accessor,
    Api,
    ApiUser,
    EventBus,
    Http,
    Runtime,
    Settings,
    StepOverrides,
    Store,
    Tls,
    config_schema,
    default_values,
)
from ._validate import validate_section

__all__ = [
    "ENV_PREFIX",
    "Accessor",
    "Api",
    "ApiUser",
    "Config",
    "ConfigError",
    "EventBus",
    "Http",
    "Runtime",
    "Settings",
    "StepOverrides",
    "Store",
    "Tls",
    "config_schema",
    "current_config",
    "default_values",
    "load_config",
    "load_config_or_exit",
    "set_default_config",
    "use_config",
    "validate_section",
]
