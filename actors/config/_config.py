"""The ``Config`` value (typed :class:`Settings` plus a dotted ``get`` for the XOS shim), and loading one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from pydantic_core import PydanticCustomError

from ._checks import read_graph
from ._env import apply_env
from ._errors import ConfigError, describe
from ._model import Settings
from ._reader import read_yaml
from ._validate import from_problem, validate

_MISSING: Any = object()


class Config:
    """A validated synchronizer configuration, with defaults merged in.

    Build one with :func:`~actors.config.load_config` (from a YAML file) or
    :meth:`Config.from_dict`. Code reads its typed sections from :attr:`settings`
    (``cfg.settings.event_bus.endpoint``); :meth:`get` reads a dotted key, for the
    XOS ``Config.get`` and user code. It is read-only: :meth:`get` and
    :meth:`as_dict` return copies. Paths in it are absolute.
    """

    __slots__ = ("_base_dir", "_data", "_graph", "_path", "_settings")

    def __init__(
        self,
        settings: Settings,
        *,
        base_dir: str | os.PathLike[str],
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Wrap *settings*, which must already be resolved against *base_dir*.

        Code should use :func:`~actors.config.load_config` or :meth:`from_dict`,
        which do that work.
        """
        self._settings = settings
        self._data: dict[str, Any] = settings.model_dump(exclude_none=True)
        self._base_dir = Path(base_dir)
        self._path = Path(path) if path is not None else None
        self._graph: dict[str, list[list[str]]] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> Config:
        """Build a configuration from a mapping, with the same checks as a file.

        Args:
            data: The configuration keys, as they would appear in the YAML file.
            base_dir: The folder relative paths are resolved against (default: the
                current working folder). Environment overrides are not applied.

        Raises:
            ConfigError: if *data* is not a valid configuration.
        """
        base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
        return cls(prepare(data, path=None, base_dir=base, env=None), base_dir=base)

    @property
    def settings(self) -> Settings:
        """The typed configuration: its sections (``event_bus``, ``runtime``, ``api``...) and keys."""
        return self._settings

    @property
    def path(self) -> Path | None:
        """The absolute path of the configuration file (``None`` if built from a mapping)."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """The folder relative paths were resolved against (the file's folder)."""
        return self._base_dir

    @property
    def name(self) -> str:
        """The synchronizer name (also the Kafka consumer group id)."""
        return self._settings.name

    @property
    def dependency_graph(self) -> dict[str, list[list[str]]]:
        """The model dependency graph, read from its file if ``dependency_graph`` is a path.

        ``{}`` when no graph is configured. Raises :class:`ConfigError` if the file
        became unreadable or invalid since the configuration was loaded.
        """
        if self._graph is None:
            value = self._settings.dependency_graph
            if isinstance(value, str):
                try:
                    self._graph = read_graph(value)
                except PydanticCustomError as exc:
                    shown = os.fspath(self._path) if self._path is not None else None
                    raise from_problem(exc, ("dependency_graph",), path=shown) from None
            else:
                self._graph = value or {}
        graph: dict[str, list[list[str]]] = plain(self._graph)
        return graph

    def get(self, key: str, default: Any = None) -> Any:
        """The value of *key*, or *default* if it is not set.

        Nested keys are joined with dots (``"event_bus.endpoint"``); list items
        are addressed by index (``"api.users.0.username"``); a key that itself
        contains dots (a logger name under ``logging``) is found too. Mappings
        and lists are returned as copies.
        """
        value = _lookup(self._data, key.split("."))
        return default if value is _MISSING else plain(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _lookup(self._data, key.split(".")) is not _MISSING

    def as_dict(self) -> dict[str, Any]:
        """The whole configuration as a (copied) nested mapping."""
        data: dict[str, Any] = plain(self._data)
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (self._data, self._path, self._base_dir) == (other._data, other._path, other._base_dir)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        where = f"path={os.fspath(self._path)!r}" if self._path else f"base_dir={os.fspath(self._base_dir)!r}"
        return f"Config(name={self._data.get('name')!r}, {where})"


def plain(value: Any) -> Any:
    """A deep copy made of dicts and lists only (tuples and other mappings converted)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _lookup(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    if isinstance(node, Mapping):
        # Longest match first, so keys containing dots ("actors.runtime") work.
        for size in range(len(parts), 0, -1):
            candidate = ".".join(parts[:size])
            if candidate in node:
                found = _lookup(node[candidate], parts[size:])
                if found is not _MISSING:
                    return found
        return _MISSING
    if isinstance(node, list) and parts[0].isdigit():
        index = int(parts[0])
        return _lookup(node[index], parts[1:]) if index < len(node) else _MISSING
    return _MISSING


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
