"""The xproto parse tree turned into :class:`ModelSpec` values, with the checks on names and numbers."""

from __future__ import annotations

import re
from typing import Any

from lark import Token, Tree

from ._spec import SCALAR_KINDS, FieldSpec, LinkSpec, ModelSpec
from ._xproto_errors import _Failure

#: Bases that name Python classes of the XOS core rather than xproto messages: Django's
#: user base, the change-tracking mixin and the attribute helpers. They carry no fields
#: of their own in xproto (XOS adds their methods in Python), so they are taken out of
#: ``ModelSpec.bases`` and kept, comma-separated, in the option ``python_bases``.
PYTHON_BASES = frozenset({"AbstractBaseUser", "PlModelMixIn", "AttributeMixin"})

#: Largest field (and reverse link) number: protobuf's limit, 2**29 - 1.
MAX_FIELD_NUMBER = 536_870_911

# -- values ----------------------------------------------------------------------

_SIMPLE_ESCAPES = dict(zip("abfnrtv\\'\"?", "\a\b\f\n\r\t\v\\'\"?", strict=True))
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([0-7]{1,3})|(.))", re.S)


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


def _token(tree: object) -> Token | None:
    """The token of an optional one-token rule, ``None`` when it was left out."""
    if not isinstance(tree, Tree):
        return None
    token = tree.children[0]
    assert isinstance(token, Token)
    return token


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
    def _field_options(tree: object) -> dict[str, Any]:
        if not isinstance(tree, Tree):
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

    def _append(self, tree: Tree[Token], name: Token, number: int, link: LinkSpec | None = None) -> None:
        """Add the field ``tree`` declares (its ``name`` and ``number`` already checked)."""
        modifier, kind, *_, options = tree.children
        spec = FieldSpec(
            name=str(name),
            kind=str(kind),
            number=number,
            modifier=str(_token(modifier) or "optional"),
            options=self._field_options(options),
            link=link,
            origin=f"{self.filename}:{_first_token(tree).line}",
        )
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

    def _scalar(self, tree: Tree[Token]) -> None:
        _, kind, name, number, _ = tree.children
        assert isinstance(kind, Token) and isinstance(name, Token) and isinstance(number, Token)
        if str(kind) not in SCALAR_KINDS:
            raise _Failure(
                f"unknown field type {str(kind)!r}, expected one of {', '.join(sorted(SCALAR_KINDS))} "
                "or a link (manytoone, onetoone)",
                kind,
            )
        self._check_name(name)
        self._append(tree, name, self._check_number(number))

    def _link(self, tree: Tree[Token]) -> None:
        _, kind, name, target, through, reverse, number, reverse_number, _ = tree.children
        assert isinstance(kind, Token) and isinstance(name, Token) and isinstance(target, Token)
        assert isinstance(number, Token)
        via = _token(through)
        if via is not None and kind.type != "MANYTOMANY":
            raise _Failure(f"field {str(name)!r}: only manytomany links have a through model", via)
        self._check_name(name)
        value = self._check_number(number)
        back, back_number = _token(reverse), _token(reverse_number)
        link = LinkSpec(
            model=str(target),
            reverse=None if back is None or back.type == "PLUS" else str(back),
            reverse_number=None if back_number is None else _integer(back_number, "reverse link number"),
            through=None if via is None else str(via),
        )
        self._append(tree, name, value, link)


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
    if (policy_name := _token(policy)) is not None:
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
