#!/usr/bin/env python3
"""Build grpcurl, a gRPC client written in Go, from the Go module proxy.

The API tests talk to the core with it, as a client in another language would
(``tests/api/test_api_grpcurl.py``). ``go install MODULE@VERSION`` builds it into a
cache folder, ``~/.cache/actors-go/grpcurl-<version>/grpcurl``; a second run finds
it there and builds nothing.

As a command (``.ci/run`` runs it before the tests)::

    python scripts/go_tools.py          # builds grpcurl if missing, prints GRPCURL=<path>

As a library::

    from go_tools import GoMissing, grpcurl
    path = grpcurl()                    # GoMissing when there is no go command

Environment: ``ACTORS_GO_CACHE`` (default ``~/.cache/actors-go``), ``GO`` (the go command,
default ``go`` on ``PATH``). Needs Go 1.22+ and the Go module proxy the first time only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["GRPCURL_MODULE", "GRPCURL_VERSION", "GoMissing", "cache_dir", "grpcurl", "main"]

GRPCURL_MODULE = "github.com/fullstorydev/grpcurl/cmd/grpcurl"
GRPCURL_VERSION = "v1.9.3"
#: Longest a build may take (module downloads included).
BUILD_TIMEOUT = 900.0


class GoMissing(RuntimeError):
    """There is no ``go`` command to build with."""


def cache_dir() -> Path:
    """Where built tools are kept (``ACTORS_GO_CACHE``, default ``~/.cache/actors-go``)."""
    configured = os.environ.get("ACTORS_GO_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "actors-go"


def _go() -> str:
    go = shutil.which(os.environ.get("GO", "go"))
    if go is None:
        raise GoMissing("no go command on PATH (install Go 1.22+ to build grpcurl)")
    return go


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (two test processes never build at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _install(module: str, version: str, name: str) -> Path:
    """``go install module@version`` into the cache, unless already built; the binary's path."""
    target = cache_dir() / f"{name}-{version}" / name
    if target.exists():
        return target
    go = _go()
    with _locked(cache_dir() / f".{name}.lock"):
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=f".{name}-") as tmp:
            env = dict(os.environ, GOBIN=tmp, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
            started = time.monotonic()
            result = subprocess.run(
                [go, "install", "-trimpath", f"{module}@{version}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                cwd=tmp,
            )
            if result.returncode != 0:
                what = f"go install {module}@{version}"
                raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stderr.strip()}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / name, target)
            print(f"built {target} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return target


def grpcurl() -> Path:
    """The grpcurl binary, built first if needed.

    Raises:
        GoMissing: no go command.
        RuntimeError: the build failed (its output is in the message).
    """
    return _install(GRPCURL_MODULE, GRPCURL_VERSION, "grpcurl")


def main(argv: Sequence[str] | None = None) -> int:
    """Build grpcurl if missing and print ``GRPCURL=<path>``."""
    parser = argparse.ArgumentParser(description="Build grpcurl from the Go module proxy into a cache.")
    parser.parse_args(argv)
    try:
        path = grpcurl()
    except (GoMissing, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"go_tools: {exc}", file=sys.stderr)
        return 1
    print(f"GRPCURL={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
