"""Links that always point at an object: checks on write, ``on_delete`` rules, purge order.

- :func:`lock_targets` / :func:`refuse_deleted`: a write whose link names no object is a
  ``ValidationError`` naming model, column and id; a live object may not link to a
  deleted one (XOS's ``verify_live_keys``). On PostgreSQL the targets are read
  ``FOR SHARE``, so a concurrent delete of a target waits for this write (and then
  cascades to it) or this write waits for the delete (and then sees it).
- :func:`purge`: removes an object with what its links' ``on_delete`` asks of the
  objects linking to it (``CASCADE``: purged too; ``SET_NULL``: the link cleared;
  ``PROTECT``: the purge is refused), then reaps the deleted objects it linked to
  that were waiting only for it (XOS's reaper purges an object once nothing links to it).

The tables carry real foreign keys (see ``Tables``, and ``_migrate`` for tables made
before them). These functions run inside a write's transaction, through its ``Writer``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from actors.models import FieldSpec, Schema

from ._bookkeeping import DELETION_STATE, reap_ready
from ._errors import ValidationError
from ._notices import ChangeNotice
from ._tables import link_target

if TYPE_CHECKING:
    from ._tables import Tables
    from ._write import Writer

__all__ = ["linking", "lock_targets", "purge", "reap_blocked", "refuse_deleted", "rules"]

#: The ``on_delete`` values a link may have (XOS passes the option to Django; ``CASCADE`` is the default).
ON_DELETE = ("CASCADE", "PROTECT", "SET_NULL")


def on_delete(model: str, f: FieldSpec) -> str:
    """The ``on_delete`` rule of link ``f`` of ``model``; ``ValidationError`` for a value not supported."""
    value = f.options.get("on_delete")
    if value is None:
        return "CASCADE"
    rule = str(value).strip().upper().removeprefix("MODELS.")
    if rule not in ON_DELETE:
        raise ValidationError(f"{model}.{f.name}: on_delete {value!r} is not one of {', '.join(ON_DELETE)}")
    if rule == "SET_NULL" and not f.nullable:
        raise ValidationError(f"{model}.{f.name}: on_delete SET_NULL needs a link that may be null")
    return rule


@functools.lru_cache(maxsize=64)
def rules(schema: Schema) -> dict[tuple[str, str], str]:
    """``(model, column) -> on_delete`` of every stored link, on the model whose table stores it."""
    out = {}
    for spec in schema.concrete():
        for f in schema.own_fields(spec.name):
            if f.is_link:
                out[(spec.name, f.column)] = on_delete(spec.name, f)
    return out


# -- checks on write ----------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _link_columns(schema: Schema, model: str) -> tuple[tuple[str, str], ...]:
    """``(column, target model)`` of every link of ``model`` whose target has a table."""
    out = []
    for column, f in schema.fields_by_column(model).items():
        target = link_target(schema, f)
        if target is not None:
            out.append((column, target))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _target_stmt(tables: Tables, model: str, lock: bool) -> sa.Select[Any]:
    """``SELECT id[, deleted] FROM <model's chain> WHERE id = :_id`` (``FOR SHARE`` with ``lock``)."""
    root = tables.chain(model)[0]
    joined, _ = tables.joined(model)
    picked = [root.c.id] + ([root.c.deleted] if "deleted" in root.c else [])
    stmt = sa.select(*picked).select_from(joined).where(root.c.id == sa.bindparam("_id"))
    return stmt.with_for_update(read=True, of=root) if lock else stmt


def lock_targets(writer: Writer, conn: sa.Connection, model: str, values: Mapping[str, Any]) -> list[str]:
    """Check that every link in ``values`` names an object; returns messages for those that are deleted.

    Raises ``ValidationError`` (``MyInstance.owner_id: no Service with id 999``) for a
    missing one. On PostgreSQL each target stays locked against deletion until the commit.
    """
    found_deleted = []
    lock = writer.dialect == "postgresql"
    for column, target in _link_columns(writer.schema, model):
        value = values.get(column)
        if value is None:
            continue
        row = conn.execute(_target_stmt(writer.tables, target, lock), {"_id": value}).first()
        if row is None:
            raise ValidationError(f"{model}.{column}: no {target} with id {value}")
        if len(row) > 1 and row[1]:
            found_deleted.append(
                f"{model}.{column}: {target} {value} is deleted (only a deleted object may link to it)"
            )
    return found_deleted


def refuse_deleted(messages: list[str]) -> None:
    """Raise ``ValidationError`` with the first of :func:`lock_targets`' messages, if any."""
    if messages:
        raise ValidationError(messages[0])


