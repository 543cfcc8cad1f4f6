"""The ``Config`` value (typed :class:`Settings` plus a dotted ``get`` for the XOS shim), loading
one, and the current one for code that cannot be handed one."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import PydanticCustomError

from ._checks import read_graph
from ._errors import ConfigError, describe, dotted, validate_section
from ._model import Settings, schema_extra
from ._sources import apply_env, read_yaml

_MISSING: Any = object()
log = logging.getLogger("actors.config")


@dataclass(frozen=True, slots=True)
class Config:
    """A validated, read-only configuration, defaults merged in and paths absolute."""

    settings: Settings
    """The typed configuration: its sections (``event_bus``, ``runtime``, ``api``...) and keys."""
    base_dir: Path = field(kw_only=True)
    """The folder relative paths were resolved against (the file's folder)."""
    path: Path | None = field(default=None, kw_only=True)
    """The absolute path of the configuration file (``None`` if built from a mapping)."""
    _data: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_data", self.settings.model_dump(exclude_none=True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> Config:
        """A configuration from a mapping, checked as a file is; relative paths against *base_dir*
        (default: the working folder); no environment overrides. Raises :class:`ConfigError`."""
        base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
        return cls(prepare(data, path=None, base_dir=base, env=None), base_dir=base)

    @property
    def name(self) -> str:
        """The synchronizer name (also the Kafka consumer group id)."""
        return self.settings.name

    @property
    def dependency_graph(self) -> dict[str, list[list[str]]]:
        """The model dependency graph (``{}`` if none), read from its file if it is a path; a
        :class:`ConfigError` if the file became unreadable or invalid since loading."""
        value = self.settings.dependency_graph
        if not isinstance(value, str):
            graph: dict[str, list[list[str]]] = plain(value or {})
            return graph
        try:
            return read_graph(value)
        except PydanticCustomError as exc:
            ctx = exc.context or {}
            shown = os.fspath(self.path) if self.path is not None else None
            key = dotted(("dependency_graph", *ctx["at"]))
            raise ConfigError(ctx["message"], path=shown, key=key, expected=ctx["expected"]) from None

    def get(self, key: str, default: Any = None) -> Any:
        """The value (a copy) of the dotted *key* (``"event_bus.endpoint"``, ``"api.users.0.role"``; a
        key containing dots, such as a logger name under ``logging``, is found too), else *default*."""
        value = _lookup(self._data, key.split("."))
        return default if value is _MISSING else plain(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _lookup(self._data, key.split(".")) is not _MISSING

    def as_dict(self) -> dict[str, Any]:
        """The whole configuration as a (copied) nested mapping."""
        return self.settings.model_dump(exclude_none=True)

    def __repr__(self) -> str:
        where = f"path={os.fspath(self.path)!r}" if self.path else f"base_dir={os.fspath(self.base_dir)!r}"
        return f"Config(name={self.name!r}, {where})"


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
    if isinstance(node, list) and parts[0].isdigit():
        index = int(parts[0])
        return _lookup(node[index], parts[1:]) if index < len(node) else _MISSING
    if isinstance(node, Mapping):
        for size in range(len(parts), 0, -1):  # the longest key first: "actors.runtime" is a logger
            key = ".".join(parts[:size])
            found = _lookup(node[key], parts[size:]) if key in node else _MISSING
            if found is not _MISSING:
                return found
    return _MISSING


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load, check and complete the YAML file at *path* (relative paths in it: against its folder), with the
    ``ACTORS_<KEY>`` overrides in *env* (default ``os.environ``; ``{}`` none). Raises :class:`ConfigError`."""
    shown = os.fspath(path)
    file = Path(os.path.abspath(shown))
    env = os.environ if env is None else env
    return Config(
        prepare(read_yaml(shown), path=shown, base_dir=file.parent, env=env), base_dir=file.parent, path=file
    )


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
        why = schema_extra(info).get("x-original")
        if why is not None and key in data:
            where = f"{path}: " if path else ""
            log.warning("%s%s: a key of the original framework, accepted and ignored: %s", where, key, why)
    return settings


_context: contextvars.ContextVar[Config | None] = contextvars.ContextVar("actors_config", default=None)
_default: Config | None = None
_builtin = functools.cache(lambda: Config.from_dict({"name": "actors"}))


def current_config() -> Config:
    """The configuration in effect here: the innermost :func:`use_config` of this context, else the
    :func:`set_default_config` one, else the defaults alone, named ``"actors"`` (made at the first call)."""
    return _context.get() or _default or _builtin()


@contextlib.contextmanager
def use_config(cfg: Config) -> Iterator[Config]:
    """Make *cfg* the current configuration inside the ``with`` block, in this context only (a
    :mod:`contextvars` variable: this thread or task; other threads see :func:`set_default_config`)."""
    token = _context.set(cfg)
    try:
        yield cfg
    finally:
        _context.reset(token)


def set_default_config(cfg: Config | None) -> None:
    """Set (or with ``None`` clear) the process-wide current configuration."""
    global _default
    _default = cfg
