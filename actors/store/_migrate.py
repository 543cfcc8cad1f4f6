"""Migration: the tables of a schema made to exist, keeping every row already stored.

:func:`migrate` creates the missing tables and indexes and adds missing columns with
``ALTER TABLE`` (filled with the field's default); a pending index that no longer lists
the table's columns is replaced. Links get real foreign keys: :func:`migrate_sqlite`
rebuilds SQLite tables made before them (and before ``AUTOINCREMENT``),
:func:`add_postgres_keys` adds them to PostgreSQL tables. Links that already name
missing objects are kept and reported (:func:`dangling_links`). Nothing is dropped.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import structlog

from actors.logs import get_logger

from ._engine import Database
from ._listen import install_notify_trigger
from ._locks import lock_migration
from ._tables import Tables, link_target, pending_index_prefix

__all__ = ["dangling_links", "migrate"]

log = get_logger("actors.store")
#: The reports of rebuilt tables and dangling links go through structlog's own configuration.
report_log = structlog.get_logger("actors.store")


def migrate(url: str, db: Database, tables: Tables) -> None:
    """Create missing tables, add missing columns (filled with their default), create indexes.

    A pending index that no longer lists the table's columns (it gained one) is
    replaced: the new one is created, the old one dropped. Links get their foreign
    keys (SQLite tables made before them are rebuilt, see :func:`migrate_sqlite`).
    """
    if db.dialect == "sqlite":
        with db.write_lock:
            migrate_sqlite(url, db.engine, tables)
    with db.write_lock, db.engine.begin() as conn:
        if db.dialect == "postgresql":  # one process at a time changes the tables
            lock_migration(conn)
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        for table in tables.metadata.sorted_tables:
            if table.name not in existing:
                table.create(conn)
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for col in table.c:
                if col.name in have:
                    continue
                ddl = col.type.compile(dialect=conn.dialect)
                if db.dialect == "sqlite":
                    ddl += sqlite_reference(col)
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" {ddl}')
                default = _default_for_column(tables, table, col.name)
                if default is not None:
                    conn.execute(table.update().values({col.name: default}))
                log.info("column added", table=table.name, column=col.name)
            indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(conn)
            stale = indexes - {index.name for index in table.indexes}
            for name in stale:
                if name and name.startswith(pending_index_prefix(table.name)):
                    conn.exec_driver_sql(f'DROP INDEX "{name}"')
        if db.dialect == "postgresql":
            add_postgres_keys(url, tables, conn)
            install_notify_trigger(conn, tables.journal.name)  # a write's NOTIFY rides on its journal INSERT


def _default_for_column(tables: Tables, table: sa.Table, column: str) -> Any:
    schema = tables.schema
    for spec in schema.concrete():
        if tables.by_model.get(spec.name) is table:
            for f in schema.own_fields(spec.name):
                if f.column == column:
                    return f.default
    return None


def dangling_links(tables: Tables, conn: sa.Connection) -> list[str]:
    """One line per stored link that names no object.

    ``MyInstance 4: owner_id = 999, no Service with that id``.
    """
    out = []
    schema = tables.schema
    existing = set(sa.inspect(conn).get_table_names())
    for spec in schema.concrete():
        own = tables.by_model[spec.name]
        for f in schema.own_fields(spec.name):
            target = link_target(schema, f)
            if target is None or f.column not in own.c:
                continue
            parent = tables.by_model[target]
            if parent.name not in existing or own.name not in existing:
                continue
            for obj_id, value in conn.execute(_dangling(own, f.column, parent).order_by(own.c.id)).all():
                out.append(f"{spec.name} {obj_id}: {f.column} = {value}, no {target} with that id")
    return out


def _dangling(table: sa.Table, column: str, parent: sa.Table) -> sa.Select[Any]:
    """``(id, value)`` of the rows of ``table`` whose link ``column`` names no row of ``parent``."""
    missing = sa.select(parent.c.id).where(parent.c.id == table.c[column])
    return sa.select(table.c.id, table.c[column]).where(table.c[column].is_not(None), ~missing.exists())


def _report(url: str, tables: Tables, conn: sa.Connection) -> None:
    found = dangling_links(tables, conn)
    if found:
        report_log.warning(
            "links to missing objects kept",
            url=url,
            count=len(found),
            first=found[:10],
            hint="fix or delete these objects; Store.dangling_links() lists them all",
        )


def add_postgres_keys(url: str, tables: Tables, conn: sa.Connection) -> None:
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
    for table in tables.metadata.sorted_tables:
        for fk in table.foreign_key_constraints:
            if have.get(str(fk.name)):
                continue  # there and validated: nothing to check
            column = fk.column_keys[0]
            parent = fk.elements[0].column.table
            clean = not conn.execute(_dangling(table, column, parent).limit(1)).first()
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
        _report(url, tables, conn)


def migrate_sqlite(url: str, engine: sa.Engine, tables: Tables) -> None:
    """Rebuild the SQLite tables made without their foreign keys or ``AUTOINCREMENT``, keeping every row.

    SQLite cannot add either to a table: each such table is copied into a new one that
    has them (every column kept, the metadata's last), the old one dropped and the new
    one renamed, with its indexes, in one transaction with foreign keys off. A root
    table's id sequence starts after the highest id it holds or the journal names, so
    ids purged before are not given again. Rows whose links name missing objects are
    kept and reported.
    """
    with engine.connect().execution_options(actors_read=True) as conn:
        stale = _stale_sqlite_tables(tables, conn)
        if not stale:
            return
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                stale = _stale_sqlite_tables(tables, conn)  # again: another process may have done it
                for table in stale:
                    _rebuild(tables, conn, table)
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            if stale:
                report_log.info(
                    "tables rebuilt with foreign keys and AUTOINCREMENT", tables=[t.name for t in stale]
                )
                _report(url, tables, conn)
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def sqlite_reference(col: sa.Column[Any]) -> str:
    """The ``REFERENCES`` clause of link column ``col`` for SQLite's ``ADD COLUMN`` (empty if none)."""
    return "".join(
        f' CONSTRAINT "{fk.name}" REFERENCES "{fk.column.table.name}" ("id") DEFERRABLE INITIALLY DEFERRED'
        for fk in col.foreign_keys
    )


def _stale_sqlite_tables(tables: Tables, conn: sa.Connection) -> list[sa.Table]:
    created: dict[str, str] = dict(
        conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
    )
    stale = []
    for model, table in tables.by_model.items():
        sql = created.get(table.name)
        if sql is None:
            continue
        is_root = tables.schema.parent(model) is None
        missing = [fk for fk in table.foreign_key_constraints if str(fk.name) not in sql]
        if missing:
            have = {row[1] for row in conn.exec_driver_sql(f'PRAGMA table_info("{table.name}")')}
            missing = [fk for fk in missing if fk.column_keys[0] in have]
        if missing or (is_root and "AUTOINCREMENT" not in sql.upper()):
            stale.append(table)
    return stale


def _rebuild(tables: Tables, conn: sa.Connection, table: sa.Table) -> None:
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
        _seed_sequence(tables, conn, table)


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


def _seed_sequence(tables: Tables, conn: sa.Connection, table: sa.Table) -> None:
    """Start ``table``'s id sequence after its highest id and the highest the journal names for its models."""
    models = [m for m, t in tables.by_model.items() if tables.chain(m)[0] is table]
    journal = tables.journal
    highest = max(
        conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0,
        conn.execute(sa.select(sa.func.max(journal.c.object_id)).where(journal.c.model.in_(models))).scalar()
        or 0
        if journal.name in sa.inspect(conn).get_table_names()
        else 0,
    )
    conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table.name,))
    conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, highest))
