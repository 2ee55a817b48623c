"""Per-partner trust: chain, validity, revocation, key usage, rotation, wrong partner, cache.

Real certificates throughout: the test PKI of gateway.testpki, plus certificates built here with
cryptography where the test PKI has no example (no digitalSignature, intermediates, forgeries).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from crl_partitions import partition_crl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from gateway import testpki
from gateway.errors import ConfigError, GatewayError, TrustError
from gateway.model.codes import Administration
from gateway.testpki import FOREIGN, init_test_pki
from gateway.trust.loading import (
    allowed_signer_from_pem,
    crls_from_bytes,
    partner_trust_from_pem,
    trust_from_pki_files,
)
from gateway.trust.store import AllowedSigner, PartnerTrust, TrustStore, crl_form_problem

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
EU, US, CN = Administration.EU, Administration.US, Administration.CN
Key = ec.EllipticCurvePrivateKey
Pki = testpki.TestPki  # imported by module: pytest would try to collect a Test* class


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return init_test_pki(tmp_path_factory.mktemp("pki"), ("EU", "US"), now=NOW)


def partner(pki: Pki, admin: str, **overrides: object) -> PartnerTrust:
    fields: dict[str, object] = {
        "administration": Administration(admin),
        "anchors": (pki.ca(admin),),
        "crls": (pki.crl(admin),),
    }
    fields.update(overrides)
    return PartnerTrust(**fields)


def store(pki: Pki, **eu_overrides: object) -> TrustStore:
    return TrustStore([partner(pki, "EU", **eu_overrides), partner(pki, "US")])


def ca_key(pki: Pki, admin: str) -> Key:
    key = serialization.load_pem_private_key(pki.key_path(admin, "ca").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def crl_due(pki: Pki, admin: str = "EU") -> dt.datetime:
    due = pki.crl(admin).next_update_utc
    assert due is not None
    return due


def code_of(
    trust: TrustStore,
    claimed: Administration,
    chain: Sequence[x509.Certificate],
    at: dt.datetime = NOW,
) -> str:
    with pytest.raises(TrustError) as info:
        trust.check_signer(claimed, chain, at)
    return info.value.code


def issue(
    issuer: x509.Certificate | None,
    issuer_key: Key | None,
    cn: str,
    *,
    key: Key | None = None,
    ca: bool = False,
    path_length: int | None = None,
    digital_signature: bool = True,
    eku: list[ObjectIdentifier] | None = None,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=100),
    issuer_name: x509.Name | None = None,
    critical_unknown: bool = False,
) -> tuple[x509.Certificate, Key]:
    """A certificate signed by issuer_key (self-signed when issuer is None)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    if issuer_name is None:
        issuer_name = issuer.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature, True, False, False, False, False, False, False, False),
            critical=True,
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if critical_unknown:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, key


def crl_by(
    issuer: x509.Certificate,
    key: Key,
    revoked: Sequence[int] = (),
    next_update: dt.datetime = NOW + dt.timedelta(days=30),
    issuer_name: x509.Name | None = None,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name or issuer.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(next_update)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
        )
    return builder.sign(key, hashes.SHA256())


# --- accepted -----------------------------------------------------------------------------------
def test_ec_and_rsa_signers_of_the_claimed_partner_are_trusted(pki: Pki) -> None:
    trust = store(pki)
    for stem in ("signing", "signing-rsa", "signing-next"):
        cert = pki.cert("EU", stem)
        signer = trust.check_signer(EU, [cert], NOW)
        assert signer.administration is EU
        assert signer.certificate == cert
        assert signer.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert trust.check_signer(US, [pki.cert("US", "signing")], NOW).administration is US


def test_a_chain_that_includes_the_anchor_itself_is_trusted(pki: Pki) -> None:
    trust = store(pki)
    chain = [pki.cert("EU", "signing"), pki.ca("EU")]
    assert trust.check_signer(EU, chain, NOW).administration is EU