# -- deletion -----------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def links_to(schema: Schema, model: str) -> tuple[tuple[str, str], ...]:
    """``(model, column)`` of every stored link column that can point at an object of ``model``.

    Each column is named once, on the concrete model whose table stores it, so a
    query on that model finds the objects of its derived models too.
    """
    out = []
    for spec in schema.concrete():
        for f in schema.own_fields(spec.name):
            if f.link is not None and schema.is_a(model, f.link.model):
                out.append((spec.name, f.column))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def linking(
    tables: Tables, schema: Schema, model: str, *, live: bool
) -> tuple[sa.Executable, tuple[tuple[str, str], ...]] | None:
    """One ``UNION ALL`` of the objects (the undeleted ones if ``live``) linking to ``:_target`` of ``model``.

    A row holds ``k`` (the index of its link in the :func:`links_to` ``model`` returned
    with the statement), ``columns`` (which of :data:`DELETION_STATE` that model has)
    and those columns (NULL where the model lacks one). Built once per tables and
    model: one query per object, however many links point at its model; ``None`` when
    no link can.
    """
    links = links_to(schema, model)
    if not links:
        return None
    selects = []
    for k, (dependent, column) in enumerate(links):
        joined, columns = tables.joined(dependent)
        present = " ".join(name for name in DELETION_STATE if name in columns)
        picked: list[sa.ColumnElement[Any]] = [sa.literal(k).label("k"), sa.literal(present).label("columns")]
        picked += [
            columns[name].label(name) if name in columns else sa.null().label(name) for name in DELETION_STATE
        ]
        select = sa.select(*picked).select_from(joined).where(columns[column] == sa.bindparam("_target"))
        selects.append(select.where(sa.not_(columns["deleted"])) if live and "deleted" in columns else select)
    statement: sa.Executable = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    return statement, links


def _linked_by(writer: Writer, conn: sa.Connection, model: str, id: int) -> list[tuple[str, str, int, str]]:
    """``(dependent model, column, id, leaf model)`` of every object linking to ``model`` ``id``."""
    query = linking(writer.tables, writer.schema, model, live=False)
    if query is None:
        return []
    statement, links = query
    out = []
    for found in conn.execute(statement, {"_target": id}).mappings().all():
        dependent, column = links[found["k"]]
        out.append((dependent, column, found["id"], writer.leaf(dict(found), dependent)))
    return out


def reap_blocked(writer: Writer, conn: sa.Connection, model: str, id: int) -> bool:
    """Whether an object still links to ``model`` ``id`` through a ``CASCADE`` or ``PROTECT`` link.

    A deleted object waits for those (they are being deleted in their backends) before
    it is purged; ``SET_NULL`` links do not hold it (the purge clears them).
    """
    table = rules(writer.schema)
    root = writer.schema.root(model)
    return any(
        table[(dependent, column)] != "SET_NULL" and (writer.schema.root(dependent), dep_id) != (root, id)
        for dependent, column, dep_id, _ in _linked_by(writer, conn, model, id)
    )


def purge(
    writer: Writer,
    conn: sa.Connection,
    notices: list[ChangeNotice],
    model: str,
    id: int,
    now: float,
    origin: str | None,
) -> None:
    """Remove object ``model`` ``id`` and what its dependents' ``on_delete`` asks, in this transaction.

    ``CASCADE`` dependents are purged too (recursively, as Django's ``CASCADE`` on a hard
    delete), ``SET_NULL`` ones get the link cleared (an ``update`` notice), a
    ``PROTECT`` one makes it a ``ValidationError``. Then every deleted object that one
    of the purged objects linked to, and that waited only for them, is purged as well.
    """
    schema = writer.schema
    table = rules(schema)
    order: list[tuple[str, int]] = []
    seen = {(schema.root(model), id)}
    stack = [(model, id)]
    cleared: list[tuple[str, str, int]] = []
    while stack:
        target, target_id = stack.pop()
        order.append((target, target_id))
        for dependent, column, dep_id, leaf in _linked_by(writer, conn, target, target_id):
            key = (schema.root(dependent), dep_id)
            if key in seen:
                continue
            rule = table[(dependent, column)]
            if rule == "PROTECT":
                raise ValidationError(
                    f"cannot purge {target} {target_id}: {leaf} {dep_id} links to it "
                    f"({column}, on_delete PROTECT)"
                )
            if rule == "SET_NULL":
                cleared.append((leaf, column, dep_id))
                continue
            seen.add(key)
            stack.append((leaf, dep_id))
    for leaf, column, dep_id in cleared:
        if (schema.root(leaf), dep_id) not in seen:
            writer.write_columns(conn, leaf, dep_id, {column: None})
            writer.journal.append(conn, notices, leaf, dep_id, "update", now, origin)
    targets: list[tuple[str, int]] = []
    for target, target_id in order:
        links = _link_columns(schema, target)
        if not links:  # it links to nothing: no object waits for it
            writer.delete_rows(conn, notices, target, target_id, now, origin)
            continue
        row = writer.row(conn, target, target_id)
        if row is None:
            continue
        for column, linked in links:
            value = row.get(column)
            if value is not None and (schema.root(linked), value) not in seen:
                targets.append((linked, value))
        writer.delete_rows(conn, notices, target, target_id, now, origin)
    _reap_waiting(writer, conn, notices, targets, now, origin)


def _reap_waiting(
    writer: Writer,
    conn: sa.Connection,
    notices: list[ChangeNotice],
    targets: list[tuple[str, int]],
    now: float,
    origin: str | None,
) -> None:
    """Purge each deleted object of ``targets`` that owes nothing and that nothing holds any more."""
    for model, id in targets:
        row = writer.row(conn, model, id)
        if row is None or not row.get("deleted") or not reap_ready(row):
            continue
        leaf = writer.leaf(row, model)
        if not reap_blocked(writer, conn, leaf, id):
            purge(writer, conn, notices, leaf, id, now, origin)
