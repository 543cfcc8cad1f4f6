#!/usr/bin/env python3
"""Build the API's clients in other languages: grpcurl (Go) and @grpc/grpc-js (Node.js).

The API tests talk to the core with them, as a client in another language would
(``tests/api/test_api_grpcurl.py``, ``tests/api/test_api_grpc_js.py``). Both come from
package registries and are kept in a cache folder; a second run finds them there and
fetches or builds nothing:

- grpcurl: ``go install MODULE@VERSION`` from the Go module proxy, into
  ``~/.cache/actors-clients/grpcurl-<version>/grpcurl``;
- @grpc/grpc-js and @grpc/proto-loader: ``npm install`` from the npm registry, into
  ``~/.cache/actors-clients/node-<versions>/node_modules`` (give it to node as ``NODE_PATH``).

As a command (``.ci/run`` runs it before the tests)::

    python scripts/api_clients.py       # prints GRPCURL=<path> and GRPC_JS=<node_modules>

As a library::

    from api_clients import ToolMissing, grpc_js, grpcurl
    path = grpcurl()                    # ToolMissing when there is no go command
    node_path = grpc_js()               # ToolMissing when there is no node or npm

Environment: ``ACTORS_CLIENTS_CACHE`` (default ``~/.cache/actors-clients``), ``GO``, ``NPM`` (the
commands, default ``go`` and ``npm`` on ``PATH``). Needs Go 1.22+, or Node.js 18+ and npm,
and the registries the first time only.
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

__all__ = [
    "GRPCURL_MODULE",
    "GRPCURL_VERSION",
    "GRPC_JS_PACKAGES",
    "ToolMissing",
    "cache_dir",
    "grpc_js",
    "grpcurl",
    "main",
]

GRPCURL_MODULE = "github.com/fullstorydev/grpcurl/cmd/grpcurl"
GRPCURL_VERSION = "v1.9.3"
GRPC_JS_PACKAGES = ("@grpc/grpc-js@1.14.7", "@grpc/proto-loader@0.8.1")
#: Longest a build or an install may take (downloads included).
BUILD_TIMEOUT = 900.0


class ToolMissing(RuntimeError):
    """There is no ``go`` (or ``node``/``npm``) command to build with."""


def cache_dir() -> Path:
    """Where built tools are kept (``ACTORS_CLIENTS_CACHE``, default ``~/.cache/actors-clients``)."""
    configured = os.environ.get("ACTORS_CLIENTS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "actors-clients"


def _command(name: str, variable: str, purpose: str) -> str:
    path = shutil.which(os.environ.get(variable, name))
    if path is None:
        raise ToolMissing(f"no {name} command on PATH ({purpose})")
    return path


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
    go = _command("go", "GO", "install Go 1.22+ to build grpcurl")
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
        ToolMissing: no go command.
        RuntimeError: the build failed (its output is in the message).
    """
    return _install(GRPCURL_MODULE, GRPCURL_VERSION, "grpcurl")


def grpc_js() -> Path:
    """A ``node_modules`` folder with @grpc/grpc-js and @grpc/proto-loader, installed first if needed.

    Raises:
        ToolMissing: no node or npm command.
        RuntimeError: the install failed (its output is in the message).
    """
    _command("node", "NODE", "install Node.js 18+ to run the grpc-js client")
    versions = "-".join(p.rsplit("@", 1)[1] for p in GRPC_JS_PACKAGES)
    folder = cache_dir() / f"node-{versions}"
    modules = folder / "node_modules"
    if (folder / ".complete").exists():
        return modules
    npm = _command("npm", "NPM", "install npm to fetch @grpc/grpc-js")
    with _locked(cache_dir() / ".node.lock"):
        if (folder / ".complete").exists():
            return modules
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        options = ["--no-audit", "--no-fund", "--ignore-scripts", "--no-save", "--prefix", str(folder)]
        result = subprocess.run(
            [npm, "install", *options, *GRPC_JS_PACKAGES],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            cwd=folder,
        )
        if result.returncode != 0:
            what = "npm install " + " ".join(GRPC_JS_PACKAGES)
            raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{result.stderr.strip()}")
        (folder / ".complete").write_text(" ".join(GRPC_JS_PACKAGES) + "\n")
        print(f"installed {modules} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    """Build grpcurl and install grpc-js if missing; print ``GRPCURL=<path>`` and ``GRPC_JS=<path>``."""
    parser = argparse.ArgumentParser(
        description="Build grpcurl (Go module proxy) and install @grpc/grpc-js (npm) into a cache."
    )
    parser.parse_args(argv)
    try:
        print(f"GRPCURL={grpcurl()}", flush=True)
        print(f"GRPC_JS={grpc_js()}", flush=True)
    except (ToolMissing, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"api_clients: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