# --- refused, each with its code ----------------------------------------------------------------
def test_expired_and_not_yet_valid_certificates_are_refused(pki: Pki) -> None:
    trust = store(pki)
    assert code_of(trust, EU, [pki.cert("EU", "expired")]) == "TRUST_EXPIRED"
    early = pki.cert("EU", "signing").not_valid_before_utc - dt.timedelta(seconds=1)
    assert code_of(trust, EU, [pki.cert("EU", "signing")], early) == "TRUST_EXPIRED"


def test_revoked_certificate_is_refused(pki: Pki) -> None:
    trust = store(pki)
    with pytest.raises(TrustError) as info:
        trust.check_signer(EU, [pki.cert("EU", "revoked")], NOW)
    assert info.value.code == "TRUST_REVOKED"
    assert f"{pki.cert('EU', 'revoked').serial_number:x}" in info.value.message


def test_foreign_impostor_is_untrusted(pki: Pki) -> None:
    trust = store(pki)
    impostor = pki.cert(FOREIGN, "EU-impostor")
    assert impostor.subject == pki.cert("EU", "signing").subject  # same name, other CA
    assert code_of(trust, EU, [impostor]) == "TRUST_UNTRUSTED"
    # sending the foreign CA along does not help: it is no anchor
    assert code_of(trust, EU, [impostor, pki.ca(FOREIGN)]) == "TRUST_UNTRUSTED"


def test_another_partners_valid_certificate_is_wrong_partner(pki: Pki) -> None:
    trust = store(pki)
    with pytest.raises(TrustError) as info:
        trust.check_signer(EU, [pki.cert("US", "signing")], NOW)
    assert info.value.code == "TRUST_WRONG_PARTNER"
    assert "belongs to US" in info.value.message
    assert code_of(trust, US, [pki.cert("EU", "signing-rsa")]) == "TRUST_WRONG_PARTNER"


def test_unknown_claimed_partner(pki: Pki) -> None:
    trust = store(pki)
    assert code_of(trust, CN, [pki.cert("EU", "signing")]) == "TRUST_UNKNOWN_PARTNER"
    with pytest.raises(TrustError) as info:
        trust.partner(CN)
    assert info.value.code == "TRUST_UNKNOWN_PARTNER"


def test_empty_chain_is_untrusted(pki: Pki) -> None:
    assert code_of(store(pki), EU, []) == "TRUST_UNTRUSTED"


def test_certificate_without_digital_signature_is_refused(pki: Pki) -> None:
    cert, _ = issue(
        pki.ca("EU"), ca_key(pki, "EU"), "EU no digitalSignature", digital_signature=False
    )
    assert code_of(store(pki), EU, [cert]) == "TRUST_KEY_USAGE"


def test_tls_and_ca_certificates_may_not_sign_envelopes(pki: Pki) -> None:
    trust = store(pki)
    assert code_of(trust, EU, [pki.cert("EU", "tls")]) == "TRUST_KEY_USAGE"
    assert code_of(trust, EU, [pki.ca("EU")]) == "TRUST_KEY_USAGE"


def test_unknown_critical_extension_is_refused(pki: Pki) -> None:
    cert, _ = issue(pki.ca("EU"), ca_key(pki, "EU"), "EU odd", critical_unknown=True)
    with pytest.raises(TrustError) as info:
        store(pki).check_signer(EU, [cert], NOW)
    assert info.value.code == "TRUST_UNTRUSTED"
    assert "1.3.6.1.4.1.99999.1" in info.value.message


# --- CRLs -----------------------------------------------------------------------------------------
def test_crl_of_another_ca_or_forged_crl_is_invalid(pki: Pki) -> None:
    signing = [pki.cert("EU", "signing")]
    # the US CRL configured for EU: the EU CA then has no CRL at all
    assert code_of(store(pki, crls=(pki.crl("US"),)), EU, signing) == "TRUST_CRL_INVALID"
    # a CRL in the EU CA's name, signed by the US CA's key (e.g. hiding a revocation)
    forged = crl_by(pki.ca("EU"), ca_key(pki, "US"))
    assert code_of(store(pki, crls=(forged,)), EU, signing) == "TRUST_CRL_INVALID"


