"""The model dependency graph applied to objects: what an object waits for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actors.models import FieldSpec
from actors.orm import ModelAccessor, ORMWrapper, row_of
from actors.store import Condition, Query, Row, row_is_pending

__all__ = ["Dependencies", "Key", "Keys"]

Key = tuple[str, int]


class Keys:
    """Objects' queue keys ``(root model, id)``, the root of each model remembered.

    ``Schema.root`` walks the model's chain at every call: per object of a dirty-set
    read of 20,000 objects, that was most of the read. A new schema (the accessor's
    changed) starts afresh.
    """

    def __init__(self, accessor: ModelAccessor) -> None:
        self.accessor = accessor
        self._schema: object = None
        self._roots: dict[str, str] = {}

    def key(self, model: str, id: int) -> Key:
        schema = self.accessor.schema
        if schema is not self._schema:
            self._schema, self._roots = schema, {}
        root = self._roots.get(model)
        if root is None:
            root = self._roots[model] = schema.root(model)
        return (root, id)


class Dependencies:
    """Answers, for one object, which linked objects must be enacted (or deleted) first.

    Only objects actually linked through the graph's accessors are considered,
    so the cost is the number of links of that object, not of all dirty objects.
    """

    def __init__(self, accessor: ModelAccessor, graph: Mapping[str, Iterable[tuple[str, str, str]]]) -> None:
        self.accessor = accessor
        self.graph = {model: tuple(entries) for model, entries in graph.items()}
        self.key = Keys(accessor).key
        #: Linked objects read ahead for a drain batch (see :meth:`read_ahead`): (model, id) -> row.
        self.ahead: dict[tuple[str, int], Row | None] = {}
        #: Whether each model has dependencies, for the accessor's schema ``_schema``.
        self._schema: object = None
        self._depends: dict[str, bool] = {}

    def models_involved(self, models: Iterable[str]) -> set[str]:
        """Models whose changes can unblock objects of ``models``: their dependencies and dependents."""
        schema = self.accessor.schema

        def related(a: str, b: str) -> bool:
            return a in schema and b in schema and (schema.is_a(a, b) or schema.is_a(b, a))

        out: set[str] = set()
        for model in models:
            for source, entries in self.graph.items():
                for dep, _src, _dst in entries:
                    if related(source, model):
                        out.add(dep)
                    if related(dep, model):
                        out.add(source)
        return {m for m in out if m in schema}

    def has_dependencies(self, model: str) -> bool:
        """Whether objects of ``model`` may wait for others (its own or its bases' entries in the graph)."""
        schema = self.accessor.schema
        if schema is not self._schema:
            self._schema, self._depends = schema, {}
        found = self._depends.get(model)
        if found is None:
            found = self._depends[model] = bool(self._entries_for(model))
        return found

    def _entries_for(self, model: str) -> list[tuple[str, str, str]]:
        schema = self.accessor.schema
        lineage = [model, *schema.ancestors(model)] if model in schema else [model]
        return [entry for m in lineage for entry in self.graph.get(m, ())]

    def read_ahead(self, objects: Iterable[tuple[str, Row]]) -> None:
        """Read the objects that ``objects`` (model, row) link to and depend on: one ``SELECT`` per model.

        :meth:`unsynced_dependencies` then finds them here instead of reading each one
        by itself, until the next call (or :meth:`forget_ahead`). Only plain links
        (``manytoone`` / ``onetoone`` fields of the object's model) are read ahead; a
        linked object read ahead that was enacted since is seen unsynced, and its
        dependent waits for the notice of its status write, as for one read by itself.
        """
        wanted: dict[str, set[int]] = {}
        for model, row in objects:
            for link in self._links(self._model_of(model, row)):
                target = row.get(link.column)
                if isinstance(target, int) and link.link is not None:
                    wanted.setdefault(link.link.model, set()).add(target)
        ahead: dict[tuple[str, int], Row | None] = {}
        backend = self.accessor.backend
        for model, ids in wanted.items():
            ahead.update(((model, id), None) for id in ids)
            for row in backend.select(model, Query(where=(Condition("id", "in", sorted(ids)),))):
                ahead[(model, row["id"])] = row
        self.ahead = ahead

    def forget_ahead(self) -> None:
        """Drop what :meth:`read_ahead` read (the drain it was for has ended)."""
        self.ahead = {}

    def unsynced_dependencies(self, obj: ORMWrapper) -> list[tuple[str, Row]]:
        """``(model, row)`` of each linked object this one depends on that still needs sync."""
        data = row_of(obj)
        model = self._model_of(obj.model_name, data)
        links = {f.name: f for f in self._links(model)}
        out: list[tuple[str, Row]] = []
        for _dep_model, src, _dst in self._entries_for(model):
            if not src:
                continue
            link = links.get(src)
            if link is not None and link.link is not None:
                key = (link.link.model, data.get(link.column))
                if key in self.ahead:
                    row = self.ahead[key]
                    if row is not None and row_is_pending(row, "sync"):
                        out.append((link.link.model, row))
                    if row is not None or key[1] is None:
                        continue
            try:
                value = getattr(obj, src)
            except AttributeError:
                continue
            for target in _objects(value):
                row = row_of(target)
                if row_is_pending(row, "sync"):
                    out.append((target.model_name, row))
        return out

    def _model_of(self, model: str, row: Row) -> str:
        """The model whose graph entries apply to an object: its leaf model, if the schema has it."""
        leaf = row.get("leaf_model_name") or model
        return leaf if leaf in self.accessor.schema else model

    def _links(self, model: str) -> list[FieldSpec]:
        """The plain link fields of ``model`` that its graph entries name (what :meth:`read_ahead` reads)."""
        schema = self.accessor.schema
        if model not in schema:
            return []
        sources = {src for _dep, src, _dst in self._entries_for(model) if src}
        fields = schema.fields(model)
        return [fields[name] for name in sources if name in fields and fields[name].is_link]

    def undeleted_dependents(self, obj: ORMWrapper) -> list[tuple[str, Row]]:
        """``(model, row)`` of each deleted object depending on this one whose delete is still owed."""
        schema = self.accessor.schema
        leaf = row_of(obj).get("leaf_model_name") or obj.model_name
        out: list[tuple[str, Row]] = []
        for source, entries in self.graph.items():
            if source not in schema or schema[source].abstract:
                continue
            for dep_model, src, _dst in entries:
                if not (dep_model in schema and schema.is_a(leaf, dep_model)):
                    continue
                field = schema.fields(source).get(src)
                if field is None or not field.is_link:
                    continue
                query = Query(where=(Condition(field.column, "eq", obj.id), Condition("deleted", "eq", True)))
                for row in self.accessor.backend.select(source, query):
                    if row_is_pending(row, "sync_deleted"):
                        out.append((source, row))
        return out


def _objects(value: Any) -> list[ORMWrapper]:
    if value is None:
        return []
    if isinstance(value, ORMWrapper):
        return [value]
    if isinstance(value, str | bytes):
        return []
    try:
        return [v for v in value if isinstance(v, ORMWrapper)]
    except TypeError:
        return []
