"""One small threaded HTTP server: ``/metrics``, ``/healthz``, ``/readyz`` and JSON routes.

- ``/metrics``: the registry in the Prometheus text format, or OpenMetrics when the
  ``Accept`` header asks for it (prometheus-client's own encoders).
- ``/healthz``, ``/readyz``: 200 ``ok`` when every check passes, else 500 listing the
  failed ones; ``?verbose`` lists every check as ``[+]name ok`` / ``[-]name failed: why``
  (the Kubernetes form); ``/readyz/<check>`` runs one check (404 for an unknown one).
- JSON routes given by the caller: ``/<route>/<arg>/...`` calls ``route(args)`` and
  answers its value as JSON (dataclasses as objects); a ``LookupError`` it raises
  answers 404, a ``ValueError`` 400, each with ``{"error": "..."}``.
- With ``web=True``, the web view: ``/`` is ``web/index.html`` of this package, and
  ``/web/<file>`` its other files (plain HTML, CSS and JS; nothing is built or fetched).
- With ``authorize``, the web view and the JSON routes ask it first (``/metrics`` and the
  health checks stay open, for scrapers and probes): a refusal answers 401 with a
  ``WWW-Authenticate: Basic`` challenge, so a browser asks for a user and password.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client.exposition import choose_encoder

from ._health import KINDS, Health, Kind
from ._metrics import Metrics

__all__ = ["Authorize", "HttpSettings", "ObserveServer", "Route", "http_settings", "parse_address"]

_log = logging.getLogger("actors.observe")

Route = Callable[[list[str]], Any]
#: ``authorize(authorization header or None, client host)``: ``None`` to let the request
#: in, else the one-line reason it is refused.
Authorize = Callable[[str | None, str], str | None]

#: The web view's files, by name, with their content types.
_WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _web_files() -> dict[str, tuple[bytes, str]]:
    """``{name: (content, content type)}`` of the package's ``web`` folder."""
    folder = resources.files("actors.observe").joinpath("web")
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _WEB_TYPES:
            files[entry.name] = (entry.read_bytes(), _WEB_TYPES[suffix])
    return files


@dataclass(frozen=True)
class HttpSettings:
    """``http.enabled`` and ``http.address`` (``host:port``; port 0 picks a free port)."""

    enabled: bool = True
    address: str = "127.0.0.1:8080"


def http_settings(config: Any) -> HttpSettings | None:
    """The config's ``http`` section, or ``None`` when the config has none.

    The one place the settings are read (``ACTORS_HTTP__ADDRESS`` and
    ``ACTORS_HTTP__ENABLED`` reach it through the config's environment overrides).
    The main job and ``core`` serve the endpoint with the defaults when this is
    ``None``; an embedded synchronizer serves it only when the section is there.
    """
    settings = getattr(config, "settings", None)
    if settings is None or "http" not in settings.model_fields_set:
        return None
    section = settings.http
    return HttpSettings(enabled=section.enabled, address=section.address)


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` (IPv6 in brackets); ``ValueError`` naming it if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"http.address {address!r}: expected host:port, such as 127.0.0.1:8080")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ObserveServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class ObserveServer:
    """The HTTP endpoint; binds at construction (``OSError`` naming the address if it cannot).

    Args:
        address: ``host:port``; port 0 picks a free one (see :attr:`address`).
        metrics: served at ``/metrics`` (``None``: 404).
        health: the checks of ``/healthz`` and ``/readyz``.
        routes: JSON routes by their first path segment (``{"status": fn}`` serves ``/status``).
        web: serve the web view at ``/`` (see the module's docstring).
        authorize: checks the requests of the web view and the JSON routes.
    """

    def __init__(
        self,
        address: str,
        *,
        metrics: Metrics | None,
        health: Health,
        routes: Mapping[str, Route] | None = None,
        web: bool = False,
        authorize: Authorize | None = None,
    ) -> None:
        host, port = parse_address(address)
        self.metrics = metrics
        self.health = health
        self.routes = dict(routes or {})
        self.authorize = authorize
        self.web = _web_files() if web else {}
        server_class = _Server6 if ":" in host else _Server
        try:
            self._httpd = server_class((host, port), _Handler)
        except OSError as exc:
            raise OSError(
                f"the HTTP endpoint cannot listen on {address}: {(exc.strerror or str(exc)).lower()}"
            ) from None
        self._httpd.owner = self
        shown = f"[{host}]" if ":" in host else host
        #: ``host:port`` actually listened on (the port filled in when 0 was asked).
        self.address = f"{shown}:{self._httpd.server_address[1]}"
        self.port: int = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.address}"

    def start(self) -> ObserveServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                name="actors-http",
                kwargs={"poll_interval": 0.2},
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (calls being answered finish on their own)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "actors"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("http %s", format % args)

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            if segments == ["metrics"] and owner.metrics is not None:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(owner.metrics.registry), content_type)
            elif segments and segments[0] in KINDS and len(segments) <= 2:
                self._health(owner.health, segments[0], segments[1:], "verbose" in query)
            elif not self._allowed(owner):
                pass
            elif not segments and owner.web:
                self._send(200, *owner.web["index.html"], cache="no-cache")
            elif len(segments) == 2 and segments[0] == "web" and segments[1] in owner.web:
                self._send(200, *owner.web[segments[1]], cache="no-cache")
            elif segments and segments[0] in owner.routes:
                self._json(owner.routes[segments[0]], segments[1:])
            else:
                self._send(404, b"not found\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _allowed(self, owner: ObserveServer) -> bool:
        """Whether ``authorize`` lets this request in; a 401 with a Basic challenge if not."""
        if owner.authorize is None:
            return True
        try:
            refused = owner.authorize(self.headers.get("Authorization"), str(self.client_address[0]))
        except Exception as exc:  # the check itself failed: refuse, say why
            refused = str(exc) or type(exc).__name__
        if refused is None:
            return True
        self._send(401, f"{refused}\n".encode(), challenge='Basic realm="actors", charset="UTF-8"')
        return False

    def _health(self, health: Health, kind: Kind, rest: list[str], verbose: bool) -> None:
        try:
            results = health.run(kind, rest[0] if rest else None)
        except KeyError:
            self._send(404, f"{kind} check {rest[0]!r} not found\n".encode())
            return
        ok = all(r.ok for r in results)
        if rest and not verbose:
            text = "ok\n" if ok else f"{results[0].reason}\n"
        else:
            lines = [f"[+]{r.name} ok" if r.ok else f"[-]{r.name} failed: {r.reason}" for r in results]
            lines = [line for line, r in zip(lines, results, strict=True) if verbose or not r.ok]
            lines.append(f"{kind} check {'passed' if ok else 'failed'}" if (verbose or not ok) else "ok")
            text = "\n".join(lines) + "\n"
        self._send(200 if ok else 500, text.encode())

    def _json(self, route: Route, args: list[str]) -> None:
        try:
            value = route(args)
            code = 200
        except LookupError as exc:
            value, code = {"error": str(exc.args[0]) if exc.args else str(exc)}, 404
        except ValueError as exc:
            value, code = {"error": str(exc)}, 400
        body = json.dumps(_plain(value), indent=2, default=str) + "\n"
        self._send(code, body.encode(), "application/json")

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        cache: str = "no-store",
        challenge: str | None = None,
    ) -> None:
        self.send_response(code)
        if challenge is not None:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value