def test_stale_crl_is_invalid_and_a_missing_crl_depends_on_require_crl(pki: Pki) -> None:
    signing = [pki.cert("EU", "signing")]
    after_next_update = crl_due(pki) + dt.timedelta(seconds=1)
    assert code_of(store(pki), EU, signing, after_next_update) == "TRUST_CRL_INVALID"
    assert code_of(store(pki, crls=()), EU, signing) == "TRUST_CRL_INVALID"
    lenient = store(pki, crls=(), require_crl=False)
    assert lenient.check_signer(EU, signing, after_next_update).administration is EU
    # without a CRL, revocation is unknown: the revoked certificate then passes (documented)
    assert lenient.check_signer(EU, [pki.cert("EU", "revoked")], NOW).administration is EU


def test_crl_with_an_unprocessed_critical_extension_is_not_used(pki: Pki) -> None:
    odd = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca("EU").subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=30))
        .add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.2"), b"\x05\x00"),
            critical=True,
        )
        .sign(ca_key(pki, "EU"), hashes.SHA256())
    )
    assert code_of(store(pki, crls=(odd,)), EU, [pki.cert("EU", "signing")]) == "TRUST_CRL_INVALID"


def test_newest_crl_wins_when_several_are_configured(pki: Pki) -> None:
    old = crl_by(pki.ca("EU"), ca_key(pki, "EU"), next_update=NOW + dt.timedelta(days=1))
    old_last = old.last_update_utc
    fresh = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca("EU").subject)
        .last_update(old_last + dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=60))
        .sign(ca_key(pki, "EU"), hashes.SHA256())
    )
    trust = store(pki, crls=(old, fresh))
    later = NOW + dt.timedelta(days=10)  # old is stale by then, fresh is not
    assert trust.check_signer(EU, [pki.cert("EU", "signing")], later).administration is EU


# --- rotation ---------------------------------------------------------------------------------
def test_rotation_window_old_and_new_both_verify_until_the_old_one_closes(pki: Pki) -> None:
    old, new = pki.cert("EU", "signing"), pki.cert("EU", "signing-next")
    closes = NOW + dt.timedelta(days=7)
    trust = store(pki, allowed_signers=(AllowedSigner(old, closes), AllowedSigner(new)))
    before = closes - dt.timedelta(seconds=1)
    assert trust.check_signer(EU, [old], before).certificate == old  # cached from here on
    assert trust.check_signer(EU, [new], before).certificate == new
    assert code_of(trust, EU, [old], closes) == "TRUST_CERT_NOT_ALLOWED"
    assert code_of(trust, EU, [old], closes + dt.timedelta(days=1)) == "TRUST_CERT_NOT_ALLOWED"
    assert trust.check_signer(EU, [new], closes + dt.timedelta(days=1)).certificate == new
    # a certificate of the right CA that is not pinned at all
    assert code_of(trust, EU, [pki.cert("EU", "signing-rsa")]) == "TRUST_CERT_NOT_ALLOWED"


def test_a_pinned_but_revoked_certificate_stays_refused(pki: Pki) -> None:
    revoked = pki.cert("EU", "revoked")
    trust = store(pki, allowed_signers=(AllowedSigner(revoked),))
    assert code_of(trust, EU, [revoked]) == "TRUST_REVOKED"


# --- chains with intermediates ----------------------------------------------------------------
def test_leaf_signed_by_a_signing_certificate_is_a_forged_intermediate(pki: Pki) -> None:
    """The classic attack: use a leaf's key as if it were a CA."""
    eu_signing = pki.identity("EU", "signing")
    key = eu_signing.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    forged, _ = issue(eu_signing.certificate, key, "EU gateway signing")
    with pytest.raises(TrustError) as info:
        store(pki).check_signer(EU, [forged, eu_signing.certificate], NOW)
    assert info.value.code == "TRUST_UNTRUSTED"
    assert "not a CA" in info.value.message


