"""The xproto grammar: an LALR(1) grammar for lark's contextual lexer, and its parser."""

from __future__ import annotations

import functools

from lark import Lark

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
