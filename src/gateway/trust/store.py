"""Per-partner trust: which certificates each administration may sign with. No I/O.

A `TrustStore` holds, per administration, its trust anchors (root CAs), their CRLs and
optionally the exact certificates it may sign with (with a rotation window). `check_signer`
decides whether a signature's certificate chain may speak for the administration its signed
header names; `administration_of_tls_peer` maps a mutual-TLS client certificate to its partner.

Rules (each refusal carries its own stable code):

* the chain (leaf first, then any intermediates the signer sent) must reach a configured anchor,
  every signature verifying, every issuer a CA (BasicConstraints ca=True, keyCertSign when
  KeyUsage is present) within its path length — else TRUST_UNTRUSTED; a chain that reaches the
  anchor of *another* configured administration is TRUST_WRONG_PARTNER;
* unknown critical extensions anywhere in the path are refused (RFC 5280 4.2), and so is a weak
  key anywhere in it (RSA below 2048 bits, a curve below 256 bits, DSA): TRUST_UNTRUSTED;
* every certificate of the path, anchor included, must be valid at `at`: TRUST_EXPIRED;
* every certificate below the anchor is looked up in its issuer's CRL: TRUST_REVOKED. The CRL
  must be signed by that issuer and current (`next_update` present and not passed) — else
  TRUST_CRL_INVALID. A missing CRL is refused too (fail closed) unless the partner is configured
  with `require_crl=False` (a partner that publishes no CRL: revocation then rests on the
  rotation list alone). Delta and partitioned CRLs (indirect, by reason, by distribution point)
  are not supported and refused. A CRL naming the issuer but signed by another key (the CA
  re-keyed under the same name, its old and new roots both configured) is another CA's: skipped.
* the signing leaf must not be a CA, must carry KeyUsage with digitalSignature, and must not be a
  TLS-only certificate (ExtendedKeyUsage limited to serverAuth/clientAuth): TRUST_KEY_USAGE;
* if the partner pins `allowed_signers`, the leaf must be one of them and `at` must be before
  its `until` (old and new keys both verify until the old one's window closes):
  TRUST_CERT_NOT_ALLOWED.

Positive decisions are cached per (claimed administration, chain fingerprints) together with
the time span in which they stay true (latest not-before .. earliest of every not-after, CRL
next-update and rotation `until`), so a repeat on the per-message path is a dict lookup and a
time comparison. A store is immutable: new CRLs or partners mean a new store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from gateway.errors import (
    TRUST_CRL,
    TRUST_EXPIRED,
    TRUST_KEY_USAGE,
    TRUST_NOT_ALLOWED,
    TRUST_REVOKED,
    TRUST_UNKNOWN_PARTNER,
    TRUST_WRONG_PARTNER,
    ConfigError,
    GatewayError,
    TrustError,
)
from gateway.model.codes import Administration

MAX_PATH_DEPTH = 4  # intermediates between leaf and anchor; real partner PKIs use 0 or 1
CACHE_MAX_ENTRIES = 10_000
_SHA256 = hashes.SHA256()
_ONE_MICROSECOND = timedelta(microseconds=1)

# Extensions whose meaning this module applies or which carry no constraint for us; any other
# extension marked critical makes the certificate unusable (RFC 5280 section 4.2).
_UNDERSTOOD_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.SUBJECT_INFORMATION_ACCESS,
    }
)
_UNDERSTOOD_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.FRESHEST_CRL,
    }
)
_TLS_PURPOSES = frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})
_CLIENT_PURPOSES = frozenset(
    {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)

_ExtT = TypeVar("_ExtT", bound=x509.ExtensionType)


@dataclass(frozen=True)
class AllowedSigner:
    """A certificate an administration may sign with; `until` closes its rotation window."""

    certificate: x509.Certificate
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.until is not None and self.until.tzinfo is None:
            raise ConfigError(
                f"rotation 'until' {self.until.isoformat()} for {_describe(self.certificate)} "
                "has no time zone; give it in UTC"
            )


@dataclass(frozen=True)
class PartnerTrust:
    """What one administration may sign with: its anchors, their CRLs, an optional pin list."""

    administration: Administration
    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    # None: any signing certificate the anchors issued; otherwise only these (rotation).
    allowed_signers: tuple[AllowedSigner, ...] | None = None
    # True (fail closed): a CA below which a certificate is checked must have a current CRL.
    require_crl: bool = True


@dataclass(frozen=True)
class TrustedSigner:
    """The outcome of a positive trust decision: who signed, with which certificate."""

    administration: Administration
    certificate: x509.Certificate
    fingerprint_sha256: str  # hex, lower case, of the leaf's DER


class _Purpose(Enum):
    SIGNING = "envelope signing"
    TLS_CLIENT = "TLS client authentication"


@dataclass(frozen=True)
class _Anchor:
    administration: Administration
    certificate: x509.Certificate
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class _Decision:
    signer: TrustedSigner
    not_before: datetime
    through: datetime  # last instant (inclusive) at which the decision still holds


@dataclass
class _Partner:
    trust: PartnerTrust
    allowed: dict[bytes, AllowedSigner] | None
    crl_signature_ok: dict[tuple[int, bytes], bool] = field(default_factory=dict)


_CacheKey = tuple[Administration | None, _Purpose, tuple[bytes, ...]]


def _describe(cert: x509.Certificate) -> str:
    return f"'{cert.subject.rfc4514_string()}' (serial {cert.serial_number:x})"


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise GatewayError(f"trust decision time {at.isoformat()} has no time zone")
    return at


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise TrustError(
            f"certificate {_describe(cert)} has unreadable extensions: {exc}"
        ) from None


def _ext(exts: x509.Extensions, kind: type[_ExtT]) -> _ExtT | None:
    try:
        return exts.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Name chaining and signature in one: what `verify_directly_issued_by` checks (also used
    by the configuration check of a partner's intermediates)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """The CRL's signature verifies with the issuer's key, and the issuer may sign CRLs (also
    the configuration check of each configured CRL)."""
    ku = _ext(_extensions(issuer), x509.KeyUsage)
    if ku is not None and not ku.crl_sign:
        return False
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def weak_key(cert: x509.Certificate) -> str:
    """Why the certificate's key is too weak to be trusted in a path ("" when it is not): RSA
    below 2048 bits, an elliptic curve below 256 bits, DSA or a key type not known here."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "" if key.key_size >= 2048 else f"an RSA key of {key.key_size} bits (2048 at least)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = key.curve.key_size
        return "" if size >= 256 else f"a {size}-bit elliptic curve key ({key.curve.name})"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ""
    return f"a {type(key).__name__.removeprefix('_')} key, not accepted"