def test_intermediates_under_a_lookalike_of_the_partner_ca_are_untrusted(pki: Pki) -> None:
    trust = store(pki)
    # a self-signed CA bearing the EU CA's exact name, sent along with a leaf it issued
    lookalike_key = ec.generate_private_key(ec.SECP256R1())
    lookalike = (
        x509.CertificateBuilder()
        .subject_name(pki.ca("EU").subject)
        .issuer_name(pki.ca("EU").subject)
        .public_key(lookalike_key.public_key())
        .serial_number(pki.ca("EU").serial_number)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(lookalike_key, hashes.SHA256())
    )
    leaf, _ = issue(lookalike, lookalike_key, "EU gateway signing")
    assert code_of(trust, EU, [leaf, lookalike]) == "TRUST_UNTRUSTED"
    # an intermediate that names the EU CA as its issuer but was signed by another key
    forged_inter, inter_key = issue(pki.ca("EU"), lookalike_key, "EU issuing CA", ca=True)
    leaf2, _ = issue(forged_inter, inter_key, "EU gateway signing")
    assert code_of(trust, EU, [leaf2, forged_inter]) == "TRUST_UNTRUSTED"
    assert code_of(trust, EU, [leaf2]) == "TRUST_UNTRUSTED"


class _Hierarchy:
    """root (path_length) -> intermediate -> leaf, for a partner that uses an issuing CA."""

    def __init__(self, root_path_length: int | None) -> None:
        self.root, self.root_key = issue(
            None, None, "CN root", ca=True, path_length=root_path_length
        )
        self.inter, self.inter_key = issue(
            self.root, self.root_key, "CN issuing CA", ca=True, path_length=0
        )
        self.leaf, _ = issue(self.inter, self.inter_key, "CN gateway signing")

    def trust(self, revoked_inter: bool = False, inter_crl: bool = True) -> TrustStore:
        crls = [
            crl_by(self.root, self.root_key, [self.inter.serial_number] if revoked_inter else [])
        ]
        if inter_crl:
            crls.append(crl_by(self.inter, self.inter_key))
        return TrustStore([PartnerTrust(CN, (self.root,), tuple(crls))])


def test_intermediate_within_path_length_is_trusted() -> None:
    h = _Hierarchy(root_path_length=1)
    assert h.trust().check_signer(CN, [h.leaf, h.inter], NOW).administration is CN
    # the intermediate must be sent: the anchor alone does not reach the leaf
    assert code_of(h.trust(), CN, [h.leaf]) == "TRUST_UNTRUSTED"


def test_intermediate_beyond_path_length_is_untrusted() -> None:
    h = _Hierarchy(root_path_length=0)
    with pytest.raises(TrustError) as info:
        h.trust().check_signer(CN, [h.leaf, h.inter], NOW)
    assert info.value.code == "TRUST_UNTRUSTED"
    assert "allows 0 intermediate" in info.value.message


def test_revoked_intermediate_and_missing_intermediate_crl() -> None:
    h = _Hierarchy(root_path_length=None)
    assert code_of(h.trust(revoked_inter=True), CN, [h.leaf, h.inter]) == "TRUST_REVOKED"
    assert code_of(h.trust(inter_crl=False), CN, [h.leaf, h.inter]) == "TRUST_CRL_INVALID"


# --- cache ------------------------------------------------------------------------------------
def test_cached_decision_is_not_reused_after_the_certificate_expires(pki: Pki) -> None:
    expires = NOW + dt.timedelta(hours=1)
    short, _ = issue(pki.ca("EU"), ca_key(pki, "EU"), "EU short-lived", not_after=expires)
    trust = store(pki)
    first = trust.check_signer(EU, [short], NOW)
    assert trust.check_signer(EU, [short], NOW + dt.timedelta(minutes=59)) is first  # cache hit
    reparsed = x509.load_der_x509_certificate(short.public_bytes(serialization.Encoding.DER))
    assert trust.check_signer(EU, [reparsed], NOW) is first  # keyed by content, not object
    assert code_of(trust, EU, [short], expires + dt.timedelta(seconds=1)) == "TRUST_EXPIRED"


