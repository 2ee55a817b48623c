"""Signing identities: a private key, its certificate and chain, and the algorithms they imply."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.errors import SIG_KEY_MISMATCH, ConfigError, SignatureError
from gateway.model.codes import Administration

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class KeyKind(StrEnum):
    """The two key profiles the gateway signs and verifies with."""

    EC_P256 = "ec-p256"  # JWS ES256, XML-DSig ecdsa-sha256
    RSA = "rsa"  # JWS PS256, XML-DSig rsa-sha256 (RSA-PSS is not in the XML profile)


def key_kind(key: PrivateKey | PublicKey | object) -> KeyKind:
    """The profile a key belongs to; a key of any other kind or curve is refused."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return KeyKind.EC_P256
        raise SignatureError(f"EC curve {key.curve.name} is not allowed", code=SIG_KEY_MISMATCH)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SignatureError(
                f"RSA key of {key.key_size} bits is too short", code=SIG_KEY_MISMATCH
            )
        return KeyKind.RSA
    raise SignatureError(f"key type {type(key).__name__} is not allowed", code=SIG_KEY_MISMATCH)


@dataclass(frozen=True)
class SigningIdentity:
    """What a gateway signs with: its administration, key, certificate and any intermediates."""

    administration: Administration
    private_key: PrivateKey
    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if key_kind(self.private_key) != key_kind(self.certificate.public_key()):
            raise ConfigError("private key and certificate are of different kinds")
        pub = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        cert_pub = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if pub != cert_pub:
            raise ConfigError("private key does not belong to the certificate")

    @property
    def kind(self) -> KeyKind:
        return key_kind(self.private_key)

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then intermediates: what travels with each signature."""
        return (self.certificate, *self.intermediates)


def load_identity(
    administration: Administration,
    key_pem: bytes,
    cert_pem: bytes,
    password: bytes | None = None,
) -> SigningIdentity:
    """Build an identity from PEM: the key file, and a certificate file (leaf first)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"private key type {type(key).__name__} is not allowed")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"cannot read certificate: {exc}") from exc
    return SigningIdentity(administration, key, certs[0], tuple(certs[1:]))
