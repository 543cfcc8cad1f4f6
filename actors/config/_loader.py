"""Loading a configuration file."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from ._config import Config
from ._errors import ConfigError
from ._prepare import prepare
from ._reader import read_yaml

__all__ = ["load_config", "load_config_or_exit"]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load, check and complete the YAML configuration file at *path*.

    Args:
        path: The configuration file. Relative paths inside it are resolved
            against its folder.
        env: Where to read ``ACTORS_<KEY>`` overrides from (default:
            ``os.environ``; pass ``{}`` to ignore the environment).

    Raises:
        ConfigError: for a missing or unreadable file, a YAML syntax error, or a
            configuration that is invalid (wrong type, unknown or missing key,
            missing folder or password file, ...).
    """
    shown = os.fspath(path)
    file = Path(os.path.abspath(shown))
    raw = read_yaml(shown)
    data = prepare(raw, path=shown, base_dir=file.parent, env=os.environ if env is None else env)
    return Config(data, base_dir=file.parent, path=file)


def load_config_or_exit(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Like :func:`load_config`, but on error print ``error: <message>`` to stderr and exit with status 2."""
    try:
        return load_config(path, env)
    except ConfigError as exc:
        _exit(exc)


def _exit(exc: ConfigError) -> NoReturn:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