def test_cached_decision_is_not_reused_once_the_crl_is_stale(pki: Pki) -> None:
    trust = store(pki)
    signing = [pki.cert("EU", "signing")]
    trust.check_signer(EU, signing, NOW)
    stale_at = crl_due(pki) + dt.timedelta(seconds=1)
    assert code_of(trust, EU, signing, stale_at) == "TRUST_CRL_INVALID"


def test_cached_decision_is_per_claimed_partner(pki: Pki) -> None:
    trust = store(pki)
    cert = pki.cert("US", "signing")
    trust.check_signer(US, [cert], NOW)
    assert code_of(trust, EU, [cert]) == "TRUST_WRONG_PARTNER"


def test_repeat_checks_are_cheap(pki: Pki) -> None:
    trust = store(pki)
    chain = [pki.cert("EU", "signing")]
    trust.check_signer(EU, chain, NOW)
    started = time.perf_counter()
    for _ in range(2000):
        trust.check_signer(EU, chain, NOW)
    # a hit is a fingerprint, a dict lookup and a compare: microseconds, not a signature check
    assert time.perf_counter() - started < 1.0


# --- TLS peers and anchors ----------------------------------------------------------------------
def test_tls_peer_maps_to_its_administration(pki: Pki) -> None:
    trust = store(pki)
    assert trust.administration_of_tls_peer(pki.cert("EU", "tls"), NOW) is EU
    assert trust.administration_of_tls_peer(pki.cert("US", "tls"), NOW) is US
    assert trust.administration_of_tls_peer(pki.cert("US", "tls"), NOW) is US  # cached


def test_tls_peer_refusals(pki: Pki) -> None:
    trust = store(pki)
    cases = {
        "TRUST_UNTRUSTED": pki.cert(FOREIGN, "EU-impostor"),
        "TRUST_REVOKED": pki.cert("EU", "revoked"),
        "TRUST_EXPIRED": pki.cert("EU", "expired"),
        "TRUST_KEY_USAGE": issue(
            pki.ca("EU"), ca_key(pki, "EU"), "EU server only", eku=[ExtendedKeyUsageOID.SERVER_AUTH]
        )[0],
    }
    for code, cert in cases.items():
        with pytest.raises(TrustError) as info:
            trust.administration_of_tls_peer(cert, NOW)
        assert info.value.code == code


def test_anchors_pem_holds_every_partners_ca(pki: Pki) -> None:
    loaded = x509.load_pem_x509_certificates(store(pki).anchors_pem())
    assert loaded == [pki.ca("EU"), pki.ca("US")]


# --- configuration errors ------------------------------------------------------------------------
def test_configuration_mistakes_are_config_errors(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="configured for both EU and US"):
        TrustStore([partner(pki, "EU"), partner(pki, "US", anchors=(pki.ca("EU"),))])
    with pytest.raises(ConfigError, match="not a CA"):
        TrustStore([partner(pki, "EU", anchors=(pki.cert("EU", "signing"),))])
    with pytest.raises(ConfigError, match="configured twice"):
        TrustStore([partner(pki, "EU"), partner(pki, "EU")])
    with pytest.raises(ConfigError, match="no CA"):
        TrustStore([partner(pki, "EU", anchors=())])
    with pytest.raises(ConfigError, match="time zone"):
        AllowedSigner(pki.cert("EU", "signing"), dt.datetime(2030, 1, 1))


def test_naive_decision_time_is_refused(pki: Pki) -> None:
    with pytest.raises(GatewayError, match="time zone"):
        store(pki).check_signer(EU, [pki.cert("EU", "signing")], NOW.replace(tzinfo=None))


