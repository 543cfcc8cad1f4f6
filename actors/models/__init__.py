"""Models: the xproto language, model specifications and the built-in models.

``load_schema(["models/"])`` reads a synchronizer's xproto files on top of the built-in
models (``XOSBase``, ``Service``, ``ServiceInstance``...) and returns a validated
:class:`Schema`; ``parse_xproto(text)`` parses one text into :class:`ModelSpec` values.
See ``docs/models.md`` for the language.
"""

from ._spec import FieldSpec, LinkSpec, ModelSpec, Schema, SchemaError, option_true
from ._xproto import XprotoSyntaxError, builtin_models, load_schema, parse_file, parse_xproto, xproto_files

__all__ = [
    "FieldSpec",
    "LinkSpec",
    "ModelSpec",
    "Schema",
    "SchemaError",
    "XprotoSyntaxError",
    "builtin_models",
    "load_schema",
    "option_true",
    "parse_file",
    "parse_xproto",
    "xproto_files",
]
