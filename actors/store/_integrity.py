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
- The tables carry real foreign keys (see ``Tables``); :func:`migrate_sqlite` rebuilds
  SQLite tables made before them (and before ``AUTOINCREMENT``), keeping every row;
  :func:`add_postgres_keys` adds them to PostgreSQL tables; existing dangling links
  are kept and reported (:func:`dangling_links`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from actors.models import FieldSpec, Schema

from ._cascade import links_to
from ._errors import ValidationError
from ._notices import ChangeNotice

if TYPE_CHECKING:
    from ._store import Store
    from ._tables import Tables

__all__ = [
    "ON_DELETE",
    "add_postgres_keys",
    "dangling_links",
    "lock_targets",
    "migrate_sqlite",
    "on_delete",
    "purge",
    "reap_blocked",
    "refuse_deleted",
    "rules",
    "sqlite_reference",
]

log = structlog.get_logger("actors.store")

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
        if f.link is not None and f.link.model in schema and not schema[f.link.model].abstract:
            out.append((column, f.link.model))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _target_stmt(tables: Tables, model: str, lock: bool) -> sa.Select[Any]:
    """``SELECT id[, deleted] FROM <model's chain> WHERE id = :_id`` (``FOR SHARE`` with ``lock``)."""
    chain = tables.chain(model)
    root = chain[0]
    joined: sa.FromClause = root
    for table in chain[1:]:
        joined = joined.join(table, table.c.id == root.c.id)
    picked = [root.c.id] + ([root.c.deleted] if "deleted" in root.c else [])
    stmt = sa.select(*picked).select_from(joined).where(root.c.id == sa.bindparam("_id"))
    return stmt.with_for_update(read=True, of=root) if lock else stmt


def lock_targets(store: Store, conn: sa.Connection, model: str, values: Mapping[str, Any]) -> list[str]:
    """Check that every link in ``values`` names an object; returns messages for those that are deleted.

    Raises ``ValidationError`` (``MyInstance.owner_id: no Service with id 999``) for a
    missing one. On PostgreSQL each target stays locked against deletion until the commit.
    """
    found_deleted = []
    lock = store.dialect == "postgresql"
    for column, target in _link_columns(store.schema, model):
        value = values.get(column)
        if value is None:
            continue
        row = conn.execute(_target_stmt(store.tables, target, lock), {"_id": value}).first()
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
@functools.lru_cache(maxsize=256)
def _linking(
    tables: Tables, schema: Schema, model: str
) -> tuple[sa.Executable, tuple[tuple[str, str], ...]] | None:
    """One ``UNION ALL`` of every object (deleted or not) whose link points at ``:_target`` of ``model``.

    Rows are ``(k, id, leaf)``: ``k`` indexes the ``(model, column)`` links returned
    with the statement, ``leaf`` is the object's ``leaf_model_name`` (or NULL).
    """
    links = links_to(schema, model)
    if not links:
        return None
    selects = []
    for k, (dependent, column) in enumerate(links):
        chain = tables.chain(dependent)
        root, own = chain[0], tables.by_model[dependent]
        joined: sa.FromClause = own if own is root else root.join(own, own.c.id == root.c.id)
        leaf = root.c.leaf_model_name if "leaf_model_name" in root.c else sa.null()
        selects.append(
            sa.select(sa.literal(k).label("k"), root.c.id.label("id"), leaf.label("leaf"))
            .select_from(joined)
            .where(own.c[column] == sa.bindparam("_target"))
        )
    statement: sa.Executable = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    return statement, links


def _linked_by(store: Store, conn: sa.Connection, model: str, id: int) -> list[tuple[str, str, int, str]]:
    """``(dependent model, column, id, leaf model)`` of every object linking to ``model`` ``id``."""
    query = _linking(store.tables, store.schema, model)
    if query is None:
        return []
    statement, links = query
    out = []
    for k, dep_id, leaf in conn.execute(statement, {"_target": id}).all():
        dependent, column = links[k]
        out.append((dependent, column, dep_id, leaf if leaf in store.tables.by_model else dependent))
    return out


def reap_blocked(store: Store, conn: sa.Connection, model: str, id: int) -> bool:
    """Whether an object still links to ``model`` ``id`` through a ``CASCADE`` or ``PROTECT`` link.

    A deleted object waits for those (they are being deleted in their backends) before
    it is purged; ``SET_NULL`` links do not hold it (the purge clears them).
    """
    table = rules(store.schema)
    root = store.schema.root(model)
    return any(
        table[(dependent, column)] != "SET_NULL" and (store.schema.root(dependent), dep_id) != (root, id)
        for dependent, column, dep_id, _ in _linked_by(store, conn, model, id)
    )


def reap_ready(row: Mapping[str, Any]) -> bool:
    """Whether a deleted object owes nothing: its backend delete and delete policy (if owed) are done."""
    synced_away = not row.get("backend_need_delete") or row.get("backend_need_reap")
    policed_away = not row.get("backend_need_delete_policy") or row.get("policed") is not None
    return bool(synced_away and policed_away)


def purge(
    store: Store,
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
    schema = store.schema
    table = rules(schema)
    order: list[tuple[str, int]] = []
    seen = {(schema.root(model), id)}
    stack = [(model, id)]
    cleared: list[tuple[str, str, int]] = []
    while stack:
        target, target_id = stack.pop()
        order.append((target, target_id))
        for dependent, column, dep_id, leaf in _linked_by(store, conn, target, target_id):
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
            store._write_columns(conn, leaf, dep_id, {column: None})
            store._journal(conn, notices, leaf, dep_id, "update", now, origin)
    targets: list[tuple[str, int]] = []
    for target, target_id in order:
        links = _link_columns(schema, target)
        if not links:  # it links to nothing: no object waits for it
            store._delete_rows(conn, notices, target, target_id, now, origin)
            continue
        rows = store._records(target, conn.execute(store._select_by_id(target), {"_id": target_id}))
        if not rows:
            continue
        for column, linked in links:
            value = rows[0].get(column)
            if value is not None and (schema.root(linked), value) not in seen:
                targets.append((linked, value))
        store._delete_rows(conn, notices, target, target_id, now, origin)
    _reap_waiting(store, conn, notices, targets, now, origin)


def _reap_waiting(
    store: Store,
    conn: sa.Connection,
    notices: list[ChangeNotice],
    targets: list[tuple[str, int]],
    now: float,
    origin: str | None,
) -> None:
    """Purge each deleted object of ``targets`` that owes nothing and that nothing holds any more."""
    for model, id in targets:
        rows = store._records(model, conn.execute(store._select_by_id(model), {"_id": id}))
        if not rows or not rows[0].get("deleted") or not reap_ready(rows[0]):
            continue
        leaf = store._leaf(rows[0], model)
        if not reap_blocked(store, conn, leaf, id):
            purge(store, conn, notices, leaf, id, now, origin)


# -- existing data ------------------------------------------------------------
def dangling_links(store: Store, conn: sa.Connection | None = None) -> list[str]:
    """One line per stored link that names no object.

    ``MyInstance 4: owner_id = 999, no Service with that id``.
    """
    if conn is None:
        with store._read() as read:
            return dangling_links(store, read)
    out = []
    schema, tables = store.schema, store.tables
    existing = set(sa.inspect(conn).get_table_names())
    for spec in schema.concrete():
        own = tables.by_model[spec.name]
        for f in schema.own_fields(spec.name):
            if f.link is None or f.link.model not in tables.by_model or f.column not in own.c:
                continue
            parent = tables.by_model[f.link.model]
            if parent.name not in existing or own.name not in existing:
                continue
            missing = sa.select(parent.c.id).where(parent.c.id == own.c[f.column])
            stmt = (
                sa.select(own.c.id, own.c[f.column])
                .where(own.c[f.column].is_not(None), ~missing.exists())
                .order_by(own.c.id)
            )
            for obj_id, value in conn.execute(stmt).all():
                out.append(f"{spec.name} {obj_id}: {f.column} = {value}, no {f.link.model} with that id")
    return out


def _report(store: Store, conn: sa.Connection) -> None:
    found = dangling_links(store, conn)
    if found:
        log.warning(
            "links to missing objects kept",
            url=store.url,
            count=len(found),
            first=found[:10],
            hint="fix or delete these objects; Store.dangling_links() lists them all",
        )


def add_postgres_keys(store: Store, conn: sa.Connection) -> None:
    """Add the missing foreign keys to PostgreSQL tables (in the migration's transaction).

    A key whose column already holds ids of missing objects is added ``NOT VALID``:
    new writes are checked, the old rows are kept and reported; it is validated at a
    later start once they are gone.
    """
    have = {
        name: validated
        for name, validated in conn.execute(
            sa.text(
                "SELECT c.conname, c.convalidated FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE c.contype = 'f' AND n.nspname = current_schema()"
            )
        ).all()
    }
    dangling = False
    for table in store.tables.metadata.sorted_tables:
        for fk in table.foreign_key_constraints:
            if have.get(str(fk.name)):
                continue  # there and validated: nothing to check
            column = fk.column_keys[0]
            parent = fk.elements[0].column.table
            clean = not conn.execute(
                sa.select(table.c[column])
                .where(
                    table.c[column].is_not(None),
                    ~sa.select(parent.c.id).where(parent.c.id == table.c[column]).exists(),
                )
                .limit(1)
            ).first()
            dangling = dangling or not clean
            if fk.name in have:
                if clean:
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" VALIDATE CONSTRAINT "{fk.name}"')
                continue
            check = "" if clean else " NOT VALID"
            conn.exec_driver_sql(
                f'ALTER TABLE "{table.name}" ADD CONSTRAINT "{fk.name}" FOREIGN KEY ("{column}") '
                f'REFERENCES "{parent.name}" ("id") DEFERRABLE INITIALLY DEFERRED{check}'
            )
    if dangling:
        _report(store, conn)


def migrate_sqlite(store: Store) -> None:
    """Rebuild the SQLite tables made without their foreign keys or ``AUTOINCREMENT``, keeping every row.

    SQLite cannot add either to a table: each such table is copied into a new one that
    has them (every column kept, the metadata's last), the old one dropped and the new
    one renamed, with its indexes, in one transaction with foreign keys off. A root
    table's id sequence starts after the highest id it holds or the journal names, so
    ids purged before are not given again. Rows whose links name missing objects are
    kept and reported.
    """
    with store.engine.connect().execution_options(actors_read=True) as conn:
        stale = _stale_sqlite_tables(store, conn)
        if not stale:
            return
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                stale = _stale_sqlite_tables(store, conn)  # again: another process may have done it
                for table in stale:
                    _rebuild(store, conn, table)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            if stale:
                log.info("tables rebuilt with foreign keys and AUTOINCREMENT", tables=[t.name for t in stale])
                _report(store, conn)
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def sqlite_reference(col: sa.Column[Any]) -> str:
    """The ``REFERENCES`` clause of link column ``col`` for SQLite's ``ADD COLUMN`` (empty if none)."""
    return "".join(
        f' CONSTRAINT "{fk.name}" REFERENCES "{fk.column.table.name}" ("id") DEFERRABLE INITIALLY DEFERRED'
        for fk in col.foreign_keys
    )


def _stale_sqlite_tables(store: Store, conn: sa.Connection) -> list[sa.Table]:
    created: dict[str, str] = dict(
        conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
    )
    stale = []
    for model, table in store.tables.by_model.items():
        sql = created.get(table.name)
        if sql is None:
            continue
        is_root = store.schema.parent(model) is None
        missing = [fk for fk in table.foreign_key_constraints if str(fk.name) not in sql]
        if missing:
            have = {row[1] for row in conn.exec_driver_sql(f'PRAGMA table_info("{table.name}")')}
            missing = [fk for fk in missing if fk.column_keys[0] in have]
        if missing or (is_root and "AUTOINCREMENT" not in sql.upper()):
            stale.append(table)
    return stale


def _rebuild(store: Store, conn: sa.Connection, table: sa.Table) -> None:
    old = sa.Table(table.name, sa.MetaData(), autoload_with=conn)
    indexes = [
        sql
        for (sql,) in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (table.name,),
        )
    ]
    temp = f"{table.name}__rebuild"
    metadata = sa.MetaData()
    for name in {fk.column.table.name for fk in table.foreign_keys}:  # what the keys name, to compile them
        sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))
    new = sa.Table(
        temp,
        metadata,
        *[_column_like(table, col) for col in old.c],
        sqlite_autoincrement=table.dialect_options["sqlite"]["autoincrement"],
    )
    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{temp}"')
    conn.execute(sa.schema.CreateTable(new))
    names = ", ".join(f'"{c.name}"' for c in old.c)
    conn.exec_driver_sql(f'INSERT INTO "{temp}" ({names}) SELECT {names} FROM "{table.name}"')
    conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
    conn.exec_driver_sql(f'ALTER TABLE "{temp}" RENAME TO "{table.name}"')
    for sql in indexes:
        conn.exec_driver_sql(sql)
    if new.dialect_options["sqlite"]["autoincrement"]:
        _seed_sequence(store, conn, table)


def _column_like(table: sa.Table, reflected: sa.Column[Any]) -> sa.Column[Any]:
    """The metadata's column (with its foreign key) for ``reflected``, or a copy of the stored one."""
    if reflected.name in table.c:
        col = table.c[reflected.name]
        fks = [
            sa.ForeignKey(
                fk.target_fullname, name=fk.name, deferrable=True, initially="DEFERRED", use_alter=True
            )
            for fk in col.foreign_keys
        ]
        return sa.Column(col.name, col.type, *fks, primary_key=col.primary_key, nullable=col.nullable)
    return sa.Column(reflected.name, reflected.type, primary_key=reflected.primary_key, nullable=True)


def _seed_sequence(store: Store, conn: sa.Connection, table: sa.Table) -> None:
    """Start ``table``'s id sequence after its highest id and the highest the journal names for its models."""
    models = [m for m, t in store.tables.by_model.items() if store.tables.chain(m)[0] is table]
    journal = store.tables.journal
    highest = max(
        conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0,
        conn.execute(sa.select(sa.func.max(journal.c.object_id)).where(journal.c.model.in_(models))).scalar()
        or 0
        if journal.name in sa.inspect(conn).get_table_names()
        else 0,
    )
    conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table.name,))
    conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, highest))
