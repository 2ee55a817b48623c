"""Mutual TLS with partner PKIs that issue client certificates from an intermediate CA.

Real servers on 127.0.0.1 (gRPC and XML over HTTPS), real TLS, a real SQLite inbox. The roots
of this test PKI allow one intermediate; EU, US and FOREIGN each have an issuing CA with a TLS
client certificate under it (testpki.issue_intermediate_tls). The US gateway is the receiver.

What is checked: the client sends leaf + intermediate and is identified as the partner whose
root the chain reaches; a client that sends its leaf alone, or an intermediate that does not
chain to a configured root, is refused in the handshake (the server's TLS layer cannot build a
path to any partner root); a chain that reaches US's root cannot deliver an envelope EU signed;
and the trust store's own checks (CRLs) apply to the intermediate the client sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import testpki
from gateway.envelope import xml_binding
from gateway.envelope.opened import Binding, new_header
from gateway.errors import TransportError, TrustError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import GatewayNode, VerifiedReceipt, seal_envelope
from gateway.store.inbox import SqliteInbox
from gateway.testpki import FOREIGN, init_test_pki, issue_intermediate_tls
from gateway.transport import grpc_server, xml_http
from gateway.transport.grpc_client import GrpcPartnerClient, verify_receipt
from gateway.transport.grpc_server import GrpcGatewayServer
from gateway.transport.tls import ClientTls, TlsIdentity
from gateway.transport.xml_http import (
    HttpAnswerError,
    XmlHttpServer,
    XmlPartnerClient,
    check_receipt,
)
from gateway.trust.store import PartnerTrust, TrustStore

EU, US = Administration.EU, Administration.US
Pki = testpki.TestPki  # not imported by name: pytest would try to collect a Test* class
PAYLOAD = b"<AEO><Name>Example Trading BV</Name><Id>NL123456789</Id></AEO>"
VIA = "tls-intermediate"  # the stem issue_intermediate_tls writes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = init_test_pki(
        tmp_path_factory.mktemp("tls-chain-pki"), ("EU", "US", "CN"), ca_path_length=1
    )
    for admin in ("EU", "US", FOREIGN):
        issue_intermediate_tls(pki, admin, VIA)
    return pki


def intermediate_crl(pki: Pki, admin: str) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(pki.path(admin, f"{VIA}-ca-crl").read_bytes())


def partner_trust(
    pki: Pki, admin: str, root_crl: x509.CertificateRevocationList | None = None
) -> PartnerTrust:
    """The partner's root, its CRL and, where it has one, its issuing CA's CRL."""
    crls = [root_crl or pki.crl(admin)]
    if pki.path(admin, f"{VIA}-ca-crl").exists():
        crls.append(intermediate_crl(pki, admin))
    return PartnerTrust(Administration(admin), (pki.ca(admin),), tuple(crls))


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustStore:
    return TrustStore(partner_trust(pki, a) for a in ("EU", "US", "CN"))


@dataclass
class UsGateway:
    node: GatewayNode
    grpc: GrpcGatewayServer
    xml: XmlHttpServer


def start_us(pki: Pki, trust: TrustStore, db: Path) -> UsGateway:
    """The US gateway: one node behind both listeners; its own TLS certificate is a plain one."""
    identity = TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls"))
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(db, synchronous="NORMAL"))
    grpc = GrpcGatewayServer(node, tls=identity)
    grpc.start()
    xml = XmlHttpServer(node, identity=identity).start()
    return UsGateway(node, grpc, xml)


def stop_us(gateway: UsGateway) -> None:
    gateway.grpc.stop(grace=None)
    gateway.xml.stop()
    gateway.node.inbox.close()


@pytest.fixture(scope="module")
def us(
    pki: Pki, trust: TrustStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UsGateway]:
    gateway = start_us(pki, trust, tmp_path_factory.mktemp("us") / "inbox.db")
    yield gateway
    stop_us(gateway)


def client_tls(pki: Pki, admin: str, cert_stem: str = VIA, key_stem: str = VIA) -> ClientTls:
    """A client of the US gateway presenting `<admin>/<cert_stem>.pem` (leaf first)."""
    return ClientTls.from_files(
        pki.key_path(admin, key_stem), pki.path(admin, cert_stem), pki.path("US", "ca")
    )


def forged_intermediate_tls(pki: Pki, tmp_path: Path) -> ClientTls:
    """An issuing CA bearing EU's intermediate's name and naming EU's root as issuer, signed by
    another key (not EU's root), with a TLS leaf it issued: sent together, as a client would."""
    genuine = x509.load_pem_x509_certificate(pki.path("EU", f"{VIA}-ca").read_bytes())
    now = dt.datetime.now(dt.UTC)
    forger = ec.generate_private_key(ec.SECP256R1())
    inter = (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(genuine.issuer)
        .public_key(forger.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(forger, hashes.SHA256())
    )
    real_leaf = x509.load_pem_x509_certificate(pki.path("EU", f"{VIA}-leaf").read_bytes())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(real_leaf.subject)
        .issuer_name(inter.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            real_leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value,
            critical=False,
        )
        .sign(forger, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "forged.pem", tmp_path / "forged.key.pem"
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter))
    )
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ClientTls.from_files(key_path, cert_path, pki.path("US", "ca"))


