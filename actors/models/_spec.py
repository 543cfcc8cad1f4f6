"""Model specifications: what the xproto parser produces and every layer above reads.

A :class:`Schema` is a set of :class:`ModelSpec`, each a list of :class:`FieldSpec`.
Specs are plain frozen values: they carry no database or ORM state.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: xproto scalar kinds and the Python type of their values.
PYTHON_TYPES: Mapping[str, type] = {
    "string": str,
    "text": str,
    "int32": int,
    "uint32": int,
    "int64": int,
    "uint64": int,
    "bool": bool,
    "float": float,
    "double": float,
}
SCALAR_KINDS = frozenset(PYTHON_TYPES)
LINK_KINDS = frozenset({"manytoone", "onetoone"})

#: Name of the abstract root every model inherits its bookkeeping fields from.
ABSTRACT_ROOT = "XOSBase"


class SchemaError(ValueError):
    """A set of models that cannot be used together (unknown base, clash...)."""


@dataclass(frozen=True)
class LinkSpec:
    """The target of a link field: ``owner->Service:service_instances``.

    ``through`` is the relation table a ``manytomany`` field names
    (``nodes->Node/NodeLabel_node:labels``); other links have none.
    """

    model: str
    reverse: str | None = None
    reverse_number: int | None = None
    through: str | None = None


@dataclass(frozen=True)
class FieldSpec:
    """One declared field. Links are stored in the column ``<name>_id``."""

    name: str
    kind: str
    number: int = 0
    modifier: str = "optional"
    options: Mapping[str, Any] = field(default_factory=dict)
    link: LinkSpec | None = None
    #: ``file:line`` where the field was declared, for error messages.
    origin: str = ""

    @property
    def is_link(self) -> bool:
        return self.kind in LINK_KINDS

    @property
    def column(self) -> str:
        """The stored column (and wire) name: ``owner_id`` for a link ``owner``."""
        return f"{self.name}_id" if self.is_link else self.name

    @property
    def python_type(self) -> type:
        return int if self.is_link else PYTHON_TYPES[self.kind]

    @property
    def nullable(self) -> bool:
        """Whether ``None`` is a legal value: ``null = True`` or an optional link/field."""
        null = self.options.get("null")
        if null is not None:
            return option_true(null)
        return self.modifier == "optional"

    @property
    def has_default(self) -> bool:
        return "default" in self.options

    @functools.cached_property
    def default(self) -> Any:
        """The declared default coerced to the field's type, else the type's zero value."""
        if "default" not in self.options:
            return None if (self.nullable or self.is_link) else self.python_type()
        value = self.options["default"]
        if self.is_link:
            # An id; XOS also allows the name of a Python function (``get_first_site``),
            # which is not evaluated here: such a link has no default.
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if value is None:
            return value
        if isinstance(value, str) and self.python_type is not str:
            if value in ("now()", "None"):
                return None
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
        try:
            return self.python_type(value)
        except (TypeError, ValueError):
            return value

    @property
    def max_length(self) -> int | None:
        value = self.options.get("max_length")
        return int(value) if value is not None else None

    @functools.cached_property
    def choices(self) -> tuple[tuple[Any, Any], ...] | None:
        """``choices = "(('a', 'A'), ('b', 'B'))"`` parsed into pairs."""
        raw = self.options.get("choices")
        if raw is None:
            return None
        try:
            parsed = ast.literal_eval(raw) if isinstance(raw, str) else raw
            return tuple((pair[0], pair[1]) for pair in parsed)
        except (ValueError, SyntaxError, TypeError, IndexError):
            return None

    @functools.cached_property
    def choice_values(self) -> frozenset[Any]:
        """The stored values that ``choices`` allows (empty when it has none)."""
        return frozenset(c[0] for c in self.choices or ())


@dataclass(frozen=True)
class ModelSpec:
    """One ``message``: its own fields (not inherited ones), bases and options.

    ``manytomany`` holds the message's ``manytomany`` fields, which are parsed and
    checked but not stored (see docs/models.md); ``fields`` never holds them.
    """

    name: str
    bases: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""
    manytomany: tuple[FieldSpec, ...] = ()

    def flag(self, option: str) -> bool:
        """Whether a yes/no option is set: ``True``, or XOS's quoted ``"True"``."""
        return option_true(self.options.get(option))

    @property
    def abstract(self) -> bool:
        return self.flag("abstract") or self.name == ABSTRACT_ROOT

    @property
    def verbose_name(self) -> str:
        return str(self.options.get("verbose_name", self.name))


