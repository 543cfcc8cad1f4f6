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
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ._spec import SCALAR_KINDS, FieldSpec, LinkSpec, ModelSpec

__all__ = ["XprotoSyntaxError", "parse_xproto"]

#: Bases that name Python classes of the XOS core rather than xproto messages: Django's
#: user base, the change-tracking mixin and the attribute helpers. They carry no fields
#: of their own in xproto (XOS adds their methods in Python), so they are taken out of
#: ``ModelSpec.bases`` and kept, comma-separated, in the option ``python_bases``.
PYTHON_BASES = frozenset({"AbstractBaseUser", "PlModelMixIn", "AttributeMixin"})

#: Largest field (and reverse link) number: protobuf's limit, 2**29 - 1.
MAX_FIELD_NUMBER = 536_870_911


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


# -- grammar -----------------------------------------------------------------------

#: Keyword terminals. Keywords are regular expressions that refuse to match the start
#: of a longer word, so ``messages`` is never read as ``message`` + ``s``.
_KEYWORDS = {
    "_SYNTAX": "syntax",
    "_PACKAGE": "package",
    "_IMPORT": "import",
    "_PUBLIC": "public",
    "_WEAK": "weak",
    "_OPTION": "option",
    "_MESSAGE": "message",
    "_POLICY": "policy",
    "REQUIRED": "required",
    "OPTIONAL": "optional",
    "MANYTOONE": "manytoone",
    "ONETOONE": "onetoone",
    "MANYTOMANY": "manytomany",
    "TRUE": "True|true",
    "FALSE": "False|false",
    "NONE": "None",
    # Constructs of protobuf/xproto that this subset rejects with a clear message.
    "UNSUPPORTED_TOP": "enum|service|extend",
    "UNSUPPORTED_MEMBER": "message|enum|policy|oneof|extend|extensions|reserved|repeated|map|group",
}

_WORD_END = "(?![A-Za-z0-9_])"

_STRING_PATTERN = r"""(?:"(?:[^"\\\r\n]|\\[^\r\n])*"|'(?:[^'\\\r\n]|\\[^\r\n])*')"""

#: A policy body, ``< expression >``: up to the first ``>`` that is not part of ``->``,
#: of a string, or of a ``{{ python }}`` block. Its text is kept, never evaluated.
_POLICY_PATTERN = r"""<(?:->|-(?!>)|\{\{[\s\S]*?\}\}|\{(?!\{)|"[^"\n]*"|'[^'\n]*'|[^>"'{-])*>"""

_EXPONENT = "(?:[eE][+-]?[0-9]+)"
_NUMBER_PATTERN = (
    rf"[+-]?(?:[0-9]+\.[0-9]*{_EXPONENT}?|\.[0-9]+{_EXPONENT}?|[0-9]+{_EXPONENT}|[0-9]+)(?![A-Za-z0-9_.])"
)

