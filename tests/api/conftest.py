"""Fixtures of the API tests: a store with test models, a real server on a free port, clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from actors.api import ApiServer, RemoteBackend, hash_password, serve
from actors.models import Schema, load_schema
from actors.store import Store

from .support import PASSWORDS, WIDGETS_XPROTO, RawClient, make_tls


@pytest.fixture(scope="session")
def api_users() -> list[dict[str, Any]]:
    """One user per role, configured with password hashes (hashed once: scrypt is slow on purpose)."""
    roles = {"admin": "admin", "sync": "synchronizer", "reader": "readonly"}
    return [
        {"username": name, "password_hash": hash_password(PASSWORDS[name]), "role": role}
        for name, role in roles.items()
    ]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``widgets.xproto`` (models Widget and SpecialWidget)."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "widgets.xproto").write_text(WIDGETS_XPROTO, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def api_schema(models_dir: Path) -> Schema:
    """The built-in models and the test models, loaded once (a schema is immutable)."""
    return load_schema([models_dir])


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return "sqlite:///" + str(tmp_path / "db.sqlite")


@pytest.fixture
def api_store(db_url: str, api_schema: Schema) -> Iterator[Store]:
    store = Store(db_url, api_schema)
    yield store
    store.close()


@pytest.fixture
def start_server(api_users: list[dict[str, Any]]) -> Iterator[Callable[..., ApiServer]]:
    """``start_server(store, **options)``: a running server on 127.0.0.1 (stopped after the test)."""
    servers: list[ApiServer] = []

    def start(store: Store, **options: Any) -> ApiServer:
        options.setdefault("address", "127.0.0.1:0")
        options.setdefault("users", api_users)
        server = serve(store, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=0)


@pytest.fixture
def api_server(api_store: Store, start_server: Callable[..., ApiServer]) -> ApiServer:
    return start_server(api_store)


@pytest.fixture
def remote(api_server: ApiServer) -> Iterator[Callable[..., RemoteBackend]]:
    """``remote(user="sync", **options)``: a :class:`RemoteBackend` logged in as a test user."""
    backends: list[RemoteBackend] = []

    def connect(user: str | None = "sync", endpoint: str | None = None, **options: Any) -> RemoteBackend:
        if user is not None:
            options.setdefault("username", user)
            options.setdefault("password", PASSWORDS.get(user, ""))
        options.setdefault("timeout", 10.0)
        backend = RemoteBackend(endpoint or api_server.address, **options)
        backends.append(backend)
        return backend

    yield connect
    for backend in backends:
        backend.close()


@pytest.fixture
def raw(api_server: ApiServer) -> Iterator[RawClient]:
    channel = grpc.insecure_channel(api_server.address)
    yield RawClient(channel)
    channel.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pytest.importorskip("cryptography")
    return make_tls(tmp_path_factory.mktemp("tls"))
