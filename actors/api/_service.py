"""The gRPC handlers: model services, the ``Core`` service, the watch stream, schema upload.

One :class:`ApiService` (a ``grpc.GenericRpcHandler``) answers every method of
the generated services. It looks the model up on each call in the current
:class:`~actors.api._protos.Protos`, so models uploaded while the server runs
are served at once. Requests and responses travel as bytes and are parsed
inside the handler, so a malformed request is an ``INVALID_ARGUMENT`` answer,
never a crash; every exception is mapped to a status code.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc
import sqlalchemy as sa

from actors.logs import get_logger
from actors.models import FieldSpec, ModelSpec, Schema, SchemaError, XprotoSyntaxError, parse_xproto
from actors.store import (
    OPERATORS,
    ChangeNotice,
    Condition,
    NotFound,
    Pending,
    Query,
    Store,
    ValidationError,
    WriteContext,
)

from ._auth import Authenticator, Principal
from ._protos import CORE_SERVICE, SERVICES_PACKAGE, ModelTypes, Protos
from ._wire import (
    DIGEST_KEY,
    ERROR_KEY,
    ApiError,
    ErrorKind,
    changes_to_message,
    clip,
    condition_from_message,
    message_values,
    notice_to_message,
    row_to_message,
    schema_to_json,
    write_options,
)

__all__ = ["ApiService", "UploadLog", "merge_models"]

log = get_logger("actors.api")

#: Journal entries read per query when a watch replays.
REPLAY_BATCH = 500
#: Lookups that only apply to text columns.
_TEXT_OPERATORS = frozenset({"iexact", "contains", "icontains"})
#: Lookups that order values (not for booleans).
_ORDER_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
#: Live notices queued for one slow watcher before it falls back to the journal.
WATCH_QUEUE_LIMIT = 10_000

Behavior = Callable[[bytes, grpc.ServicerContext], Any]


class _Wake:
    """Put in a watcher's queue to wake it: the call ended or the queue overflowed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_CANCELLED = _Wake("cancelled")
_OVERFLOW = _Wake("overflow")


# -- schema upload -------------------------------------------------------------------


def _field_key(spec: ModelSpec) -> dict[str, tuple[str, str | None]]:
    return {f.name: (f.kind, f.link.model if f.link else None) for f in spec.fields}


def _same_declaration(a: ModelSpec, b: ModelSpec) -> bool:
    """Equal but for where they were declared."""

    def strip(spec: ModelSpec) -> tuple[Any, ...]:
        return (
            spec.name,
            spec.bases,
            dict(spec.options),
            tuple((f.name, f.kind, f.number, f.modifier, dict(f.options), f.link) for f in spec.fields),
        )

    return strip(a) == strip(b)


def extension_problem(old: ModelSpec, new: ModelSpec) -> str | None:
    """Why ``new`` cannot replace ``old`` (``None`` if it keeps every field and only adds some)."""
    if tuple(old.bases) != tuple(new.bases):
        return f"its bases change from ({', '.join(old.bases)}) to ({', '.join(new.bases)})"
    new_fields = _field_key(new)
    for name, (kind, link) in _field_key(old).items():
        if name not in new_fields:
            return f"field {old.name}.{name} would be removed"
        if new_fields[name] != (kind, link):
            new_kind, new_link = new_fields[name]
            return (
                f"field {old.name}.{name} changes type from {kind}{'->' + link if link else ''} "
                f"to {new_kind}{'->' + new_link if new_link else ''}"
            )
    return None


def merge_models(
    schema: Schema, specs: Iterable[ModelSpec], *, strict: bool = True
) -> tuple[Schema, list[str]]:
    """``schema`` with ``specs`` added: ``(new schema, names of models added or extended)``.

    A model already in ``schema`` may be redeclared identically, or with more
    fields (same bases, same kind for every existing field). Anything else raises
    ``FAILED_PRECONDITION`` naming the model and field; with ``strict=False``
    such a declaration is skipped instead (and a narrower redeclaration is ignored).

    Raises:
        ApiError: ``FAILED_PRECONDITION`` for a conflicting model or a schema that does not resolve.
    """
    merged, changed, _protos = _merge_models(schema, specs, strict=strict)
    return merged, changed


