"""Tests of actors.runtime.produce: which bus ``produce`` publishes to, what it sends, bad values."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from actors.config import load_config, use_config
from actors.runtime._kafka_client import EventBusError
from actors.runtime.produce import close_producers, event_bus_servers, produce, using_event_bus

from .helpers import read_topic


def test_servers_come_from_the_endpoint_first_then_the_block_then_the_config_then_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env-host:9000")
    (tmp_path / "config.yaml").write_text("name: x\nevent_bus:\n  endpoint: config-host\n")
    with use_config(load_config(tmp_path / "config.yaml")):
        assert event_bus_servers() == ("config-host:9092",)
        with using_event_bus(["block-a:1", "block-b:2"]) as servers:
            assert servers == ("block-a:1", "block-b:2")
            assert event_bus_servers() == servers
            assert event_bus_servers("given:5") == ("given:5",)
        assert event_bus_servers() == ("config-host:9092",)
    assert event_bus_servers() == ("env-host:9000",)


def test_no_bus_anywhere_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(EventBusError, match=r"^no event bus to produce to: set event_bus\.endpoint"):
        produce("topic", value=b"x")


def test_produce_encodes_keys_values_and_headers_on_a_real_broker(kafka_bootstrap: str) -> None:
    topic = f"produce-{uuid.uuid4().hex[:10]}"
    try:
        metadata = produce(topic, key=7, value={"a": [1, 2]}, headers={"h": "v"}, endpoint=kafka_bootstrap)
        assert (metadata.topic, metadata.offset) == (topic, 0)
        produce(topic, key="é", value="text", headers=[("b", b"\x00")], endpoint=kafka_bootstrap)
        # A closed producer is replaced by a new one at the next call.
        close_producers()
        future = produce(topic, value=bytearray(b"raw"), endpoint=kafka_bootstrap, wait=False)
        assert future.get(timeout=10).offset == 2
        with pytest.raises(TypeError, match="produce: value must be bytes, str or None"):
            produce(topic, value=object(), endpoint=kafka_bootstrap)
        with pytest.raises(TypeError, match="produce: key must be"):
            produce(topic, key=1.5, value=b"x", endpoint=kafka_bootstrap)
        records = read_topic(kafka_bootstrap, topic, 3, timeout=30)
    finally:
        close_producers()
    assert [(r.key, r.value, r.headers) for r in records] == [
        (b"7", json.dumps({"a": [1, 2]}).encode(), [("h", b"v")]),
        ("é".encode(), b"text", [("b", b"\x00")]),
        (None, b"raw", []),
    ]
