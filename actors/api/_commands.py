"""The client commands of the command line: ``objects``, ``models``, ``protos``, ``login``, ``hash-password``,
``status`` and ``why``.

Their parser is ``actors.cli``; each command here takes the parsed arguments and
the output stream and returns the exit status. ``python -m actors.main objects
list Service name__icontains=web`` prints a table; ``--json`` prints JSON. Values
are typed by the model's fields: ``size=3``, ``enabled=false``, ``owner=2`` (a
link takes the id); ``field:=JSON`` gives a JSON value (``name:=null`` is null).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import socket
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from actors.models import FieldSpec, Schema
from actors.store import (
    Caller,
    Condition,
    NotFound,
    Query,
    WriteContext,
    parse_lookup,
)

from ._auth import hash_password
from ._client import RemoteBackend, Unavailable
from ._webview import _when

__all__ = [
    "CliError",
    "hash_password_command",
    "login_command",
    "models_command",
    "objects_command",
    "protos_command",
    "render_table",
    "status_command",
    "why_command",
]

_TRUE = {"true", "yes", "on", "1", "t", "y"}
_FALSE = {"false", "no", "off", "0", "f", "n"}
MAX_CELL = 40


class CliError(Exception):
    """A mistake on the command line (exit status 2); printed as one line without a traceback."""


# -- values --------------------------------------------------------------------------


def _find_field(schema: Schema, model: str, name: str) -> FieldSpec | None:
    """``model``'s field ``name`` (or the one stored in column ``name``); ``None`` for ``id``."""
    f = schema.fields(model).get(name) or schema.fields_by_column(model).get(name)
    if f is None and name != "id":
        raise CliError(f"model {model} has no field {name!r}")
    return f


def _typed(model: str, f: FieldSpec | None, name: str, raw: str) -> Any:
    kind = "link" if f is None or f.is_link else f.kind
    text = raw.strip()
    if kind not in ("string", "text") and text.lower() in ("null", "none"):
        return None
    try:
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(raw)
        if kind in ("link", "int32", "uint32", "int64", "uint64"):
            return int(text)
        if kind in ("float", "double"):
            value = float(text)
            if math.isnan(value):
                raise ValueError(raw)
            return value
    except ValueError:
        expected = "true or false" if kind == "bool" else "an object id" if kind == "link" else f"a {kind}"
        raise CliError(f"{model}.{name}: expected {expected}, got {raw!r}") from None
    return raw


def parse_assignment(schema: Schema, model: str, text: str) -> tuple[str, Any]:
    """``"size=3"`` -> ``("size", 3)`` typed by the field; ``"owner=2"`` -> ``("owner_id", 2)``.

    ``name:=JSON`` takes a JSON value as is (``name:=null``).
    """
    eq = text.find("=")
    if eq <= 0:
        raise CliError(f"expected field=value, got {text!r}")
    if text[eq - 1] == ":" and eq > 1:
        name, raw = text[: eq - 1], text[eq + 1 :]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CliError(f"{name}: invalid JSON value {raw!r}: {exc.msg}") from None
        f = _find_field(schema, model, name)
        return (f.column if f is not None else name), value
    name, raw = text[:eq], text[eq + 1 :]
    f = _find_field(schema, model, name)
    return (f.column if f is not None else name), _typed(model, f, name, raw)


def _lookup(schema: Schema, model: str, text: str) -> Condition:
    eq = text.find("=")
    if eq <= 0:
        raise CliError(f"expected field[__op]=value, got {text!r}")
    key, raw = text[:eq], text[eq + 1 :]
    name, op = parse_lookup(key)
    if name == "pk":
        name = "id"
    f = _find_field(schema, model, name)
    column = f.column if f is not None else "id"
    value: Any
    if op == "isnull":
        value = _typed(model, FieldSpec("isnull", "bool"), name, raw)
    elif op in ("contains", "icontains", "iexact"):
        value = raw
    elif op == "in":
        value = [_typed(model, f, name, item) for item in raw.split(",") if item != ""]
    else:
        value = _typed(model, f, name, raw)
    return Condition(column, op, value)


# -- output --------------------------------------------------------------------------


def _cell(value: Any, limit: int | None = MAX_CELL) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\n", "\\n")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "\u2026"


