"""The command line: one parser, one subcommand per job (``python -m actors.main COMMAND``).

``run`` (the default) runs a synchronizer, ``core`` serves the model API alone,
and the client commands (``objects``, ``models``, ``protos``, ``login``,
``hash-password``, ``status``, ``why``, in :mod:`actors.api`) talk to a running core
or main job.

Adding a command is one function that adds its subparser and names its handler
(``handler(args, out) -> exit status``), and one entry in :data:`COMMANDS`.

Exit status (see ``docs/running.md``): 0 done (a server also after SIGINT or
SIGTERM), 1 the command failed, 2 bad usage or config, or a start that cannot go on.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from actors._examples import examples_config
from actors.api import (
    DEFAULT_ADDRESS,
    CliError,
    check_address,
    hash_password_command,
    load_config_and_logging,
    login_command,
    models_command,
    objects_command,
    protos_command,
    serve,
    status_command,
    why_command,
)
from actors.config import ConfigError
from actors.logs import configure_logging, create_logger
from actors.models import SchemaError, XprotoSyntaxError, load_schema
from actors.observe import HttpSettings, http_settings
from actors.runtime import Synchronizer
from actors.store import Store, StoreError, StoreOpenError, safe_url

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "build_parser",
    "main",
]

#: The one program name of every usage line (the ``actors`` console script is the same program).
PROG = "python -m actors.main"
EXIT_OK = 0
#: The command failed: the core refused or could not be reached, or an unexpected error (traceback).
EXIT_FAILED = 1
#: Bad usage or config, or a start that cannot go on; one line on stderr says which.
EXIT_USAGE = 2
#: A client command stopped by Ctrl-C (128 + SIGINT, as shells report it); ``run`` and ``core``
#: stop cleanly on SIGINT instead, with status 0.
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace, IO[str]], int]
Subparsers = Any  # argparse's _SubParsersAction, private in typeshed


def default_config_path() -> Path:
    """``$ACTORS_CONFIG``, else the ``steps_examples`` synchronizer next to the package."""
    env = os.environ.get("ACTORS_CONFIG")
    if env:
        return Path(env)
    return examples_config()


def _version() -> str:
    try:
        return importlib.metadata.version("actors")
    except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
        return "unknown (not installed)"


@contextlib.contextmanager
def _stop_on_signal(on_signal: Callable[[str], None] | None = None) -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (``run`` and ``core`` wait on it).

    The handlers are installed before anything starts, so a signal during start-up
    stops cleanly too, and restored after.
    """
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if on_signal is not None:
            on_signal(signal.Signals(signum).name)
        stop.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: the caller stops it
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- run -----------------------------------------------------------------------------


