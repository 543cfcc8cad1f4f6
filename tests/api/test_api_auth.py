"""Passwords, tokens, roles, the read-only development mode, and TLS."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from actors.api import AccessDenied, ApiServer, RemoteBackend, hash_password, verify_password
from actors.api._auth import Authenticator
from actors.api._wire import ApiError
from actors.store import Caller, Store, WriteContext

from .support import PASSWORDS, RawClient, basic


def test_hash_password_round_trip() -> None:
    encoded = hash_password("s3cret")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)
    assert hash_password("s3cret") != encoded  # salted
    with pytest.raises(ValueError):
        verify_password("x", "md5$abc")
    with pytest.raises(ValueError):
        verify_password("x", "scrypt$3$8$1$AAAA$AAAA")  # n not a power of two


def test_pbkdf2_hashes_are_accepted() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 1000)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    encoded = f"pbkdf2_sha256$1000${b64(salt)}${b64(digest)}"
    assert verify_password("pw", encoded)
    assert not verify_password("pw2", encoded)


def test_authenticator_configuration_errors() -> None:
    with pytest.raises(ValueError, match="role"):
        Authenticator([{"username": "u", "password": "p", "role": "root"}])
    with pytest.raises(ValueError, match="twice"):
        Authenticator([{"username": "u", "password": "p", "role": "admin"}] * 2)
    with pytest.raises(ValueError, match="password"):
        Authenticator([{"username": "u", "role": "admin"}])
    with pytest.raises(ValueError, match="API user u"):
        Authenticator([{"username": "u", "password_hash": "nonsense", "role": "admin"}])


def test_authenticator_takes_the_typed_users_of_a_config() -> None:
    from actors.api._auth import ROLES
    from actors.config import Config

    assert ROLES == ("admin", "synchronizer", "readonly")
    api = Config.from_dict(
        {"name": "x", "api": {"users": [{"username": "u", "password": "p", "role": "synchronizer"}]}}
    ).settings.api
    auth = Authenticator(api.users, anonymous_read=api.anonymous_read)
    assert auth.check_password("u", "p").role == "synchronizer"
    assert not auth.anonymous_read
    with pytest.raises(
        ValueError, match=r'^API user u: api\.users\.0\.role: expected "admin", "synchronizer"'
    ):
        Authenticator([{"username": "u", "password": "p", "role": "root"}])


def test_plain_passwords_are_hashed_on_load() -> None:
    auth = Authenticator([{"username": "u", "password": "plain-secret", "role": "admin"}])
    assert "plain-secret" not in repr(auth._users)
    assert auth.check_password("u", "plain-secret").role == "admin"
    with pytest.raises(ApiError) as info:
        auth.check_password("u", "q")
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_expire_and_are_bound_to_the_secret() -> None:
    users = [{"username": "u", "password_hash": hash_password("p"), "role": "synchronizer"}]
    auth = Authenticator(users, token_secret=b"k1")
    token, _expires, role = auth.login("u", "p")
    assert role == "synchronizer" and auth.check_token(token).username == "u"
    assert Authenticator(users, token_secret=b"k1").check_token(token).role == "synchronizer"
    with pytest.raises(ApiError, match="invalid token"):
        Authenticator(users, token_secret=b"k2").check_token(token)
    expired = Authenticator(users, token_secret=b"k1", token_ttl=-1)
    old, _, _ = expired.login("u", "p")
    with pytest.raises(ApiError, match="expired"):
        auth.check_token(old)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(ApiError):
        auth.check_token(tampered)
    # A removed user's token no longer works.
    with pytest.raises(ApiError, match="unknown user"):
        Authenticator([{"username": "v", "password": "p", "role": "admin"}], token_secret=b"k1").check_token(
            token
        )


def test_token_login_over_the_api(remote: Callable[..., RemoteBackend], api_server: ApiServer) -> None:
    token = remote("reader").login("sync", PASSWORDS["sync"])
    backend = remote(None, token=token)
    row = backend.create("Widget", {"name": "by-token"}, WriteContext(Caller.STEP))
    assert row["changed_by_step"] is not None
    with pytest.raises(AccessDenied):
        remote(None, token="v1.bad.token")


def test_roles(remote: Callable[..., RemoteBackend]) -> None:
    reader, admin, sync = remote("reader"), remote("admin"), remote("sync")
    with pytest.raises(AccessDenied, match="may not write"):
        reader.create("Widget", {"name": "w"})
    w = admin.create("Widget", {"name": "w"}, WriteContext(Caller.CLIENT))
    for caller in (Caller.SYNCHRONIZER, Caller.STEP, Caller.POLICY):
        with pytest.raises(AccessDenied, match="only as a client"):
            admin.update("Widget", w["id"], {"size": 1}, WriteContext(caller))
        sync.update("Widget", w["id"], {"size": 2}, WriteContext(caller))
    with pytest.raises(AccessDenied):
        reader.delete("Widget", w["id"])
    with pytest.raises(AccessDenied):
        reader.upload_models({"x.xproto": "message X (XOSBase) { optional string a = 1; }"})
    assert reader.get("Widget", w["id"])["size"] == 2


def test_wrong_password_is_refused_at_connect(remote: Callable[..., RemoteBackend]) -> None:
    with pytest.raises(AccessDenied, match="wrong password"):
        remote("reader", password="nope")


def test_without_users_reads_are_open_and_writes_refused(
    api_store: Store, start_server: Callable[..., ApiServer]
) -> None:
    server = start_server(api_store, users=[])
    api_store.create("Widget", {"name": "w"})
    with RemoteBackend(server.address, timeout=10) as backend:
        assert [r["name"] for r in backend.select("Widget")] == ["w"]
        with pytest.raises(AccessDenied, match="no users are configured"):
            backend.create("Widget", {"name": "x"})
    channel = grpc.insecure_channel(server.address)
    protos = server.protos
    login = RawClient(channel).call(
        "/actors.api.v1.Core/Login", protos.message("LoginRequest")(username="a", password="b")
    )
    assert login.code == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_tls(api_store: Store, start_server: Callable[..., ApiServer], tls_files: dict[str, str]) -> None:
    server = start_server(api_store, tls={"cert": tls_files["cert"], "key": tls_files["key"]})
    assert server.tls
    with RemoteBackend(
        server.address, username="sync", password=PASSWORDS["sync"], tls_ca=tls_files["ca"]
    ) as b:
        row = b.create("Widget", {"name": "secure"})
        assert b.get("Widget", row["id"])["name"] == "secure"
    # PEM text works as well as a path.
    with open(tls_files["ca"]) as f:
        ca_text = f.read()
    with RemoteBackend(server.address, username="reader", password=PASSWORDS["reader"], tls_ca=ca_text) as b:
        assert b.get("Widget", row["id"]) is not None
    # A plaintext client cannot talk to a TLS server.
    channel = grpc.insecure_channel(server.address)
    result = RawClient(channel).call(
        "/actors.api.v1.Core/Now", server.protos.message("Empty")(), basic("reader"), timeout=3
    )
    assert result.code == grpc.StatusCode.UNAVAILABLE
    channel.close()
    # A client that does not trust the CA is refused too.
    other = grpc.secure_channel(server.address, grpc.ssl_channel_credentials())
    result = RawClient(other).call(
        "/actors.api.v1.Core/Now", server.protos.message("Empty")(), basic("reader"), timeout=3
    )
    assert result.code == grpc.StatusCode.UNAVAILABLE
    other.close()