def render_table(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, max_cell: int | None = MAX_CELL
) -> str:
    """A plain text table with a header line, columns padded to their widest cell.

    Cells longer than ``max_cell`` characters are cut (``None``: never).
    """
    cells = [[_cell(row.get(c), max_cell) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _vertical(row: Mapping[str, Any]) -> str:
    return render_table(["field", "value"], [{"field": k, "value": v} for k, v in row.items()], max_cell=None)


def _default_columns(schema: Schema, model: str) -> list[str]:
    hidden = ("bookkeeping_state", "feedback_state", "gui_hidden")
    shown = [f.column for f in schema.fields(model).values() if not any(f.options.get(o) for o in hidden)]
    status = ["backend_status"] if "backend_status" in schema.fields_by_column(model) else []
    return ["id", *shown, *status]


# -- commands ------------------------------------------------------------------------


def _password(value: str | None) -> str | None:
    if value is not None and value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read the password file {value[1:]}: {exc.strerror or exc}") from None
    return value


def _connect(args: argparse.Namespace) -> RemoteBackend:
    probe = min(args.timeout, 5.0)
    if args.tls_ca is not None:
        if not args.tls_ca.lstrip().startswith("-----BEGIN") and not Path(args.tls_ca).is_file():
            raise CliError(f"--tls-ca {args.tls_ca}: no such file")
        # Before gRPC tries: against a plaintext server it would retry until --timeout.
        reason = tls_mismatch(args.endpoint, args.tls_ca, timeout=probe, verify=False)
        if reason is not None:
            raise Unavailable(reason)
    try:
        return RemoteBackend(
            args.endpoint,
            username=args.username,
            password=_password(args.password),
            token=args.token,
            tls_ca=args.tls_ca,
            caller=Caller.CLIENT,
            timeout=args.timeout,
            log_retries=False,
        )
    except Unavailable as exc:
        reason = tls_mismatch(args.endpoint, args.tls_ca, timeout=probe)
        if reason is None:
            raise
        raise Unavailable(reason, exc.code) from None


def tls_mismatch(
    endpoint: str, tls_ca: str | None, *, timeout: float = 5.0, verify: bool = True
) -> str | None:
    """Why a client with (or without) ``tls_ca`` cannot talk to ``endpoint``, when TLS is the cause.

    One TCP connection and a TLS handshake tell a plaintext server from a TLS one;
    with ``verify``, a second handshake checks that ``tls_ca`` trusts the server's
    certificate (asked only after gRPC failed, so it never refuses a connection
    gRPC would accept). ``None``: TLS is not the problem, or nothing answers there.
    """
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        return None

    def handshake(context: ssl.SSLContext) -> None:
        context.set_alpn_protocols(["h2"])
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            pass

    anything = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anything.check_hostname = False
    anything.verify_mode = ssl.CERT_NONE
    try:
        handshake(anything)
    except (ssl.SSLError, ConnectionError):  # an answer, not TLS
        if tls_ca is None:
            return None
        return (
            f"the core at {endpoint} serves plaintext, not TLS: "
            "leave out --tls-ca, or give the core api.tls (see docs/api.md#tls)"
        )
    except OSError:  # refused, unreachable, timed out: not a TLS matter
        return None
    if tls_ca is None:
        return (
            f"the core at {endpoint} serves TLS: connect with --tls-ca FILE "
            "(the CA certificate that signed its certificate)"
        )
    if not verify:
        return None
    try:
        inline = tls_ca.lstrip().startswith("-----BEGIN")
        trusted = ssl.create_default_context(
            cafile=None if inline else tls_ca, cadata=tls_ca if inline else None
        )
    except (OSError, ssl.SSLError) as exc:
        return f"--tls-ca {tls_ca}: not a readable PEM CA certificate ({exc})"
    trusted.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        handshake(trusted)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the core at {endpoint} serves TLS with a certificate that --tls-ca {tls_ca} "
            f"does not trust: {exc.verify_message}"
        )
    except OSError:
        return None
    return None


def _check_model(schema: Schema, model: str, *, objects: bool = True) -> None:
    """Raise unless ``schema`` has ``model`` (and, for ``objects``, it is not abstract)."""
    if model not in schema:
        known = ", ".join(sorted(s.name for s in schema.concrete()))
        raise CliError(f"unknown model {model!r} (models: {known})")
    if objects and schema[model].abstract:
        raise CliError(f"model {model} is abstract and has no objects")


def _print_rows(
    out: IO[str], args: argparse.Namespace, schema: Schema, model: str, rows: list[Mapping[str, Any]]
) -> None:
    if args.json:
        out.write(json.dumps([dict(row) for row in rows], indent=2) + "\n")
        return
    if args.fields:
        columns = []
        for name in args.fields.split(","):
            f = _find_field(schema, model, name.strip())
            columns.append(f.column if f is not None else "id")
    elif args.all_fields:
        columns = ["id", *(f.column for f in schema.fields(model).values())]
    else:
        columns = _default_columns(schema, model)
    out.write(render_table(columns, rows) + "\n")
    out.write(f"({len(rows)} {model} object{'s' if len(rows) != 1 else ''})\n")


def _print_one(out: IO[str], args: argparse.Namespace, row: Mapping[str, Any]) -> None:
    if args.json:
        out.write(json.dumps(dict(row), indent=2) + "\n")
    else:
        out.write(_vertical(row) + "\n")


def objects_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``objects list|get|create|update|delete MODEL ...``: one call to the core, its answer on ``out``."""
    with _connect(args) as backend:
        schema = backend.schema
        model = args.model
        _check_model(schema, model)
        if args.action == "list":
            where = [_lookup(schema, model, text) for text in args.lookups]
            if not args.deleted and "deleted" in schema.fields_by_column(model):
                where.insert(0, Condition("deleted", "eq", False))
            query = Query(
                where=tuple(where), order_by=tuple(args.order_by), limit=args.limit, offset=args.offset
            )
            _print_rows(out, args, schema, model, backend.select(model, query))
        elif args.action == "get":
            row = backend.get(model, args.id)
            if row is None:
                raise NotFound(f"{model} id {args.id} does not exist")
            _print_one(out, args, row)
        elif args.action == "create":
            values = dict(parse_assignment(schema, model, text) for text in args.values)
            _print_one(out, args, backend.create(model, values, WriteContext(Caller.CLIENT)))
        elif args.action == "update":
            values = dict(parse_assignment(schema, model, text) for text in args.values)
            changes = backend.update(model, args.id, values, WriteContext(Caller.CLIENT))
            _print_one(out, args, {"id": args.id, **changes})
        elif args.action == "delete":
            backend.delete(model, args.id, WriteContext(Caller.CLIENT), purge=args.purge)
            if args.json:
                out.write(
                    json.dumps({"deleted": True, "model": model, "id": args.id, "purged": args.purge}) + "\n"
                )
            else:
                out.write(f"{'purged' if args.purge else 'deleted'} {model} id {args.id}\n")
    return 0


def _field_info(f: FieldSpec) -> dict[str, Any]:
    return {
        "name": f.name,
        "column": f.column,
        "kind": f.kind,
        "modifier": f.modifier,
        "link": f.link.model if f.link else None,
        "default": f.default if f.has_default else None,
        "nullable": f.nullable,
        "help_text": f.options.get("help_text"),
    }


def _model_info(schema: Schema, model: str) -> dict[str, Any]:
    spec = schema[model]
    fields = [_field_info(f) for f in schema.fields(model).values()]
    return {"name": spec.name, "bases": list(spec.bases), "abstract": spec.abstract, "fields": fields}


def models_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``models [MODEL]``: the core's models, or the fields of one."""
    with _connect(args) as backend:
        schema = backend.schema
        if args.model:
            _check_model(schema, args.model, objects=False)
            data = _model_info(schema, args.model)
            if args.json:
                out.write(json.dumps(data, indent=2, default=str) + "\n")
            else:
                columns = ["name", "column", "kind", "modifier", "link", "default", "help_text"]
                out.write(render_table(columns, data["fields"]) + "\n")
            return 0
        specs = [s for s in schema if args.abstract or not s.abstract]
        if args.json:
            data_list = [_model_info(schema, s.name) for s in specs]
            out.write(json.dumps(data_list, indent=2, default=str) + "\n")
        else:
            rows = [
                {
                    "model": s.name + (" (abstract)" if s.abstract else ""),
                    "bases": ", ".join(s.bases),
                    "fields": ", ".join(
                        f.name
                        for f in schema.fields(s.name).values()
                        if not (f.options.get("bookkeeping_state") or f.options.get("feedback_state"))
                    ),
                }
                for s in specs
            ]
            out.write(render_table(["model", "bases", "fields"], rows, max_cell=None) + "\n")
    return 0


def protos_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``protos [--out DIR]``: the core's generated ``.proto`` files, printed or written to ``DIR``."""
    with _connect(args) as backend:
        files = backend.proto_files()
    if args.out:
        root = Path(args.out)
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            out.write(f"wrote {path}\n")
    elif args.json:
        out.write(json.dumps(files, indent=2) + "\n")
    else:
        for name, text in files.items():
            out.write(f"// ---- {name}\n{text}\n")
    return 0


def login_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``login``: a bearer token for ``--username``/``--password`` (asks for the password if none)."""
    if not args.username:
        raise CliError("login needs --username and --password")
    password = _password(args.password)
    if password is None:
        password = getpass.getpass(f"password for {args.username}: ")
    args.password = password
    with _connect(args) as backend:
        token = backend.login(args.username, password)
    out.write(json.dumps({"token": token}) + "\n" if args.json else token + "\n")
    return 0


def hash_password_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``hash-password``: a hash for ``api.users[].password_hash`` (asks twice, or reads stdin)."""
    password = _password(args.password)
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                raise CliError("the two passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CliError("empty password")
    out.write(hash_password(password) + "\n")
    return 0


_STATUS_COLUMNS = ("name", "kind", "state", "restarts", "done", "failed", "queue", "busy", "last_error")


def status_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``status``: the actor tree of the synchronizer serving the API at ``--endpoint`` (``Core/Status``)."""
    with _connect(args) as backend:
        tree = backend.status()
    if args.json:
        out.write(json.dumps(tree, indent=2) + "\n")
        return 0
    if tree["kind"] == "core":
        out.write(f"core: {tree['state']}; no synchronizer runs in its process\n")
        return 0
    out.write(f"synchronizer {tree['name']}: {tree['state']}, {len(tree['children'])} children\n")
    rows = [
        {
            **child,
            "queue": child["queue_depth"],
            "busy": f"{child['busy_for']:.1f}s" if child["busy_for"] is not None else None,
        }
        for child in tree["children"]
    ]
    if rows:
        out.write(render_table(_STATUS_COLUMNS, rows, max_cell=60) + "\n")
    for error in tree["load_errors"]:
        out.write(f"not loaded: {error['step'] or error['path']}: {error['error']}\n")
    return 0


def why_command(args: argparse.Namespace, out: IO[str]) -> int:
    """``why MODEL ID``: why the object is not enacted, in one line and its details (``Core/Why``)."""
    with _connect(args) as backend:
        _check_model(backend.schema, args.model, objects=False)
        answer = backend.why(args.model, args.id)
        now = backend.now()
    if args.json:
        out.write(json.dumps(answer, indent=2) + "\n")
        return 0
    out.write(f"{answer['reason']}: {answer['message']}\n")
    details: list[tuple[str, Any]] = [("step", answer["step"])]
    if answer["until"] is not None:
        details.append(("until", f"{_when(answer['until'])} (in {max(0.0, answer['until'] - now):.0f} s)"))
    if answer["attempts"]:
        details.append(("attempts", answer["attempts"]))
    for i, error in enumerate(answer["errors"]):
        details.append(("error" if len(answer["errors"]) == 1 else f"error {i + 1}", error))
    if answer["blocked_by"] is not None:
        details.append(("blocked by", f"{answer['blocked_by'][0]} {answer['blocked_by'][1]}"))
    if answer["owner"] is not None:
        details.append(("owner", f"replica {answer['owner']}"))
    shown = [(name, value) for name, value in details if value is not None]
    width = max((len(name) for name, _value in shown), default=0)
    for name, value in shown:
        out.write(f"  {(name + ':').ljust(width + 1)} {_cell(value, None)}\n")
    return 0