def run_job(args: argparse.Namespace, out: IO[str]) -> int:
    """``run``: run a synchronizer until SIGINT or SIGTERM."""
    try:
        config = load_config_and_logging(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log = create_logger(None, name="actors.main")
    serve_api = config.settings.api.enabled and not args.no_api
    synchronizer = Synchronizer(config, serve_api=serve_api, http=True)  # unless http.enabled is false
    with _stop_on_signal(lambda name: log.info("stopping", signal=name)) as stop:
        try:
            synchronizer.start()
            store = synchronizer.store
            log.info(
                "running",
                synchronizer=config.settings.name,
                config=str(config.path),
                store=store.url if store is not None else config.settings.accessor.endpoint,
                models=len(synchronizer.model_accessor.schema),
                children=sorted(synchronizer.status()),
                api=synchronizer.api.address if synchronizer.api is not None else None,
                http=synchronizer.http.url if synchronizer.http is not None else None,
            )
            stop.wait()
        except (XprotoSyntaxError, SchemaError, StoreError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            synchronizer.stop()
    log.info("stopped")
    return EXIT_OK


def _run_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run",
        help="run a synchronizer (the default command)",
        description="Run a synchronizer until SIGINT or SIGTERM "
        "(default: steps_examples on the embedded SQLite store).",
    )
    p.add_argument(
        "-C",
        "--config",
        default=str(default_config_path()),
        help="the synchronizer's config file (default: $ACTORS_CONFIG, else %(default)s)",
    )
    p.add_argument("--no-api", action="store_true", help="do not serve the model API (api.enabled)")
    p.set_defaults(handler=run_job)


# -- core ----------------------------------------------------------------------------


def _core_error(message: str) -> int:
    print(f"actors core: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_core(args: argparse.Namespace, out: IO[str]) -> int:
    """``core``: serve the model API alone over a store, until SIGINT or SIGTERM."""
    options: dict[str, Any] = {}  # serve()'s, from the config file (its defaults without one)
    models: list[str] = []
    store_url = None
    if not args.config:
        configure_logging(None)
    else:
        try:
            config = load_config_and_logging(args.config)
        except ConfigError as exc:
            return _core_error(str(exc))
        api = config.settings.api
        store_url = config.settings.store.url
        options = {
            "address": api.address,
            "users": api.users,
            "tls": dict(api.tls) if api.tls is not None else None,
            "max_message_bytes": api.max_message_bytes,
            "anonymous_read": api.anonymous_read,
            "http": http_settings(config) or HttpSettings(),
        }
        if config.settings.models_dir:
            models.append(config.settings.models_dir)
    if args.address:
        options["address"] = args.address
    address = options.setdefault("address", DEFAULT_ADDRESS)
    models.extend(args.models)
    url = args.store_url or store_url or "sqlite:///" + os.path.abspath(os.path.join("data", "core.db"))
    try:
        secret = Path(args.token_secret_file).read_bytes().strip() if args.token_secret_file else None
    except OSError as exc:
        return _core_error(f"cannot read --token-secret-file {args.token_secret_file}: {exc.strerror or exc}")
    try:
        schema = load_schema(models)
    except (XprotoSyntaxError, SchemaError, OSError) as exc:
        return _core_error(f"cannot load the models: {exc}")
    with _stop_on_signal() as stop:
        try:
            check_address(address)  # before the store is touched
            store = Store(url, schema, exclusive=True)
        except (OSError, StoreOpenError) as exc:
            return _core_error(str(exc))
        try:
            server = serve(store, token_secret=secret, **options)
        except (OSError, ValueError) as exc:
            store.close()
            return _core_error(str(exc))
        auth = server.auth
        if auth.open:
            mode = (
                "read-only, no users configured" if auth.anonymous_read else "no users and no anonymous reads"
            )
        else:
            mode = f"{len(auth.usernames)} users" + (", anonymous reads" if auth.anonymous_read else "")
        print(
            f"actors core: serving {len(server.protos.models)} models on {server.address} "
            f"({'TLS' if server.tls else 'plaintext'}, {mode}), store {safe_url(store.url)}",
            file=sys.stderr,
            flush=True,
        )
        try:
            stop.wait()
        finally:
            server.stop(grace=5.0)
            store.close()
    return EXIT_OK


def _core_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "core",
        help="serve the model API alone over a store",
        description="Serve the model API alone: generated gRPC services over a store, "
        "until SIGINT or SIGTERM.",
    )
    p.add_argument("-C", "--config", help="configuration file (store.url, models_dir, api.*); default: none")
    p.add_argument(
        "--store-url",
        help="SQLAlchemy URL of the store (overrides store.url; default sqlite:///data/core.db)",
    )
    p.add_argument(
        "--address", help=f"host:port to listen on (overrides api.address; default {DEFAULT_ADDRESS})"
    )
    p.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="PATH",
        help="xproto file or folder to load besides the built-in models (repeatable; adds to models_dir)",
    )
    p.add_argument(
        "--token-secret-file",
        metavar="FILE",
        help="file holding the key that signs login tokens (default: a random key per process)",
    )
    p.set_defaults(handler=run_core)


# -- client commands (actors.api) --------------------------------------------------------


