"""Builders shared by the store, ORM and store property tests: models, clocks, databases."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from actors.models import Schema, load_schema, parse_xproto
from actors.store import Store

__all__ = [
    "EXTRA_FIELD",
    "MODELS",
    "StepClock",
    "driver_statements",
    "make_schema",
    "open_store",
    "postgres_database",
    "sqlite_url",
]

#: ``Widget`` has one field of each kind.
WIDGET = """
message Widget (XOSBase) {
    optional string name = 1 [max_length = 20];
    optional int32 size = 2 [default = 7];
    optional uint32 weight = 3;
    optional float ratio = 4;
    required bool active = 5 [default = True, null = False];
    required string color = 6 [default = "red", null = False, max_length = 10,
                               choices = "(('red', 'Red'), ('blue', 'Blue'))"];
    optional text notes = 7;
    optional manytoone owner->Service:widgets = 8 [db_index = True];
}
"""

#: ``MyModel`` is the reference's model; ``ServiceInstance`` -> ``MyInstance`` ->
#: ``SubInstance`` is a three-table chain.
MODELS = (
    """
message MyModel (XOSBase) {
    required string first_name = 1 [null = False, blank = False];
    required string last_name = 2 [null = False, blank = False];
}
"""
    + WIDGET
    + """
message MyService (Service) {
    optional string region = 1 [max_length = 30];
}
message MyInstance (ServiceInstance) {
    optional string flavor = 1 [max_length = 30];
}
message SubInstance (MyInstance) {
    optional int32 level = 1 [default = 1];
}
"""
)

#: Used by the migration tests: ``Widget`` with two more fields.
EXTRA_FIELD = WIDGET.replace(
    "\n}\n",
    """
    required int32 priority = 9 [default = 5, null = False];
    optional string label = 10 [default = "none", max_length = 10];
}
""",
)


def make_schema(text: str = MODELS) -> Schema:
    """The built-in models plus ``text`` (xproto)."""
    return load_schema([], extra=parse_xproto(text, "test_models.xproto"))


def sqlite_url(folder: Path, name: str = "store.db") -> str:
    return "sqlite:///" + str(folder / name)


class StepClock:
    """A clock the test moves: ``clock.t`` is what it returns; ``tick()`` adds one second."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float = 1.0) -> float:
        self.t += seconds
        return self.t


@contextlib.contextmanager
def postgres_stores(server_url: str, schema: Schema, n: int = 2) -> Iterator[list[Store]]:
    """``n`` stores of ``schema`` on one new PostgreSQL namespace (see :func:`postgres_database`),
    as ``n`` processes would open it; closed afterwards."""
    with postgres_database(server_url) as url, contextlib.ExitStack() as stack:
        stores = []
        for _ in range(n):
            store = Store(url, schema)
            stack.callback(store.close)
            stores.append(store)
        yield stores


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema (namespace) in the database of ``server_url``; dropped afterwards.

    Yields a URL whose connections have that schema as ``search_path``, so a store opened
    on it sees only its own tables. Much faster than ``CREATE DATABASE`` per test.
    """
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = "t_" + uuid.uuid4().hex[:16]
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        try:
            url = sa.make_url(server_url).update_query_dict({"options": f"-csearch_path={name}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        admin.dispose()


@contextlib.contextmanager
def open_store(url: str, schema: Schema | None = None, **options: object) -> Iterator[Store]:
    store = Store(url, schema or make_schema(), **options)  # type: ignore[arg-type]
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def driver_statements() -> Iterator[list[tuple[str, str]]]:
    """Every statement psycopg's cursors execute meanwhile, in any thread: ``(thread name, SQL)``.

    The store runs some statements on the driver's cursor (a batch's shared statements,
    the claims), where SQLAlchemy's ``before_cursor_execute`` does not see them.
    """
    import psycopg

    seen: list[tuple[str, str]] = []
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((threading.current_thread().name, str(query)))
        return original(self, query, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]
