"""The store's statement cache (``actors/store/_statements.py``): built once, bounded, replaced whole."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.store import Condition, Query, Store, _statements

from .store_support import EXTRA_FIELD, make_schema, open_store


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store("sqlite://") as s:
        yield s


def test_a_statement_is_built_once_per_shape(store: Store) -> None:
    for size in (1, 2, 3):
        store.create("Widget", {"name": f"w{size}", "size": size})
    first, _ = store._statements.query("select", "Widget", Query(where=(Condition("size", "gt", 1),)))
    again, params = store._statements.query("select", "Widget", Query(where=(Condition("size", "gt", 2),)))
    assert again is first and params == {"w0": 2}  # same shape, another value: the same statement
    other, _ = store._statements.query("select", "Widget", Query(where=(Condition("size", "lt", 2),)))
    assert other is not first
    assert store._statements.select_by_id("Widget") is store._statements.select_by_id("Widget")


def test_query_shapes_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_statements, "QUERY_SHAPES", 3)
    for size in range(1, 6):
        store.create("Widget", {"name": f"w{size}", "size": size})
    by_id = store._statements.select_by_id("Widget")
    ops = ("gt", "gte", "lt", "lte", "eq")
    for op in ops * 2:
        rows = store.select("Widget", Query(where=(Condition("size", op, 3),)))
        expected = {"gt": [4, 5], "gte": [3, 4, 5], "lt": [1, 2], "lte": [1, 2, 3], "eq": [3]}[op]
        assert [r["size"] for r in rows] == expected
        shapes = [key for key in store._statements._built if key[0] == "query"]
        assert len(shapes) <= 3
    assert store._statements.select_by_id("Widget") is by_id  # only query shapes are dropped


def test_a_schema_change_replaces_the_whole_cache(store: Store) -> None:
    before = store._statements
    store.select("Widget")
    store.set_schema(make_schema(EXTRA_FIELD))
    assert store._statements is not before
    created = store.create("Widget", {"name": "w"})
    assert store.get("Widget", created["id"])["priority"] == 5  # type: ignore[index]
    assert [r["label"] for r in store.select("Widget")] == ["none"]