_GRAMMAR = (
    r"""
start: _top*
_top: file_option | message | policy | syntax_stmt | package_stmt | import_stmt | _SEMI | UNSUPPORTED_TOP

syntax_stmt: _SYNTAX _EQUALS STRING _SEMI
package_stmt: _PACKAGE IDENT (_DOT IDENT)* _SEMI
import_stmt: _IMPORT (_PUBLIC | _WEAK)? STRING _SEMI
file_option: _OPTION IDENT _EQUALS value _SEMI

policy: _POLICY IDENT POLICY_BODY
message: _MESSAGE IDENT [policy_ref] [bases] _LBRACE _member* _RBRACE
policy_ref: _DCOLON IDENT
bases: _LPAR IDENT (_COMMA IDENT)* _RPAR
_member: message_option | scalar_field | link_field | UNSUPPORTED_MEMBER
message_option: _OPTION IDENT _EQUALS value _SEMI

scalar_field: [modifier] TYPE_NAME IDENT _EQUALS INT [field_options] _SEMI
link_field: [modifier] _link_kind IDENT _ARROW IDENT [through] [reverse] _link_number [field_options] _SEMI
_link_number: _EQUALS INT [reverse_number]
modifier: REQUIRED | OPTIONAL
_link_kind: MANYTOONE | ONETOONE | MANYTOMANY
through: _SLASH IDENT
reverse: _COLON (IDENT | PLUS)
reverse_number: _COLON INT

field_options: _LSQB (field_option (_COMMA field_option)*)? _RSQB
field_option: IDENT _EQUALS value
value: STRING | NUMBER | TRUE | FALSE | NONE | BARE_WORD

IDENT: /[A-Za-z_][A-Za-z0-9_]*/
TYPE_NAME: /[A-Za-z_][A-Za-z0-9_]*/
BARE_WORD: /[A-Za-z_][A-Za-z0-9_]*/
INT: /[0-9]+(?![A-Za-z0-9_.])/
NUMBER: /@NUMBER@/
STRING: /@STRING@/
POLICY_BODY: /@POLICY@/

_LBRACE: "{"
_RBRACE: "}"
_LPAR: "("
_RPAR: ")"
_LSQB: "["
_RSQB: "]"
_COMMA: ","
_EQUALS: "="
_SEMI: ";"
_DCOLON: "::"
_COLON: ":"
_ARROW: "->"
_SLASH: "/"
_DOT: "."
PLUS: "+"

LINE_COMMENT: /\/\/[^\n]*/
BLOCK_COMMENT: /\/\*[\s\S]*?\*\//
WHITESPACE: /[ \t\r\n\f\v\ufeff]+/
%ignore LINE_COMMENT
%ignore BLOCK_COMMENT
%ignore WHITESPACE
""".replace("@STRING@", _STRING_PATTERN)
    .replace("@NUMBER@", _NUMBER_PATTERN)
    .replace("@POLICY@", _POLICY_PATTERN)
    + "\n".join(f"{name}.2: /(?:{words}){_WORD_END}/" for name, words in _KEYWORDS.items())
    + "\n"
)


@functools.cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=True)


# -- readable error messages -----------------------------------------------------

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
            try:
                trial = state.copy(deepcopy_values=False)
            except TypeError:  # lark < 1.2
                trial = copy.copy(state)
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


# -- values ----------------------------------------------------------------------

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([0-7]{1,3})|(.))", re.S)


class _Failure(Exception):
    """A semantic error found while building specs, raised with the token it is about."""

    def __init__(self, message: str, token: Token) -> None:
        super().__init__(message)
        self.message = message
        self.token = token


def _unquote(token: Token) -> str:
    """The value of a string literal, with C/protobuf escapes decoded.

    Unknown escapes such as ``\\d`` are kept as written, as Python does.
    """
    body = str(token)[1:-1]

    def replace(match: re.Match[str]) -> str:
        hex2, hex4, hex8, octal, other = match.groups()
        if other is not None:
            return _SIMPLE_ESCAPES.get(other, match.group())
        code = int(hex2 or hex4 or hex8 or "0", 16) if octal is None else int(octal, 8)
        if code > 0x10FFFF:
            raise _Failure(f"invalid escape {match.group()!r} in string", token)
        return chr(code)

    return _ESCAPE.sub(replace, body)


def _integer(token: Token, what: str) -> int:
    try:
        number = int(str(token))
    except ValueError:  # more digits than Python converts
        raise _Failure(f"{what} is too large", token) from None
    if not 1 <= number <= MAX_FIELD_NUMBER:
        raise _Failure(f"{what} must be between 1 and {MAX_FIELD_NUMBER}, not {number}", token)
    return number


def _value(tree: Tree[Token]) -> Any:
    token = tree.children[0]
    assert isinstance(token, Token)
    kind = token.type
    if kind == "STRING":
        return _unquote(token)
    if kind == "TRUE":
        return True
    if kind == "FALSE":
        return False
    if kind == "NONE":
        return None
    if kind == "NUMBER":
        raw = str(token)
        try:
            if any(c in raw for c in ".eE"):
                return float(raw)
            return int(raw)
        except ValueError:  # an integer with more digits than Python converts
            raise _Failure("number is too large", token) from None
    return str(token)  # a bare identifier


