"""Command line for people: ``objects``, ``models``, ``protos``, ``login``, ``hash-password``.

``python -m actors.main objects list Service name__icontains=web`` prints a
table; ``--json`` prints JSON. Values are typed by the model's fields:
``size=3``, ``enabled=false``, ``owner=2`` (a link takes the id); ``field:=JSON``
gives a JSON value (``name:=null`` is null).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
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
    StoreError,
    ValidationError,
    WriteContext,
    parse_lookup,
)

from ._auth import hash_password
from ._client import RemoteBackend, RemoteError
from ._server import DEFAULT_ADDRESS

__all__ = ["cli_main", "parse_assignment", "render_table"]

_TRUE = {"true", "yes", "on", "1", "t", "y"}
_FALSE = {"false", "no", "off", "0", "f", "n"}
MAX_CELL = 40


class CliError(Exception):
    """A mistake on the command line; printed without a traceback."""


# -- values --------------------------------------------------------------------------


def _find_field(schema: Schema, model: str, name: str) -> FieldSpec | None:
    return schema.fields(model).get(name) or schema.fields_by_column(model).get(name)


def _typed(model: str, f: FieldSpec | None, name: str, raw: str) -> Any:
    kind = "link" if f is None or f.is_link else f.kind
    if f is None and name != "id":
        raise CliError(f"model {model} has no field {name!r}")
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
        if f is None and name != "id":
            raise CliError(f"model {model} has no field {name!r}")
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
    if f is None and name != "id":
        raise CliError(f"model {model} has no field {name!r}")
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
    out = ["id"]
    for f in schema.fields(model).values():
        if (
            f.options.get("bookkeeping_state")
            or f.options.get("feedback_state")
            or f.options.get("gui_hidden")
        ):
            continue
        out.append(f.column)
    if "backend_status" in schema.fields_by_column(model):
        out.append("backend_status")
    return out


# -- commands ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--endpoint", default=DEFAULT_ADDRESS, help=f"the core's host:port (default {DEFAULT_ADDRESS})"
    )
    common.add_argument("--username", help="user name (writes need a user with role admin or synchronizer)")
    common.add_argument("--password", help="password, or @FILE to read it from a file")
    common.add_argument("--token", help="bearer token from 'login' instead of a username and password")
    common.add_argument("--tls-ca", help="CA certificate file: connect with TLS")
    common.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the core (default 10)"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = argparse.ArgumentParser(
        prog="actors", description="Read and write the models of an actors core."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    objects = sub.add_parser("objects", help="list, get, create, update or delete objects")
    actions = objects.add_subparsers(dest="action", required=True)
    p = actions.add_parser("list", parents=[common], help="objects of a model, filtered by field[__op]=value")
    p.add_argument("model")
    p.add_argument("lookups", nargs="*", metavar="field[__op]=value")
    p.add_argument("--limit", type=int)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument(
        "--order-by", action="append", default=[], metavar="FIELD", help="sort key, -FIELD descending"
    )
    p.add_argument("--deleted", action="store_true", help="include soft-deleted objects")
    p.add_argument("--fields", help="comma-separated columns to show")
    p.add_argument("--all-fields", action="store_true", help="show every column")
    p = actions.add_parser("get", parents=[common], help="one object by id")
    p.add_argument("model")
    p.add_argument("id", type=int)
    p = actions.add_parser("create", parents=[common], help="create an object from field=value pairs")
    p.add_argument("model")
    p.add_argument("values", nargs="*", metavar="field=value")
    p = actions.add_parser("update", parents=[common], help="set field=value pairs of an object")
    p.add_argument("model")
    p.add_argument("id", type=int)
    p.add_argument("values", nargs="+", metavar="field=value")
    p = actions.add_parser("delete", parents=[common], help="soft-delete an object (or --purge it)")
    p.add_argument("model")
    p.add_argument("id", type=int)
    p.add_argument("--purge", action="store_true", help="remove the rows at once")

    p = sub.add_parser("models", parents=[common], help="list the models, or the fields of one")
    p.add_argument("model", nargs="?")
    p.add_argument("--abstract", action="store_true", help="include abstract models")

    p = sub.add_parser("protos", parents=[common], help="download the generated .proto files")
    p.add_argument("--out", help="folder to write them into (default: print them)")

    sub.add_parser("login", parents=[common], help="print a bearer token for --username/--password")

    p = sub.add_parser("hash-password", help="print a password hash for api.users[].password_hash")
    p.add_argument("--password", help="the password (default: ask, or read one line from stdin)")
    return parser


def _password(value: str | None) -> str | None:
    if value is not None and value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read the password file {value[1:]}: {exc.strerror or exc}") from None
    return value


def _connect(args: argparse.Namespace) -> RemoteBackend:
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


def _check_model(schema: Schema, model: str) -> None:
    if model not in schema:
        known = ", ".join(sorted(s.name for s in schema.concrete()))
        raise CliError(f"unknown model {model!r} (models: {known})")
    if schema[model].abstract:
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
            name = name.strip()
            f = _find_field(schema, model, name)
            if f is None and name != "id":
                raise CliError(f"model {model} has no field {name!r}")
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


def _objects(args: argparse.Namespace, out: IO[str]) -> int:
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


def _models(args: argparse.Namespace, out: IO[str]) -> int:
    with _connect(args) as backend:
        schema = backend.schema
        if args.model:
            if args.model not in schema:
                _check_model(schema, args.model)
            fields = [_field_info(f) for f in schema.fields(args.model).values()]
            if args.json:
                spec = schema[args.model]
                data = {
                    "name": spec.name,
                    "bases": list(spec.bases),
                    "abstract": spec.abstract,
                    "fields": fields,
                }
                out.write(json.dumps(data, indent=2, default=str) + "\n")
            else:
                columns = ["name", "column", "kind", "modifier", "link", "default", "help_text"]
                out.write(render_table(columns, fields) + "\n")
            return 0
        specs = [s for s in schema if args.abstract or not s.abstract]
        if args.json:
            data_list = [
                {
                    "name": s.name,
                    "bases": list(s.bases),
                    "abstract": s.abstract,
                    "fields": [_field_info(f) for f in schema.fields(s.name).values()],
                }
                for s in specs
            ]
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


def _protos(args: argparse.Namespace, out: IO[str]) -> int:
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


def _login(args: argparse.Namespace, out: IO[str]) -> int:
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


def _hash_password(args: argparse.Namespace, out: IO[str]) -> int:
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


def cli_main(
    argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """Run one command (``argv`` starts with ``objects``, ``models``, ``protos``, ``login`` or
    ``hash-password``); returns the exit status: 0 done, 1 failed, 2 bad usage.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    commands = {
        "objects": _objects,
        "models": _models,
        "protos": _protos,
        "login": _login,
        "hash-password": _hash_password,
    }
    try:
        return commands[args.command](args, out)
    except CliError as exc:
        err.write(f"error: {exc}\n")
        return 2
    except (ValidationError, NotFound, RemoteError, StoreError) as exc:
        err.write(f"error: {exc}\n")
        return 1
    except OSError as exc:
        err.write(f"error: {exc}\n")
        return 1
