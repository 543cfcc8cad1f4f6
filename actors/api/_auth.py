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

Password guessing is throttled (:class:`LoginThrottle`): after
:data:`USER_FAILURES` wrong passwords for one user name, or :data:`PEER_FAILURES`
from one client host, within :data:`FAILURE_WINDOW` seconds, further password
checks for that user or host are refused with ``RESOURCE_EXHAUSTED`` (saying
when to retry) without running scrypt, for a delay that starts at
:data:`LOCK_DELAY` seconds and doubles with each further failure, up to
:data:`MAX_LOCK_DELAY`. At most :data:`SCRYPT_SLOTS` password hashes are
checked at once, so guesses cannot take every handler thread and core, and a
refusal is answered after up to :data:`TARPIT` seconds, so a client guessing in
a loop costs the server little.
Tokens are not throttled: a client holding one keeps working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import grpc

from actors.config import ApiUser, ConfigError, validate_section
from actors.store import Caller

from ._wire import ApiError, ErrorKind

__all__ = [
    "ROLES",
    "Authenticator",
    "LoginThrottle",
    "Principal",
    "hash_password",
    "verify_password",
]

ROLES: tuple[str, ...] = get_args(ApiUser.model_fields["role"].annotation)

#: scrypt cost parameters of new hashes (about 16 MiB and a few tens of ms per check).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
DEFAULT_TOKEN_TTL = 12 * 3600.0

