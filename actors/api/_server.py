"""The API server: generated services, health, reflection, TLS."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from actors.config import ApiUser, Config, ConfigError, load_config
from actors.logs import configure_logging, get_logger, held_records
from actors.observe import (
    NULL_METRICS,
    Health,
    HttpSettings,
    Metrics,
    NullMetrics,
    ObserveServer,
)
from actors.store import Store, UploadLog

from ._auth import Authenticator
from ._gate import CallGate
from ._inspection import Inspection, StatusSource, WhySource
from ._observe import MetricsInterceptor, ReadinessHealth
from ._protos import Protos
from ._service import ApiService
from ._webview import core_routes, http_authorizer
from ._wire import read_pem

__all__ = [
    "DEFAULT_ADDRESS",
    "ApiServer",
    "check_address",
    "load_config_and_logging",
    "serve",
]

log = get_logger("actors.api")

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: The reflection service current tools ask first; ``v1alpha`` (``reflection.SERVICE_NAME``) is served too.
REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"


def check_address(address: str) -> None:
    """Raise ``OSError`` naming ``address`` if the API could not listen there (a port in use, say).

    Binds a plain socket the way gRPC will (``SO_REUSEADDR``, every resolved address,
    one success is enough) and closes it again. Done before anything else starts, so
    a busy port is one line before any step has run. Port 0 and non-TCP addresses
    are left to gRPC.
    """
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host.strip("[]") or None, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"the API cannot listen on {address}: {exc}") from None
    reason = "no address to listen on"
    for family, kind, proto, _name, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
                return
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
    raise OSError(f"the API cannot listen on {address}: {reason}")


def _reflection_v1_pool() -> descriptor_pool.DescriptorPool:
    """A pool holding ``grpc/reflection/v1/reflection.proto``.

    grpcio-reflection ships only the ``v1alpha`` file. The ``v1`` messages are the
    same messages (same fields, same numbers) in package ``grpc.reflection.v1``, so
    the file is the ``v1alpha`` one renamed; the ``v1`` service runs the ``v1alpha``
    servicer, whose messages read and write the same bytes.
    """
    old, new = "grpc.reflection.v1alpha", "grpc.reflection.v1"
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = "grpc/reflection/v1/reflection.proto"
    file.package = new
    file.options.Clear()
    file.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    file.options.java_package = "io.grpc.reflection.v1"
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(f".{old}."):
                field.type_name = f".{new}." + field.type_name[len(old) + 2 :]
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{old}.", f".{new}.")
            method.output_type = method.output_type.replace(f".{old}.", f".{new}.")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool


_REFLECTION_V1_POOL = _reflection_v1_pool()


class _Pools:
    """Looks symbols up in the current generated pool, then in the default one (health, reflection)."""

    def __init__(self, service: ApiService) -> None:
        self._service = service
        self._default = descriptor_pool.Default()

    def _try(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._service.protos.pool, method)(*args)
        except KeyError:
            pass
        try:
            return getattr(self._default, method)(*args)
        except KeyError:
            return getattr(_REFLECTION_V1_POOL, method)(*args)

    def FindFileByName(self, name: str) -> Any:
        return self._try("FindFileByName", name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        return self._try("FindFileContainingSymbol", symbol)

    def FindMessageTypeByName(self, name: str) -> Any:
        return self._try("FindMessageTypeByName", name)

    def FindExtensionByNumber(self, message: Any, number: int) -> Any:
        return self._default.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Any) -> Any:
        return self._default.FindAllExtensions(message)


class _Reflection(reflection.ReflectionServicer):  # type: ignore[misc]  # grpc ships no type stubs
    """Server reflection over the generated services, following schema uploads."""

    def __init__(self, service: ApiService) -> None:
        self._api = service
        self._pools = _Pools(service)

    @property
    def _pool(self) -> Any:
        return self._pools

    @property
    def _service_names(self) -> tuple[str, ...]:
        served = (health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1_SERVICE)
        return tuple(sorted([*self._api.protos.service_names, *served]))


class ApiServer:
    """The gRPC API over a :class:`~actors.store.Store`.

    Args:
        store: the objects to serve; uploads of xproto files extend its schema.
        address: ``host:port`` to listen on; port 0 picks a free one (see :attr:`port`).
        users: the ``api.users`` configuration (see :class:`~actors.api._auth.Authenticator`);
            none means anonymous read-only access.
        tls: ``{"cert": ..., "key": ...}``, file paths or PEM text; plain TCP when ``None``.
        max_message_bytes: the largest request accepted (larger ones get ``RESOURCE_EXHAUSTED``).
        max_workers: threads serving calls; each open Watch stream holds one.
        max_concurrent_calls: how many unary calls run their handler at once (the others
            wait their turn); ``None`` means as many as there are threads.
        backlog: the synchronizer's backlog (objects ready to sync) when it shares this
            process; with ``backlog_limit`` above 0, a write waits while it is at or
            above the limit, at most ``backlog_wait`` seconds (see :class:`CallGate`).
        sync_share: while ``backlog`` is above 0, the share of the time the unary calls
            leave to the synchronizer (0: none; see :class:`CallGate`).
        token_secret: the key that signs login tokens (random per process when ``None``).
        keep_uploads: keep uploaded xproto files in the store's database and load them
            again on the next start.
        anonymous_read: let calls without credentials read (``api.anonymous_read``);
            ``None`` means on without users, off with users.
        metrics: counts every call by method and status code (``actors_grpc_server_*``).
        http: serve ``/metrics``, ``/healthz``, ``/readyz`` (``readyz/store``) and the web
            view at ``/`` (no actor tree; see :func:`~actors.api._webview.core_routes`) of this
            server alone, as ``core`` does (a synchronizer serves its own instead).
    """

    def __init__(
        self,
        store: Store,
        *,
        address: str = DEFAULT_ADDRESS,
        users: Sequence[ApiUser | Mapping[str, Any]] | None = None,
        tls: Mapping[str, Any] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_workers: int = 64,
        max_concurrent_calls: int | None = None,
        backlog: Callable[[], int] | None = None,
        backlog_limit: int = 0,
        backlog_wait: float = 1.0,
        sync_share: float = 0.0,
        token_secret: bytes | str | None = None,
        keep_uploads: bool = True,
        anonymous_read: bool | None = None,
        metrics: NullMetrics = NULL_METRICS,
        http: HttpSettings | None = None,
    ) -> None:
        check_address(address)
        self.auth = Authenticator(users, token_secret=token_secret, anonymous_read=anonymous_read)
        self.http: ObserveServer | None = None
        if http is not None and http.enabled:
            metrics = Metrics()
            checks = Health()
            checks.add("healthz", "server", lambda: None)
            checks.add("readyz", "store", lambda: _store_answers(store))
            self.http = ObserveServer(  # binds its port; the web view of a core (no actor tree)
                http.address,
                metrics=metrics,
                health=checks,
                routes=core_routes(store),
                web=True,
                authorize=http_authorizer(lambda: self.auth),
            )
            self.set_readiness(lambda: checks.ok("readyz"))
        self.tls = tls is not None
        self.service = ApiService(
            store,
            self.auth,
            uploads=UploadLog(store) if keep_uploads else None,
            on_schema_change=self._set_health,
            gate=CallGate(
                max_concurrent_calls,
                backlog=backlog,
                backlog_limit=backlog_limit,
                max_wait=backlog_wait,
                sync_share=sync_share,
            ),
        )
        self._health = ReadinessHealth(lambda: self._ready)
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ("grpc.http2.max_ping_strikes", 0),
        ]
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="actors-api")
        interceptors = [MetricsInterceptor(metrics)] if metrics.enabled else []
        self._server = grpc.server(
            self._executor, handlers=[self.service], options=options, interceptors=interceptors
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflector = _Reflection(self.service)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflector, self._server)
        v1 = grpc.stream_stream_rpc_method_handler(
            reflector.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(REFLECTION_V1_SERVICE, {"ServerReflectionInfo": v1}),)
        )
        try:
            if tls is not None:
                credentials = grpc.ssl_server_credentials([(read_pem(tls["key"]), read_pem(tls["cert"]))])
                port = self._server.add_secure_port(address, credentials)
            else:
                port = self._server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises this when nothing could be bound
            port = 0
        if not port:
            raise OSError(f"the API cannot listen on {address}")
        self.port: int = port
        host = address.rsplit(":", 1)[0]
        #: ``host:port`` actually listened on (the port filled in when 0 was asked).
        self.address = f"{host}:{port}"
        if tls is None and users and host.strip("[]") not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "API credentials travel unencrypted: configure api.tls",
                address=self.address,
            )
        self._started = False
        self._stopped = threading.Event()
        self._set_health(self.service.protos)

    _ready: Callable[[], bool] | None = None

    def set_readiness(self, ready: Callable[[], bool] | None) -> None:
        """What the health service asks before answering SERVING (``None``: always serving)."""
        self._ready = ready

    def set_inspection(self, status: StatusSource | None, why: WhySource | None) -> None:
        """Answer ``Core/Status`` and ``Core/Why`` with these (a synchronizer's; ``None``: a bare core)."""
        self.service.inspection = Inspection(status, why)

    def _set_health(self, protos: Protos) -> None:
        for name in ("", *protos.service_names):  # "": the server as a whole
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    @property
    def protos(self) -> Protos:
        """The descriptors of the services served now."""
        return self.service.protos

    def start(self) -> ApiServer:
        if not self._started:
            self._server.start()
            self._started = True
            log.info("API serving", address=self.address, tls=self.tls, models=len(self.protos.models))
            if self.http is not None:
                self.http.start()
                log.info("HTTP endpoint serving", address=self.http.address, url=f"{self.http.url}/metrics")
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting calls, end watch streams, wait up to ``grace`` seconds for the others."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._health.enter_graceful_shutdown()
        self.service.stop()
        self._server.stop(grace).wait()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.http is not None:
            self.http.stop()
        log.info("API stopped", address=self.address)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(store: Store, **options: Any) -> ApiServer:
    """Start serving ``store`` over gRPC; returns the running :class:`ApiServer`.

    The arguments are those of :class:`ApiServer`; ``users``, ``tls`` and
    ``max_message_bytes`` come from the ``api`` configuration keys.
    """
    return ApiServer(store, **options).start()


def _store_answers(store: Store) -> None:
    """The readiness check of ``core``: a read of the store (raises when it does not answer)."""
    store.last_seq()


def load_config_and_logging(path: str) -> Config:
    """Load the config file at *path* and apply its ``logging`` to the process, before anything logs.

    The file's own warnings (keys of the original framework...) are held back and
    logged once its logging is configured. On an error, the default logging is
    applied instead. The main job and ``core`` start with it.

    Raises:
        ConfigError: the file is invalid, its ``logging`` dictConfig included.
    """
    with held_records():
        try:
            config = load_config(path)
            try:
                configure_logging(config.settings.logging)
            except ValueError as exc:
                raise ConfigError(f"invalid dictConfig: {exc}", path=path, key="logging") from exc
        except ConfigError:
            configure_logging(None)
            raise
    return config
