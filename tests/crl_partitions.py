"""A CRL of one distribution point (a partitioned CRL), for the trust and configuration tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def partition_crl(
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    uri: str,
    revoked: Sequence[int],
    last_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """The CRL of `issuer` for the distribution point `uri` (IssuingDistributionPoint)."""
    point = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(uri)],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(point, critical=True)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(last_update)
            .build()
        )
    return builder.sign(key, hashes.SHA256())
