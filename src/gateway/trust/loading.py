"""Trust material from PEM (or DER) bytes into PartnerTrust objects. No I/O.

The config reader and the CLI read the files and hand the bytes here; every problem comes back
as a ConfigError (CFG_INVALID) naming the file via `location` when the caller gives one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from cryptography import x509

from gateway.errors import ConfigError
from gateway.model.codes import Administration
from gateway.trust.store import AllowedSigner, PartnerTrust, TrustStore

_PEM_CRL_BEGIN = b"-----BEGIN X509 CRL-----"
_PEM_CRL_END = b"-----END X509 CRL-----"


def administration(code: Administration | str, *, location: str | None = None) -> Administration:
    """The administration for a configured code, or a ConfigError listing the known ones."""
    if isinstance(code, Administration):
        return code
    try:
        return Administration(code.strip().upper())
    except ValueError:
        known = ", ".join(a.value for a in Administration)
        raise ConfigError(
            f"unknown administration code {code!r} (known: {known})", location=location
        ) from None


def certificates_from_pem(
    data: bytes, *, what: str = "certificate", location: str | None = None
) -> tuple[x509.Certificate, ...]:
    """All certificates in a PEM bundle, in order; at least one."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"cannot read {what} PEM: {exc}", location=location) from None
    if not certs:  # pragma: no cover - cryptography raises on an empty bundle already
        raise ConfigError(f"no {what} in PEM data", location=location)
    return tuple(certs)


def crls_from_bytes(
    data: bytes, *, location: str | None = None
) -> tuple[x509.CertificateRevocationList, ...]:
    """The CRLs in a file: one DER CRL, or one or more PEM 'X509 CRL' blocks."""
    try:
        if _PEM_CRL_BEGIN not in data:
            return (x509.load_der_x509_crl(data),)
        crls = []
        rest = data
        while _PEM_CRL_BEGIN in rest:
            start = rest.index(_PEM_CRL_BEGIN)
            end = rest.find(_PEM_CRL_END, start)
            if end < 0:
                raise ValueError("PEM CRL block without its END line")
            end += len(_PEM_CRL_END)
            crls.append(x509.load_pem_x509_crl(rest[start:end]))
            rest = rest[end:]
        return tuple(crls)
    except ValueError as exc:
        raise ConfigError(f"cannot read CRL: {exc}", location=location) from None


def allowed_signer_from_pem(
    data: bytes, until: datetime | None = None, *, location: str | None = None
) -> AllowedSigner:
    """An allowed signing certificate: the first certificate of the PEM file (the leaf)."""
    cert = certificates_from_pem(data, what="allowed signing certificate", location=location)[0]
    if until is not None and until.tzinfo is None:
        raise ConfigError(
            f"rotation 'until' {until.isoformat()} has no time zone; write it in UTC "
            "(e.g. 2026-03-01T00:00:00Z)",
            location=location,
        )
    return AllowedSigner(cert, until.astimezone(UTC) if until is not None else None)


def partner_trust_from_pem(
    admin: Administration | str,
    anchors_pem: bytes,
    crl_pems: Sequence[bytes] = (),
    allowed: Sequence[tuple[bytes, datetime | None]] | None = None,
    *,
    require_crl: bool = True,
) -> PartnerTrust:
    """One partner's trust from its CA bundle, CRL files and (optionally) pinned signers.

    `allowed=None` trusts any signing certificate the CAs issue; a list pins the exact
    certificates, each with the end of its rotation window (None: open-ended).
    """
    code = administration(admin)
    anchors = certificates_from_pem(anchors_pem, what=f"{code.value} CA certificate")
    crls = tuple(crl for data in crl_pems for crl in crls_from_bytes(data))
    signers = (
        None
        if allowed is None
        else tuple(allowed_signer_from_pem(pem, until) for pem, until in allowed)
    )
    return PartnerTrust(code, anchors, crls, signers, require_crl=require_crl)


def trust_from_pki_files(files: Mapping[str, Mapping[str, bytes]]) -> TrustStore:
    """A trust store from test-PKI-layout contents: {ADMIN: {"ca.pem": ..., "crl.pem": ...}}.

    Entries whose name is not an administration code (e.g. FOREIGN) are skipped: nobody trusts
    them. A CRL is required exactly where the layout provides one.
    """
    partners = []
    for name, contents in sorted(files.items()):
        try:
            code = Administration(name)
        except ValueError:
            continue
        if "ca.pem" not in contents:
            continue
        crl = contents.get("crl.pem")
        partners.append(
            partner_trust_from_pem(
                code,
                contents["ca.pem"],
                [crl] if crl is not None else [],
                require_crl=crl is not None,
            )
        )
    if not partners:
        raise ConfigError("no administration's CA certificate (ADMIN/ca.pem) found")
    return TrustStore(partners)
