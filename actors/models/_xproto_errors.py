"""xproto errors: :class:`XprotoSyntaxError`, and lark's parse errors turned into readable ones."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ._xproto_grammar import _STRING_PATTERN


class XprotoSyntaxError(Exception):
    """An xproto text that cannot be turned into models.

    ``str(error)`` is ``file:line:column: message``; ``line`` and ``column`` are 1-based.
    For a syntax error the message reads ``unexpected <what was found>, expected <what>``.
    """

    def __init__(self, message: str, filename: str = "<string>", line: int = 1, column: int = 1) -> None:
        super().__init__(message, filename, line, column)
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}: {self.message}"


class _Failure(Exception):
    """A semantic error found while building specs, raised with the token it is about."""

    def __init__(self, message: str, token: Token) -> None:
        super().__init__(message)
        self.message = message
        self.token = token


#: How each terminal is named in "expected ..." lists, in the order they are listed.
#: Terminals mapped to ``None`` are never offered as an alternative.
_EXPECTED_NAMES: dict[str, str | None] = {
    "_DCOLON": "'::'",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_LBRACE": "'{'",
    "_RBRACE": "'}'",
    "_LSQB": "'['",
    "_RSQB": "']'",
    "_EQUALS": "'='",
    "_ARROW": "'->'",
    "_SLASH": "'/'",
    "_COLON": "':'",
    "_COMMA": "','",
    "_DOT": "'.'",
    "_SEMI": "';'",
    "PLUS": "'+'",
    "_MESSAGE": "'message'",
    "_POLICY": "'policy'",
    "POLICY_BODY": "'<' policy expression '>'",
    "_OPTION": "'option'",
    "_SYNTAX": "'syntax'",
    "_PACKAGE": "'package'",
    "_IMPORT": "'import'",
    "_PUBLIC": "'public'",
    "_WEAK": "'weak'",
    "REQUIRED": "'required'",
    "OPTIONAL": "'optional'",
    "TYPE_NAME": "a field type",
    "MANYTOONE": "a field type",
    "ONETOONE": "a field type",
    "MANYTOMANY": "a field type",
    "IDENT": "an identifier",
    "INT": "an integer",
    "STRING": "a string",
    "NUMBER": "a value",
    "TRUE": "a value",
    "FALSE": "a value",
    "NONE": "a value",
    "BARE_WORD": "a value",
    "$END": "end of file",
    "UNSUPPORTED_TOP": None,
    "UNSUPPORTED_MEMBER": None,
}

_UNSUPPORTED_REASONS = {
    "policy": "'policy' definitions belong at file level",
    "enum": "'enum' declarations are not supported (use a string field with 'choices')",
    "service": "'service' declarations are not supported (the model API is generated from messages)",
    "extend": "'extend' is not supported",
    "message": "nested 'message' declarations are not supported (declare the message at file level)",
    "oneof": "'oneof' is not supported",
    "extensions": "'extensions' is not supported",
    "reserved": "'reserved' is not supported",
    "repeated": "'repeated' fields are not supported (declare a manytoone link on the other model)",
    "map": "'map' fields are not supported",
    "group": "'group' is not supported",
}

_FOUND_WORD = re.compile(r"[+-]?[0-9.][A-Za-z0-9_.]*|[A-Za-z_][A-Za-z0-9_]*|\S|[\s\S]")


def _expected(names: Iterable[str]) -> str:
    names = set(names)
    if "_OPTION" in names:
        # At the start of a statement a stray ';' is allowed but not worth suggesting.
        names.discard("_SEMI")
    if "NUMBER" in names:
        # Where any option value fits, a string is just one kind of value.
        names.discard("STRING")
    order = list(_EXPECTED_NAMES)
    words: list[str] = []
    for name in sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n)):
        word = _EXPECTED_NAMES.get(name, name.lower())
        if word is not None and word not in words:
            words.append(word)
    if not words:
        return "nothing"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _viable(error: UnexpectedInput, candidates: Iterable[str]) -> set[str]:
    """The candidates the parser can really take next at the error.

    LALR(1) merges the look-ahead sets of similar states, so the raw set can hold
    terminals that only fit elsewhere (a ';' inside ``[...]``). Each candidate is fed to
    a copy of the failed parser state, as lark's ``InteractiveParser.accepts`` does.
    """
    names = set(candidates)
    state: Any = getattr(error, "state", None)
    if state is None or not all(hasattr(state, a) for a in ("copy", "feed_token", "parse_conf")):
        return names
    viable = set()
    try:
        conf = copy.copy(state.parse_conf)
        conf.callbacks = {}  # build no trees
        for name in names:
            trial = state.copy(deepcopy_values=False)
            trial.parse_conf = conf
            try:
                trial.feed_token(Token(name, ""), is_end=name == "$END")
            except UnexpectedToken:
                continue
            viable.add(name)
    except Exception:  # pragma: no cover - an unknown lark version: keep the raw set
        return names
    return viable or names


def _shown(text: str) -> str:
    if len(text) > 40:
        text = text[:37] + "..."
    return repr(text)


def _found(rest: str, word: str, expected: str) -> str:
    """``<what was found>, expected <what>``; ``rest`` is the text from the error on."""
    if rest.startswith("/*"):
        return "unterminated comment, expected '*/'"
    if rest.startswith("<") and "policy expression" in expected:
        return "unterminated policy expression, expected a closing '>'"
    if rest[:1] in ("'", '"') and not re.match(_STRING_PATTERN, rest):
        return f"unterminated string, expected a closing {rest[0]!r} on the same line"
    return f"unexpected {_shown(word)}, expected {expected}"


def _end_position(text: str) -> tuple[int, int]:
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def _syntax_error(error: UnexpectedInput, text: str, filename: str) -> XprotoSyntaxError:
    if isinstance(error, UnexpectedCharacters):
        rest = text[error.pos_in_stream or 0 :]
        match = _FOUND_WORD.match(rest)
        word = match.group() if match else rest[:1]
        message = _found(rest, word, _expected(_viable(error, error.allowed or ())))
        return XprotoSyntaxError(message, filename, error.line, error.column)
    if isinstance(error, UnexpectedToken):
        token = error.token
        expected = _expected(_viable(error, error.expected or ()))
        if token.type == "$END":
            line, column = _end_position(text)
            return XprotoSyntaxError(f"unexpected end of file, expected {expected}", filename, line, column)
        message = _found(text[token.start_pos or 0 :], str(token), expected)
        return XprotoSyntaxError(message, filename, token.line or 1, token.column or 1)
    line = error.line if isinstance(error.line, int) and error.line > 0 else 1
    column = error.column if isinstance(error.column, int) and error.column > 0 else 1
    return XprotoSyntaxError("syntax error", filename, line, column)
