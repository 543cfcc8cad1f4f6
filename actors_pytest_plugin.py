"""The pytest plugin of ``actors.testing``: the ``sync`` fixture (registered by the ``pytest11`` entry point).

This module stays outside the ``actors`` package and imports nothing of it until a
test asks for the fixture: a pytest run that does not use it pays nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

_CONFIG_HELP = "the synchronizer config.yaml the actors `sync` fixture runs (relative to the rootdir)"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``actors_config`` ini option."""
    parser.addini("actors_config", _CONFIG_HELP, default="")


def pytest_configure(config: pytest.Config) -> None:
    """The ``actors`` marker."""
    config.addinivalue_line(
        "markers",
        "actors(bus='inprocess'|'kafka', deterministic=True, runtime={...}, config=path): "
        "options of the actors `sync` fixture",
    )


@pytest.fixture
def actors_config(request: pytest.FixtureRequest) -> str:
    """The config the ``sync`` fixture runs: override this fixture, or set the ``actors_config`` ini key."""
    marker = request.node.get_closest_marker("actors")
    if marker is not None and marker.kwargs.get("config"):
        return str(marker.kwargs["config"])
    value = str(request.config.getini("actors_config") or "")
    if not value:
        raise pytest.UsageError(
            "the actors `sync` fixture needs a config: set `actors_config = path/to/config.yaml` "
            "in the pytest ini options, or define an `actors_config` fixture returning the path"
        )
    return value if os.path.isabs(value) else str(request.config.rootpath / value)


@pytest.fixture
def sync(request: pytest.FixtureRequest, actors_config: Any, tmp_path: Any) -> Iterator[Any]:
    """Your synchronizer, started on a temporary store with a fake clock and an in-process bus.

    Options by marker: ``@pytest.mark.actors(bus="kafka")`` uses the config's real
    broker; ``deterministic=False`` lets steps run concurrently; ``runtime={...}``
    overrides keys of the config's ``runtime`` section.
    """
    from actors.testing import SyncHarness

    marker = request.node.get_closest_marker("actors")
    options = dict(marker.kwargs) if marker is not None else {}
    options.pop("config", None)
    harness = SyncHarness(actors_config, data_dir=tmp_path / "actors-data", **options)
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()