# --- loading from bytes -------------------------------------------------------------------------
def test_partner_trust_from_pem_builds_a_working_store(pki: Pki) -> None:
    closes = NOW + dt.timedelta(days=3)
    eu = partner_trust_from_pem(
        "eu",
        pki.path("EU", "ca").read_bytes(),
        [pki.crl("EU").public_bytes(serialization.Encoding.DER)],  # DER is accepted too
        [
            (pki.path("EU", "signing").read_bytes(), closes),
            (pki.path("EU", "signing-next").read_bytes(), None),
        ],
    )
    assert eu.administration is EU and eu.require_crl
    trust = TrustStore([eu])
    assert trust.check_signer(EU, [pki.cert("EU", "signing")], NOW).administration is EU
    assert code_of(trust, EU, [pki.cert("EU", "signing")], closes) == "TRUST_CERT_NOT_ALLOWED"
    assert code_of(trust, EU, [pki.cert("EU", "signing-rsa")]) == "TRUST_CERT_NOT_ALLOWED"


def test_loading_errors_are_config_errors(pki: Pki) -> None:
    ca = pki.path("EU", "ca").read_bytes()
    with pytest.raises(ConfigError, match="unknown administration"):
        partner_trust_from_pem("XX", ca)
    with pytest.raises(ConfigError, match="cannot read"):
        partner_trust_from_pem("EU", b"not a pem")
    with pytest.raises(ConfigError, match="cannot read CRL") as info:
        crls_from_bytes(b"garbage", location="eu-crl.pem")
    assert info.value.location == "eu-crl.pem" and info.value.code == "CFG_INVALID"
    with pytest.raises(ConfigError, match="time zone"):
        allowed_signer_from_pem(pki.path("EU", "signing").read_bytes(), dt.datetime(2030, 1, 1))


def test_pem_file_with_two_crls(pki: Pki) -> None:
    pem = pki.path("EU", "crl").read_bytes() + pki.path("US", "crl").read_bytes()
    assert [c.issuer for c in crls_from_bytes(pem)] == [pki.ca("EU").subject, pki.ca("US").subject]


def test_trust_from_pki_files_trusts_administrations_not_foreign(pki: Pki) -> None:
    def files(admin: str) -> dict[str, bytes]:
        return {
            p.name: p.read_bytes()
            for p in Path(pki.root, admin).glob("*.pem")
            if not p.name.endswith(".key.pem")
        }

    trust = trust_from_pki_files({name: files(name) for name in ("EU", "US", FOREIGN)})
    assert set(trust.administrations) == {EU, US}
    assert trust.check_signer(EU, [pki.cert("EU", "signing")], NOW).administration is EU
    assert code_of(trust, EU, [pki.cert(FOREIGN, "EU-impostor")]) == "TRUST_UNTRUSTED"
    assert code_of(trust, US, [pki.cert("US", "revoked")]) == "TRUST_REVOKED"


# --- CRL forms, re-keyed CAs, weak keys ---------------------------------------------------------
def _partition(
    issuer: x509.Certificate, key: Key, uri: str, revoked: Sequence[int], age: int
) -> x509.CertificateRevocationList:
    last = NOW - dt.timedelta(hours=age)
    return partition_crl(issuer, key, uri, revoked, last, NOW + dt.timedelta(days=30))


def test_a_crl_of_one_distribution_point_is_refused_not_taken_as_complete(pki: Pki) -> None:
    """Partition B (older) revokes the signer, partition A (newer) does not: taken as complete
    CRLs, the newest would pass a revoked signer. Refused instead, at start-up and at use."""
    signing = pki.cert("EU", "signing")
    key = ca_key(pki, "EU")
    part_b = _partition(
        pki.ca("EU"), key, "http://crl.eu.example/b.crl", [signing.serial_number], 2
    )
    part_a = _partition(pki.ca("EU"), key, "http://crl.eu.example/a.crl", [], 1)
    with pytest.raises(TrustError) as info:
        store(pki, crls=(part_b, part_a)).check_signer(EU, [signing], NOW)
    assert info.value.code == "TRUST_CRL_INVALID" and "distribution point" in info.value.message
    assert "partitioned" in crl_form_problem(part_a)
    assert crl_form_problem(pki.crl("EU")) == ""