def _option(tree: Tree[Token]) -> tuple[str, Any]:
    name, value = tree.children
    assert isinstance(name, Token) and isinstance(value, Tree)
    return str(name), _value(value)


# -- building specs --------------------------------------------------------------


def _first_token(tree: Tree[Token]) -> Token:
    for child in tree.children:
        if isinstance(child, Token):
            return child
        if isinstance(child, Tree):
            return _first_token(child)
    raise AssertionError("empty tree")  # pragma: no cover - every rule holds a token


class _MessageBuilder:
    """Collects one message's fields, checking names, numbers and columns as it goes."""

    def __init__(self, filename: str, model: str) -> None:
        self.filename = filename
        self.model = model
        self.fields: list[FieldSpec] = []
        self.manytomany: list[FieldSpec] = []
        self.options: dict[str, Any] = {}
        self.names: dict[str, int] = {}
        self.numbers: dict[int, str] = {}
        self.columns: dict[str, str] = {}

    def add(self, tree: Tree[Token]) -> None:
        if tree.data == "message_option":
            key, value = _option(tree)
            self.options[key] = value
        elif tree.data == "scalar_field":
            self._scalar(tree)
        else:
            self._link(tree)

    @staticmethod
    def _modifier(tree: Tree[Token] | None) -> str:
        if tree is None:
            return "optional"
        token = tree.children[0]
        assert isinstance(token, Token)
        return str(token)

    @staticmethod
    def _field_options(tree: Tree[Token] | None) -> dict[str, Any]:
        if tree is None:
            return {}
        options: dict[str, Any] = {}
        for child in tree.children:
            assert isinstance(child, Tree)
            key, value = _option(child)
            options[key] = value
        return options

    def _check_name(self, name: Token) -> None:
        if str(name) == "id":
            raise _Failure("field name 'id' is reserved: every model has an implicit integer 'id'", name)
        if str(name) in self.names:
            raise _Failure(
                f"duplicate field name {str(name)!r} in message {self.model} "
                f"(first declared on line {self.names[str(name)]})",
                name,
            )

    def _check_number(self, number: Token) -> int:
        value = _integer(number, "field number")
        if value in self.numbers:
            raise _Failure(
                f"duplicate field number {value} in message {self.model} "
                f"(already used by {self.numbers[value]!r})",
                number,
            )
        return value

    def _append(self, spec: FieldSpec, name: Token, number: int) -> None:
        if spec.column in self.columns:
            raise _Failure(
                f"field {spec.name!r} is stored in column {spec.column!r}, "
                f"which field {self.columns[spec.column]!r} already uses",
                name,
            )
        self.names[spec.name] = name.line or 0
        self.numbers[number] = spec.name
        self.columns[spec.column] = spec.name
        if spec.kind == "manytomany":
            self.manytomany.append(spec)
        else:
            self.fields.append(spec)

    def _origin(self, tree: Tree[Token]) -> str:
        return f"{self.filename}:{_first_token(tree).line}"

    def _scalar(self, tree: Tree[Token]) -> None:
        modifier, kind, name, number, options = tree.children
        assert isinstance(kind, Token) and isinstance(name, Token) and isinstance(number, Token)
        assert modifier is None or isinstance(modifier, Tree)
        assert options is None or isinstance(options, Tree)
        if str(kind) not in SCALAR_KINDS:
            raise _Failure(
                f"unknown field type {str(kind)!r}, expected one of {', '.join(sorted(SCALAR_KINDS))} "
                "or a link (manytoone, onetoone)",
                kind,
            )
        self._check_name(name)
        self._add(tree, modifier, kind, name, self._check_number(number), options, None)

    def _add(
        self,
        tree: Tree[Token],
        modifier: Tree[Token] | None,
        kind: Token,
        name: Token,
        number: int,
        options: Tree[Token] | None,
        link: LinkSpec | None,
    ) -> None:
        """Append the field (a scalar, or a link when ``link`` is given) that ``tree`` declares."""
        spec = FieldSpec(
            name=str(name),
            kind=str(kind),
            number=number,
            modifier=self._modifier(modifier),
            options=self._field_options(options),
            link=link,
            origin=self._origin(tree),
        )
        self._append(spec, name, number)

    def _link(self, tree: Tree[Token]) -> None:
        modifier, kind, name, target, through, reverse, number, reverse_number, options = tree.children
        assert isinstance(kind, Token) and isinstance(name, Token) and isinstance(target, Token)
        assert isinstance(number, Token)
        via_name: str | None = None
        if isinstance(through, Tree):
            via = through.children[0]
            assert isinstance(via, Token)
            if kind.type != "MANYTOMANY":
                raise _Failure(f"field {str(name)!r}: only manytomany links have a through model", via)
            via_name = str(via)
        self._check_name(name)
        value = self._check_number(number)
        reverse_name: str | None = None
        if isinstance(reverse, Tree):
            token = reverse.children[0]
            assert isinstance(token, Token)
            reverse_name = None if token.type == "PLUS" else str(token)
        reverse_value: int | None = None
        if isinstance(reverse_number, Tree):
            token = reverse_number.children[0]
            assert isinstance(token, Token)
            reverse_value = _integer(token, "reverse link number")
        assert modifier is None or isinstance(modifier, Tree)
        assert options is None or isinstance(options, Tree)
        link = LinkSpec(
            model=str(target), reverse=reverse_name, reverse_number=reverse_value, through=via_name
        )
        self._add(tree, modifier, kind, name, value, options, link)


