"""Loading a configuration: the file, environment overrides, validation, warnings."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from ._config import Config, plain
from ._env import apply_env
from ._errors import ConfigError, describe
from ._model import Settings
from ._reader import read_yaml
from ._validate import validate

log = logging.getLogger("actors.config")


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
    settings = prepare(raw, path=shown, base_dir=file.parent, env=os.environ if env is None else env)
    return Config(settings, base_dir=file.parent, path=file)


def load_config_or_exit(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Like :func:`load_config`, but on error print ``error: <message>`` to stderr and exit with status 2."""
    try:
        return load_config(path, env)
    except ConfigError as exc:
        _exit(exc)


def _exit(exc: ConfigError) -> NoReturn:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def prepare(raw: Any, *, path: str | None, base_dir: Path, env: Mapping[str, str] | None) -> Settings:
    """Turn *raw* (the parsed file or a mapping) into resolved :class:`Settings`.

    Steps: environment overrides; validation against the model, with paths
    resolved against *base_dir*; one warning per original-framework key given.

    Raises:
        ConfigError: for the first problem found.
    """
    if not isinstance(raw, Mapping):
        got = "an empty document" if raw is None else describe(raw)
        raise ConfigError(
            f"expected a mapping of configuration keys at the top level, got {got}",
            path=path,
            expected="a mapping of configuration keys",
        )
    data: dict[str, Any] = plain(raw)
    sources = apply_env(data, env, path=path) if env else {}
    settings = validate(data, path=path, base_dir=base_dir, sources=sources)
    for key, info in Settings.model_fields.items():
        why = (info.json_schema_extra or {}).get("x-original")  # type: ignore[union-attr]
        if why is not None and key in data:
            where = f"{path}: " if path else ""
            log.warning("%s%s: a key of the original framework, accepted and ignored: %s", where, key, why)
    return settings
