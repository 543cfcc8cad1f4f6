"""After validation: paths, ``@file`` passwords, defaults that depend on other keys."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._errors import ConfigError, dotted
from ._schema import validate

__all__ = ["FILE_KEYS", "FOLDER_KEYS", "read_dependency_graph", "resolve"]

# Keys holding folders that must exist when configured.
FOLDER_KEYS: tuple[str, ...] = (
    "models_dir",
    "steps_dir",
    "pull_steps_dir",
    "event_steps_dir",
    "model_policies_dir",
)
# Keys holding files that must exist when configured (dependency_graph: when a path).
FILE_KEYS: tuple[str, ...] = ("dependency_graph", "accessor.tls_ca", "api.tls.cert", "api.tls.key")


def resolve(data: dict[str, Any], *, base_dir: Path, path: str | None) -> None:
    """Finish a validated, defaults-merged configuration in place.

    Relative paths are made absolute against *base_dir*; configured folders and
    files must exist (``data_dir`` need not); ``@file`` passwords are read; the
    defaults of ``store.url`` and ``event_bus.dead_letter_topic`` are filled in.

    Raises:
        ConfigError: for a missing folder, file or password file, an unreadable or
            invalid dependency graph file, a bad store URL or a repeated API user.
    """
    data["data_dir"] = str(_absolute(base_dir, data["data_dir"]))
    for key in FOLDER_KEYS:
        if key in data:
            data[key] = str(_existing(base_dir, data[key], key, path, folder=True))
    for key in FILE_KEYS:
        *parents, leaf = key.split(".")
        node = _get(data, parents)
        if isinstance(node, dict) and isinstance(node.get(leaf), str):
            node[leaf] = str(_existing(base_dir, node[leaf], key, path, folder=False))
    if isinstance(data.get("dependency_graph"), str):
        read_dependency_graph(data["dependency_graph"], path=path)
    for parts, holder, value in list(_passwords(data, ())):
        holder["password"] = _read_password(base_dir, value, parts, path)
    store = data.setdefault("store", {})
    store["url"] = _store_url(store.get("url"), Path(data["data_dir"]), base_dir, path)
    data["event_bus"].setdefault("dead_letter_topic", f"{data['name']}.dead-letters")
    _check_users(data["api"]["users"], path)


def read_dependency_graph(file: str, *, path: str | None) -> dict[str, list[list[str]]]:
    """Read and validate the dependency graph JSON *file*.

    Raises:
        ConfigError: the file cannot be read or parsed, or has the wrong shape.
    """
    expected = "a JSON file {Model: [[OtherModel, src_accessor, dst_accessor], ...]}"
    try:
        with open(file, encoding="utf-8") as stream:
            graph = json.load(stream)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"cannot read {file}: {reason}", path=path, key="dependency_graph", expected=expected
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"cannot parse {file}: {exc}", path=path, key="dependency_graph", expected=expected
        ) from None
    if not isinstance(graph, dict):
        raise ConfigError.wrong_value("dependency_graph", expected, graph, path=path, note=f" (in {file})")
    validate(graph, path=path, at=("dependency_graph",), note=f" (in {file})")
    return graph


def _absolute(base_dir: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return Path(os.path.normpath(candidate if candidate.is_absolute() else base_dir / candidate))


def _existing(base_dir: Path, value: str, key: str, path: str | None, *, folder: bool) -> Path:
    resolved = _absolute(base_dir, value)
    kind = "folder" if folder else "file"
    if (folder and resolved.is_dir()) or (not folder and resolved.is_file()):
        return resolved
    if resolved.exists():
        other = "a file" if folder else "a folder"
        message = f"expected a {kind}, got {other}: {resolved}"
    else:
        message = f"{kind} not found: {resolved}"
    raise ConfigError(message, path=path, key=key, expected=f"an existing {kind}")


def _get(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _passwords(node: Any, parts: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any], str]]:
    """Every ``password`` key (at any depth) whose value is a string starting with ``@``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "password" and isinstance(value, str) and value.startswith("@"):
                yield (*parts, key), node, value
            else:
                yield from _passwords(value, (*parts, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _passwords(value, (*parts, index))


def _read_password(base_dir: Path, value: str, parts: tuple[Any, ...], path: str | None) -> str:
    if value.startswith("@@"):  # an escaped literal "@"
        return value[1:]
    key = dotted(parts)
    expected = 'a password, or "@file" naming a readable file that holds it'
    if value == "@":
        raise ConfigError('expected a file name after "@"', path=path, key=key, expected=expected)
    file = _absolute(base_dir, value[1:])
    try:
        secret = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"password file not found: {file}", path=path, key=key, expected=expected) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"cannot read the password file {file}: {reason}", path=path, key=key, expected=expected
        ) from None
    return secret.rstrip("\r\n")


def _store_url(url: str | None, data_dir: Path, base_dir: Path, path: str | None) -> str:
    if url is None:
        return f"sqlite:///{data_dir / 'actors.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = 'a SQLAlchemy database URL such as "sqlite:///data/actors.db"'
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError.wrong_value("store.url", expected, url, path=path) from None
    database = parsed.database
    if (
        parsed.drivername.split("+")[0] == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_absolute()
    ):
        parsed = parsed.set(database=str(_absolute(base_dir, database)))
        return parsed.render_as_string(hide_password=False)
    return url


def _check_users(users: list[dict[str, Any]], path: str | None) -> None:
    seen: set[str] = set()
    for index, user in enumerate(users):
        name = user["username"]
        if name in seen:
            raise ConfigError(
                f'the user name "{name}" is used twice',
                path=path,
                key=f"api.users.{index}.username",
                expected="a user name not used by another user",
            )
        seen.add(name)