def option_true(value: Any) -> bool:
    """An option value read as yes/no: ``True``, ``"True"``/``"true"`` and non-zero numbers are yes.

    XOS files write flags both ways (``custom_python = True``, ``legacy = "True"``).
    """
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class Schema:
    """An immutable, validated set of models with inheritance resolved."""

    def __init__(self, models: Iterable[ModelSpec] = ()) -> None:
        self._models: dict[str, ModelSpec] = {}
        for spec in models:
            if spec.name in self._models and self._models[spec.name] != spec:
                raise SchemaError(
                    f"model {spec.name} is declared twice "
                    f"({self._models[spec.name].origin} and {spec.origin})"
                )
            self._models[spec.name] = spec
        self._fields: dict[str, dict[str, FieldSpec]] = {}
        self._ancestors: dict[str, tuple[str, ...]] = {}
        for name in self._models:
            self._ancestors[name] = self._resolve_ancestors(name, ())
        for name in self._models:
            self._fields[name] = self._resolve_fields(name)
        self._by_column = {
            name: {f.column: f for f in fields.values()} for name, fields in self._fields.items()
        }
        self._validate_links()

    # -- construction helpers -------------------------------------------------
    def _resolve_ancestors(self, name: str, seen: tuple[str, ...]) -> tuple[str, ...]:
        if name in seen:
            raise SchemaError(f"{self._models[name].origin}: inheritance cycle: {' -> '.join((*seen, name))}")
        spec = self._models[name]
        out: list[str] = []
        for base in spec.bases:
            if base not in self._models:
                raise SchemaError(f"{spec.origin}: model {name} inherits from unknown model {base}")
            for item in (base, *self._resolve_ancestors(base, (*seen, name))):
                if item not in out:
                    out.append(item)
        return tuple(out)

    def _resolve_fields(self, name: str) -> dict[str, FieldSpec]:
        fields: dict[str, FieldSpec] = {}
        for ancestor in reversed(self._ancestors[name]):
            for f in self._models[ancestor].fields:
                fields.setdefault(f.name, f)
        for f in self._models[name].fields:
            if f.name in fields and fields[f.name].kind != f.kind:
                raise SchemaError(
                    f"{f.origin}: field {name}.{f.name} redeclares inherited field "
                    f"with another type ({fields[f.name].kind} -> {f.kind})"
                )
            fields[f.name] = f
        columns: dict[str, str] = {}
        for f in fields.values():
            if f.name == "id":
                raise SchemaError(f"{f.origin}: field {name}.id is reserved")
            if f.column in columns and columns[f.column] != f.name:
                raise SchemaError(f"{f.origin}: field {name}.{f.name} clashes with {columns[f.column]}")
            columns[f.column] = f.name
        return fields

    def _validate_links(self) -> None:
        for name, fields in self._fields.items():
            for f in (*fields.values(), *self._models[name].manytomany):
                if f.link is not None and f.link.model not in self._models:
                    raise SchemaError(
                        f"{f.origin}: field {name}.{f.name} links to unknown model {f.link.model}"
                    )

    # -- queries --------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self._models[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}") from None

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def concrete(self) -> list[ModelSpec]:
        return [m for m in self._models.values() if not m.abstract]

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every base of ``name``, nearest first (depth-first, like Python's MRO)."""
        return self._ancestors[name]

    def is_a(self, name: str, base: str) -> bool:
        return name == base or base in self._ancestors[name]

    def base_among(self, name: str, models: Iterable[str]) -> str | None:
        """The first of ``models`` that ``name`` is or derives from (``None`` if none).

        Names the schema does not hold match only themselves, so a stale name never raises.
        """
        for model in models:
            if name == model or (name in self._ancestors and model in self._ancestors[name]):
                return model
        return None

    def descendants(self, name: str) -> list[str]:
        return [m for m in self._models if name in self._ancestors[m]]

    def fields(self, name: str) -> dict[str, FieldSpec]:
        """All fields of ``name``, inherited first, by field name."""
        return self._fields[name]

    def fields_by_column(self, name: str) -> dict[str, FieldSpec]:
        """All fields of ``name`` by stored column name (a link ``owner`` is ``owner_id``)."""
        return self._by_column[name]

    def field(self, name: str, field_name: str) -> FieldSpec:
        try:
            return self._fields[name][field_name]
        except KeyError:
            raise KeyError(f"model {name} has no field {field_name!r}") from None

    def parent(self, name: str) -> str | None:
        """The concrete model whose table ``name``'s table extends, if any.

        The first concrete base in declaration order; abstract bases and further
        concrete bases are mixins whose fields are copied into ``name``'s table.
        """
        for base in self._models[name].bases:
            if not self._models[base].abstract:
                return base
        return None

    def root(self, name: str) -> str:
        """The top concrete model of ``name``'s chain (holds the bookkeeping columns)."""
        while (parent := self.parent(name)) is not None:
            name = parent
        return name

    def chain(self, name: str) -> list[str]:
        """Concrete tables from the root down to ``name``."""
        out = [name]
        while (parent := self.parent(out[0])) is not None:
            out.insert(0, parent)
        return out

    def own_fields(self, name: str) -> list[FieldSpec]:
        """Fields stored in ``name``'s own table (those not stored by its parent chain)."""
        parent = self.parent(name)
        inherited = set(self._fields[parent]) if parent else set()
        return [f for f in self._fields[name].values() if f.name not in inherited]

    def reverse_links(self, target: str) -> list[tuple[str, FieldSpec]]:
        """``(model, field)`` pairs whose link points at ``target`` or one of its bases."""
        out = []
        for name, fields in self._fields.items():
            spec = self._models[name]
            for f in fields.values():
                # Report a link once, on the model that declares it.
                if f.link and f in spec.fields and self.is_a(target, f.link.model):
                    out.append((name, f))
        return out
