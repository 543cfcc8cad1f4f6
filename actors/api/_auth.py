"""Users, roles, password hashes and tokens of the API.

Credentials travel in call metadata, either as ``authorization: Basic
base64(user:password)`` / ``authorization: Bearer <token>``, or as separate
``username`` and ``password`` (or ``token``) keys, which is handy with grpcurl.

Roles:

``readonly``
    reads (List, Get, Filter, Count, Watch, schema and .proto download).
``admin``
    reads, writes as a client (writes bump ``updated``), uploads of xproto files.
``synchronizer``
    reads, writes as any caller (``synchronizer``, ``step``, ``policy``, ``client``), uploads.

With no users configured (development), every call is an anonymous ``readonly``
call: the API can be read without credentials and cannot be written. With users,
calls without credentials are refused unless ``anonymous_read`` is on (then they
may read; writes still need credentials).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from actors.store import Caller

from ._wire import ApiError, ErrorKind

__all__ = [
    "ROLES",
    "Authenticator",
    "Principal",
    "hash_password",
    "verify_password",
]

ROLES = ("admin", "synchronizer", "readonly")

#: scrypt cost parameters of new hashes (about 16 MiB and a few tens of ms per check).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
DEFAULT_TOKEN_TTL = 12 * 3600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password`` for the ``password_hash`` configuration key.

    The format is ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` with salt and hash in
    unpadded URL-safe base64. :func:`verify_password` also accepts
    ``pbkdf2_sha256$<iterations>$<salt>$<hash>``.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[str, tuple[int, ...], bytes, bytes]:
    """``(scheme, parameters, salt, digest)`` of an encoded hash; ``ValueError`` if malformed."""
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
                raise ValueError("scrypt parameters out of range")
            params: tuple[int, ...] = (n, r, p)
            salt, digest = _unb64(parts[4]), _unb64(parts[5])
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            params = (int(parts[1]),)
            if not 1 <= params[0] <= 10_000_000:
                raise ValueError("pbkdf2 iterations out of range")
            salt, digest = _unb64(parts[2]), _unb64(parts[3])
        else:
            raise ValueError("unknown password hash format (expected scrypt$... or pbkdf2_sha256$...)")
    except (binascii.Error, IndexError) as exc:
        raise ValueError(f"malformed password hash: {exc}") from None
    if not digest or not salt:
        raise ValueError("malformed password hash: empty salt or digest")
    return parts[0], params, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time).

    Raises:
        ValueError: ``encoded`` is not a hash in a known format.
    """
    scheme, params, salt, expected = _parse_hash(encoded)
    secret = password.encode("utf-8", "surrogatepass")
    if scheme == "scrypt":
        n, r, p = params
        digest = hashlib.scrypt(
            secret, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=256 * 1024 * 1024
        )
    else:
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, params[0], len(expected))
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class Principal:
    """Who calls: a configured user, or the anonymous caller of an API without users."""

    username: str
    role: str
    #: An anonymous reader of an API that has users (``api.anonymous_read``).
    guest: bool = False

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "synchronizer")

    def check_write(self, caller: Caller | None = None) -> None:
        """Raise ``PERMISSION_DENIED`` unless this principal may write as ``caller``.

        An anonymous reader of an API with users gets ``UNAUTHENTICATED``: it must log in.
        """
        if self.guest:
            raise _denied("credentials required to write: anonymous callers may only read")
        if not self.can_write:
            why = "no users are configured, the API is read-only" if self.username == "" else "role readonly"
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"user {self.username or '(anonymous)'} may not write ({why})",
                ErrorKind.AUTH,
            )
        if caller is not None and caller is not Caller.CLIENT and self.role != "synchronizer":
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"user {self.username} (role {self.role}) may write only as a client, not as {caller.value}; "
                "the synchronizer role may write as any caller",
                ErrorKind.AUTH,
            )


ANONYMOUS = Principal("", "readonly")
GUEST = Principal("", "readonly", guest=True)


def _denied(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, ErrorKind.AUTH)


