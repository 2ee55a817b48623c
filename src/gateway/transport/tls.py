"""TLS material for the transports: PEM loading and gRPC credentials (mutual TLS by default).

Generic on purpose: the gRPC server and client use it, and the XML-over-HTTPS transport may load
its key, certificate and CA bundle the same way. Nothing here decides which administration a
peer is: that is `TrustStore.administration_of_tls_peer`, called per call by the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})


def load_pem(path: Path | str, what: str) -> bytes:
    """Read a PEM file, failing with CFG_INVALID naming the file and what it should hold."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what} {path}: {exc.strerror}", location=str(path)
        ) from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what} {path} is not PEM", location=str(path))
    return data


def check_certificates_pem(data: bytes, what: str, location: str | None = None) -> None:
    """Fail early (CFG_INVALID) on a certificate bundle grpc would only refuse at handshake."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{what} cannot be read: {exc}", location=location) from None
    if not certs:
        raise ConfigError(f"{what} holds no certificate", location=location)


@dataclass(frozen=True)
class TlsIdentity:
    """This gateway's TLS key and certificate chain (leaf first), as PEM."""

    key_pem: bytes
    cert_pem: bytes

    def __post_init__(self) -> None:
        try:
            serialization.load_pem_private_key(self.key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"TLS private key cannot be read: {exc}") from None
        check_certificates_pem(self.cert_pem, "TLS certificate")

    @classmethod
    def from_files(cls, key_path: Path | str, cert_path: Path | str) -> TlsIdentity:
        return cls(load_pem(key_path, "TLS private key"), load_pem(cert_path, "TLS certificate"))


@dataclass(frozen=True)
class ClientTls:
    """What a client needs for mutual TLS: its identity and the partner's CA certificates.

    `server_name` overrides the name checked against the server certificate (for a target given
    as an address the certificate does not name).
    """

    identity: TlsIdentity
    partner_roots_pem: bytes
    server_name: str | None = None

    def __post_init__(self) -> None:
        check_certificates_pem(self.partner_roots_pem, "partner CA certificates")

    @classmethod
    def from_files(
        cls,
        key_path: Path | str,
        cert_path: Path | str,
        partner_ca_path: Path | str,
        server_name: str | None = None,
    ) -> ClientTls:
        return cls(
            TlsIdentity.from_files(key_path, cert_path),
            load_pem(partner_ca_path, "partner CA certificates"),
            server_name,
        )


def server_credentials(identity: TlsIdentity, client_roots_pem: bytes) -> grpc.ServerCredentials:
    """Mutual TLS: the client must present a certificate chaining to one of `client_roots_pem`."""
    check_certificates_pem(client_roots_pem, "client CA certificates (trust anchors)")
    return grpc.ssl_server_credentials(
        [(identity.key_pem, identity.cert_pem)],
        root_certificates=client_roots_pem,
        require_client_auth=True,
    )


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.partner_roots_pem,
        private_key=tls.identity.key_pem,
        certificate_chain=tls.identity.cert_pem,
    )


def split_host_port(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' into its parts; CFG_INVALID if it is not that."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address {address!r} is not host:port", location="address")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS
