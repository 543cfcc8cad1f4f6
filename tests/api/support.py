"""Helpers of the API tests: waiting on conditions, raw gRPC calls, TLS material."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

WIDGETS_XPROTO = """
option app_label = "widgets";

message Widget (XOSBase) {
    option description = "A test widget";
    required string name = 1 [max_length = 64, null = False, blank = False];
    optional int32 size = 2 [default = 0];
    optional float weight = 3 [null = True];
    optional bool active = 4 [default = True];
    optional manytoone owner->Service:widgets = 5:1001 [null = True, blank = True];
    optional string color = 6 [max_length = 10, choices = "(('red', 'Red'), ('blue', 'Blue'))", null = True];
}

message SpecialWidget (Widget) {
    optional string flavour = 1 [max_length = 30, null = True];
}
"""

PASSWORDS = {"admin": "admin-pw", "sync": "sync-pw", "reader": "reader-pw"}


def basic(user: str, password: str | None = None) -> tuple[tuple[str, str], ...]:
    """Call metadata with basic credentials of a test user."""
    secret = PASSWORDS[user] if password is None else password
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


@dataclass
class Result:
    code: grpc.StatusCode
    data: bytes
    details: str
    kind: str

    def parse(self, cls: Any) -> Any:
        assert self.code == grpc.StatusCode.OK, (self.code, self.details)
        return cls.FromString(self.data)


class RawClient:
    """Calls any method by path with bytes or a message, and reports the status."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel

    def call(
        self, path: str, request: Any, metadata: Sequence[tuple[str, str]] = (), timeout: float = 10.0
    ) -> Result:
        data = request if isinstance(request, bytes) else request.SerializeToString()
        stub = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            response, call = stub.with_call(data, metadata=tuple(metadata), timeout=timeout)
            return Result(call.code(), response, call.details() or "", "")
        except grpc.RpcError as exc:
            kind = dict(exc.trailing_metadata() or ()).get("x-actors-error", "")  # type: ignore[attr-defined]
            return Result(exc.code(), b"", exc.details() or "", kind)  # type: ignore[attr-defined]

    def stream(
        self, path: str, request: Any, metadata: Sequence[tuple[str, str]] = (), timeout: float = 10.0
    ) -> Any:
        data = request if isinstance(request, bytes) else request.SerializeToString()
        stub = self.channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        return stub(data, metadata=tuple(metadata), timeout=timeout)


def make_tls(folder: Any) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1 and localhost, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "actors test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "cert": cert.public_bytes(serialization.Encoding.PEM),
        "key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    out = {}
    for name, data in files.items():
        path = folder / f"{name}.pem"
        path.write_bytes(data)
        out[name] = str(path)
    return out
