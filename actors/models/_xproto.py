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

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from ._spec import ModelSpec
from ._xproto_errors import _UNSUPPORTED_REASONS, XprotoSyntaxError, _Failure, _syntax_error
from ._xproto_grammar import _parser
from ._xproto_specs import _build

__all__ = ["XprotoSyntaxError", "parse_xproto"]


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