def _message(tree: Tree[Token], filename: str, file_options: dict[str, Any]) -> ModelSpec:
    name, policy, bases, *members = tree.children
    assert isinstance(name, Token)
    base_names: list[str] = []
    python_bases: list[str] = []
    if isinstance(bases, Tree):
        for base in bases.children:
            assert isinstance(base, Token)
            if str(base) == str(name):
                raise _Failure(f"message {name} cannot inherit from itself", base)
            if str(base) in base_names or str(base) in python_bases:
                raise _Failure(f"message {name} lists base {base} twice", base)
            if str(base) in PYTHON_BASES:
                python_bases.append(str(base))
            else:
                base_names.append(str(base))
    builder = _MessageBuilder(filename, str(name))
    if isinstance(policy, Tree):
        policy_name = policy.children[0]
        assert isinstance(policy_name, Token)
        builder.options["policy"] = str(policy_name)
    if python_bases:
        builder.options["python_bases"] = ",".join(python_bases)
    for member in members:
        assert isinstance(member, Tree)
        builder.add(member)
    return ModelSpec(
        name=str(name),
        bases=tuple(base_names),
        fields=tuple(builder.fields),
        manytomany=tuple(builder.manytomany),
        options={**file_options, **builder.options},
        origin=f"{filename}:{name.line}",
    )


def _build(tree: Tree[Token], filename: str) -> list[ModelSpec]:
    file_options: dict[str, Any] = {}
    messages: list[Tree[Token]] = []
    for item in tree.children:
        if not isinstance(item, Tree):
            continue
        if item.data == "file_option":
            key, value = _option(item)
            file_options[key] = value
        elif item.data == "message":
            messages.append(item)
        # syntax, package, import and policy statements carry nothing we use: a policy
        # is an access rule or validator of the XOS core's API server (see docs/models.md).
    specs: list[ModelSpec] = []
    seen: dict[str, str] = {}
    for message in messages:
        name = message.children[0]
        assert isinstance(name, Token)
        if str(name) in seen:
            raise _Failure(f"message {name} is declared twice (first on line {seen[str(name)]})", name)
        seen[str(name)] = str(name.line)
        specs.append(_message(message, filename, file_options))
    return specs


def _parse_tree(text: str) -> Tree[Token]:
    interactive = _parser().parse_interactive(text)
    last: Token | None = None
    for token in interactive.iter_parse():
        if token.type in ("UNSUPPORTED_TOP", "UNSUPPORTED_MEMBER"):
            raise _Failure(_UNSUPPORTED_REASONS[str(token)], token)
        last = token
    result = interactive.feed_eof(last)  # type: ignore[no-untyped-call]  # lark leaves feed_eof unannotated
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
