"""Where the keys come from: the YAML file (syntax errors with line:column, duplicate keys refused)
and the ``ACTORS_<KEY>`` environment overrides (``__`` between nesting levels)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigError, describe, dotted
from ._model import config_schema

# Variables with the prefix that are not overrides: the main job's config path, and the
# settings of the development tools (scripts/local_kafka.py, local_postgres.py, the tests).
_PREFIX, _CONFIG, _TOOLS = "ACTORS_", "ACTORS_CONFIG", ("ACTORS_KAFKA_", "ACTORS_PG_", "ACTORS_TEST_")
_SCALARS = {"string": str, "integer": int, "number": float, "boolean": bool}
_schema = functools.cache(config_schema)


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that rejects duplicate keys in a mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: list[Any] = []
        for key_node, _value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        problem=f'duplicate key "{key}"', problem_mark=key_node.start_mark
                    )
                seen.append(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read and parse the YAML file at *path*; :class:`ConfigError` if missing, unreadable or invalid."""
    line = column = None
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)
    except FileNotFoundError:
        message, expected = "file not found", "an existing file"
    except IsADirectoryError:
        message, expected = "cannot read: it is a folder", "a readable file"
    except UnicodeDecodeError as exc:
        message = f"cannot read: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        expected = "a UTF-8 text file"
    except OSError as exc:
        message, expected = f"cannot read: {exc.strerror or exc}", "a readable file"
    except yaml.MarkedYAMLError as exc:
        mark, problem = exc.problem_mark or exc.context_mark, exc.problem or "invalid YAML"
        if exc.context and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        message, expected = f"YAML syntax error: {problem}", "valid YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    except yaml.YAMLError as exc:
        message, expected = f"YAML syntax error: {exc}", "valid YAML"
    raise ConfigError(message, path=os.fspath(path), expected=expected, line=line, column=column)


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
        if not variable.startswith(_PREFIX) or variable == _CONFIG or variable.startswith(_TOOLS):
            continue
        parts = tuple(part.lower() for part in variable[len(_PREFIX) :].split("__"))
        if not all(parts):
            raise ConfigError(
                f"environment variable {variable}: malformed name; expected ACTORS_<KEY>"
                " with __ between nesting levels, such as ACTORS_EVENT_BUS__ENDPOINT",
                path=path,
                expected="ACTORS_<KEY>[__<KEY>...]",
            )
        node = data
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"expected a mapping to apply the environment variable {variable}, got {describe(node)}",
                    path=path,
                    key=dotted(parts[: depth + 1]),
                    expected="a mapping",
                )
        node[parts[-1]] = _parse(variable, env[variable], parts, path)
        sources[parts] = variable
    return sources


def _parse(variable: str, text: str, parts: tuple[str, ...], path: str | None) -> Any:
    wanted = _scalar_type(parts)
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
            return wanted(value)
    return value


def _scalar_type(parts: tuple[str, ...]) -> type | None:
    """The one scalar type (``str``, ``int``, ``float``, ``bool``) the key path takes, else ``None``."""
    node = schema = _schema()
    for part in parts:
        node = node.get("properties", {}).get(part, {})
        options = [option for option in node.get("anyOf", [node]) if option.get("type") != "null"]
        node = options[0] if len(options) == 1 else {}
        node = schema["$defs"].get(node.get("$ref", "").rsplit("/", 1)[-1], node)
    return None if "enum" in node or "const" in node else _SCALARS.get(node.get("type", ""))
