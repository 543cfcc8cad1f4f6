"""The ``Config`` value (typed :class:`Settings` plus a dotted ``get`` for the XOS shim), and loading one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_core import PydanticCustomError

from ._checks import read_graph
from ._env import apply_env
from ._errors import ConfigError, describe
from ._model import Settings
from ._reader import read_yaml
from ._validate import from_problem, validate_section

_MISSING: Any = object()
log = logging.getLogger("actors.config")


class Config:
    """A validated, read-only synchronizer configuration, defaults merged in and paths absolute.

    Code reads the typed sections from :attr:`settings`; :meth:`get` reads a dotted key
    (for the XOS ``Config.get`` and user code). :meth:`get` and :meth:`as_dict` return copies.
    """

    __slots__ = ("_base_dir", "_data", "_graph", "_path", "_settings")

    def __init__(
        self,
        settings: Settings,
        *,
        base_dir: str | os.PathLike[str],
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Wrap *settings*, resolved against *base_dir* (use :func:`load_config` or :meth:`from_dict`)."""
        self._settings = settings
        self._data: dict[str, Any] = settings.model_dump(exclude_none=True)
        self._base_dir = Path(base_dir)
        self._path = Path(path) if path is not None else None
        self._graph: dict[str, list[list[str]]] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> Config:
        """A configuration from a mapping, checked as a file is; relative paths against *base_dir*
        (default: the working folder); no environment overrides. Raises :class:`ConfigError`."""
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
        """The model dependency graph (``{}`` if none), read from its file if it is a path.

        Raises :class:`ConfigError` if the file became unreadable or invalid since loading.
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
        """The value (a copy) of the dotted *key* (``"event_bus.endpoint"``, ``"api.users.0.role"``; a
        key containing dots, such as a logger name under ``logging``, is found too), else *default*."""
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


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load, check and complete the YAML file at *path* (relative paths in it: against its folder).

    *env* holds the ``ACTORS_<KEY>`` overrides (default ``os.environ``; ``{}`` ignores the
    environment). Raises :class:`ConfigError` for any problem with the file or its content.
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
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def prepare(raw: Any, *, path: str | None, base_dir: Path, env: Mapping[str, str] | None) -> Settings:
    """*raw* (the parsed file or a mapping) with *env* overrides applied, validated and resolved
    against *base_dir*; one warning per original-framework key given. Raises :class:`ConfigError`."""
    if not isinstance(raw, Mapping):
        got = "an empty document" if raw is None else describe(raw)
        raise ConfigError(
            f"expected a mapping of configuration keys at the top level, got {got}",
            path=path,
            expected="a mapping of configuration keys",
        )
    data: dict[str, Any] = plain(raw)
    sources = apply_env(data, env, path=path) if env else {}
    settings = validate_section(Settings, data, path=path, base_dir=base_dir, sources=sources)
    for key, info in Settings.model_fields.items():
        why = (info.json_schema_extra or {}).get("x-original")  # type: ignore[union-attr]
        if why is not None and key in data:
            where = f"{path}: " if path else ""
            log.warning("%s%s: a key of the original framework, accepted and ignored: %s", where, key, why)
    return settings
