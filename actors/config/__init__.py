"""Synchronizer configuration: a YAML file checked against a JSON Schema.

Load a file with :func:`load_config` (or :func:`load_config_or_exit` in a
command-line entry point), read keys with :meth:`Config.get`
(``cfg.get("event_bus.endpoint")``). ``ACTORS_<KEY>`` environment variables
override keys. Every problem raises :class:`ConfigError`. See
``docs/configuration.md`` for the keys.

This package is the lowest layer: it imports no other ``actors`` module.
"""

from ._config import Config
from ._current import current_config, set_default_config, use_config
from ._env import PREFIX as ENV_PREFIX
from ._errors import ConfigError
from ._loader import load_config, load_config_or_exit
from ._schema import config_schema, default_values

__all__ = [
    "ENV_PREFIX",
    "Config",
    "ConfigError",
    "config_schema",
    "current_config",
    "default_values",
    "load_config",
    "load_config_or_exit",
    "set_default_config",
    "use_config",
]