def protobuf_envelope(pki: Pki, sender: str = "EU") -> bytes:
    identity = pki.identity(sender)
    header = new_header(
        payload=PAYLOAD,
        utility_block=UtilityBlock.UB1,
        message_type="AEOMutualRecognition",
        sender=identity.administration,
        receiver=US,
        payload_content_type="application/xml",
    )
    return seal_envelope(Binding.PROTOBUF, header, PAYLOAD, identity)


def xml_envelope(pki: Pki, sender: str = "EU") -> tuple[str, bytes]:
    identity = pki.identity(sender)
    header = new_header(
        payload=PAYLOAD,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        sender=identity.administration,
        receiver=US,
        payload_content_type="application/xml",
    )
    return header.message_id, xml_binding.seal(header, PAYLOAD, identity)


def grpc_receipt(raw_receipt: bytes, trust: TrustStore, sent: bytes) -> VerifiedReceipt:
    """What the sender does with a receipt: US signed it, for exactly these bytes."""
    from gateway._proto.gnc.v1 import envelope_pb2 as pb

    outer = pb.SignedEnvelope.FromString(sent)
    message_id = pb.EnvelopeHeader.FromString(outer.header).message_id
    return verify_receipt(
        raw_receipt,
        partner=US,
        trust=trust,
        message_id=message_id,
        sent=sent,
        now=dt.datetime.now(dt.UTC),
    )


def grpc_submit(us: UsGateway, tls: ClientTls, raw: bytes) -> bytes:
    with GrpcPartnerClient(us.grpc.target, tls=tls) as client:
        return client.submit(raw, timeout=10)


def xml_submit(us: UsGateway, tls: ClientTls, raw: bytes) -> bytes:
    with XmlPartnerClient(us.xml.url, tls=tls, timeout=10) as client:
        return client.submit(raw)


# --- accepted: leaf + intermediate under EU's root ---------------------------------------------
def test_grpc_client_with_an_intermediate_is_identified_as_eu(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    raw = protobuf_envelope(pki)
    before = us.node.inbox.count()
    verified = grpc_receipt(grpc_submit(us, client_tls(pki, "EU"), raw), trust, raw)
    assert verified.accepted, verified.receipt.error_message
    assert verified.receipt.recipient is EU
    assert verified.receipt.received_sha256 == hashlib.sha256(raw).digest()
    assert us.node.inbox.count() == before + 1
    assert us.node.inbox.envelope_for(verified.receipt.message_id) == raw


def test_xml_client_with_an_intermediate_is_identified_as_eu(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    message_id, raw = xml_envelope(pki)
    before = us.node.inbox.count()
    with XmlPartnerClient(us.xml.url, tls=client_tls(pki, "EU"), timeout=10) as client:
        verified = client.deliver(raw, partner=US, trust=trust, message_id=message_id)
        assert verified.accepted, verified.receipt.error_message
        assert verified.receipt.recipient is EU
        # A second request on the same keep-alive connection: the peer chain read once.
        again_id, again = xml_envelope(pki)
        assert client.deliver(again, partner=US, trust=trust, message_id=again_id).accepted
    assert us.node.inbox.count() == before + 2


# --- refused: the leaf alone, or an intermediate that does not reach EU's root -----------------
# The server's TLS layer verifies the client chain against the partners' roots: with no path it
# aborts the handshake (TLS 1.3: an alert after the client's Finished), with the alert OpenSSL
# maps the failure to. The client sees the partner as unreachable (TRN_UNAVAILABLE); nothing is
# stored. Each case: how to make the client, and the alert the XML client reports.
MakeTls = Callable[[Pki, Path], ClientTls]
REFUSED_IN_HANDSHAKE: dict[str, tuple[MakeTls, str]] = {
    # no issuer of the leaf among the roots, and none sent
    "leaf only": (lambda pki, _: client_tls(pki, "EU", cert_stem=f"{VIA}-leaf"), "UNKNOWN_CA"),
    # a sent intermediate whose root is no partner's
    "foreign intermediate": (lambda pki, _: client_tls(pki, FOREIGN), "UNKNOWN_CA"),
    # EU's root's name as issuer, but EU's root did not sign it: signature failure
    "forged intermediate": (forged_intermediate_tls, "DECRYPT_ERROR"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_IN_HANDSHAKE))
def test_grpc_chain_not_reaching_a_partner_root_fails_the_handshake(
    pki: Pki, us: UsGateway, tmp_path: Path, case: str
) -> None:
    make, _ = REFUSED_IN_HANDSHAKE[case]
    before = us.node.inbox.count()
    with pytest.raises(TransportError) as caught:
        grpc_submit(us, make(pki, tmp_path), protobuf_envelope(pki))
    assert caught.value.code == "TRN_UNAVAILABLE"
    assert us.grpc.target in str(caught.value)
    assert us.node.inbox.count() == before


@pytest.mark.parametrize("case", sorted(REFUSED_IN_HANDSHAKE))
def test_xml_chain_not_reaching_a_partner_root_fails_the_handshake(
    pki: Pki, us: UsGateway, tmp_path: Path, case: str
) -> None:
    make, alert = REFUSED_IN_HANDSHAKE[case]
    before = us.node.inbox.count()
    with pytest.raises(TransportError) as caught:
        xml_submit(us, make(pki, tmp_path), xml_envelope(pki)[1])
    assert caught.value.code == "TRN_UNAVAILABLE"
    assert not isinstance(caught.value, HttpAnswerError)  # no HTTP answer: the handshake failed
    # In TLS 1.3 the client's side of the handshake ends before the server has checked its
    # certificate: the client that writes its request at once may see the server's alert or
    # only the closed connection. The alert itself is read below, by a client that waits.
    assert us.node.inbox.count() == before
    assert f"TLSV1_ALERT_{alert}" in server_alert(us, make(pki, tmp_path))


def server_alert(us: UsGateway, tls: ClientTls) -> str:
    """The TLS alert the XML listener answers `tls` with: handshake, then wait for it."""
    context = xml_http.client_ssl_context(tls)
    host, port = us.xml.address
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=tls.server_name or host) as sock,
    ):
        try:
            sock.recv(1)
        except ssl.SSLError as error:
            return str(error.reason)
    raise AssertionError("the server sent no alert: the handshake was not refused")