def _client_options() -> argparse.ArgumentParser:
    """The options of every command that talks to a core."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--endpoint",
        default=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help=f"the core's address (default {DEFAULT_ADDRESS})",
    )
    group.add_argument("--username", help="user name (writes need a user with role admin or synchronizer)")
    group.add_argument("--password", help="password, or @FILE to read it from a file")
    group.add_argument("--token", help="bearer token from 'login' instead of a username and password")
    group.add_argument("--tls-ca", metavar="FILE", help="CA certificate file: connect with TLS")
    group.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the core (default 10)",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common


_MODEL_HELP = "model name, as in 'models' (Service, ...)"
_ID_HELP = "the object's id"


def _objects_command(sub: Subparsers) -> None:
    common = _client_options()
    objects = sub.add_parser(
        "objects",
        help="list, get, create, update or delete objects",
        description="Read and write the objects of a core.",
    )
    actions = objects.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")
    p = actions.add_parser("list", parents=[common], help="objects of a model, filtered by field[__op]=value")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument(
        "lookups",
        nargs="*",
        metavar="field[__op]=value",
        help="conditions, all to hold: name=web, size__gt=2, name__icontains=web, size__in=1,2, "
        "weight__isnull=true",
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N objects (default: all)")
    p.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N objects (default 0)")
    p.add_argument(
        "--order-by",
        action="append",
        default=[],
        metavar="FIELD",
        help="sort key, -FIELD descending (repeatable)",
    )
    p.add_argument("--deleted", action="store_true", help="include soft-deleted objects")
    p.add_argument("--fields", metavar="A,B", help="comma-separated columns to show")
    p.add_argument("--all-fields", action="store_true", help="show every column")
    p = actions.add_parser("get", parents=[common], help="one object by id")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("id", type=int, help=_ID_HELP)
    p = actions.add_parser("create", parents=[common], help="create an object from field=value pairs")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument(
        "values", nargs="*", metavar="field=value", help="field values (field:=JSON for a JSON value)"
    )
    p = actions.add_parser("update", parents=[common], help="set field=value pairs of an object")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("id", type=int, help=_ID_HELP)
    p.add_argument(
        "values", nargs="+", metavar="field=value", help="fields to set (field:=JSON for a JSON value)"
    )
    p = actions.add_parser("delete", parents=[common], help="soft-delete an object (or --purge it)")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("id", type=int, help=_ID_HELP)
    p.add_argument("--purge", action="store_true", help="remove the rows at once")
    objects.set_defaults(handler=objects_command)


def _models_command(sub: Subparsers) -> None:
    p = sub.add_parser("models", parents=[_client_options()], help="list the models, or the fields of one")
    p.add_argument("model", nargs="?", help="show this model's fields (default: list every model)")
    p.add_argument("--abstract", action="store_true", help="include abstract models")
    p.set_defaults(handler=models_command)


def _protos_command(sub: Subparsers) -> None:
    p = sub.add_parser("protos", parents=[_client_options()], help="download the generated .proto files")
    p.add_argument("--out", metavar="DIR", help="folder to write them into (default: print them)")
    p.set_defaults(handler=protos_command)


def _login_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "login", parents=[_client_options()], help="print a bearer token for --username/--password"
    )
    p.set_defaults(handler=login_command)


def _status_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "status",
        parents=[_client_options()],
        help="the actor tree of a running synchronizer (its steps, states, queues, errors)",
        description="Show the actor tree of the synchronizer serving the API at --endpoint "
        "(Core/Status): each child's kind, state, restarts, runs, queue depth and last error.",
    )
    p.set_defaults(handler=status_command)


def _why_command(sub: Subparsers) -> None:
    p = sub.add_parser(
        "why",
        parents=[_client_options()],
        help="why an object is not enacted (queued, backoff, blocked, waiting for a policy...)",
        description="Ask the synchronizer serving the API at --endpoint why an object is not "
        "enacted (Core/Why): one line, then its details. Exit status 1 when there is no such object.",
    )
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("id", type=int, help=_ID_HELP)
    p.set_defaults(handler=why_command)


def _hash_password_command(sub: Subparsers) -> None:
    p = sub.add_parser("hash-password", help="print a password hash for api.users[].password_hash")
    p.add_argument("--password", help="the password (default: ask, or read one line from stdin)")
    p.set_defaults(handler=hash_password_command)


#: Every subcommand: a function that adds its subparser (with ``handler`` as default), in help order.
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _run_command,
    _core_command,
    _objects_command,
    _models_command,
    _protos_command,
    _login_command,
    _hash_password_command,
    _status_command,
    _why_command,
)


# -- main ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a synchronizer, serve the model API, or talk to a running core. "
        "With no command, or options only, the command is 'run'.",
        epilog="Each command has --help. Exit status: 0 done, 1 failed, 2 bad usage or config, "
        "or a start that cannot go on.",
    )
    parser.add_argument(
        "--version", action="version", version=f"actors {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", help="the job to do")
    for command in COMMANDS:
        command(sub)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """``[]`` and ``["-C", "x.yaml"]`` mean ``run``; ``-h``/``--version`` stay the top level's."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["run", *argv]
    return argv


@contextlib.contextmanager
def _quiet_threads_once_interrupted() -> Iterator[None]:
    """While the command runs, Ctrl-C also silences what library threads raise as it unwinds.

    A client command stopped inside a call closes its gRPC channel on the way out; a
    library thread still in that call may then fail, and Python would print its traceback
    beside the one-line ``interrupted``. Once interrupted, the hook stays (the threads may
    fail as the interpreter exits).
    """
    interrupted = threading.Event()
    previous_hook = threading.excepthook

    def hook(args: Any) -> None:
        if not interrupted.is_set():
            previous_hook(args)

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous_sigint = signal.getsignal(signal.SIGINT) if in_main else None
    if in_main and previous_sigint is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)
    threading.excepthook = hook
    try:
        yield
    except KeyboardInterrupt:
        interrupted.set()
        raise
    finally:
        if in_main and signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous_sigint)
        if not interrupted.is_set():
            threading.excepthook = previous_hook


def main(
    argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command; returns the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = build_parser().parse_args(_with_default_command(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:  # --help, --version (0) or bad usage (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler = args.handler
    try:
        with _quiet_threads_once_interrupted():
            code = handler(args, out)
        out.flush()
        return code
    except KeyboardInterrupt:  # Ctrl-C during a client command: one line, no traceback
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    except CliError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    except (StoreError, OSError) as exc:
        if isinstance(exc, BrokenPipeError) and out is sys.stdout:
            # The reader went away (``| head``): stop quietly, and let nothing flush into the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED
        err.write(f"error: {exc}\n")
        return EXIT_FAILED
