"""Loading xproto files and folders, together with the built-in models, into a :class:`Schema`."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from ._spec import ModelSpec, Schema
from ._xproto import XprotoSyntaxError, parse_xproto

__all__ = ["builtin_models", "load_schema", "parse_file"]

#: Where the built-in models are declared (shipped as package data).
BUILTIN_FILE = "core.xproto"

PathLike = str | os.PathLike[str]


def parse_file(path: PathLike) -> list[ModelSpec]:
    """Parse one xproto file; origins and errors carry ``path`` as given.

    Raises:
        XprotoSyntaxError: the file is not valid xproto, or not UTF-8 text.
        OSError: the file cannot be read.
    """
    name = os.fspath(path)
    data = Path(path).read_bytes()
    return parse_xproto(_decode(data, name), name)


def _decode(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise XprotoSyntaxError(
            f"invalid UTF-8 byte 0x{data[error.start]:02x}, expected UTF-8 text", filename, line, column
        ) from None


@functools.cache
def _builtins() -> tuple[ModelSpec, ...]:
    source = resources.files(__package__).joinpath(BUILTIN_FILE)
    return tuple(parse_xproto(source.read_text(encoding="utf-8"), str(source)))


def builtin_models() -> list[ModelSpec]:
    """The models every schema starts from: ``XOSBase`` and the service graph.

    Parsed once from the package's ``core.xproto``; each call returns a new list.
    """
    return list(_builtins())


def xproto_files(paths: Iterable[PathLike] | PathLike) -> list[Path]:
    """The files ``load_schema`` reads for ``paths``, in reading order.

    A folder contributes its ``*.xproto`` files sorted by name (not its sub-folders);
    a file is taken whatever its name. A file reached twice is read once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    seen: set[Path] = set()
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix == ".xproto" and p.is_file())
        elif path.exists():
            found = [path]
        else:
            raise FileNotFoundError(f"no such xproto file or folder: {os.fspath(entry)}")
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def load_schema(
    paths: Iterable[PathLike] | PathLike = (),
    extra: Iterable[ModelSpec] = (),
) -> Schema:
    """Build a :class:`Schema` from the built-in models, xproto ``paths`` and ``extra`` specs.

    Each path is a folder (its ``*.xproto`` files are read, sorted, not recursively;
    a folder without any is fine) or a single file. All models are resolved together,
    so a model may inherit from or link to a model of another file, over any number
    of levels.

    Raises:
        XprotoSyntaxError: a file does not parse (the error names file, line and column).
        SchemaError: the models do not fit together: an unknown base or link target,
            an inheritance cycle, a model declared twice, clashing fields. The message
            starts with the ``file:line`` of the offending declaration.
        FileNotFoundError: a path does not exist.
    """
    specs: list[ModelSpec] = list(_builtins())
    for file in xproto_files(paths):
        specs.extend(parse_file(file))
    specs.extend(extra)
    return Schema(specs)
