"""The gRPC handlers of the model services and of the ``Core`` service.

One :class:`ApiService` (a ``grpc.GenericRpcHandler``) answers every method of
the generated services. It looks the model up on each call in the current
:class:`~actors.api._protos.Protos`, so models uploaded while the server runs
are served at once. The rules of an upload are in ``_merge``, the request to
handler plumbing and error mapping in ``_dispatch``, the watch streams in
``_watch``, and the query translation in ``_queries``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from functools import partial
from typing import Any

import grpc

from actors.logs import get_logger
from actors.store import Condition, NotFound, Query, Store, UploadLog, ValidationError, WriteContext

from ._auth import Authenticator, Principal
from ._dispatch import Behavior, method_handler, parse
from ._gate import CallGate
from ._inspection import Inspection, status_message, why_message
from ._merge import merge_models, parse_files
from ._protos import CORE_SERVICE, SERVICES_PACKAGE, ModelTypes, Protos
from ._queries import filter_query, paging
from ._watch import Watches
from ._wire import (
    DIGEST_KEY,
    ApiError,
    ErrorKind,
    changes_to_message,
    message_values,
    row_to_message,
    schema_to_json,
    write_options,
)

__all__ = ["ApiService"]

log = get_logger("actors.api")

ModelBehavior = Callable[[str, bytes, grpc.ServicerContext], Any]

#: The model methods held back while the synchronizer is behind (:class:`CallGate`).
_WRITES = frozenset({"Create", "Update", "Delete"})


class ApiService(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no type stubs
    """Every method of ``actors.api.v1.Core`` and of ``actors.services.v1.<Model>``.

    ``on_schema_change(protos)`` is called after an upload changed the schema
    (the server updates health and reflection). ``gate`` gives each unary call
    its turn (:class:`CallGate`: concurrent calls, backpressure of writes).
    """

    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        *,
        uploads: UploadLog | None = None,
        on_schema_change: Callable[[Protos], None] | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate if gate is not None else CallGate()
        self.auth = auth
        self.uploads = uploads
        self.on_schema_change = on_schema_change
        self.watches = Watches(store)
        #: Where ``Status`` and ``Why`` get their answers (set by a synchronizer serving the API).
        self.inspection = Inspection()
        self._schema_lock = threading.Lock()
        restored = self._restore_uploads(uploads) if uploads is not None else None
        self.protos = restored or Protos.from_schema(store.schema)
        #: The methods of ``Core`` and of every model service; ``Watch`` is the one stream of each.
        self._core: dict[str, Behavior] = {
            "GetSchema": self._get_schema,
            "GetProtos": self._get_protos,
            "UploadModels": self._upload_models,
            "Login": self._login,
            "Now": self._now,
            "Watch": self._core_watch,
            "Status": self._status,
            "Why": self._why,
        }
        self._model_methods: dict[str, ModelBehavior] = {
            "List": self._list,
            "Get": self._get,
            "Create": self._create,
            "Update": self._update,
            "Delete": self._delete,
            "Filter": self._filter,
            "Count": self._count,
            "Watch": self._model_watch,
        }
        #: The handlers built so far, by full method name (see :meth:`_new_handler`).
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def _restore_uploads(self, uploads: UploadLog) -> Protos | None:
        """Apply the uploaded files again; the descriptors of the resulting schema if it changed."""
        schema = self.store.schema
        changed: list[str] = []
        protos: Protos | None = None
        for name, content in uploads.files():
            try:
                specs = parse_files([(name, content)])
                schema, names, built = merge_models(schema, specs, strict=False)
            except ApiError as exc:
                log.warning("uploaded xproto file skipped", file=name, reason=exc.message)
                continue
            changed.extend(names)
            protos = built or protos
        if changed:
            self.store.set_schema(schema)
            log.info("uploaded models restored", models=sorted(set(changed)))
        return protos

    def stop(self) -> None:
        """Wake every watch stream so the server can stop at once."""
        self.watches.stop()

    # -- dispatch -------------------------------------------------------------
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = self._new_handler(method)
        return handler

    def _new_handler(self, method: str) -> grpc.RpcMethodHandler | None:
        """The handler of ``method`` (``None``: not one of ours), kept for the next call if it is served.

        A model method's handler looks its model up on each call, so it stays right
        after an upload; only the methods of models served now are kept, so clients
        asking for other names do not fill :attr:`_handlers`.
        """
        service, _, name = method.lstrip("/").partition("/")
        streaming = name == "Watch"
        if service == CORE_SERVICE and name in self._core:
            # A login's password check is slow on purpose: it does not hold up other calls.
            turn = nullcontext if name == "Login" else self.gate.turn
            handler = method_handler(self._core[name], streaming, turn=turn)
        elif service.startswith(SERVICES_PACKAGE + ".") and name in self._model_methods:
            model = service[len(SERVICES_PACKAGE) + 1 :]
            behavior = partial(self._model_methods[name], model)
            handler = method_handler(behavior, streaming, turn=partial(self.gate.turn, name in _WRITES))
            if model not in self.protos.models:
                return handler  # answers "unknown model" (or one uploaded since): not kept
        else:
            return None
        self._handlers[method] = handler
        return handler

    # -- helpers --------------------------------------------------------------
    def _principal(self, context: grpc.ServicerContext) -> Principal:
        return self.auth.authenticate(context.invocation_metadata(), context.peer())

    def _model(self, model: str, context: grpc.ServicerContext) -> tuple[Protos, ModelTypes]:
        protos = self.protos
        types = protos.models.get(model)
        if types is None:
            if model in self.store.schema:
                message = f"model {model} is abstract and has no objects"
            else:
                message = f"unknown model {model!r}"
            raise ApiError(grpc.StatusCode.NOT_FOUND, message, ErrorKind.UNKNOWN_MODEL)
        for key, value in context.invocation_metadata() or ():
            if key == DIGEST_KEY and value != types.digest:
                raise ApiError(
                    grpc.StatusCode.ABORTED,
                    f"the fields of model {model} changed (schema version {protos.version}); "
                    "fetch the schema again",
                    ErrorKind.SCHEMA_CHANGED,
                )
        return protos, types

    def _read(
        self, model: str, request: bytes, context: grpc.ServicerContext, message: str
    ) -> tuple[Protos, ModelTypes, Any]:
        """Authenticate a read of ``model`` and parse its request (an ``api.proto`` ``message``)."""
        self._principal(context)
        protos, types = self._model(model, context)
        return protos, types, parse(protos.message(message), request)

    def _core_request(
        self, request: bytes, context: grpc.ServicerContext, message: str = "Empty"
    ) -> tuple[Principal, Protos, Any]:
        """Authenticate a ``Core`` call and parse its request (an ``api.proto`` ``message``)."""
        principal = self._principal(context)
        protos = self.protos
        return principal, protos, parse(protos.message(message), request)

    # -- model methods --------------------------------------------------------
    def _list(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        _protos, types, req = self._read(model, request, context, "ListRequest")
        limit, offset = paging(req)
        where: tuple[Condition, ...] = ()
        if not req.include_deleted and "deleted" in types.columns:
            where = (Condition("deleted", "eq", False),)
        query = Query(where=where, order_by=tuple(req.order_by), limit=limit, offset=offset)
        rows = self.store.select(model, query)
        return types.list(items=[row_to_message(types.message, row) for row in rows])

    def _get(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        _protos, types, req = self._read(model, request, context, "GetRequest")
        row = self.store.get(model, req.id)
        if row is None:
            raise NotFound(f"{model} id {req.id} does not exist")
        return row_to_message(types.message, row)

    def _authorized_write(
        self,
        model: str,
        request: bytes,
        context: grpc.ServicerContext,
        message: Callable[[Protos, ModelTypes], Any],
    ) -> tuple[Protos, ModelTypes, Any, WriteContext]:
        """Check the caller may write, parse the request (``message`` picks its class) and its options."""
        principal = self._principal(context)
        principal.check_write()
        protos, types = self._model(model, context)
        req = parse(message(protos, types), request)
        ctx = write_options(req.options)
        principal.check_write(ctx.caller)
        return protos, types, req, ctx

    def _write_request(
        self, model: str, request: bytes, context: grpc.ServicerContext
    ) -> tuple[ModelTypes, WriteContext, dict[str, Any]]:
        """A checked ``<M>Write``: the model's types, options, values."""
        _protos, types, req, ctx = self._authorized_write(model, request, context, lambda p, t: t.write)
        values = message_values(req.object)
        for name in req.null_fields:
            if name not in types.columns:
                raise ValidationError(f"model {model} has no field {name!r}")
            if name in values:
                raise ValidationError(f"{model}.{name} is both set and listed in null_fields")
            values[name] = None
        return types, ctx, values

    def _create(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        types, ctx, values = self._write_request(model, request, context)
        row = self.store.create(model, values, ctx)
        return row_to_message(types.message, row)

    def _update(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        types, ctx, values = self._write_request(model, request, context)
        id = values.pop("id", None)
        if id is None:
            raise ValidationError(f"{model}.id is required to Update (set object.id)")
        changes = self.store.update(model, id, values, ctx)
        reply = changes_to_message(types.changes, changes)
        reply.object.id = id
        return reply

    def _delete(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        protos, _types, req, ctx = self._authorized_write(
            model, request, context, lambda p, t: p.message("DeleteRequest")
        )
        self.store.delete(model, req.id, ctx, purge=req.purge)
        # An object that never reached the backend is purged at once, without purge.
        purged = req.purge or self.store.get(model, req.id) is None
        return protos.message("DeleteResponse")(id=req.id, deleted=True, purged=purged)

    def _filter(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        _protos, types, req = self._read(model, request, context, "FilterRequest")
        query, which = filter_query(self.store.schema, model, req)
        if which is not None:
            rows = self.store.pending(model, which, limit=query.limit)
        else:
            rows = self.store.select(model, query)
        return types.list(items=[row_to_message(types.message, row) for row in rows])

    def _count(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        protos, _types, req = self._read(model, request, context, "FilterRequest")
        query, which = filter_query(self.store.schema, model, req)
        if which is not None:
            count = len(self.store.pending(model, which, limit=query.limit))
        elif query.limit is not None or query.offset:
            count = len(self.store.select(model, query))
        else:
            count = self.store.count(model, query)
        return protos.message("CountResponse")(count=count)

    def _model_watch(self, model: str, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        protos, _types, req = self._read(model, request, context, "WatchRequest")
        if req.models:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the Watch of model {model} takes no models (use actors.api.v1.Core/Watch)",
            )
        return self.watches.stream(protos, req.since_seq, [model], context)

    # -- core methods ---------------------------------------------------------
    def _get_schema(self, request: bytes, context: grpc.ServicerContext) -> Any:
        principal, protos, _req = self._core_request(request, context)
        return protos.message("SchemaResponse")(
            version=protos.version,
            # Where the server keeps its files is for its administrators only.
            models_json=schema_to_json(self.store.schema, full_paths=principal.role == "admin"),
            file_descriptors=protos.serialized,
        )

    def _get_protos(self, request: bytes, context: grpc.ServicerContext) -> Any:
        _principal, protos, _req = self._core_request(request, context)
        file_cls = protos.message("ProtoFile")
        return protos.message("ProtoFiles")(
            files=[file_cls(name=name, content=text) for name, text in protos.proto_texts().items()]
        )

    def _login(self, request: bytes, context: grpc.ServicerContext) -> Any:
        protos = self.protos
        req = parse(protos.message("LoginRequest"), request)
        if self.auth.open:
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED,
                "no users are configured: nothing to log in to",
                ErrorKind.AUTH,
            )
        token, expires, role = self.auth.login(req.username, req.password, context.peer())
        return protos.message("LoginResponse")(token=token, expires_at=expires, role=role)

    def _now(self, request: bytes, context: grpc.ServicerContext) -> Any:
        _principal, protos, _req = self._core_request(request, context)
        return protos.message("NowResponse")(now=self.store.now(), last_seq=self.store.last_seq())

    def _upload_models(self, request: bytes, context: grpc.ServicerContext) -> Any:
        principal = self._principal(context)
        principal.check_write()
        req = parse(self.protos.message("UploadRequest"), request)
        if not req.files:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "no xproto files in the request")
        files = []
        for i, f in enumerate(req.files):
            name = f.name or f"upload-{i}.xproto"
            if len(name) > 1024:
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"file name {name[:60]!r}... is too long")
            files.append((name, f.content))
        specs = parse_files(files)
        with self._schema_lock:
            schema, changed, new_protos = merge_models(self.store.schema, specs, strict=True)
            if new_protos is not None:
                self.store.set_schema(schema)
            if self.uploads is not None:
                self.uploads.save(files)
            if new_protos is not None:
                self.protos = new_protos
                log.info(
                    "models uploaded", user=principal.username, models=changed, version=new_protos.version
                )
                if self.on_schema_change is not None:
                    self.on_schema_change(new_protos)
            return self.protos.message("UploadResponse")(models=changed, version=self.protos.version)

    def _core_watch(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        _principal, protos, req = self._core_request(request, context, "WatchRequest")
        return self.watches.stream(protos, req.since_seq, list(req.models), context)

    def _status(self, request: bytes, context: grpc.ServicerContext) -> Any:
        _principal, protos, _req = self._core_request(request, context)
        return status_message(protos, self.inspection)

    def _why(self, request: bytes, context: grpc.ServicerContext) -> Any:
        _principal, protos, req = self._core_request(request, context, "WhyRequest")
        return why_message(protos, self.inspection, req)
