"""The checks of the model that are not types: paths and files, passwords, the graph, Kafka options.

Each raises a :func:`problem`: a pydantic error carrying the one-line message,
the wording of a valid value and the key path below the field that failed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import AfterValidator, ValidationInfo
from pydantic_core import PydanticCustomError

from ._errors import describe

#: Error types of the model's own checks: shape problems, and (``LATE``) problems found
#: while resolving paths and files, reported only when the shape is right.
PROBLEM = "actors_config"
LATE = "actors_config_late"

_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)"
#: host:port with a mandatory port (0: the system picks a free one).
ADDRESS = rf"^{_HOST}:({_PORT}|0)$"
#: host or host:port (Kafka's 9092 applies when the port is left out).
KAFKA_ENDPOINT = rf"^{_HOST}(:{_PORT})?$"
_GRAPH_ITEM = "a list [OtherModel, src_accessor, dst_accessor] or a model name"

#: KafkaConsumer options ``event_bus.consumer`` may not change: the delivery guarantees depend on them.
OWNED_CONSUMER_OPTIONS = {
    "group_id": "the group id is the synchronizer's name",
    "enable_auto_commit": "offsets are committed by hand, after process_event",
    "bootstrap_servers": "set event_bus.endpoint",
    "key_deserializer": "events carry raw bytes",
    "value_deserializer": "events carry raw bytes",
}


def problem(
    message: str, expected: str, at: tuple[Any, ...] = (), *, late: bool = False
) -> PydanticCustomError:
    """An error of the model's own checks: ``message`` at ``at`` below the field's location."""
    ctx = {"message": message, "expected": expected, "at": at}
    return PydanticCustomError(LATE if late else PROBLEM, "{message}", ctx)


class Resolve:
    """The validation context that turns on path resolution (relative to ``base_dir``)."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir

    def absolute(self, value: str) -> str:
        """``value`` made absolute against the base folder (``~`` expanded)."""
        candidate = Path(value).expanduser()
        return os.path.normpath(candidate if candidate.is_absolute() else self.base_dir / candidate)

    def existing(self, value: str, *, folder: bool) -> str:
        """``value`` made absolute; a :data:`LATE` error unless it is an existing folder (file)."""
        resolved = Path(self.absolute(value))
        kind = "folder" if folder else "file"
        if resolved.is_dir() if folder else resolved.is_file():
            return str(resolved)
        if resolved.exists():
            message = f"expected a {kind}, got {'a file' if folder else 'a folder'}: {resolved}"
        else:
            message = f"{kind} not found: {resolved}"
        raise problem(message, f"an existing {kind}", late=True)

    def password(self, value: str) -> str:
        """A password as given, or read from the file named after ``@`` (``@@`` for a literal ``@``)."""
        if not value.startswith("@"):
            return value
        if value.startswith("@@"):
            return value[1:]
        expected = 'a password, or "@file" naming a readable file that holds it'
        if value == "@":
            raise problem('expected a file name after "@"', expected, late=True)
        file = self.absolute(value[1:])
        try:
            return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise problem(f"password file not found: {file}", expected, late=True) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise problem(f"cannot read the password file {file}: {reason}", expected, late=True) from None


def resolver(info: ValidationInfo) -> Resolve | None:
    return info.context if isinstance(info.context, Resolve) else None


def resolved(how: Callable[[Resolve, str], str]) -> Any:
    """Type metadata: the value becomes ``how(resolve, value)`` when validating with a :class:`Resolve`."""

    def check(value: str, info: ValidationInfo) -> str:
        return how(info.context, value) if isinstance(info.context, Resolve) else value

    return AfterValidator(check)


def check_graph(value: Any, note: str = "") -> dict[str, list[Any]]:
    """Check a dependency graph ``{Model: [[OtherModel, src_accessor, dst_accessor] | OtherModel, ...]}``."""
    expected = "a mapping {Model: [[OtherModel, src_accessor, dst_accessor], ...]}"
    if not isinstance(value, dict):
        raise problem(f"expected {expected}, got {describe(value)}{note}", expected)
    for model, entries in value.items():
        if not isinstance(entries, list):
            wanted = "a list of [OtherModel, src_accessor, dst_accessor] entries"
            raise problem(f"expected {wanted}, got {describe(entries)}{note}", wanted, (model,))
        for index, entry in enumerate(entries):
            at: tuple[Any, ...] = (model, index)
            wanted, bad = _GRAPH_ITEM, entry
            if isinstance(entry, str):
                if entry:
                    continue
            elif isinstance(entry, list) and 1 <= len(entry) <= 3:
                if not isinstance(entry[0], str) or not entry[0]:
                    wanted, bad, at = "a model name", entry[0], (*at, 0)
                else:
                    wrong = [i for i, item in enumerate(entry[1:], 1) if not isinstance(item, str | None)]
                    if not wrong:
                        continue
                    wanted, bad, at = "an accessor name or null", entry[wrong[0]], (*at, wrong[0])
            raise problem(f"expected {wanted}, got {describe(bad)}{note}", wanted, at)
    return value


def read_graph(file: str) -> dict[str, list[Any]]:
    """Read and check the dependency graph JSON ``file``."""
    expected = "a JSON file {Model: [[OtherModel, src_accessor, dst_accessor], ...]}"
    try:
        with open(file, encoding="utf-8") as stream:
            graph = json.load(stream)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise problem(f"cannot read {file}: {reason}", expected, late=True) from None
    except json.JSONDecodeError as exc:
        raise problem(f"cannot parse {file}: {exc}", expected, late=True) from None
    return check_graph(graph, note=f" (in {file})")


def store_url(url: str | None, data_dir: Path, resolve: Resolve) -> str:
    if url is None:
        return f"sqlite:///{data_dir / 'actors.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = 'a SQLAlchemy database URL such as "sqlite:///data/actors.db"'
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise problem(
            f"expected {expected}, got {json.dumps(url)}", expected, ("store", "url"), late=True
        ) from None
    database = parsed.database
    if (
        parsed.drivername.split("+")[0] == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).is_absolute()
    ):
        return parsed.set(database=resolve.absolute(database)).render_as_string(hide_password=False)
    return url


def check_kafka_options(options: dict[str, Any], *, consumer: bool) -> None:
    """``event_bus.consumer`` / ``producer``: kafka-python option names, none the framework owns."""
    from kafka import KafkaConsumer, KafkaProducer  # the option names are its DEFAULT_CONFIG keys

    client = KafkaConsumer if consumer else KafkaProducer
    for option in options:
        if option not in client.DEFAULT_CONFIG:
            raise problem(
                f"not a kafka-python {client.__name__} option", f"a {client.__name__} option", (option,)
            )
        if consumer and option in OWNED_CONSUMER_OPTIONS:
            why = OWNED_CONSUMER_OPTIONS[option]
            raise problem(f"set by the framework ({why})", "an option the framework does not set", (option,))