def test_a_ca_re_keyed_under_the_same_name_keeps_both_roots_working() -> None:
    """During a root key rollover with an unchanged name both roots and both CRLs are
    configured: each leaf is checked against the CRL its own root's key signed."""
    old_root, old_key = issue(None, None, "CN root", ca=True)
    new_root, new_key = issue(None, None, "CN root", ca=True)
    assert old_root.subject == new_root.subject
    old_leaf, _ = issue(old_root, old_key, "CN signing 2025")
    new_leaf, _ = issue(new_root, new_key, "CN signing 2026")
    old_crl, new_crl = crl_by(old_root, old_key), crl_by(new_root, new_key)
    for crls in ((old_crl, new_crl), (new_crl, old_crl)):
        trust = TrustStore([PartnerTrust(CN, (old_root, new_root), crls)])
        assert trust.check_signer(CN, [old_leaf], NOW).administration is CN
        assert trust.check_signer(CN, [new_leaf], NOW).administration is CN
    # revoked under the new key is still revoked
    revoking = crl_by(new_root, new_key, [new_leaf.serial_number])
    trust = TrustStore([PartnerTrust(CN, (old_root, new_root), (old_crl, revoking))])
    assert code_of(trust, CN, [new_leaf]) == "TRUST_REVOKED"
    # a CRL in the name that neither key signed still refuses, as a forged one must
    forger = ec.generate_private_key(ec.SECP256R1())
    trust = TrustStore([PartnerTrust(CN, (old_root,), (crl_by(old_root, forger),))])
    assert code_of(trust, CN, [old_leaf]) == "TRUST_CRL_INVALID"


def test_a_weak_key_anywhere_in_the_path_is_untrusted() -> None:
    root, root_key = issue(None, None, "CN root", ca=True)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    inter, _ = issue(root, root_key, "CN issuing CA", key=weak_key, ca=True)
    leaf, _ = issue(inter, weak_key, "CN gateway signing")
    trust = TrustStore(
        [PartnerTrust(CN, (root,), (crl_by(root, root_key), crl_by(inter, weak_key)))]
    )
    with pytest.raises(TrustError) as info:
        trust.check_signer(CN, [leaf, inter], NOW)
    assert info.value.code == "TRUST_UNTRUSTED" and "RSA key of 1024 bits" in info.value.message
    weak_root, _ = issue(None, None, "CN weak root", key=weak_key, ca=True)
    with pytest.raises(ConfigError, match="RSA key of 1024 bits"):
        TrustStore([PartnerTrust(CN, (weak_root,), ())])


def test_a_re_issued_anchor_cannot_serve_two_administrations(pki: Pki) -> None:
    """The EU root re-issued (same name and key, new serial) configured as US's anchor would
    let EU certificates speak for US: a CA is its name and key, not one certificate of it."""
    original = pki.ca("EU")
    reissued = (
        x509.CertificateBuilder()
        .subject_name(original.subject)
        .issuer_name(original.subject)
        .public_key(original.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(original.not_valid_before_utc)
        .not_valid_after(original.not_valid_after_utc + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key(pki, "EU"), hashes.SHA256())
    )
    assert reissued != original
    with pytest.raises(ConfigError, match="configured for both EU and US"):
        TrustStore([partner(pki, "EU"), partner(pki, "US", anchors=(reissued,))])
    # for the same administration the re-issue is just another certificate of its CA
    both = TrustStore([partner(pki, "EU", anchors=(original, reissued)), partner(pki, "US")])
    assert both.check_signer(EU, [pki.cert("EU", "signing")], NOW).administration is EU
