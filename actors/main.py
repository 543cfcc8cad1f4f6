"""``python -m actors.main``: run a synchronizer, serve the model API, or talk to one.

Commands::

    python -m actors.main                     run the steps_examples synchronizer (embedded SQLite)
    python -m actors.main -C config.yaml      run any synchronizer
    python -m actors.main run -C config.yaml  the same
    python -m actors.main core ...            serve the model API alone over a store
    python -m actors.main objects ...         list/get/create/update/delete objects of a core
    python -m actors.main models ...          list models and fields of a core
    python -m actors.main protos|login|hash-password ...

Exit status: 0 done (also after SIGINT/SIGTERM), 1 failed, 2 bad usage or config, or a
start that cannot go on (the store unusable or owned by another process, the API port in
use, the remote core unreachable): one line on stderr says which.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from actors.api import cli_main, core_main, load_config_and_logging
from actors.config import ConfigError
from actors.logs import create_logger
from actors.models import SchemaError, XprotoSyntaxError
from actors.runtime import Synchronizer
from actors.store import StoreError

__all__ = ["default_config_path", "main", "run"]

API_COMMANDS = ("objects", "models", "protos", "login", "hash-password")


def default_config_path() -> Path:
    """``$ACTORS_CONFIG``, else the ``steps_examples`` synchronizer next to the package."""
    env = os.environ.get("ACTORS_CONFIG")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "steps_examples" / "config.yaml"


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m actors.main",
        description="Run a synchronizer (default: steps_examples on the embedded SQLite store).",
        epilog=f"Other commands: core, {', '.join(API_COMMANDS)} (each has --help).",
    )
    parser.add_argument(
        "-C",
        "--config",
        help="the synchronizer's config file (default: %(default)s)",
        default=str(default_config_path()),
    )
    parser.add_argument("--no-api", action="store_true", help="do not serve the model API")
    return parser


def run(argv: Sequence[str]) -> int:
    """Run a synchronizer until SIGINT or SIGTERM; returns the exit status."""
    args = _run_parser().parse_args(list(argv))
    try:
        config = load_config_and_logging(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log = create_logger(None, name="actors.main")
    serve = bool(config.get("api.enabled")) and not args.no_api
    synchronizer = Synchronizer(config, serve_api=serve, http=True)  # unless http.enabled is false
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    # Installed before anything starts: a signal during start-up stops cleanly too.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _serve(synchronizer, stop, log)
    except (XprotoSyntaxError, SchemaError, StoreError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        synchronizer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return 0


def _serve(synchronizer: Synchronizer, stop: threading.Event, log: Any) -> None:
    """Start, report what runs, and wait for a stop signal."""
    synchronizer.start()
    config = synchronizer.config
    store = synchronizer.store
    log.info(
        "running",
        synchronizer=config.get("name"),
        config=str(config.path),
        store=store.url if store is not None else config.get("accessor.endpoint"),
        models=len(synchronizer.model_accessor.schema),
        children=sorted(synchronizer.status()),
        api=synchronizer.api.address if synchronizer.api is not None else None,
        http=synchronizer.http.url if synchronizer.http is not None else None,
    )
    stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in API_COMMANDS:
        return cli_main(args)
    if args and args[0] == "core":
        return core_main(args[1:])
    if args and args[0] == "run":
        args = args[1:]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