# --- refused: a chain to US's root delivering what EU signed ------------------------------------
def test_grpc_us_intermediate_client_cannot_deliver_for_eu(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    raw = protobuf_envelope(pki, sender="EU")
    before = us.node.inbox.count()
    verified = grpc_receipt(grpc_submit(us, client_tls(pki, "US"), raw), trust, raw)
    assert not verified.accepted
    assert verified.receipt.error_code == "TRUST_WRONG_PARTNER"
    assert "TLS peer is US" in verified.receipt.error_message
    assert us.node.inbox.count() == before


def test_xml_us_intermediate_client_cannot_deliver_for_eu(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    message_id, raw = xml_envelope(pki, sender="EU")
    before = us.node.inbox.count()
    answer = xml_submit(us, client_tls(pki, "US"), raw)
    verified = check_receipt(
        answer, partner=US, trust=trust, message_id=message_id, sent=raw, now=us.node.clock()
    )
    assert not verified.accepted
    assert verified.receipt.error_code == "TRUST_WRONG_PARTNER"
    assert "TLS peer is US" in verified.receipt.error_message
    assert us.node.inbox.count() == before


# --- the trust store's rules apply to the intermediate the client sent -------------------------
def test_revoked_intermediate_passes_tls_but_the_trust_store_refuses_it(
    pki: Pki, tmp_path: Path
) -> None:
    """The handshake checks no CRL; the trust store checks EU's root CRL for the intermediate."""
    root_key = serialization.load_pem_private_key(
        pki.key_path("EU", "ca").read_bytes(), password=None
    )
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    inter = x509.load_pem_x509_certificate(pki.path("EU", f"{VIA}-ca").read_bytes())
    now = dt.datetime.now(dt.UTC)
    revoking = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca("EU").subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(inter.serial_number)
            .revocation_date(now - dt.timedelta(minutes=5))
            .build()
        )
        .sign(root_key, hashes.SHA256())
    )
    trust = TrustStore([partner_trust(pki, "EU", root_crl=revoking), partner_trust(pki, "US")])
    gateway = start_us(pki, trust, tmp_path / "inbox.db")
    try:
        with pytest.raises(TransportError) as grpc_caught:
            grpc_submit(gateway, client_tls(pki, "EU"), protobuf_envelope(pki))
        assert grpc_caught.value.code == "TRN_PROTOCOL"
        assert "UNAUTHENTICATED: TRUST_REVOKED" in str(grpc_caught.value)
        with pytest.raises(HttpAnswerError) as xml_caught:
            xml_submit(gateway, client_tls(pki, "EU"), xml_envelope(pki)[1])
        assert xml_caught.value.status == 403
        assert xml_caught.value.remote_code == "TRUST_REVOKED"
        assert gateway.node.inbox.count() == 0
    finally:
        stop_us(gateway)