def crl_form_problem(crl: x509.CertificateRevocationList) -> str:
    """Why a CRL's form is not supported ("" when it is): an unknown critical extension, a
    delta CRL, or a partitioned one (indirect, by reason, by distribution point, attribute
    certificates only), which covers only some of its CA's certificates, so taking it as
    complete could pass a certificate revoked on another partition."""
    try:
        for ext in crl.extensions:
            if ext.critical and ext.oid not in _UNDERSTOOD_CRL_EXTENSIONS:
                oid = ext.oid.dotted_string
                return f"has a critical extension {oid} this gateway does not process"
        if _ext(crl.extensions, x509.DeltaCRLIndicator) is not None:
            return "is a delta CRL; configure the complete CRL"
        idp = _ext(crl.extensions, x509.IssuingDistributionPoint)
    except (ValueError, x509.DuplicateExtension) as exc:
        return f"has unreadable extensions: {exc}"
    if idp is not None and (
        idp.indirect_crl
        or idp.only_some_reasons
        or idp.only_contains_attribute_certs
        or idp.full_name
        or idp.relative_name
    ):
        return (
            "is partitioned (indirect, by reason, by distribution point or attribute "
            "certificates only), which this gateway does not support: it covers only some of "
            "its CA's certificates"
        )
    return ""


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(_SHA256)


