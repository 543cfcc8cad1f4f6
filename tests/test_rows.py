"""Rows as read-only mappings over driver tuples (``actors.store.Record``)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from actors.store import Record, as_dict
from actors.store._rows import Layout

LAYOUT = Layout(["id", "name", "active"], [None, None, bool])


def record(*values: Any) -> Record:
    return Record(LAYOUT, values)


def test_a_record_reads_like_a_dict_and_converts_on_read() -> None:
    r = record(1, "a", 0)
    assert r["active"] is False and record(1, "a", 1)["active"] is True
    assert record(1, "a", None)["active"] is None  # NULL stays None
    expected = {"id": 1, "name": "a", "active": False}
    assert r == expected and expected == r  # the second one: dict.__eq__ defers to Record
    assert r != {"id": 1, "name": "a", "active": True}
    assert list(r) == ["id", "name", "active"] and len(r) == 3
    assert list(r.items()) == [("id", 1), ("name", "a"), ("active", False)]
    assert r.get("name") == "a" and r.get("nope") is None
    assert "id" in r and "nope" not in r
    with pytest.raises(KeyError):
        r["nope"]
    assert "'name': 'a'" in repr(r)


def test_a_record_is_read_only_and_copies_to_a_dict() -> None:
    r = record(1, "a", 1)
    with pytest.raises(TypeError):
        r["name"] = "b"  # type: ignore[index]
    for copy in (r.to_dict(), as_dict(r), dict(r)):
        assert type(copy) is dict and copy == {"id": 1, "name": "a", "active": True}
        copy["name"] = "b"
        assert r["name"] == "a"
    plain = {"id": 2}
    assert as_dict(plain) == plain and as_dict(plain) is not plain


def test_a_record_pickles_and_serialises_as_a_dict() -> None:
    r = record(1, "a", 0)
    assert pickle.loads(pickle.dumps(r)) == {"id": 1, "name": "a", "active": False}
    assert json.loads(json.dumps(as_dict(r))) == {"id": 1, "name": "a", "active": False}
