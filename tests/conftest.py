"""Suite-wide fixtures: real PostgreSQL and Kafka servers, started lazily, and small helpers.

A service starts only when a test asks for its fixture, once per session:

* ``postgres_url`` -- SQLAlchemy URL of a PostgreSQL database; ``ACTORS_TEST_POSTGRES_URL``
  names an existing one, else ``scripts/local_postgres.py`` starts a server.
* ``kafka_bootstrap`` -- ``"host:port"`` of a Kafka broker; ``KAFKA_BOOTSTRAP_SERVERS`` names
  an existing one, else ``scripts/local_kafka.py`` starts a broker. Give each test its own
  topics and consumer groups: the broker is shared by the whole session.
* ``local_kafka`` -- a broker of the test's own (a ``LocalKafka``), which it may stop and start.
* ``free_port`` -- a TCP port that nothing listens on (``tests.helpers.free_ports`` gives several).
* ``keep_root_logging`` -- puts the root logger's handlers and level back after the test
  (for tests that load user modules, which apply their logging dictConfig).

Fixtures for other parts of the suite live in plugin modules listed in ``pytest_plugins``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.append(str(SCRIPTS))

from local_kafka import LocalKafka  # noqa: E402 - needs SCRIPTS on sys.path
from local_postgres import LocalPostgres  # noqa: E402

from tests.helpers import free_port as _free_port  # noqa: E402
from tests.store_support import postgres_database, sqlite_url  # noqa: E402

pytest_plugins: list[str] = []

_SERVICE_MARKERS = {"postgres_url": "postgres", "kafka_bootstrap": "kafka", "local_kafka": "kafka"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a service fixture ``postgres`` or ``kafka`` (so ``-m "not kafka"`` works)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in _SERVICE_MARKERS.items():
            if fixture in names:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of a PostgreSQL database for this session."""
    configured = os.environ.get("ACTORS_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    with LocalPostgres() as server:
        yield server.url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``"host:port"`` of a Kafka broker shared by this session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    with LocalKafka() as broker:
        yield broker.bootstrap


@pytest.fixture
def local_kafka() -> Iterator[LocalKafka]:
    """A broker of this test's own, running; the test may ``stop()`` and ``start()`` it."""
    with LocalKafka() as broker:
        yield broker


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own: an SQLite file, or a new PostgreSQL schema (namespace)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port()


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """User modules apply their logging dictConfig; put the root logger (and the levels,
    handlers and disabled flags of every named logger) back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {
        name: (logger.level, list(logger.handlers), logger.disabled, logger.propagate)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger):
            continue
        old_level, old_handlers, disabled, propagate = named.get(name, (logging.NOTSET, [], False, True))
        logger.setLevel(old_level)
        logger.handlers[:] = old_handlers
        logger.disabled = disabled
        logger.propagate = propagate