# Fingerprints by object identity: the JWS binding hands back the same Certificate object for
# the same x5c bytes, so a repeat costs a dict lookup instead of hashing the DER (~5 us). The
# memo holds a reference to each certificate, so an id cannot be reused while its entry lives.
_FINGERPRINT_MEMO: dict[int, tuple[x509.Certificate, bytes]] = {}
_FINGERPRINT_MEMO_MAX = 4096


def _ca_identity(cert: x509.Certificate) -> bytes:
    """A CA's name and public key, whatever certificate carries them."""
    key = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert.subject.public_bytes() + key


def _fingerprints(chain: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    out = []
    for cert in chain:
        entry = _FINGERPRINT_MEMO.get(id(cert))
        if entry is None or entry[0] is not cert:
            if len(_FINGERPRINT_MEMO) >= _FINGERPRINT_MEMO_MAX:
                _FINGERPRINT_MEMO.clear()
            entry = (cert, _fingerprint(cert))
            _FINGERPRINT_MEMO[id(cert)] = entry
        out.append(entry[1])
    return tuple(out)


class TrustStore:
    """Trust in each partner administration's certificates; immutable once built."""

    def __init__(self, partners: Iterable[PartnerTrust]) -> None:
        self._partners: dict[Administration, _Partner] = {}
        self._anchors_by_subject: dict[x509.Name, list[_Anchor]] = {}
        owner_of_anchor: dict[bytes, Administration] = {}
        listed: set[bytes] = set()
        for partner in partners:
            admin = partner.administration
            if admin in self._partners:
                raise ConfigError(f"trust for {admin.value} is configured twice")
            if not partner.anchors:
                raise ConfigError(f"trust for {admin.value} names no CA certificate (anchor)")
            for anchor in partner.anchors:
                fingerprint = _fingerprint(anchor)
                # One CA is its name and key: a re-issue (new serial, same key) is the same CA.
                owner = owner_of_anchor.get(_ca_identity(anchor))
                if owner is not None and owner != admin:
                    raise ConfigError(
                        f"CA {_describe(anchor)} is configured for both {owner.value} and "
                        f"{admin.value}: an anchor must belong to one administration, or a "
                        "certificate of one could speak for the other"
                    )
                if fingerprint in listed:
                    continue  # the same certificate twice
                bc = _ext(_extensions(anchor), x509.BasicConstraints)
                if bc is None or not bc.ca:
                    raise ConfigError(
                        f"anchor {_describe(anchor)} for {admin.value} is not a CA certificate "
                        "(BasicConstraints ca=True)"
                    )
                weak = weak_key(anchor)
                if weak:
                    raise ConfigError(f"anchor {_describe(anchor)} for {admin.value} has {weak}")
                owner_of_anchor[_ca_identity(anchor)] = admin
                listed.add(fingerprint)
                self._anchors_by_subject.setdefault(anchor.subject, []).append(
                    _Anchor(admin, anchor, fingerprint)
                )
            allowed = None
            if partner.allowed_signers is not None:
                allowed = {_fingerprint(s.certificate): s for s in partner.allowed_signers}
            self._partners[admin] = _Partner(partner, allowed)
        self._cache: dict[_CacheKey, _Decision] = {}

    # --- what is configured ------------------------------------------------------------------
    @property
    def administrations(self) -> tuple[Administration, ...]:
        return tuple(self._partners)

    def partner(self, administration: Administration) -> PartnerTrust:
        found = self._partners.get(administration)
        if found is None:
            raise TrustError(
                f"no trust is configured for administration {administration.value}",
                code=TRUST_UNKNOWN_PARTNER,
            )
        return found.trust

    def anchors_pem(self) -> bytes:
        """Every partner's CA certificates, PEM, for verifying TLS client certificates."""
        return b"".join(
            anchor.public_bytes(serialization.Encoding.PEM)
            for partner in self._partners.values()
            for anchor in dict.fromkeys(partner.trust.anchors)
        )

    # --- decisions ---------------------------------------------------------------------------
    def check_signer(
        self, claimed: Administration, chain: Sequence[x509.Certificate], at: datetime
    ) -> TrustedSigner:
        """Raise TrustError (with its specific code) unless `claimed` may sign with chain[0]."""
        at = _aware(at)
        partner = self._partners.get(claimed)
        if partner is None:
            raise TrustError(
                f"no trust is configured for administration {getattr(claimed, 'value', claimed)}",
                code=TRUST_UNKNOWN_PARTNER,
                location="header.sender",
            )
        if not chain:
            raise TrustError("the signature carries no certificate")
        fingerprints = _fingerprints(chain)
        key: _CacheKey = (claimed, _Purpose.SIGNING, fingerprints)
        hit = self._cache.get(key)
        if hit is not None and hit.not_before <= at <= hit.through:
            return hit.signer

        path, anchor = self._build_path(chain, prefer=claimed)
        leaf = path[0]
        if anchor.administration != claimed:
            raise TrustError(
                f"certificate {_describe(leaf)} belongs to {anchor.administration.value} "
                f"(it chains to CA {_describe(anchor.certificate)}) but the sender is "
                f"{claimed.value}",
                code=TRUST_WRONG_PARTNER,
                location="header.sender",
            )
        not_before, through = self._check_path(partner, path, anchor, at)
        self._check_leaf(leaf, _Purpose.SIGNING)
        if partner.allowed is not None:
            closes = self._check_allowed(partner, leaf, fingerprints[0], at)
            if closes is not None:
                through = min(through, closes)
        signer = TrustedSigner(claimed, leaf, fingerprints[0].hex())
        self._remember(key, _Decision(signer, not_before, through))
        return signer

    def administration_of_tls_peer(
        self,
        cert: x509.Certificate,
        at: datetime,
        intermediates: Sequence[x509.Certificate] = (),
    ) -> Administration:
        """The partner whose CA issued this TLS client certificate; raise TrustError if none.

        The rotation pin list (`allowed_signers`) is for signing keys and does not apply here.
        """
        at = _aware(at)
        chain = (cert, *intermediates)
        fingerprints = _fingerprints(chain)
        key: _CacheKey = (None, _Purpose.TLS_CLIENT, fingerprints)
        hit = self._cache.get(key)
        if hit is not None and hit.not_before <= at <= hit.through:
            return hit.signer.administration
        path, anchor = self._build_path(chain, prefer=None)
        partner = self._partners[anchor.administration]
        not_before, through = self._check_path(partner, path, anchor, at)
        self._check_leaf(cert, _Purpose.TLS_CLIENT)
        signer = TrustedSigner(anchor.administration, cert, fingerprints[0].hex())
        self._remember(key, _Decision(signer, not_before, through))
        return anchor.administration

    # --- the rules ---------------------------------------------------------------------------
    def _remember(self, key: _CacheKey, decision: _Decision) -> None:
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()  # bounded; positive decisions are cheap to remake
        self._cache[key] = decision

    def _build_path(
        self, chain: Sequence[x509.Certificate], prefer: Administration | None
    ) -> tuple[list[x509.Certificate], _Anchor]:
        """Leaf, then the intermediates that chain it by signature, then the anchor reached."""
        leaf = chain[0]
        pool = list(chain[1:])
        path = [leaf]
        current = leaf
        for _ in range(MAX_PATH_DEPTH + 1):
            candidates = self._anchors_by_subject.get(current.issuer, [])
            for anchor in sorted(candidates, key=lambda a: a.administration != prefer):
                if issued_by(current, anchor.certificate):
                    return path, anchor
            for index, candidate in enumerate(pool):
                if candidate.subject == current.issuer and issued_by(current, candidate):
                    path.append(pool.pop(index))
                    current = candidate
                    break
            else:
                raise TrustError(
                    f"certificate {_describe(current)} issued by "
                    f"'{current.issuer.rfc4514_string()}' does not chain to the CA of any "
                    "configured administration (no anchor or sent intermediate verifies it)"
                )
        raise TrustError(
            f"certificate chain of {_describe(leaf)} is longer than {MAX_PATH_DEPTH} intermediates"
        )

    def _check_path(
        self, partner: _Partner, path: list[x509.Certificate], anchor: _Anchor, at: datetime
    ) -> tuple[datetime, datetime]:
        """Structure, validity and revocation of the whole path; the span the result holds."""
        full = [*path, anchor.certificate]
        for cert in full:
            weak = weak_key(cert)
            if weak:
                raise TrustError(f"certificate {_describe(cert)} has {weak}")
        extensions = [_extensions(c) for c in full]
        for cert, exts in zip(full, extensions, strict=True):
            for ext in exts:
                if ext.critical and ext.oid not in _UNDERSTOOD_EXTENSIONS:
                    raise TrustError(
                        f"certificate {_describe(cert)} has a critical extension "
                        f"{ext.oid.dotted_string} this gateway does not process"
                    )
        for depth in range(1, len(full)):
            issuer, exts = full[depth], extensions[depth]
            bc = _ext(exts, x509.BasicConstraints)
            if bc is None or not bc.ca:
                raise TrustError(
                    f"{_describe(issuer)} signed {_describe(full[depth - 1])} but is not a CA "
                    "(BasicConstraints ca=True is required of every issuer)"
                )
            ku = _ext(exts, x509.KeyUsage)
            if ku is not None and not ku.key_cert_sign:
                raise TrustError(f"CA {_describe(issuer)} is not allowed to sign certificates")
            if bc.path_length is not None and bc.path_length < depth - 1:
                raise TrustError(
                    f"CA {_describe(issuer)} allows {bc.path_length} intermediate(s) below it, "
                    f"the chain has {depth - 1}"
                )
        for cert in full:
            if at < cert.not_valid_before_utc:
                raise TrustError(
                    f"certificate {_describe(cert)} is not valid before "
                    f"{cert.not_valid_before_utc.isoformat()} (checked at {at.isoformat()})",
                    code=TRUST_EXPIRED,
                )
            if at > cert.not_valid_after_utc:
                raise TrustError(
                    f"certificate {_describe(cert)} expired at "
                    f"{cert.not_valid_after_utc.isoformat()} (checked at {at.isoformat()})",
                    code=TRUST_EXPIRED,
                )
        not_before = max(c.not_valid_before_utc for c in full)
        through = min(c.not_valid_after_utc for c in full)
        for depth in range(len(path)):
            cert, issuer = full[depth], full[depth + 1]
            is_ca = depth > 0
            crl = self._current_crl(partner, issuer, is_ca, at)
            if crl is None:
                continue
            assert crl.next_update_utc is not None  # checked in _current_crl
            through = min(through, crl.next_update_utc)
            revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is not None:
                raise TrustError(
                    f"certificate {_describe(cert)} was revoked at "
                    f"{revoked.revocation_date_utc.isoformat()} by the CRL of {_describe(issuer)}",
                    code=TRUST_REVOKED,
                )
        return not_before, through

    def _current_crl(
        self, partner: _Partner, issuer: x509.Certificate, subject_is_ca: bool, at: datetime
    ) -> x509.CertificateRevocationList | None:
        """The newest CRL this issuer signed that covers the subject; None only if allowed."""
        admin = partner.trust.administration.value
        issuer_fp = _fingerprint(issuer)
        best: x509.CertificateRevocationList | None = None
        unsigned = 0
        for index, crl in enumerate(partner.trust.crls):
            if crl.issuer != issuer.subject:
                continue
            ok = partner.crl_signature_ok.get((index, issuer_fp))
            if ok is None:
                ok = crl_signed_by(crl, issuer)
                partner.crl_signature_ok[(index, issuer_fp)] = ok
            if not ok:
                unsigned += 1  # another key's CRL under this name (a CA re-keyed), or forged
                continue
            if not self._crl_covers(crl, subject_is_ca, admin):
                continue
            if best is None or crl.last_update_utc > best.last_update_utc:
                best = crl
        if best is None:
            if unsigned:
                raise TrustError(
                    f"a CRL configured for {admin} names '{issuer.subject.rfc4514_string()}' as "
                    "issuer but none is signed by that CA's key",
                    code=TRUST_CRL,
                )
            if partner.trust.require_crl:
                raise TrustError(
                    f"no CRL of CA {_describe(issuer)} is configured for {admin}, so revocation "
                    "cannot be checked (configure its CRL, or require_crl = false for a partner "
                    "that publishes none)",
                    code=TRUST_CRL,
                )
            return None
        if best.next_update_utc is None:
            raise TrustError(
                f"the CRL of {_describe(issuer)} for {admin} has no next-update time, so "
                "its currency cannot be judged",
                code=TRUST_CRL,
            )
        if at > best.next_update_utc:
            raise TrustError(
                f"the CRL of {_describe(issuer)} for {admin} is stale: its next update was due "
                f"{best.next_update_utc.isoformat()} (checked at {at.isoformat()})",
                code=TRUST_CRL,
            )
        return best

    @staticmethod
    def _crl_covers(crl: x509.CertificateRevocationList, subject_is_ca: bool, admin: str) -> bool:
        problem = crl_form_problem(crl)
        if problem:
            raise TrustError(f"a CRL configured for {admin} {problem}", code=TRUST_CRL)
        idp = _ext(crl.extensions, x509.IssuingDistributionPoint)
        if idp is None:
            return True
        if idp.only_contains_user_certs and subject_is_ca:
            return False
        return not (idp.only_contains_ca_certs and not subject_is_ca)

    @staticmethod
    def _check_leaf(leaf: x509.Certificate, purpose: _Purpose) -> None:
        exts = _extensions(leaf)
        bc = _ext(exts, x509.BasicConstraints)
        if bc is not None and bc.ca:
            raise TrustError(
                f"certificate {_describe(leaf)} is a CA certificate and may not be used for "
                f"{purpose.value}",
                code=TRUST_KEY_USAGE,
            )
        ku = _ext(exts, x509.KeyUsage)
        eku = _ext(exts, x509.ExtendedKeyUsage)
        purposes = frozenset(eku) if eku is not None else None
        if purpose is _Purpose.SIGNING:
            if ku is None or not ku.digital_signature:
                raise TrustError(
                    f"certificate {_describe(leaf)} lacks KeyUsage digitalSignature, required "
                    "to sign envelopes",
                    code=TRUST_KEY_USAGE,
                )
            if purposes is not None and purposes <= _TLS_PURPOSES:
                raise TrustError(
                    f"certificate {_describe(leaf)} is a TLS certificate (ExtendedKeyUsage "
                    "serverAuth/clientAuth only) and may not sign envelopes",
                    code=TRUST_KEY_USAGE,
                )
        else:
            if ku is not None and not ku.digital_signature:
                raise TrustError(
                    f"TLS certificate {_describe(leaf)} lacks KeyUsage digitalSignature",
                    code=TRUST_KEY_USAGE,
                )
            if purposes is not None and not purposes & _CLIENT_PURPOSES:
                raise TrustError(
                    f"certificate {_describe(leaf)} is not for TLS client authentication "
                    "(ExtendedKeyUsage lacks clientAuth)",
                    code=TRUST_KEY_USAGE,
                )

    @staticmethod
    def _check_allowed(
        partner: _Partner, leaf: x509.Certificate, fingerprint: bytes, at: datetime
    ) -> datetime | None:
        """The rotation rule; returns the last instant the leaf stays allowed (None: open)."""
        assert partner.allowed is not None
        admin = partner.trust.administration.value
        allowed = partner.allowed.get(fingerprint)
        if allowed is None:
            raise TrustError(
                f"certificate {_describe(leaf)} chains to the CA of {admin} but is not one of the "
                f"{len(partner.allowed)} certificate(s) {admin} may sign with",
                code=TRUST_NOT_ALLOWED,
            )
        if allowed.until is None:
            return None
        if at >= allowed.until:
            raise TrustError(
                f"certificate {_describe(leaf)} was allowed for {admin} until "
                f"{allowed.until.isoformat()} (rotation window closed; checked at "
                f"{at.isoformat()})",
                code=TRUST_NOT_ALLOWED,
            )
        return allowed.until - _ONE_MICROSECOND
