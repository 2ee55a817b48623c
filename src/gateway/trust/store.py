"""Per-partner trust: which certificates each administration may sign with.

INTERFACE STUB — implemented by the trust work package (see PartnerTrust / TrustStore below).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from gateway.model.codes import Administration


@dataclass(frozen=True)
class AllowedSigner:
    """A certificate an administration may sign with; `until` closes its rotation window."""

    certificate: x509.Certificate
    until: datetime | None = None


@dataclass(frozen=True)
class PartnerTrust:
    administration: Administration
    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    # None: any signing certificate the anchors issued; otherwise only these (rotation).
    allowed_signers: tuple[AllowedSigner, ...] | None = None


@dataclass(frozen=True)
class TrustedSigner:
    administration: Administration
    certificate: x509.Certificate
    fingerprint_sha256: str


class TrustStore:
    def __init__(self, partners: Iterable[PartnerTrust]) -> None:
        raise NotImplementedError

    def check_signer(
        self, claimed: Administration, chain: Sequence[x509.Certificate], at: datetime
    ) -> TrustedSigner:
        """Raise TrustError (with its specific code) unless `claimed` may sign with chain[0]."""
        raise NotImplementedError
