"""A throw-away test PKI: a root CA per administration and the certificates tests and the demo need.

Never use it for production: keys are written unencrypted. Layout under the chosen directory:

    <ADMIN>/ca.pem ca.key.pem crl.pem       root CA of the administration, and its CRL
    <ADMIN>/signing.pem signing.key.pem      EC P-256 envelope-signing certificate (ES256)
    <ADMIN>/signing-rsa.pem ...key.pem       RSA-2048 signing certificate (PS256 / rsa-sha256)
    <ADMIN>/signing-next.pem ...key.pem      the next signing key, for rotation tests
    <ADMIN>/tls.pem tls.key.pem              TLS certificate (server and client auth, 127.0.0.1)
    <ADMIN>/expired.pem ...key.pem           signing certificate whose validity ended
    <ADMIN>/revoked.pem ...key.pem           signing certificate listed in crl.pem
    FOREIGN/ca.pem ...                       a CA no administration trusts, and under it
    FOREIGN/<ADMIN>-impostor.pem ...key.pem  certificates that claim to be each administration

Root CAs allow no intermediate (path length 0) unless `init_test_pki(..., ca_path_length=...)`
says otherwise; `issue_intermediate_tls` then adds an issuing CA and a TLS client under it, the
shape of a real partner PKI (tests of chains sent in the TLS handshake).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.envelope.keys import PrivateKey, SigningIdentity
from gateway.model.codes import Administration

FOREIGN = "FOREIGN"
LEAF_NAMES = ("signing", "signing-rsa", "signing-next", "tls", "expired", "revoked")


def _name(admin: str, role: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"GNC test administration {admin}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{admin} {role}"),
        ]
    )


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _Issued:
    key: PrivateKey
    cert: x509.Certificate


def _make_ca(admin: str, now: dt.datetime, path_length: int | None = 0) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(admin, "GNC test root CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(key, cert)


def _make_leaf(
    ca: _Issued,
    admin: str,
    role: str,
    *,
    key: PrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    tls: bool = False,
) -> _Issued:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(admin, role))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if tls:
        builder = (
            builder.add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName(f"{admin.lower()}.gateway.test"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        )
    else:
        # digitalSignature + nonRepudiation (contentCommitment): envelopes and receipts.
        builder = builder.add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
    return _Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _write(
    directory: Path, stem: str, issued: _Issued, chain: tuple[x509.Certificate, ...] = ()
) -> None:
    key_path = directory / f"{stem}.key.pem"
    key_path.write_bytes(_pem_key(issued.key))
    key_path.chmod(0o600)
    (directory / f"{stem}.pem").write_bytes(b"".join(_pem_cert(c) for c in (issued.cert, *chain)))


def _ec_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def init_test_pki(
    root: Path,
    administrations: tuple[str, ...] | None = None,
    *,
    now: dt.datetime | None = None,
    ca_path_length: int | None = 0,
) -> TestPki:
    """Write a complete test PKI under `root` and return a handle to it.

    `ca_path_length`: intermediates each root CA allows below it (None: no limit); the default
    0 keeps every certificate directly under its root.
    """
    now = now or dt.datetime.now(dt.UTC)
    admins = administrations or tuple(a.value for a in Administration)
    root.mkdir(parents=True, exist_ok=True)
    year = dt.timedelta(days=365)
    for admin in admins:
        directory = root / admin
        directory.mkdir(exist_ok=True)
        ca = _make_ca(admin, now, ca_path_length)
        _write(directory, "ca", ca)
        start, end = now - dt.timedelta(days=1), now + 2 * year
        _write(
            directory,
            "signing",
            _make_leaf(
                ca, admin, "gateway signing", key=_ec_key(), not_before=start, not_after=end
            ),
        )
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(
            directory,
            "signing-rsa",
            _make_leaf(
                ca, admin, "gateway signing RSA", key=rsa_key, not_before=start, not_after=end
            ),
        )
        _write(
            directory,
            "signing-next",
            _make_leaf(
                ca, admin, "gateway signing next", key=_ec_key(), not_before=start, not_after=end
            ),
        )
        _write(
            directory,
            "tls",
            _make_leaf(
                ca, admin, "gateway", key=_ec_key(), tls=True, not_before=start, not_after=end
            ),
        )
        expired = _make_leaf(
            ca,
            admin,
            "gateway signing expired",
            key=_ec_key(),
            not_before=now - 2 * year,
            not_after=now - dt.timedelta(days=30),
        )
        _write(directory, "expired", expired)
        revoked = _make_leaf(
            ca, admin, "gateway signing revoked", key=_ec_key(), not_before=start, not_after=end
        )
        _write(directory, "revoked", revoked)
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(now - dt.timedelta(hours=1))
            .next_update(now + dt.timedelta(days=30))
            .add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(revoked.cert.serial_number)
                .revocation_date(now - dt.timedelta(minutes=30))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build()
            )
            .sign(ca.key, hashes.SHA256())
        )
        (directory / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    foreign_dir = root / FOREIGN
    foreign_dir.mkdir(exist_ok=True)
    foreign_ca = _make_ca("FOREIGN", now, ca_path_length)
    _write(foreign_dir, "ca", foreign_ca)
    for admin in admins:
        impostor = _make_leaf(
            foreign_ca,
            admin,
            "gateway signing",
            key=_ec_key(),
            not_before=now - dt.timedelta(days=1),
            not_after=now + year,
        )
        _write(foreign_dir, f"{admin}-impostor", impostor)
    return TestPki(root)


def issue_intermediate_tls(
    pki: TestPki,
    admin: str,
    stem: str = "tls-intermediate",
    *,
    now: dt.datetime | None = None,
) -> None:
    """Add an issuing CA under `admin`'s root and a TLS client certificate under that CA.

    For tests of mutual TLS with a partner PKI that issues from an intermediate: the root must
    allow it (`init_test_pki(..., ca_path_length=1)` or None). Writes under `<ADMIN>/`:
    `<stem>.pem` (leaf then intermediate: what a client sends) and `<stem>.key.pem`,
    `<stem>-leaf.pem` (the leaf alone), `<stem>-ca.pem` and `<stem>-ca.key.pem` (the
    intermediate) and `<stem>-ca-crl.pem` (its CRL, revoking nothing).
    """
    now = now or dt.datetime.now(dt.UTC)
    directory = pki.root / admin
    root_key = serialization.load_pem_private_key(
        pki.key_path(admin, "ca").read_bytes(), password=None
    )
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    root = _Issued(root_key, pki.ca(admin))
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=365)
    key = _ec_key()
    inter = _Issued(
        key,
        x509.CertificateBuilder()
        .subject_name(_name(admin, f"GNC test issuing CA {stem}"))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256()),
    )
    _write(directory, f"{stem}-ca", inter)
    leaf = _make_leaf(
        inter, admin, f"gateway {stem}", key=_ec_key(), tls=True, not_before=start, not_after=end
    )
    _write(directory, stem, leaf, (inter.cert,))
    (directory / f"{stem}-leaf.pem").write_bytes(_pem_cert(leaf.cert))
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(inter.cert.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=30))
        .sign(inter.key, hashes.SHA256())
    )
    (directory / f"{stem}-ca-crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class TestPki:
    __test__ = False  # not a pytest test class

    """Read access to a PKI written by init_test_pki."""

    root: Path

    def path(self, admin: str, stem: str) -> Path:
        return self.root / admin / f"{stem}.pem"

    def key_path(self, admin: str, stem: str) -> Path:
        return self.root / admin / f"{stem}.key.pem"

    def gateway_table(self, admin: str) -> str:
        """The `[gateway]` table of a configuration for `admin` with this PKI's signing and TLS
        keys (tests and benchmarks write their configurations around it)."""
        return (
            f'[gateway]\nadministration = "{admin}"\n'
            f'signing_key = "{self.key_path(admin, "signing")}"\n'
            f'signing_cert = "{self.path(admin, "signing")}"\n'
            f'tls_key = "{self.key_path(admin, "tls")}"\n'
            f'tls_cert = "{self.path(admin, "tls")}"'
        )

    def ca(self, admin: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.path(admin, "ca").read_bytes())

    def crl(self, admin: str) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.path(admin, "crl").read_bytes())

    def cert(self, admin: str, stem: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.path(admin, stem).read_bytes())

    def identity(self, admin: str, stem: str = "signing") -> SigningIdentity:
        """A signing identity; for FOREIGN impostors pass admin=FOREIGN, stem='US-impostor'."""
        from gateway.envelope.keys import load_identity

        claimed = stem.split("-")[0] if admin == FOREIGN else admin
        return load_identity(
            Administration(claimed),
            self.key_path(admin, stem).read_bytes(),
            self.path(admin, stem).read_bytes(),
        )