def _merge_models(
    schema: Schema, specs: Iterable[ModelSpec], *, strict: bool
) -> tuple[Schema, list[str], Protos | None]:
    """:func:`merge_models`, plus the descriptors of the new schema (``None`` when nothing changed)."""
    current = {spec.name: spec for spec in schema}
    out = dict(current)
    changed: list[str] = []
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        if spec.name in seen and not _same_declaration(seen[spec.name], spec):
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {spec.name} is declared twice ({seen[spec.name].origin} and {spec.origin})",
                ErrorKind.CONFLICT,
            )
        seen[spec.name] = spec
        old = out.get(spec.name)
        if old is None:
            out[spec.name] = spec
            changed.append(spec.name)
            continue
        if _same_declaration(old, spec):
            continue
        problem = extension_problem(old, spec)
        if problem is None:
            out[spec.name] = spec
            changed.append(spec.name)
            continue
        if not strict:
            if extension_problem(spec, old) is None:
                continue  # the older declaration is narrower: keep the wider one
            log.warning("uploaded model skipped", model=spec.name, origin=spec.origin, reason=problem)
            continue
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{spec.origin}: model {spec.name} conflicts with its current declaration ({old.origin}): "
            f"{problem}; a model can only be extended with new fields",
            ErrorKind.CONFLICT,
        )
    if not changed:
        return schema, [], None
    try:
        merged = Schema(out.values())
        protos = Protos.from_schema(merged)
    except SchemaError as exc:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(exc), ErrorKind.CONFLICT) from None
    return merged, changed, protos


class UploadLog:
    """The xproto files clients uploaded, kept in the store's database for restarts.

    Table ``actors_api_xproto``: one row per distinct text (``digest``, the
    ``name`` the client gave, ``content``, ``uploaded_at``). On start the core
    merges them again in upload order; a declaration narrower than one already
    loaded is ignored, so older versions of a file do no harm.
    """

    TABLE = "actors_api_xproto"

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._meta = sa.MetaData()
        self._table = sa.Table(
            self.TABLE,
            self._meta,
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(1024), nullable=False),
            sa.Column("content", sa.Text, nullable=False),
            sa.Column("uploaded_at", sa.Float, nullable=False),
        )
        self._meta.create_all(self._engine)

    def files(self) -> list[tuple[str, str]]:
        """``(name, content)`` of every stored file, oldest first."""
        table = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.name, table.c.content).order_by(table.c.uploaded_at))
            return [(r.name, r.content) for r in rows]

    def save(self, files: Iterable[tuple[str, str]]) -> None:
        table = self._table
        now = time.time()
        with self._engine.begin() as conn:
            for name, content in files:
                digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
                conn.execute(table.delete().where(table.c.digest == digest))
                conn.execute(
                    table.insert().values(digest=digest, name=name, content=content, uploaded_at=now)
                )


def parse_files(files: Iterable[tuple[str, str]]) -> list[ModelSpec]:
    """Parse uploaded xproto texts; ``INVALID_ARGUMENT`` naming file, line and column on error."""
    specs: list[ModelSpec] = []
    for name, content in files:
        try:
            specs.extend(parse_xproto(content, name))
        except XprotoSyntaxError as exc:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    return specs


# -- the service ---------------------------------------------------------------------