# --- parsing the peer chain ---------------------------------------------------------------------
def test_grpc_peer_chain_is_parsed_once_and_drops_a_repeated_leaf(pki: Pki) -> None:
    leaf_pem = pki.path("EU", f"{VIA}-leaf").read_bytes()
    inter_pem = pki.path("EU", f"{VIA}-ca").read_bytes()
    leaf, intermediates = grpc_server._peer_chain(leaf_pem, inter_pem)
    assert [c.subject for c in intermediates] == [x509.load_pem_x509_certificate(inter_pem).subject]
    assert grpc_server._peer_chain(leaf_pem, inter_pem)[0] is leaf  # cached by the raw bytes
    assert grpc_server._peer_chain(leaf_pem, leaf_pem + inter_pem)[1] == intermediates
    assert grpc_server._peer_chain(leaf_pem, b"")[1] == ()  # grpc omits it for a lone leaf


def test_xml_sent_chain_falls_back_to_the_leaf_when_python_cannot_tell() -> None:
    class _NoChain:
        pass

    assert xml_http._sent_chain(cast(ssl.SSLSocket, _NoChain())) == ()


def test_an_unreadable_sent_certificate_is_untrusted_not_a_crash(pki: Pki) -> None:
    leaf = x509.load_pem_x509_certificate(pki.path("EU", f"{VIA}-leaf").read_bytes())
    with pytest.raises(TrustError) as refused:
        xml_http._peer_chain(leaf.public_bytes(serialization.Encoding.DER), (b"not DER",))
    assert refused.value.code == "TRUST_UNTRUSTED"


# --- configured from a gateway TOML file ---------------------------------------------------------
def us_config(pki: Pki, tmp_path: Path, eu: dict[str, object]) -> Path:
    """A US gateway config whose one partner, EU, is `eu` (ca, intermediates, crl, ...)."""

    def toml(value: object) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        return f'"{value}"'

    lines = [
        pki.gateway_table("US"),
        "[store]",
        f'url = "sqlite:///{tmp_path}/us.db"',
        "[[partners]]",
        'administration = "EU"',
        'binding = "grpc"',
        'endpoint = "127.0.0.1:50099"',
        *(f"{key} = {toml(value)}" for key, value in eu.items()),
    ]
    path = tmp_path / "us.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def eu_partner(pki: Pki, **overrides: object) -> dict[str, object]:
    partner: dict[str, object] = {
        "ca": str(pki.path("EU", "ca")),
        "intermediates": str(pki.path("EU", f"{VIA}-ca")),
        "crl": [str(pki.path("EU", "crl")), str(pki.path("EU", f"{VIA}-ca-crl"))],
    }
    partner.update(overrides)
    return {k: v for k, v in partner.items() if v is not None}


def test_a_configured_intermediate_lets_its_crl_be_configured_and_its_clients_in(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    from gateway.config import build_node, load_config

    config = load_config(us_config(pki, tmp_path, eu_partner(pki)))
    (eu,) = config.partners
    assert eu.intermediates == (pki.path("EU", f"{VIA}-ca").resolve(),)
    node = build_node(config)
    server = GrpcGatewayServer(node, tls=config.tls_identity)
    server.start()
    try:
        raw = protobuf_envelope(pki)
        with GrpcPartnerClient(server.target, tls=client_tls(pki, "EU")) as client:
            answer = client.submit(raw, timeout=10)
        verified = grpc_receipt(answer, trust, raw)
        assert verified.accepted, verified.receipt.error_message  # require_crl holds: CRL found
        assert node.inbox.count() == 1
    finally:
        server.stop(grace=None)
        node.inbox.close()


@pytest.mark.parametrize(
    ("case", "overrides", "key", "why"),
    [
        (
            "intermediate's CRL without the intermediate",
            {"intermediates": None},
            "partners[0].crl[1]",
            "is not signed by any CA",
        ),
        (
            "an intermediate of another partner's root",
            {"intermediates": "US/tls-intermediate-ca"},
            "partners[0].intermediates",
            "is not a CA certificate issued by",
        ),
        (
            "a leaf given as intermediate",
            {"intermediates": "EU/tls-intermediate-leaf"},
            "partners[0].intermediates",
            "is not a CA certificate issued by",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_a_wrong_intermediate_or_its_crl_is_a_config_error(
    pki: Pki, tmp_path: Path, case: str, overrides: dict[str, object], key: str, why: str
) -> None:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    fixed = {
        name: (str(pki.root / f"{value}.pem") if isinstance(value, str) else value)
        for name, value in overrides.items()
    }
    with pytest.raises(ConfigError) as refused:
        load_config(us_config(pki, tmp_path, eu_partner(pki, **fixed)))
    assert refused.value.code == "CFG_INVALID"
    assert f"{key}: " in refused.value.message and why in refused.value.message, case
