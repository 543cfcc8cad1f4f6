"""Synchronizer configuration: a YAML file validated by one typed pydantic model.

:func:`load_config` reads a file (:func:`load_config_or_exit` in a command-line entry point);
code reads the typed sections of ``Config.settings`` (:class:`Settings`), the XOS shim and user
code dotted keys with :meth:`Config.get`. ``ACTORS_<KEY>`` environment variables override keys
(``ACTORS_HTTP__ADDRESS``). Every problem raises :class:`ConfigError`. The keys:
``docs/configuration.md``. The lowest layer: of ``actors`` it imports only ``_logging_default``.
"""

from ._config import Config, current_config, load_config, load_config_or_exit, set_default_config, use_config
from ._errors import ConfigError, validate_section
from ._model import ApiUser, EventBus, Runtime, Settings, config_schema, default_values

__all__ = [
    "ApiUser",
    "Config",
    "ConfigError",
    "EventBus",
    "Runtime",
    "Settings",
    "config_schema",
    "current_config",
    "default_values",
    "load_config",
    "load_config_or_exit",
    "set_default_config",
    "use_config",
    "validate_section",
]