#: Wrong passwords for one user name, or from one client host, before its checks are refused.
USER_FAILURES, PEER_FAILURES = 5, 20
#: Seconds a failure counts; a user or host without failures for this long starts afresh.
FAILURE_WINDOW = 300.0
#: The first refusal delay in seconds, doubled at each further failure, and its cap.
LOCK_DELAY, MAX_LOCK_DELAY = 1.0, 300.0
#: Password hashes checked at the same time; a check waits at most SCRYPT_WAIT seconds for a slot.
SCRYPT_SLOTS, SCRYPT_WAIT = max(1, (os.cpu_count() or 2) // 2), 5.0
#: A refused attempt is answered after this many seconds (at most the delay left), so a client
#: guessing in a loop sends a few attempts per second; at most TARPIT_SLOTS calls wait at once
#: (they hold handler threads), others are answered at once.
TARPIT, TARPIT_SLOTS = 0.5, 8


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


def peer_host(peer: str | None) -> str | None:
    """The client host of a gRPC peer string (``ipv4:127.0.0.1:5000`` -> ``ipv4:127.0.0.1``)."""
    if not peer:
        return None
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer


@dataclass
class _Strikes:
    failures: deque[float] = field(default_factory=deque)
    locks: int = 0
    until: float = 0.0


class LoginThrottle:
    """Failed password checks per key (a user name, a client host), with a doubling refusal delay.

    A key with ``limit`` failures within ``window`` seconds is locked: :meth:`retry_in`
    says for how long (``LOCK_DELAY``, doubled at each failure after that, capped at
    ``MAX_LOCK_DELAY``). A success clears the key; a key without failures for
    ``window`` seconds starts afresh. At most ``max_keys`` keys are remembered (the
    oldest are forgotten first). ``clock`` is monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        window: float = FAILURE_WINDOW,
        delay: float = LOCK_DELAY,
        max_delay: float = MAX_LOCK_DELAY,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.delay, self.max_delay = window, delay, max_delay
        self.max_keys = max_keys
        self.clock = clock
        self._keys: dict[str, _Strikes] = {}
        self._lock = threading.Lock()

    def retry_in(self, key: str) -> float:
        """Seconds until ``key`` may be checked again (0: now)."""
        with self._lock:
            strikes = self._keys.get(key)
            return 0.0 if strikes is None else max(0.0, strikes.until - self.clock())

    def failed(self, key: str, limit: int) -> None:
        """Count a failure of ``key``; lock it once it has ``limit`` failures in the window."""
        now = self.clock()
        with self._lock:
            strikes = self._keys.pop(key, None) or _Strikes()
            self._keys[key] = strikes  # most recently failed last: the oldest are dropped first
            while strikes.failures and strikes.failures[0] <= now - self.window:
                strikes.failures.popleft()
            if not strikes.failures:
                strikes.locks = 0
            strikes.failures.append(now)
            while len(strikes.failures) > limit:
                strikes.failures.popleft()
            if len(strikes.failures) >= limit:
                strikes.until = now + min(self.delay * 2**strikes.locks, self.max_delay)
                strikes.locks += 1
            while len(self._keys) > self.max_keys:
                del self._keys[next(iter(self._keys))]

    def succeeded(self, key: str) -> None:
        """Forget the failures of ``key``."""
        with self._lock:
            self._keys.pop(key, None)


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


def _checked(user: Mapping[str, Any], index: int) -> ApiUser:
    """An ``api.users`` entry given as a mapping, checked by the configuration model."""
    try:
        return validate_section(ApiUser, user, at=("api", "users", index))
    except ConfigError as exc:
        raise ValueError(f"API user {user.get('username') or index}: {exc}") from None


def _denied(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, ErrorKind.AUTH)


class Authenticator:
    """Checks the credentials of a call against the configured users.

    ``users`` is the ``api.users`` configuration (:class:`~actors.config.ApiUser`
    entries, or mappings checked as the configuration file is): ``username``,
    ``role`` and either ``password`` (hashed on load, never kept) or
    ``password_hash``. Tokens from :meth:`login` are signed with
    ``token_secret`` (random per process when not given, so tokens die with the
    server; clients that have a password log in again). ``anonymous_read``
    lets calls without credentials read; ``None`` means on without users and
    off with users.
    """

    def __init__(
        self,
        users: Iterable[ApiUser | Mapping[str, Any]] | None = None,
        *,
        token_secret: bytes | str | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        throttle: LoginThrottle | None = None,
        anonymous_read: bool | None = None,
    ) -> None:
        self.throttle = throttle or LoginThrottle()
        self._scrypt_slots = threading.BoundedSemaphore(SCRYPT_SLOTS)
        self._tarpit_slots = threading.BoundedSemaphore(TARPIT_SLOTS)
        self._users: dict[str, tuple[str, str]] = {}
        for index, given in enumerate(users or ()):
            user = given if isinstance(given, ApiUser) else _checked(given, index)
            name = user.username
            if name in self._users:
                raise ValueError(f"API user {name} is configured twice")
            if user.password_hash is not None:
                encoded = user.password_hash
                try:
                    _parse_hash(encoded)
                except ValueError as exc:
                    raise ValueError(f"API user {name}: {exc}") from None
            else:
                encoded = hash_password(str(user.password))
            self._users[name] = (encoded, user.role)
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
    def check_password(self, username: str, password: str, peer: str | None = None) -> Principal:
        """The principal of ``username`` if ``password`` is right; ``UNAUTHENTICATED`` if not.

        ``peer`` is the gRPC peer of the call. A user name or client host with too
        many recent failures gets ``RESOURCE_EXHAUSTED`` without its password
        being checked (see :class:`LoginThrottle`).
        """
        host = peer_host(peer)
        user_key = f"user:{username}"
        peer_key = f"peer:{host}" if host else None
        for key, who in ((user_key, f"user {username!r}"), (peer_key, f"client {host}")):
            wait = self.throttle.retry_in(key) if key else 0.0
            if wait > 0:
                self._tarpit(wait)
                raise ApiError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many failed logins for {who}: retry in {max(1, int(wait + 0.999))} s",
                    ErrorKind.AUTH,
                )
        if not self._password_matches(username, password):
            self.throttle.failed(user_key, USER_FAILURES)
            if peer_key:
                self.throttle.failed(peer_key, PEER_FAILURES)
            raise _denied(f"unknown user {username!r} or wrong password")
        self.throttle.succeeded(user_key)
        return Principal(username, self._users[username][1])

    def _tarpit(self, wait: float) -> None:
        if self._tarpit_slots.acquire(blocking=False):
            try:
                time.sleep(min(wait, TARPIT))
            finally:
                self._tarpit_slots.release()

    def _password_matches(self, username: str, password: str) -> bool:
        entry = self._users.get(username)
        if entry is None:
            return False
        encoded = entry[0]
        key = (username, hmac.digest(self._cache_key, password.encode("utf-8", "surrogatepass"), "sha256"))
        with self._lock:
            cached = self._verified.get(key)
        if cached == encoded:
            return True
        if not self._scrypt_slots.acquire(timeout=SCRYPT_WAIT):
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many password checks in progress: retry in 1 s (or log in once and use the token)",
                ErrorKind.AUTH,
            )
        try:
            if not verify_password(password, encoded):
                return False
        finally:
            self._scrypt_slots.release()
        with self._lock:
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified[key] = encoded
        return True

    # -- tokens ---------------------------------------------------------------
    def login(self, username: str, password: str, peer: str | None = None) -> tuple[str, float, str]:
        """``(token, expires_at, role)`` for a valid username and password (``peer``: see check_password)."""
        principal = self.check_password(username, password, peer)
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
    def authenticate(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, peer: str | None = None
    ) -> Principal:
        """The principal of a call, from its metadata (``UNAUTHENTICATED`` for bad credentials).

        ``peer`` is the call's gRPC peer, for the throttling of password checks.
        """
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
                return self.check_password(username, password, peer)
            raise _denied(f"unsupported authorization scheme {scheme!r} (use Basic or Bearer)")
        if "token" in md:
            return self.check_token(md["token"])
        if "username" in md:
            return self.check_password(md["username"], md.get("password", ""), peer)
        if self.anonymous_read:
            return GUEST
        raise _denied(
            "credentials required: send 'authorization: Basic base64(user:password)', "
            "'authorization: Bearer <token>', or username and password metadata"
        )
