"""Tests of actors.runtime._settings: RuntimeSettings read from a configuration, and step limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.config import Config, ConfigError
from actors.runtime import RuntimeSettings
from actors.steps import SyncStep


def test_defaults_come_from_the_configuration_model() -> None:
    settings = RuntimeSettings.from_config(Config.from_dict({"name": "mysync"}))
    assert settings == RuntimeSettings(name="mysync", event_bus={"dead_letter_topic": "mysync.dead-letters"})
    assert (settings.resync_period, settings.step_deadline, settings.restart_backoff) == (30, 600, 1)
    assert (settings.max_restarts, settings.restart_window, settings.pull_period) == (5, 60, 5)
    assert (settings.shutdown_timeout, settings.isolation, settings.step_concurrency) == (10, "thread", 1)
    assert settings.backoff_disabled is False and settings.dependency_graph == {}
    assert settings.event_bus.dead_letter_topic == "mysync.dead-letters"
    assert settings.event_bus.max_retries == 3
    assert RuntimeSettings().name == "actors"


def test_the_runtime_section_and_top_level_keys_are_read() -> None:
    cfg = Config.from_dict(
        {
            "name": "s",
            "backoff_disabled": True,
            "runtime": {"resync_period": 0.5, "max_restarts": 2, "isolation": "process"},
            "event_bus": {"endpoint": "k:1", "max_retries": 7},
        }
    )
    settings = RuntimeSettings.from_config(cfg)
    assert (settings.resync_period, settings.max_restarts, settings.isolation) == (0.5, 2, "process")
    assert settings.backoff_disabled is True and settings.name == "s"
    assert (settings.event_bus.endpoint, settings.event_bus.max_retries) == ("k:1", 7)
    assert settings.pull_period == 5


def test_dependency_graph_from_a_file_and_inline(tmp_path: Path) -> None:
    graph = {"Slice": [["Site", "site", "slices"]], "Instance": ["Slice", ["Image"], ["Node", None, None]]}
    (tmp_path / "deps.json").write_text(json.dumps(graph), encoding="utf-8")
    expected = {
        "Slice": (("Site", "site", "slices"),),
        "Instance": (("Slice", "", ""), ("Image", "", ""), ("Node", "", "")),
    }
    from_file = Config.from_dict({"name": "x", "dependency_graph": "deps.json"}, base_dir=tmp_path)
    assert RuntimeSettings.from_config(from_file).dependency_graph == expected
    inline = Config.from_dict({"name": "x", "dependency_graph": graph})
    assert RuntimeSettings.from_config(inline).dependency_graph == expected


def test_a_dependency_graph_file_broken_after_loading_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "deps.json").write_text("{}", encoding="utf-8")
    cfg = Config.from_dict({"name": "x", "dependency_graph": "deps.json"}, base_dir=tmp_path)
    (tmp_path / "deps.json").write_text('{"Slice": 5}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^dependency_graph\.Slice: expected a list of"):
        RuntimeSettings.from_config(cfg)


def test_per_step_overrides_win_over_the_class_and_the_default() -> None:
    class SyncA(SyncStep):
        concurrency = 3
        rate_limit = 9.0

    cfg = Config.from_dict(
        {
            "name": "x",
            "runtime": {"step_concurrency": 4, "steps": {"SyncA": {"rate_limit": 2, "rate_burst": 5}}},
        }
    )
    settings = RuntimeSettings.from_config(cfg)
    a = settings.limits("SyncA", SyncA)
    assert (a.concurrency, a.rate_limit, a.rate_burst) == (3, 2.0, 5)
    other = settings.limits("SyncB", SyncStep)
    assert (other.concurrency, other.rate_limit, other.rate_burst) == (4, None, 1)
