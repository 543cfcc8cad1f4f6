"""The model API over gRPC: services, server, remote ORM backend, auth, the CLI's client commands.

Messages and services are generated at run time from the loaded xproto models
(no ``protoc`` step). :func:`serve` runs the API over a
:class:`~actors.store.Store`; :class:`RemoteBackend` is the ORM backend that
reaches a core over gRPC, so ``ModelAccessor(RemoteBackend(...))`` is the same
ORM as over a local store. See ``docs/api.md``.
"""

from ._auth import Authenticator, hash_password, verify_password
from ._client import AccessDenied, RemoteBackend, RemoteError, SchemaConflict, Unavailable
from ._commands import (
    CliError,
    hash_password_command,
    login_command,
    models_command,
    objects_command,
    protos_command,
    status_command,
    why_command,
)
from ._server import (
    DEFAULT_ADDRESS,
    ApiServer,
    check_address,
    load_config_and_logging,
    serve,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "AccessDenied",
    "ApiServer",
    "Authenticator",
    "CliError",
    "RemoteBackend",
    "RemoteError",
    "SchemaConflict",
    "Unavailable",
    "check_address",
    "hash_password",
    "hash_password_command",
    "load_config_and_logging",
    "login_command",
    "models_command",
    "objects_command",
    "protos_command",
    "serve",
    "status_command",
    "verify_password",
    "why_command",
]
