"""The remote backend: the ORM's :class:`~actors.orm.Backend` over the gRPC API.

``ModelAccessor(RemoteBackend("core:50051", username=..., password=...))``
gives the same ORM as over a local :class:`~actors.store.Store`. Values are
checked on the client with the store's own rules (same error messages), then
again by the core. Calls wait for the core while it is away (up to the call
timeout); :meth:`RemoteBackend.subscribe` keeps a watch stream open,
reconnects with capped backoff and resumes after the last sequence number
seen, so no notice is missed or repeated.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc

from actors._backoff import Backoff
from actors.logs import get_logger
from actors.models import Schema, xproto_files
from actors.store import (
    Caller,
    ChangeNotice,
    NotFound,
    Pending,
    Query,
    Row,
    Unsubscribe,
    ValidationError,
    WriteContext,
    check_column,
    check_id,
    owner_to_fill,
)

from ._inspection import status_from_message, why_from_message
from ._protos import CORE_SERVICE, ModelTypes, Protos, base_protos
from ._remote_errors import (
    AccessDenied,
    RemoteError,
    SchemaConflict,
    Unavailable,
    raise_remote,
    status_details,
)
from ._subscription import Subscription
from ._wire import (
    DIGEST_KEY,
    ErrorKind,
    changes_to_message,
    message_to_changes,
    query_to_message,
    read_pem,
    row_from_message,
    schema_from_json,
    write_options_to_message,
)

__all__ = [
    "AccessDenied",
    "RemoteBackend",
    "RemoteError",
    "SchemaConflict",
    "Unavailable",
    "read_service_config",
]

_Parsed = TypeVar("_Parsed")

log = get_logger("actors.api")

_ALL = Query()


#: How the channel reconnects to a core that went away (gRPC's own reconnect backoff).
RECONNECT = Backoff(initial=0.1, maximum=2.0)
#: How gRPC retries a read the core answered ``UNAVAILABLE``: tries in all, and the waits between.
READ_ATTEMPTS = 5
READ_RETRY = Backoff(initial=0.05, maximum=1.0)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def read_service_config(attempts: int = READ_ATTEMPTS, backoff: Backoff = READ_RETRY) -> str:
    """The gRPC service config of the read channel: every method retried on ``UNAVAILABLE``.

    Writes go through a second channel without it: a write whose connection broke may
    have been committed, so it is never sent twice.
    """
    policy = {
        "maxAttempts": attempts,
        "initialBackoff": _seconds(backoff.initial),
        "maxBackoff": _seconds(backoff.maximum),
        "backoffMultiplier": backoff.factor,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": [{}], "retryPolicy": policy}]})


def _query_request(model: str, query: Query) -> Callable[[Protos, ModelTypes], Any]:
    """Builds the ``FilterRequest`` of ``query`` (for Filter and Count)."""

    def build(p: Protos, t: ModelTypes) -> Any:
        try:
            return query_to_message(p.api, query)
        except TypeError as exc:
            raise ValidationError(f"{model}: {exc}") from None

    return build


def _write_request(values: Mapping[str, Any], ctx: WriteContext) -> Callable[[Protos, ModelTypes], Any]:
    """Builds the ``<Model>Write`` of ``values`` (for Create and Update)."""

    def build(p: Protos, t: ModelTypes) -> Any:
        req = changes_to_message(t.write, values)
        req.options.CopyFrom(write_options_to_message(p.message("WriteOptions"), ctx))
        return req

    return build


def _parse_row(p: Protos, t: ModelTypes, data: bytes) -> Row:
    return row_from_message(t.message.FromString(data), t.column_names)


def _parse_changes(p: Protos, t: ModelTypes, data: bytes) -> dict[str, Any]:
    """The columns an Update wrote (the reply's ``object.id`` names the object, it was not written)."""
    changes = message_to_changes(t.changes.FromString(data))
    changes.pop("id", None)
    return changes


def _parse_rows(p: Protos, t: ModelTypes, data: bytes) -> list[Row]:
    return [row_from_message(item, t.column_names) for item in t.list.FromString(data).items]


class RemoteBackend:
    """The ORM backend over a core's gRPC API.

    Args:
        endpoint: ``host:port`` of the core.
        username, password: credentials (sent on every call; the core caches the check).
        token: a bearer token from ``Login`` instead of a username and password.
        tls_ca: a CA certificate (file path or PEM text) to connect with TLS.
        caller: who writes when a call gives no :class:`WriteContext`.
        timeout: seconds a call may take, waiting for the core included.
        connect_timeout: seconds to wait at start for the core to be reachable (default
            ``timeout``); then :class:`Unavailable`, saying so in one line.
        log_retries: log ``core unreachable, retrying`` while waiting at start.
        max_message_bytes: the largest response accepted.
    """

    #: At start, the gaps between two ``core unreachable`` lines: 1 s doubling to 10 s.
    CONNECT_REPORTS = Backoff(initial=1.0, maximum=10.0)

    def __init__(
        self,
        endpoint: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        tls_ca: str | bytes | None = None,
        caller: Caller = Caller.CLIENT,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        max_message_bytes: int = 256 * 1024 * 1024,
        tls_server_name: str | None = None,
        log_retries: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.caller = caller
        self.timeout = timeout
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.initial_reconnect_backoff_ms", int(RECONNECT.initial * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(RECONNECT.initial * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(RECONNECT.maximum * 1000)),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.enable_retries", 1),
        ]
        if tls_ca is not None and tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        credentials = grpc.ssl_channel_credentials(read_pem(tls_ca)) if tls_ca is not None else None

        def channel(extra: list[tuple[str, Any]]) -> grpc.Channel:
            if credentials is not None:
                return grpc.secure_channel(endpoint, credentials, options=options + extra)
            return grpc.insecure_channel(endpoint, options=options + extra)

        # Reads (and watches) are retried by gRPC on UNAVAILABLE, writes never: two channels.
        # In plaintext they share one connection (gRPC shares it between channels that differ
        # only by service config); with TLS each has its own, the second opened at the first write.
        self._reads = channel([("grpc.service_config", read_service_config())])
        self._writes = channel([])
        self._auth: tuple[tuple[str, str], ...] = ()
        if token:
            self._auth = (("authorization", f"Bearer {token}"),)
        elif username is not None:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._auth = (("authorization", f"Basic {basic}"),)
        self._unary: dict[tuple[str, bool], Any] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watchers: set[Subscription] = set()
        self._offset = 0.0
        self._last_now = 0.0
        self._protos: Protos
        self._schema: Schema
        try:
            self._connect(connect_timeout if connect_timeout is not None else timeout, log_retries)
        except BaseException:
            self._reads.close()
            self._writes.close()
            raise
        self._sync_clock()

    # -- plumbing -------------------------------------------------------------
    def _call(
        self,
        path: str,
        request: Any,
        *,
        digest: str | None = None,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> bytes:
        """One call; an ``idempotent`` one goes through the read channel, which gRPC retries."""
        if self._closed.is_set():
            raise RemoteError("the remote backend is closed")
        metadata = self._auth + (((DIGEST_KEY, digest),) if digest else ())
        stub = self._unary.get((path, idempotent))
        if stub is None:
            channel = self._reads if idempotent else self._writes
            stub = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            self._unary[path, idempotent] = stub
        return bytes(
            stub(
                request.SerializeToString(),
                timeout=timeout if timeout is not None else self.timeout,
                metadata=metadata,
                wait_for_ready=True,
            )
        )

    def _core(
        self, method: str, reply: str, request: Any = None, *, protos: Protos | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method`` of ``Core`` with ``request`` (default ``Empty``); its reply as a ``reply``."""
        protos = protos or self._protos
        if request is None:
            request = protos.message("Empty")()
        try:
            data = self._call(f"/{CORE_SERVICE}/{method}", request, **kwargs)
        except grpc.RpcError as exc:
            raise_remote(exc, self.endpoint)
            raise  # not reached
        return protos.message(reply).FromString(data)

    def _model_call(
        self,
        model: str,
        method: str,
        build: Callable[[Protos, ModelTypes], Any],
        parse: Callable[[Protos, ModelTypes, bytes], _Parsed],
        *,
        idempotent: bool = True,
    ) -> _Parsed:
        """Call ``method`` of ``model``'s service; fetch the schema again once if it changed."""
        for attempt in range(2):
            protos = self._protos
            types = protos.models.get(model)
            if types is None:
                if attempt == 0:
                    self.refresh_schema()
                    continue
                if model in self._schema:
                    raise ValidationError(f"model {model} is abstract and has no objects")
                raise ValidationError(f"unknown model {model!r}")
            request = build(protos, types)
            try:
                data = self._call(
                    f"/{types.service}/{method}", request, digest=types.digest, idempotent=idempotent
                )
            except grpc.RpcError as exc:
                code, _details, kind = status_details(exc)
                if attempt == 0 and (
                    kind == ErrorKind.SCHEMA_CHANGED
                    or (code == grpc.StatusCode.NOT_FOUND and kind == ErrorKind.UNKNOWN_MODEL)
                ):
                    self.refresh_schema()
                    continue
                raise_remote(exc, self.endpoint)
            return parse(protos, types, data)
        raise RemoteError(f"the schema of model {model} keeps changing")  # pragma: no cover

    def _connect(self, timeout: float, log_retries: bool) -> None:
        """Wait until the channel to the core is ready (up to ``timeout`` s), then fetch the schema.

        gRPC keeps trying to connect meanwhile, with its reconnect backoff (:data:`RECONNECT`);
        each time a wait ends without a connection one line is logged, the waits taken
        from :attr:`CONNECT_REPORTS`.
        """
        started = time.monotonic()
        deadline = started + timeout
        wait = self.CONNECT_REPORTS.initial
        ready = grpc.channel_ready_future(self._reads)
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    ready.result(timeout=max(0.0, min(wait, remaining)))
                    break
                except grpc.FutureTimeoutError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Unavailable(
                            f"the core at {self.endpoint} is unavailable: "
                            f"unreachable, no connection within {timeout:g} s",
                            grpc.StatusCode.UNAVAILABLE,
                        ) from None
                    wait = self.CONNECT_REPORTS.after(wait)
                    if log_retries:
                        log.warning(
                            "core unreachable, retrying",
                            endpoint=self.endpoint,
                            waited=round(time.monotonic() - started, 1),
                            gives_up_in=round(remaining, 1),
                        )
        finally:
            ready.cancel()
        self.refresh_schema(timeout=max(deadline - time.monotonic(), self.timeout))

    def refresh_schema(self, timeout: float | None = None) -> Schema:
        """Fetch the core's models and descriptors again (done on its own when they change)."""
        response = self._core("GetSchema", "SchemaResponse", protos=base_protos(), timeout=timeout)
        new = Protos.from_serialized(response.file_descriptors)
        schema = schema_from_json(response.models_json)
        with self._lock:
            current = getattr(self, "_protos", None)
            if current is None or current.version != new.version:
                self._protos = new
                self._schema = schema
        return self._schema

    def _sync_clock(self) -> None:
        before = time.time()
        now = self._core("Now", "NowResponse").now
        after = time.time()
        self._offset = now - (before + after) / 2

    # -- Backend --------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        """The core's models (fetched again when they change)."""
        return self._schema

    def now(self) -> float:
        """The core's clock, estimated locally: strictly increasing, no call per use."""
        with self._lock:
            now = max(time.time() + self._offset, self._last_now + 1e-6)
            self._last_now = now
            return now

    def last_seq(self) -> int:
        """The last sequence number of the core's change journal."""
        return int(self._core("Now", "NowResponse").last_seq)

    def get(self, model: str, id: int) -> Row | None:
        check_id(model, id)
        try:
            return self._model_call(model, "Get", lambda p, t: p.message("GetRequest")(id=id), _parse_row)
        except NotFound:
            return None

    def select(self, model: str, query: Query = _ALL) -> list[Row]:
        return self._model_call(model, "Filter", _query_request(model, query), _parse_rows)

    def count(self, model: str, query: Query = _ALL) -> int:
        return self._model_call(
            model,
            "Count",
            _query_request(model, query),
            lambda p, t, data: int(p.message("CountResponse").FromString(data).count),
        )

    def pending(self, model: str, which: Pending | str, *, limit: int | None = None) -> list[Row]:
        which = Pending(which)

        def build(p: Protos, t: ModelTypes) -> Any:
            req = p.message("FilterRequest")(pending=which.value)
            if limit is not None:
                req.limit = limit
            return req

        return self._model_call(model, "Filter", build, _parse_rows)

    def _checked(self, model: str, values: Mapping[str, Any], creating: bool = False) -> dict[str, Any]:
        """``values`` checked as the store checks them (same messages), before they travel."""
        schema = self._schema if model in self._schema else self.refresh_schema()
        if model not in schema:
            raise ValidationError(f"unknown model {model!r}")
        if schema[model].abstract:
            raise ValidationError(f"model {model} is abstract and has no objects")
        if creating:  # the core fills a missing owner from the model's owner_class_name
            values = owner_to_fill(schema, model, values)
        return {column: check_column(schema, model, column, value) for column, value in values.items()}

    def create(self, model: str, values: Mapping[str, Any], ctx: WriteContext | None = None) -> Row:
        ctx = ctx if ctx is not None else WriteContext(self.caller)
        checked = self._checked(model, values, creating=True)
        if checked.get("id", 0) is None:
            del checked["id"]
        return self._model_call(model, "Create", _write_request(checked, ctx), _parse_row, idempotent=False)

    def update(self, model: str, id: int, values: Mapping[str, Any], ctx: WriteContext | None = None) -> Row:
        ctx = ctx if ctx is not None else WriteContext(self.caller)
        check_id(model, id)
        if ctx.update_fields is not None:
            columns = self._schema.fields_by_column(model) if model in self._schema else {}
            for name in ctx.update_fields:
                if name not in columns:
                    raise ValidationError(f"model {model} has no field {name!r}")
            values = {k: v for k, v in values.items() if k in ctx.update_fields}
        checked = self._checked(model, values)
        if "id" in checked and checked["id"] is not None and checked["id"] != id:
            raise ValidationError(f"{model}.id cannot be changed")
        checked["id"] = id
        return self._model_call(
            model, "Update", _write_request(checked, ctx), _parse_changes, idempotent=False
        )

    def delete(self, model: str, id: int, ctx: WriteContext | None = None, *, purge: bool = False) -> None:
        ctx = ctx if ctx is not None else WriteContext(self.caller)
        check_id(model, id)

        def build(p: Protos, t: ModelTypes) -> Any:
            return p.message("DeleteRequest")(
                id=id, purge=purge, options=write_options_to_message(p.message("WriteOptions"), ctx)
            )

        self._model_call(model, "Delete", build, lambda p, t, data: None, idempotent=False)

    def subscribe(self, callback: Callable[[ChangeNotice], None]) -> Unsubscribe:
        """Call ``callback(notice)`` for every write from now on, in a background thread.

        The watch stream reconnects with capped backoff when the core goes away and
        resumes after the last sequence number it delivered: every notice arrives
        once, in order.
        """
        stream = self._reads.unary_stream(
            f"/{CORE_SERVICE}/Watch", request_serializer=None, response_deserializer=None
        )
        watcher = Subscription(
            self.endpoint, stream, self._auth, lambda: self._protos, callback, self.last_seq()
        )
        with self._lock:
            self._watchers.add(watcher)
        watcher.start()

        def unsubscribe() -> None:
            watcher.stop()
            with self._lock:
                self._watchers.discard(watcher)

        return unsubscribe

    # -- beyond the Backend ---------------------------------------------------
    def upload_models(
        self, files: Mapping[str, str] | str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
    ) -> list[str]:
        """Send xproto files to the core; returns the models added or extended.

        ``files`` is ``{name: text}``, or paths of xproto files and folders (a
        folder gives its ``*.xproto`` files, as ``models_dir`` does).

        Raises:
            ValidationError: a file does not parse (the message names file, line, column).
            SchemaConflict: a model conflicts with the core's declaration of it.
            AccessDenied: the user may not upload (role readonly).
        """
        if isinstance(files, Mapping):
            items = list(files.items())
        else:
            paths = [files] if isinstance(files, str | os.PathLike) else list(files)
            items = [(p.name, p.read_text(encoding="utf-8")) for p in xproto_files(paths)]
        if not items:
            return []
        protos = self._protos
        file_cls = protos.message("XprotoFile")
        request = protos.message("UploadRequest")(files=[file_cls(name=n, content=c) for n, c in items])
        response = self._core("UploadModels", "UploadResponse", request, idempotent=False)
        self.refresh_schema()
        return list(response.models)

    def proto_files(self) -> dict[str, str]:
        """The generated ``.proto`` files of the core: name -> text."""
        return {f.name: f.content for f in self._core("GetProtos", "ProtoFiles").files}

    def status(self) -> dict[str, Any]:
        """``Core/Status``: the actor tree of the synchronizer serving this API (the JSON of ``/status``).

        ``kind`` is ``core`` (and ``children`` empty) when no synchronizer runs there.
        """
        return status_from_message(self._core("Status", "StatusResponse"))

    def why(self, model: str, id: int) -> dict[str, Any]:
        """``Core/Why``: why object ``id`` of ``model`` is not enacted (the JSON of ``/why/<model>/<id>``).

        Raises:
            NotFound: no such model or object.
            RemoteError: no synchronizer runs in the core's process.
        """
        request = self._protos.message("WhyRequest")(model=model, id=id)
        return why_from_message(self._core("Why", "WhyResponse", request))

    def login(self, username: str, password: str) -> str:
        """A bearer token for ``username``, for :class:`RemoteBackend` ``token=`` or grpcurl."""
        request = self._protos.message("LoginRequest")(username=username, password=password)
        return str(self._core("Login", "LoginResponse", request).token)

    def close(self) -> None:
        """Stop every watch and close the channel."""
        self._closed.set()
        with self._lock:
            watchers = list(self._watchers)
            self._watchers.clear()
        for watcher in watchers:
            watcher.stop()
        self._reads.close()
        self._writes.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
