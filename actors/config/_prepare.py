"""The pipeline from raw data to a finished configuration mapping."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._env import apply_env
from ._errors import ConfigError, describe
from ._resolve import resolve
from ._schema import default_values, original_keys, schema, validate

__all__ = ["deep_merge", "plain", "prepare"]

log = logging.getLogger("actors.config")

# Mappings that replace the default as a whole instead of being merged into it.
_REPLACED = frozenset({("logging",), ("dependency_graph",)})


def prepare(
    raw: Any,
    *,
    path: str | None,
    base_dir: Path,
    env: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Turn *raw* (the parsed file or a mapping) into a finished configuration.

    Steps: plain copy; environment overrides; JSON Schema validation; defaults
    merged; paths resolved and checked; ``@file`` passwords read; derived defaults.

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
    validate(data, path=path, sources=sources)
    _accessor_kind(data)
    merged = deep_merge(default_values(), data)
    resolve(merged, base_dir=base_dir, path=path)
    _warn_original_keys(data, path)
    order = list(schema()["properties"])
    return dict(sorted(merged.items(), key=lambda item: order.index(item[0])))


def _accessor_kind(data: dict[str, Any]) -> None:
    """An ``accessor`` with an ``endpoint`` and no ``kind`` is ``grpcapi`` (the original's default kind).

    Services' configs give ``accessor: {username, password, endpoint}`` alone;
    without an endpoint the default stays ``local``.
    """
    accessor = data.get("accessor")
    if isinstance(accessor, dict) and "endpoint" in accessor and "kind" not in accessor:
        accessor["kind"] = "grpcapi"


def _warn_original_keys(data: Mapping[str, Any], path: str | None) -> None:
    """One warning per key of the original framework that does nothing here (the file still loads)."""
    for key, why in original_keys().items():
        if key in data:
            where = f"{path}: " if path else ""
            log.warning("%s%s: a key of the original framework, accepted and ignored: %s", where, key, why)


def plain(value: Any) -> Any:
    """A deep copy made of dicts and lists only (tuples and other mappings converted)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def deep_merge(
    base: dict[str, Any], override: Mapping[str, Any], _at: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge *override* into *base* (modified and returned).

    Nested mappings are merged key by key, so a partly given mapping keeps the
    defaults of the keys it does not give; lists, scalars and the free-form
    ``logging`` mapping replace the default whole.
    """
    for key, value in override.items():
        here = (*_at, key)
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping) and here not in _REPLACED:
            deep_merge(current, value, here)
        else:
            base[key] = plain(value)
    return base
