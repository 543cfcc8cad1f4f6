"""The checks of the model that are not types: paths and files, passwords, the graph, Kafka options.

Each raises a :func:`~._errors.problem`; the ones that need the configuration file's folder run only
when the model is validated with that folder (a :class:`~pathlib.Path`) as context."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import AfterValidator, ValidationInfo

from ._errors import LATE, problem, wrong

_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\],]+)"
#: host:port with a mandatory port (0: the system picks a free one).
ADDRESS = rf"^{_HOST}:({_PORT}|0)$"
#: host or host:port (Kafka's 9092 applies when the port is left out), several comma-separated.
KAFKA_ENDPOINT = rf"^{_HOST}(:{_PORT})?(,\s*{_HOST}(:{_PORT})?)*$"
_GRAPH_ITEM = "a list [OtherModel, src_accessor, dst_accessor] or a model name"
URL = 'a SQLAlchemy database URL such as "sqlite:///data/actors.db"'

#: KafkaConsumer options ``event_bus.consumer`` may not change: the delivery guarantees depend on them.
_OWNED_CONSUMER_OPTIONS = {
    "group_id": "the group id is the synchronizer's name",
    "enable_auto_commit": "offsets are committed by hand, after process_event",
    "bootstrap_servers": "set event_bus.endpoint",
    "key_deserializer": "events carry raw bytes",
    "value_deserializer": "events carry raw bytes",
}


def resolving(info: ValidationInfo) -> Path | None:
    """The folder paths are resolved against, if this validation resolves them."""
    return info.context if isinstance(info.context, Path) else None


def resolved(how: Callable[[Path, str], str]) -> Any:
    """Type metadata: the value becomes ``how(base_dir, value)`` when validating with a base folder."""
    return AfterValidator(lambda value, info: how(base, value) if (base := resolving(info)) else value)


def absolute(base: Path, value: str) -> str:
    """``value`` made absolute against ``base`` (``~`` expanded)."""
    return os.path.normpath(base / Path(value).expanduser())  # an absolute value replaces base


def existing(base: Path, value: str, *, folder: bool) -> str:
    """``value`` made absolute; a :data:`LATE` error unless it is an existing folder (file)."""
    path, kind = Path(absolute(base, value)), "folder" if folder else "file"
    if path.is_dir() if folder else path.is_file():
        return str(path)
    other = "a file" if folder else "a folder"
    message = f"expected a {kind}, got {other}: {path}" if path.exists() else f"{kind} not found: {path}"
    raise problem(message, f"an existing {kind}", kind=LATE)


def password(base: Path, value: str) -> str:
    """A password as given, or read from the file named after ``@`` (``@@`` for a literal ``@``)."""
    if not value.startswith("@"):
        return value
    if value.startswith("@@"):
        return value[1:]
    expected = 'a password, or "@file" naming a readable file that holds it'
    if value == "@":
        raise problem('expected a file name after "@"', expected, kind=LATE)
    file = absolute(base, value[1:])
    try:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise problem(f"password file not found: {file}", expected, kind=LATE) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise problem(f"cannot read the password file {file}: {reason}", expected, kind=LATE) from None


def check_graph(value: Any, note: str = "") -> dict[str, list[Any]]:
    """Check a dependency graph ``{Model: [[OtherModel, src_accessor, dst_accessor] | OtherModel, ...]}``."""
    if not isinstance(value, dict):
        raise wrong("a mapping {Model: [[OtherModel, src_accessor, dst_accessor], ...]}", value, note=note)
    for model, entries in value.items():
        if not isinstance(entries, list):
            expected = "a list of [OtherModel, src_accessor, dst_accessor] entries"
            raise wrong(expected, entries, (model,), note=note)
        for index, entry in enumerate(entries):
            if isinstance(entry, list) and 1 <= len(entry) <= 3:
                if not isinstance(entry[0], str) or not entry[0]:
                    raise wrong("a model name", entry[0], (model, index, 0), note=note)
                for at, item in enumerate(entry[1:], 1):
                    if not isinstance(item, str | None):
                        raise wrong("an accessor name or null", item, (model, index, at), note=note)
            elif not isinstance(entry, str) or not entry:
                raise wrong(_GRAPH_ITEM, entry, (model, index), note=note)
    return value


def read_graph(file: str) -> dict[str, list[Any]]:
    """Read and check the dependency graph JSON ``file``."""
    expected = "a JSON file {Model: [[OtherModel, src_accessor, dst_accessor], ...]}"
    try:
        with open(file, encoding="utf-8") as stream:
            graph = json.load(stream)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise problem(f"cannot read {file}: {reason}", expected, kind=LATE) from None
    except json.JSONDecodeError as exc:
        raise problem(f"cannot parse {file}: {exc}", expected, kind=LATE) from None
    return check_graph(graph, note=f" (in {file})")


def store_url(url: str | None, data_dir: str, base: Path) -> str:
    """The store URL: the default one in ``data_dir``, a relative SQLite file made absolute."""
    if url is None:
        return f"sqlite:///{Path(data_dir) / 'actors.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise problem(f"expected {URL}, got {json.dumps(url)}", URL, ("store", "url"), kind=LATE) from None
    file = parsed.database or ":memory:"  # no file: an in-memory database
    if parsed.get_backend_name() != "sqlite" or file.startswith((":memory:", "file:")) or os.path.isabs(file):
        return url
    return parsed.set(database=absolute(base, file)).render_as_string(hide_password=False)


def check_kafka_options(options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """``event_bus.consumer`` / ``producer``: kafka-python option names, none the framework owns."""
    from kafka import KafkaConsumer, KafkaProducer  # the option names are its DEFAULT_CONFIG keys

    client = KafkaConsumer if info.field_name == "consumer" else KafkaProducer
    for option in options:
        kind = f"kafka-python {client.__name__} option"
        if option not in client.DEFAULT_CONFIG:
            raise problem(f"not a {kind}", f"a {kind}", (option,))
        if client is KafkaConsumer and option in _OWNED_CONSUMER_OPTIONS:
            why = _OWNED_CONSUMER_OPTIONS[option]
            raise problem(f"set by the framework ({why})", "an option the framework does not set", (option,))
    return options