class ApiService(grpc.GenericRpcHandler):
    """Every method of ``actors.api.v1.Core`` and of ``actors.services.v1.<Model>``.

    ``on_schema_change(protos)`` is called after an upload changed the schema
    (the server updates health and reflection).
    """

    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        *,
        uploads: UploadLog | None = None,
        on_schema_change: Callable[[Protos], None] | None = None,
    ) -> None:
        self.store = store
        self.auth = auth
        self.uploads = uploads
        self.on_schema_change = on_schema_change
        self._schema_lock = threading.Lock()
        self._stopping = threading.Event()
        self._watchers: set[queue.SimpleQueue[Any]] = set()
        self._watchers_lock = threading.Lock()
        restored = self._restore_uploads(uploads) if uploads is not None else None
        self.protos = restored or Protos.from_schema(store.schema)
        self._core: dict[str, tuple[Behavior, bool]] = {
            "GetSchema": (self._get_schema, False),
            "GetProtos": (self._get_protos, False),
            "UploadModels": (self._upload_models, False),
            "Login": (self._login, False),
            "Now": (self._now, False),
            "Watch": (self._core_watch, True),
        }
        self._model_methods: dict[str, tuple[Callable[..., Any], bool]] = {
            "List": (self._list, False),
            "Get": (self._get, False),
            "Create": (self._create, False),
            "Update": (self._update, False),
            "Delete": (self._delete, False),
            "Filter": (self._filter, False),
            "Count": (self._count, False),
            "Watch": (self._model_watch, True),
        }

    def _restore_uploads(self, uploads: UploadLog) -> Protos | None:
        """Apply the uploaded files again; the descriptors of the resulting schema if it changed."""
        schema = self.store.schema
        changed: list[str] = []
        protos: Protos | None = None
        for name, content in uploads.files():
            try:
                specs = parse_files([(name, content)])
                schema, names, built = _merge_models(schema, specs, strict=False)
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
        self._stopping.set()
        with self._watchers_lock:
            for q in list(self._watchers):
                q.put(_CANCELLED)

    # -- dispatch -------------------------------------------------------------
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        service, _, name = method.lstrip("/").partition("/")
        if service == CORE_SERVICE:
            entry = self._core.get(name)
            if entry is None:
                return None
            behavior, streaming = entry
            return self._handler(behavior, streaming)
        if service.startswith(SERVICES_PACKAGE + "."):
            model = service[len(SERVICES_PACKAGE) + 1 :]
            model_entry = self._model_methods.get(name)
            if model_entry is None:
                return None
            fn, streaming = model_entry

            def behavior(request: bytes, context: grpc.ServicerContext) -> Any:
                return fn(model, request, context)

            return self._handler(behavior, streaming)
        return None

    def _handler(self, behavior: Behavior, streaming: bool) -> grpc.RpcMethodHandler:
        if streaming:

            def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
                try:
                    yield from behavior(request, context)
                    return
                except Exception as exc:
                    code, message, kind = self._status(exc)
                self._abort(context, code, message, kind)

            return grpc.unary_stream_rpc_method_handler(stream)

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                response = behavior(request, context)
                return bytes(response.SerializeToString())
            except Exception as exc:
                code, message, kind = self._status(exc)
            self._abort(context, code, message, kind)
            return b""  # not reached: abort raises

        return grpc.unary_unary_rpc_method_handler(unary)

    @staticmethod
    def _status(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
        if isinstance(exc, ApiError):
            return exc.code, exc.message, exc.kind
        if isinstance(exc, ValidationError):
            return grpc.StatusCode.INVALID_ARGUMENT, str(exc), ErrorKind.VALIDATION
        if isinstance(exc, NotFound):
            return grpc.StatusCode.NOT_FOUND, str(exc), ErrorKind.NOT_FOUND
        if isinstance(exc, sa.exc.ArgumentError):
            return grpc.StatusCode.INVALID_ARGUMENT, f"cannot build the query: {exc}", ErrorKind.VALIDATION
        if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
            reason = str(exc.orig) if exc.orig is not None else str(exc)
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"rejected by the database: {reason}",
                ErrorKind.VALIDATION,
            )
        log.exception("API handler failed", error=repr(exc))
        return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}", ErrorKind.INTERNAL

    @staticmethod
    def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, kind: str) -> None:
        context.set_trailing_metadata(((ERROR_KEY, kind),))
        context.abort(code, clip(message))

    # -- helpers --------------------------------------------------------------
    @staticmethod
    def _parse(cls: Any, request: bytes) -> Any:
        try:
            return cls.FromString(request)
        except Exception as exc:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"malformed request: cannot parse {cls.DESCRIPTOR.full_name}: {exc}",
                ErrorKind.MALFORMED,
            ) from None

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        return self.auth.authenticate(context.invocation_metadata(), context.peer())

    def _model(self, model: str, context: grpc.ServicerContext) -> tuple[Protos, ModelTypes]:
        protos = self.protos
        types = protos.models.get(model)
        if types is None:
            schema = self.store.schema
            if model in schema:
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

    @staticmethod
    def _paging(req: Any) -> tuple[int | None, int]:
        limit = req.limit if req.HasField("limit") else None
        if limit is not None and limit < 0:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be >= 0, got {limit}")
        if req.offset < 0:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"offset must be >= 0, got {req.offset}")
        return limit, req.offset

    # -- model methods --------------------------------------------------------
    def _list(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        self._principal(context)
        protos, types = self._model(model, context)
        req = self._parse(protos.message("ListRequest"), request)
        limit, offset = self._paging(req)
        where: tuple[Condition, ...] = ()
        if not req.include_deleted and "deleted" in types.columns:
            where = (Condition("deleted", "eq", False),)
        query = Query(where=where, order_by=tuple(req.order_by), limit=limit, offset=offset)
        rows = self.store.select(model, query)
        return types.list(items=[row_to_message(types.message, row) for row in rows])

    def _get(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        self._principal(context)
        protos, types = self._model(model, context)
        req = self._parse(protos.message("GetRequest"), request)
        row = self.store.get(model, req.id)
        if row is None:
            raise NotFound(f"{model} id {req.id} does not exist")
        return row_to_message(types.message, row)

    def _write_values(self, model: str, types: ModelTypes, req: Any) -> dict[str, Any]:
        values = message_values(req.object)
        for name in req.null_fields:
            if name not in types.columns:
                raise ValidationError(f"model {model} has no field {name!r}")
            if name in values:
                raise ValidationError(f"{model}.{name} is both set and listed in null_fields")
            values[name] = None
        return values

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
        req = self._parse(message(protos, types), request)
        ctx = write_options(req.options)
        principal.check_write(ctx.caller)
        return protos, types, req, ctx

    def _write_request(
        self, model: str, request: bytes, context: grpc.ServicerContext
    ) -> tuple[Any, WriteContext, dict[str, Any]]:
        """A checked ``<M>Write``: the model's types, options, values."""
        _protos, types, req, ctx = self._authorized_write(model, request, context, lambda p, t: t.write)
        return types, ctx, self._write_values(model, types, req)

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

    def _filter_query(self, model: str, req: Any) -> tuple[Query, Pending | None]:
        """The query of a ``FilterRequest``, or its pending query (then only ``limit`` is set)."""
        limit, offset = self._paging(req)
        if req.pending:
            try:
                which = Pending(req.pending)
            except ValueError:
                allowed = ", ".join(p.value for p in Pending)
                raise ApiError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unknown pending query {req.pending!r} (expected one of {allowed})",
                ) from None
            if req.where or req.exclude or req.order_by or offset:
                raise ApiError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "pending cannot be combined with where, exclude, order_by or offset (only limit)",
                )
            return Query(limit=limit), which
        conditions = []
        fields, by_column = self._lookup_fields(model)
        for group in (req.where, req.exclude):
            out = []
            for c in group:
                cond = condition_from_message(c)
                f = fields.get(cond.column) or by_column.get(cond.column)
                self._check_lookup(model, cond, f)
                if cond.op not in OPERATORS:
                    allowed = ", ".join(sorted(OPERATORS))
                    raise ValidationError(
                        f"{model}.{cond.column}: unknown lookup operator {cond.op!r} "
                        f"(expected one of {allowed})"
                    )
                out.append(cond)
            conditions.append(tuple(out))
        return Query(conditions[0], conditions[1], tuple(req.order_by), limit, offset), None

    def _lookup_fields(self, model: str) -> tuple[Mapping[str, FieldSpec], Mapping[str, FieldSpec]]:
        """``model``'s fields by name and by column (none for a model the schema lacks)."""
        schema = self.store.schema
        if model not in schema:
            return {}, {}
        return schema.fields(model), schema.fields_by_column(model)

    @staticmethod
    def _check_lookup(model: str, cond: Condition, f: FieldSpec | None) -> None:
        """Refuse lookups the database cannot run, with a message naming the field."""
        where = f"{model}.{cond.column}__{cond.op}"
        if cond.op == "isnull" and not isinstance(cond.value, bool):
            raise ValidationError(f"{where}: expected true or false, got {cond.value!r}")
        if f is None:
            return
        kind = "link" if f.is_link else f.kind
        if cond.op in _TEXT_OPERATORS and kind not in ("string", "text"):
            raise ValidationError(f"{where}: only string fields take {cond.op} ({cond.column} is {kind})")
        if cond.op in _ORDER_OPERATORS and kind == "bool":
            raise ValidationError(f"{where}: a boolean field cannot be compared with {cond.op}")

    def _filter(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        self._principal(context)
        protos, types = self._model(model, context)
        req = self._parse(protos.message("FilterRequest"), request)
        query, which = self._filter_query(model, req)
        if which is not None:
            rows = self.store.pending(model, which, limit=query.limit)
        else:
            rows = self.store.select(model, query)
        return types.list(items=[row_to_message(types.message, row) for row in rows])

    def _count(self, model: str, request: bytes, context: grpc.ServicerContext) -> Any:
        self._principal(context)
        protos, _types = self._model(model, context)
        req = self._parse(protos.message("FilterRequest"), request)
        query, which = self._filter_query(model, req)
        if which is not None:
            count = len(self.store.pending(model, which, limit=query.limit))
        else:
            if query.limit is not None or query.offset:
                count = len(self.store.select(model, query))
            else:
                count = self.store.count(model, query)
        return protos.message("CountResponse")(count=count)

    def _model_watch(self, model: str, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._principal(context)
        protos, _types = self._model(model, context)
        req = self._parse(protos.message("WatchRequest"), request)
        if req.models:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the Watch of model {model} takes no models (use actors.api.v1.Core/Watch)",
            )
        return self._watch(protos, req.since_seq, [model], context)

    # -- core methods ---------------------------------------------------------
    def _get_schema(self, request: bytes, context: grpc.ServicerContext) -> Any:
        principal = self._principal(context)
        protos = self.protos
        self._parse(protos.message("Empty"), request)
        return protos.message("SchemaResponse")(
            version=protos.version,
            # Where the server keeps its files is for its administrators only.
            models_json=schema_to_json(self.store.schema, full_paths=principal.role == "admin"),
            file_descriptors=protos.serialized,
        )

    def _get_protos(self, request: bytes, context: grpc.ServicerContext) -> Any:
        self._principal(context)
        protos = self.protos
        self._parse(protos.message("Empty"), request)
        file_cls = protos.message("ProtoFile")
        return protos.message("ProtoFiles")(
            files=[file_cls(name=name, content=text) for name, text in protos.proto_texts().items()]
        )

    def _login(self, request: bytes, context: grpc.ServicerContext) -> Any:
        protos = self.protos
        req = self._parse(protos.message("LoginRequest"), request)
        if self.auth.open:
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED,
                "no users are configured: nothing to log in to",
                ErrorKind.AUTH,
            )
        token, expires, role = self.auth.login(req.username, req.password, context.peer())
        return protos.message("LoginResponse")(token=token, expires_at=expires, role=role)

    def _now(self, request: bytes, context: grpc.ServicerContext) -> Any:
        self._principal(context)
        protos = self.protos
        self._parse(protos.message("Empty"), request)
        return protos.message("NowResponse")(now=self.store.now(), last_seq=self.store.last_seq())

    def _upload_models(self, request: bytes, context: grpc.ServicerContext) -> Any:
        principal = self._principal(context)
        principal.check_write()
        protos = self.protos
        req = self._parse(protos.message("UploadRequest"), request)
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
            schema, changed, new_protos = _merge_models(self.store.schema, specs, strict=True)
            if new_protos is not None:
                self.store.set_schema(schema)
                if self.uploads is not None:
                    self.uploads.save(files)
                self.protos = new_protos
                log.info(
                    "models uploaded", user=principal.username, models=changed, version=new_protos.version
                )
                if self.on_schema_change is not None:
                    self.on_schema_change(new_protos)
            elif self.uploads is not None:
                self.uploads.save(files)
            return self.protos.message("UploadResponse")(models=changed, version=self.protos.version)

    def _core_watch(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._principal(context)
        protos = self.protos
        req = self._parse(protos.message("WatchRequest"), request)
        return self._watch(protos, req.since_seq, list(req.models), context)

    # -- the watch ------------------------------------------------------------
    def _watch(
        self, protos: Protos, since_seq: int, models: list[str], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        """Notices after ``since_seq`` from the journal, then live ones, with no gap and no repeat.

        The stream subscribes first, then replays the journal, then forwards live
        notices, skipping any seq already sent. A live notice that jumps ahead
        (another writer's notice published first) or a queue overflow is filled
        from the journal, so the order stays by seq.
        """
        store = self.store
        notice_cls = protos.message("ChangeNotice")
        wanted = set(models)

        def matches(notice: ChangeNotice) -> bool:
            if not wanted or notice.model in wanted:
                return True
            schema = store.schema
            return notice.model in schema and any(
                m in schema and schema.is_a(notice.model, m) for m in wanted
            )

        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        overflow = threading.Event()

        def on_notice(notice: ChangeNotice) -> None:
            # Runs in the writer's thread: must be quick and must not block.
            if overflow.is_set():
                return
            if q.qsize() >= WATCH_QUEUE_LIMIT:
                overflow.set()
                q.put(_OVERFLOW)
                return
            q.put(notice)

        unsubscribe = store.subscribe(on_notice)
        with self._watchers_lock:
            self._watchers.add(q)
        context.add_callback(lambda: q.put(_CANCELLED))
        try:
            last = since_seq if since_seq >= 0 else store.last_seq()

            def replay(upto: int | None = None) -> Iterator[bytes]:
                nonlocal last
                while context.is_active() and not self._stopping.is_set():
                    batch = store.changes_since(last, REPLAY_BATCH)
                    for notice in batch:
                        if upto is not None and notice.seq > upto:
                            return
                        last = notice.seq
                        if matches(notice):
                            yield notice_to_message(notice_cls, notice).SerializeToString()
                    if len(batch) < REPLAY_BATCH:
                        return

            yield from replay()
            while context.is_active() and not self._stopping.is_set():
                try:
                    item = q.get(timeout=1.0)
                except queue.Empty:
                    continue
                if item is _CANCELLED:
                    break
                if item is _OVERFLOW:
                    # Too slow a reader: drop the queue and read the journal instead.
                    # Every dropped notice was committed before it was queued, so the
                    # replay that follows the drain reads it back.
                    overflow.clear()
                    while True:
                        try:
                            q.get_nowait()
                        except queue.Empty:
                            break
                    yield from replay()
                    continue
                notice = item
                if notice.seq <= last:
                    continue
                if notice.seq > last + 1:
                    yield from replay(upto=notice.seq - 1)
                if notice.seq <= last:
                    continue
                last = notice.seq
                if matches(notice):
                    yield notice_to_message(notice_cls, notice).SerializeToString()
        finally:
            unsubscribe()
            with self._watchers_lock:
                self._watchers.discard(q)