class Authenticator:
    """Checks the credentials of a call against the configured users.

    ``users`` is the ``api.users`` configuration: mappings with ``username``,
    ``role`` and either ``password`` (hashed on load, never kept) or
    ``password_hash``. Tokens from :meth:`login` are signed with
    ``token_secret`` (random per process when not given, so tokens die with the
    server; clients that have a password log in again). ``anonymous_read``
    lets calls without credentials read; ``None`` means on without users and
    off with users.
    """

    def __init__(
        self,
        users: Iterable[Mapping[str, Any]] | None = None,
        *,
        token_secret: bytes | str | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        anonymous_read: bool | None = None,
    ) -> None:
        self._users: dict[str, tuple[str, str]] = {}
        for user in users or ():
            name = user.get("username")
            role = user.get("role")
            if not isinstance(name, str) or not name:
                raise ValueError("an API user needs a username")
            if role not in ROLES:
                raise ValueError(f"API user {name}: role must be one of {', '.join(ROLES)}, got {role!r}")
            if name in self._users:
                raise ValueError(f"API user {name} is configured twice")
            if user.get("password_hash"):
                encoded = str(user["password_hash"])
                try:
                    _parse_hash(encoded)
                except ValueError as exc:
                    raise ValueError(f"API user {name}: {exc}") from None
            elif user.get("password") is not None:
                encoded = hash_password(str(user["password"]))
            else:
                raise ValueError(f"API user {name} needs a password or a password_hash")
            self._users[name] = (encoded, str(role))
        if isinstance(token_secret, str):
            token_secret = token_secret.encode("utf-8")
        self._secret = token_secret or secrets.token_bytes(32)
        self._cache_key = secrets.token_bytes(32)
        self._token_ttl = token_ttl
        self._verified: dict[tuple[str, bytes], str] = {}
        self._lock = threading.Lock()
        #: Calls without credentials may read.
        self.anonymous_read = not self._users if anonymous_read is None else bool(anonymous_read)

    @property
    def open(self) -> bool:
        """No users configured: anonymous read-only access."""
        return not self._users

    @property
    def usernames(self) -> list[str]:
        return list(self._users)

    # -- passwords ------------------------------------------------------------
    def check_password(self, username: str, password: str) -> Principal:
        """The principal of ``username`` if ``password`` is right; ``UNAUTHENTICATED`` if not."""
        entry = self._users.get(username)
        if entry is None:
            raise _denied(f"unknown user {username!r} or wrong password")
        encoded, role = entry
        key = (username, hmac.digest(self._cache_key, password.encode("utf-8", "surrogatepass"), "sha256"))
        with self._lock:
            cached = self._verified.get(key)
        if cached == encoded:
            return Principal(username, role)
        if not verify_password(password, encoded):
            raise _denied(f"unknown user {username!r} or wrong password")
        with self._lock:
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified[key] = encoded
        return Principal(username, role)

    # -- tokens ---------------------------------------------------------------
    def login(self, username: str, password: str) -> tuple[str, float, str]:
        """``(token, expires_at, role)`` for a valid username and password."""
        principal = self.check_password(username, password)
        expires = time.time() + self._token_ttl
        payload = _b64(json.dumps({"u": username, "e": round(expires, 3)}, separators=(",", ":")).encode())
        signature = _b64(hmac.digest(self._secret, payload.encode("ascii"), "sha256"))
        return f"v1.{payload}.{signature}", expires, principal.role

    def check_token(self, token: str) -> Principal:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            raise _denied("malformed token")
        payload, signature = parts[1], parts[2]
        try:
            expected = hmac.digest(self._secret, payload.encode("ascii"), "sha256")
            if not hmac.compare_digest(expected, _unb64(signature)):
                raise _denied("invalid token (log in again)")
            data = json.loads(_unb64(payload))
            username, expires = str(data["u"]), float(data["e"])
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
            raise _denied("malformed token") from None
        if expires < time.time():
            raise _denied("token expired (log in again)")
        entry = self._users.get(username)
        if entry is None:
            raise _denied(f"unknown user {username!r}")
        return Principal(username, entry[1])

    # -- calls ----------------------------------------------------------------
    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The principal of a call, from its metadata (``UNAUTHENTICATED`` for bad credentials)."""
        if self.open:
            if self.anonymous_read:
                return ANONYMOUS
            raise _denied("no users are configured and api.anonymous_read is false: every call is refused")
        md: dict[str, str] = {}
        for key, value in metadata or ():
            if isinstance(value, bytes):
                continue
            md.setdefault(key.lower(), value)
        auth = md.get("authorization", "").strip()
        if auth:
            scheme, _, credentials = auth.partition(" ")
            credentials = credentials.strip()
            if scheme.lower() == "bearer":
                return self.check_token(credentials)
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise _denied("malformed basic credentials") from None
                username, sep, password = decoded.partition(":")
                if not sep:
                    raise _denied("malformed basic credentials")
                return self.check_password(username, password)
            raise _denied(f"unsupported authorization scheme {scheme!r} (use Basic or Bearer)")
        if "token" in md:
            return self.check_token(md["token"])
        if "username" in md:
            return self.check_password(md["username"], md.get("password", ""))
        if self.anonymous_read:
            return GUEST
        raise _denied(
            "credentials required: send 'authorization: Basic base64(user:password)', "
            "'authorization: Bearer <token>', or username and password metadata"
        )
