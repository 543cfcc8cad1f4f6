"""Reading the YAML file: file errors, syntax errors with line:column, duplicate keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ._errors import ConfigError


class _DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names the same key twice (PyYAML would keep the last silently)."""


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that rejects duplicate keys in a mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise _DuplicateKeyError(
                    problem=f'duplicate key "{key}"',
                    problem_mark=key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read and parse the YAML file at *path*.

    Raises:
        ConfigError: the file is missing or unreadable, or its YAML is invalid.
    """
    shown = os.fspath(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=shown, expected="an existing file") from None
    except IsADirectoryError:
        raise ConfigError("cannot read: it is a folder", path=shown, expected="a readable file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
            path=shown,
            expected="a UTF-8 text file",
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read: {reason}", path=shown, expected="a readable file") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context not in problem:
            problem = f"{problem} ({exc.context})"
        raise ConfigError(
            f"YAML syntax error: {problem}",
            path=shown,
            expected="valid YAML",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", path=shown, expected="valid YAML") from None
