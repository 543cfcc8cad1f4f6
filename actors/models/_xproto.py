"""The xproto parser: model declarations in, :class:`ModelSpec` values out.

xproto is the protobuf-like language XOS services declare their models in::

    option app_label = "mysvc";

    message MyServiceInstance (ServiceInstance) {
        option verbose_name = "My Service Instance";
        required string first_name = 1 [null = False, blank = False];
        required manytoone owner->Service:service_instances = 2:1001 [db_index = True];
    }

The grammar is an LALR(1) grammar run by `lark <https://github.com/lark-parser/lark>`_
with its contextual lexer, so keywords stay usable as field names.  Every failure,
syntactic or semantic, is one :class:`XprotoSyntaxError` that points at a file, line
and column: :func:`parse_xproto` returns a list of specs or raises that, nothing else.

:func:`load_schema` reads xproto files and folders, together with the built-in models
(``core.xproto``), into a :class:`Schema`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from ._spec import ModelSpec, Schema
from ._xproto_errors import _UNSUPPORTED_REASONS, XprotoSyntaxError, _Failure, _syntax_error
from ._xproto_grammar import _parser
from ._xproto_specs import _build

__all__ = ["XprotoSyntaxError", "builtin_models", "load_schema", "parse_file", "parse_xproto", "xproto_files"]


def _parse_tree(text: str) -> Tree[Token]:
    interactive = _parser().parse_interactive(text)
    last: Token | None = None
    for token in interactive.iter_parse():
        if token.type in ("UNSUPPORTED_TOP", "UNSUPPORTED_MEMBER"):
            raise _Failure(_UNSUPPORTED_REASONS[str(token)], token)
        last = token
    result = interactive.feed_eof(last)  # type: ignore[no-untyped-call]  # lark ships it unannotated
    assert isinstance(result, Tree)
    return result


def parse_xproto(text: str, filename: str = "<string>") -> list[ModelSpec]:
    """Parse xproto ``text`` into one :class:`ModelSpec` per ``message``, in file order.

    File-level ``option`` statements are copied into every message's options unless the
    message sets the same option. ``filename`` only labels origins and errors.

    Raises:
        XprotoSyntaxError: for any text that is not a valid model file; nothing else.
    """
    try:
        return _build(_parse_tree(text), filename)
    except _Failure as failure:
        token = failure.token
        raise XprotoSyntaxError(failure.message, filename, token.line or 1, token.column or 1) from None
    except UnexpectedInput as error:
        raise _syntax_error(error, text, filename) from None
    except (LarkError, RecursionError) as error:  # pragma: no cover - defensive
        raise XprotoSyntaxError(f"cannot parse: {error}", filename, 1, 1) from None


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
