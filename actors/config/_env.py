"""Environment overrides: ``ACTORS_<KEY>`` with ``__`` between nesting levels."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import yaml

from ._errors import ConfigError, describe, dotted
from ._validate import scalar_type

PREFIX = "ACTORS_"
# Variables with the prefix that are not overrides: the main job's config path, and the
# settings of the development tools (scripts/local_kafka.py, local_postgres.py, the tests).
RESERVED = frozenset({"ACTORS_CONFIG"})
RESERVED_PREFIXES = ("ACTORS_KAFKA_", "ACTORS_PG_", "ACTORS_TEST_")


def apply_env(
    data: dict[str, Any], env: Mapping[str, str], *, path: str | None
) -> dict[tuple[str, ...], str]:
    """Apply the overrides in *env* to *data*, in place; return the key paths set, each with its variable.

    ``ACTORS_EVENT_BUS__ENDPOINT=kafka:9092`` sets ``event_bus.endpoint``. A value is read as YAML
    (``true``, ``5``, ``[a, b]``), but as it is where the key takes only strings (``"4.0"``,
    ``@file``), and as a number where it takes only numbers (``1e-3``). Raises :class:`ConfigError`.
    """
    sources: dict[tuple[str, ...], str] = {}
    for variable in sorted(env):
        if not variable.startswith(PREFIX) or variable in RESERVED or variable.startswith(RESERVED_PREFIXES):
            continue
        parts = tuple(part.lower() for part in variable[len(PREFIX) :].split("__"))
        if not all(parts):
            raise ConfigError(
                f"environment variable {variable}: malformed name; expected ACTORS_<KEY>"
                " with __ between nesting levels, such as ACTORS_EVENT_BUS__ENDPOINT",
                path=path,
                expected="ACTORS_<KEY>[__<KEY>...]",
            )
        value = _parse(variable, env[variable], parts, path)
        _set(data, parts, value, variable, path)
        sources[parts] = variable
    return sources


def _parse(variable: str, text: str, parts: tuple[str, ...], path: str | None) -> Any:
    wanted = scalar_type(parts)
    if wanted is str:
        return text  # as it is: "4.0", "@file", "p:ss#word" are strings here
    try:
        value = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"cannot parse the value of the environment variable {variable}: {problem}",
            path=path,
            key=dotted(parts),
            expected="a YAML scalar or flow collection",
        ) from None
    if wanted in (int, float) and isinstance(value, str):
        # YAML 1.1 reads "1e-05" or "1_000" as text; numbers are meant here.
        with contextlib.suppress(ValueError):
            return int(value) if wanted is int else float(value)
    return value


def _set(data: dict[str, Any], parts: tuple[str, ...], value: Any, variable: str, path: str | None) -> None:
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"expected a mapping to apply the environment variable {variable}, got {describe(child)}",
                path=path,
                key=dotted(parts[: depth + 1]),
                expected="a mapping",
            )
        node = child
    node[parts[-1]] = value
