"""gRPC transport end to end: EU and US gateways on loopback, mutual TLS, real certificates,
real SQLite inboxes; every answer is a signed receipt checked the way a partner would check it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from gateway import testpki
from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.intake import IntakeLimits
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    ConfigError,
    DeliveryError,
    EnvelopeError,
    TransportError,
    TrustError,
)
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import GatewayNode, seal_envelope
from gateway.store.inbox import SqliteInbox
from gateway.testpki import FOREIGN, init_test_pki
from gateway.transport.grpc_client import (
    GrpcPartnerClient,
    PartnerExchange,
    VerifiedReceipt,
    verify_receipt,
)
from gateway.transport.grpc_server import SERVICE_NAME, GrpcGatewayServer
from gateway.transport.tls import ClientTls, TlsIdentity, channel_credentials
from gateway.trust.store import PartnerTrust, TrustStore

EU, US, CN = Administration.EU, Administration.US, Administration.CN
Pki = testpki.TestPki  # not imported by name: pytest would try to collect a Test* class
PAYLOAD = b"<AEO><Name>Example Trading BV</Name><Id>NL123456789</Id></AEO>" * 8


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return init_test_pki(tmp_path_factory.mktemp("grpc-pki"), ("EU", "US", "CN"))


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustStore:
    return TrustStore(
        PartnerTrust(Administration(a), (pki.ca(a),), (pki.crl(a),)) for a in ("EU", "US", "CN")
    )


def tls_identity(pki: Pki, admin: str, stem: str = "tls") -> TlsIdentity:
    return TlsIdentity.from_files(pki.key_path(admin, stem), pki.path(admin, stem))


def client_tls(pki: Pki, own: str, partner: str, stem: str = "tls") -> ClientTls:
    return ClientTls(tls_identity(pki, own, stem), pki.path(partner, "ca").read_bytes())


@dataclass
class Gateway:
    node: GatewayNode
    server: GrpcGatewayServer

    @property
    def inbox(self) -> SqliteInbox:
        return self.node.inbox


def start_gateway(
    pki: Pki, trust: TrustStore, admin: str, db: Path, limits: IntakeLimits | None = None
) -> Gateway:
    node = GatewayNode(pki.identity(admin), trust, SqliteInbox(db), limits=limits or IntakeLimits())
    server = GrpcGatewayServer(node, tls=tls_identity(pki, admin))
    server.start()
    return Gateway(node, server)


def stop_gateway(gateway: Gateway) -> None:
    gateway.server.stop(grace=None)
    gateway.inbox.close()


@pytest.fixture(scope="module")
def us(pki: Pki, trust: TrustStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(pki, trust, "US", tmp_path_factory.mktemp("us") / "inbox.db")
    yield gateway
    stop_gateway(gateway)


@pytest.fixture(scope="module")
def eu(pki: Pki, trust: TrustStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(pki, trust, "EU", tmp_path_factory.mktemp("eu") / "inbox.db")
    yield gateway
    stop_gateway(gateway)


@pytest.fixture(scope="module")
def eu_to_us(pki: Pki, us: Gateway) -> Iterator[GrpcPartnerClient]:
    """The EU gateway's client to the US endpoint (EU TLS certificate, US CA)."""
    with GrpcPartnerClient(us.server.target, tls=client_tls(pki, "EU", "US")) as client:
        yield client


def envelope(
    identity: SigningIdentity,
    receiver: Administration = US,
    *,
    sender: Administration | None = None,
    payload: bytes = PAYLOAD,
    message_id: str | None = None,
) -> bytes:
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="AEOMutualRecognition",
        sender=sender or identity.administration,
        receiver=receiver,
        payload_content_type="application/xml",
        message_id=message_id,
    )
    return seal_envelope(Binding.PROTOBUF, header, payload, identity)


def message_id_of(raw: bytes) -> str:
    """The id an envelope claims ("" when it cannot be read at all)."""
    try:
        outer = pb.SignedEnvelope.FromString(raw)
        return pb.EnvelopeHeader.FromString(outer.header).message_id
    except DecodeError:
        return ""


def check(
    raw_receipt: bytes, trust: TrustStore, sent: bytes, issuer: Administration = US
) -> VerifiedReceipt:
    """What a partner does with a receipt: signature, signer trusted for `issuer`, subject."""
    return verify_receipt(
        raw_receipt,
        partner=issuer,
        trust=trust,
        message_id=message_id_of(sent),
        sent=sent,
        now=dt.datetime.now(dt.UTC),
    )


def rejection_code(raw_receipt: bytes, trust: TrustStore, sent: bytes) -> str:
    verified = check(raw_receipt, trust, sent)
    assert not verified.accepted
    return verified.receipt.error_code


# --- the happy path, duplicates, conflicts ------------------------------------------------------
def test_submit_is_stored_and_answered_with_a_receipt_signed_by_us(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    raw = envelope(pki.identity("EU"))
    before = us.inbox.count()
    answer = eu_to_us.submit(raw, timeout=10)
    verified = check(answer, trust, raw)
    receipt = verified.receipt
    assert verified.accepted and not receipt.duplicate
    assert verified.signer.administration is US
    assert verified.signer.certificate == pki.cert("US", "signing")
    assert receipt.received_sha256 == hashlib.sha256(raw).digest()
    assert receipt.payload_sha256 == hashlib.sha256(PAYLOAD).digest()
    assert receipt.issuer is US and receipt.recipient is EU
    assert us.inbox.count() == before + 1
    assert us.inbox.envelope_for(receipt.message_id) == raw  # the exact bytes received
    assert us.inbox.receipt_for(receipt.message_id) == answer
    assert not pb.SignedReceipt.FromString(answer).HasField("proof")  # unary: signed alone


def test_concurrent_submits_are_each_signed_alone(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    """Unary calls checked in one batch still get one signature per receipt (no proof)."""
    raws = [envelope(pki.identity("EU")) for _ in range(24)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(eu_to_us.submit, raws))
    for raw, answer in zip(raws, answers, strict=True):
        assert check(answer, trust, raw).accepted
        assert not pb.SignedReceipt.FromString(answer).HasField("proof")


def test_resend_is_answered_with_the_first_receipt(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    raw = envelope(pki.identity("EU"))
    first = eu_to_us.submit(raw)
    count = us.inbox.count()
    again = eu_to_us.submit(raw)
    assert again == first
    assert check(again, trust, raw).accepted
    assert us.inbox.count() == count


def test_same_message_id_with_another_payload_is_a_conflict(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    eu_signer = pki.identity("EU")
    original = envelope(eu_signer)
    message_id = message_id_of(original)
    assert check(eu_to_us.submit(original), trust, original).accepted
    count = us.inbox.count()
    other = envelope(eu_signer, payload=PAYLOAD + b"<changed/>", message_id=message_id)
    verified = check(eu_to_us.submit(other), trust, other)
    assert not verified.accepted
    assert verified.receipt.error_code == "DLV_DUPLICATE_CONFLICT"
    assert verified.receipt.message_id == message_id
    assert us.inbox.count() == count
    assert us.inbox.envelope_for(message_id) == original


def test_partner_exchange_checks_receipts_for_the_sender(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    exchange = PartnerExchange(eu_to_us, partner=US, trust=trust)
    verified = exchange.deliver(envelope(pki.identity("EU")))
    assert verified.accepted and verified.signer.administration is US
    # The same receipt does not verify as coming from another partner...
    with pytest.raises(TrustError) as caught:
        verify_receipt(
            verified.raw,
            partner=CN,
            trust=trust,
            message_id=verified.receipt.message_id,
            sent=b"",
            now=dt.datetime.now(dt.UTC),
        )
    assert caught.value.code == "TRUST_WRONG_PARTNER"
    # ...nor as the receipt of other bytes than were sent.
    other = envelope(pki.identity("EU"))
    with pytest.raises(DeliveryError) as mismatch:
        check(verified.raw, trust, other)
    assert mismatch.value.code == "DLV_RECEIPT_MISMATCH"


# --- bad input: a signed rejection, nothing stored ----------------------------------------------
def tamper(raw: bytes, *, payload: bytes | None = None, header_flip: bool = False) -> bytes:
    outer = pb.SignedEnvelope.FromString(raw)
    if payload is not None:
        outer.payload = payload
    if header_flip:
        header = bytearray(outer.header)
        index = bytes(header).index(b"AEOMutualRecognition")
        header[index] = ord("B")
        outer.header = bytes(header)
    return outer.SerializeToString()


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("payload", "ENV_PAYLOAD_DIGEST_MISMATCH"),
        ("header", "SIG_INVALID"),
        ("no-signature", "SIG_MISSING"),
        ("not-an-envelope", "ENV_MALFORMED"),
    ],
)
def test_tampered_envelopes_are_rejected_and_not_stored(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient, how: str, code: str
) -> None:
    raw = envelope(pki.identity("EU"))
    if how == "payload":
        bad = tamper(raw, payload=PAYLOAD.replace(b"NL123456789", b"NL999999999"))
    elif how == "header":
        bad = tamper(raw, header_flip=True)
    elif how == "no-signature":
        outer = pb.SignedEnvelope.FromString(raw)
        outer.jws = ""
        bad = outer.SerializeToString()
    else:
        bad = b"\xff\xff\xff not protobuf"
    before = us.inbox.count()
    assert rejection_code(eu_to_us.submit(bad), trust, bad) == code
    assert us.inbox.count() == before
    assert us.inbox.envelope_for(message_id_of(raw)) is None


@pytest.mark.parametrize(
    ("admin", "stem", "code"),
    [
        ("EU", "expired", "TRUST_EXPIRED"),
        ("EU", "revoked", "TRUST_REVOKED"),
        (FOREIGN, "EU-impostor", "TRUST_UNTRUSTED"),
    ],
)
def test_untrusted_signers_are_rejected(
    pki: Pki,
    trust: TrustStore,
    us: Gateway,
    eu_to_us: GrpcPartnerClient,
    admin: str,
    stem: str,
    code: str,
) -> None:
    raw = envelope(pki.identity(admin, stem))
    before = us.inbox.count()
    assert rejection_code(eu_to_us.submit(raw), trust, raw) == code
    assert us.inbox.count() == before


def test_tls_peer_must_be_the_sender(pki: Pki, trust: TrustStore, eu: Gateway) -> None:
    """A US client cannot deliver a CN message, even one CN validly signed (e.g. replayed)."""
    cn_signed = envelope(pki.identity("CN"), receiver=EU)
    before = eu.inbox.count()
    with GrpcPartnerClient(eu.server.target, tls=client_tls(pki, "US", "EU")) as us_client:
        answer = us_client.submit(cn_signed)
    verified = check(answer, trust, cn_signed, issuer=EU)
    assert verified.receipt.error_code == "TRUST_WRONG_PARTNER"
    assert eu.inbox.count() == before
    # The same bytes from CN's own TLS identity are accepted.
    with GrpcPartnerClient(eu.server.target, tls=client_tls(pki, "CN", "EU")) as cn_client:
        assert check(cn_client.submit(cn_signed), trust, cn_signed, issuer=EU).accepted
    assert eu.inbox.count() == before + 1


def test_sender_header_must_match_the_signing_certificate(
    pki: Pki, trust: TrustStore, us: Gateway
) -> None:
    """US signs with its own certificate but claims sender CN: the certificate is US's."""
    us_signer = pki.identity("US")
    forged_identity = SigningIdentity(CN, us_signer.private_key, us_signer.certificate)
    raw = envelope(forged_identity, receiver=US)
    before = us.inbox.count()
    with GrpcPartnerClient(us.server.target, tls=client_tls(pki, "CN", "US")) as cn_client:
        assert rejection_code(cn_client.submit(raw), trust, raw) == "TRUST_WRONG_PARTNER"
    assert us.inbox.count() == before


def test_envelope_for_another_receiver_is_rejected(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    raw = envelope(pki.identity("EU"), receiver=CN)
    before = us.inbox.count()
    assert rejection_code(eu_to_us.submit(raw), trust, raw) == "ENV_WRONG_RECEIVER"
    assert us.inbox.count() == before


def test_client_certificate_of_an_untrusted_ca_fails_the_handshake(pki: Pki, us: Gateway) -> None:
    impostor = ClientTls(
        tls_identity(pki, FOREIGN, "US-impostor"), pki.path("US", "ca").read_bytes()
    )
    before = us.inbox.count()
    with (
        GrpcPartnerClient(us.server.target, tls=impostor) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.submit(envelope(pki.identity("EU")), timeout=10)
    assert caught.value.code == "TRN_UNAVAILABLE"
    assert us.server.target in str(caught.value)
    assert us.inbox.count() == before


def test_revoked_tls_client_certificate_is_refused_before_anything_is_read(
    pki: Pki, us: Gateway
) -> None:
    """The handshake passes (the certificate chains to the EU CA) but the trust store refuses
    it per call: the call fails with the trust code, and no receipt is issued."""
    before = us.inbox.count()
    revoked = client_tls(pki, "EU", "US", stem="revoked")
    with (
        GrpcPartnerClient(us.server.target, tls=revoked) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.submit(envelope(pki.identity("EU")), timeout=10)
    assert caught.value.code == "TRN_PROTOCOL"
    assert "UNAUTHENTICATED: TRUST_REVOKED" in str(caught.value)
    assert us.inbox.count() == before


def test_deliver_stream_raises_on_an_envelope_it_cannot_read_after_answering_the_rest(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    good = [envelope(pki.identity("EU")) for _ in range(3)]
    exchange = PartnerExchange(eu_to_us, partner=US, trust=trust)
    received: list[VerifiedReceipt] = []
    with pytest.raises(EnvelopeError):
        received.extend(exchange.deliver_stream([*good, b"\xff not an envelope", good[0]]))
    assert [r.accepted for r in received] == [True, True, True]


def test_server_of_another_partner_is_not_trusted_by_the_client(pki: Pki, us: Gateway) -> None:
    """The EU client pins the CN CA for this link: the US server's certificate fails."""
    with (
        GrpcPartnerClient(us.server.target, tls=client_tls(pki, "EU", "CN")) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.submit(envelope(pki.identity("EU")), timeout=10)
    assert caught.value.code == "TRN_UNAVAILABLE"


def test_unreachable_partner_is_a_transport_error(pki: Pki) -> None:
    with (
        GrpcPartnerClient("127.0.0.1:1", tls=client_tls(pki, "EU", "US")) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.submit(b"x", timeout=5)
    assert caught.value.code == "TRN_UNAVAILABLE"
    assert "127.0.0.1:1" in str(caught.value)


def test_oversize_envelopes(pki: Pki, trust: TrustStore, tmp_path: Path) -> None:
    """Over the intake limit: a signed ENV_OVERSIZE rejection; over the hard cap: grpc refuses."""
    limit = 64 * 1024
    gateway = start_gateway(
        pki, trust, "US", tmp_path / "inbox.db", IntakeLimits(max_envelope_bytes=limit)
    )
    try:
        with GrpcPartnerClient(gateway.server.target, tls=client_tls(pki, "EU", "US")) as client:
            big = envelope(pki.identity("EU"), payload=b"x" * (limit + 1))
            assert rejection_code(client.submit(big), trust, big) == "ENV_OVERSIZE"
            huge = envelope(pki.identity("EU"), payload=b"x" * (limit + 2 * 1024 * 1024))
            with pytest.raises(TransportError) as caught:
                client.submit(huge)
            assert caught.value.code == "TRN_PROTOCOL"
            assert "RESOURCE_EXHAUSTED" in str(caught.value)
        assert gateway.inbox.count() == 0
    finally:
        stop_gateway(gateway)


# --- streams ---------------------------------------------------------------------------------
def test_stream_answers_every_envelope_in_order(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    eu_signer = pki.identity("EU")
    raws = [envelope(eu_signer) for _ in range(200)]
    before = us.inbox.count()
    answers = list(eu_to_us.stream(raws))
    assert len(answers) == 200
    for raw, answer in zip(raws, answers, strict=True):
        verified = check(answer, trust, raw)  # names this envelope's id and digest: in order
        assert verified.accepted
    # Signed per batch: each receipt carries its inclusion proof under one batch signature.
    signed = [pb.SignedReceipt.FromString(answer) for answer in answers]
    assert all(s.HasField("proof") for s in signed)
    assert len({s.jws for s in signed}) < len(signed) // 10
    assert us.inbox.count() == before + 200
    assert all(us.inbox.envelope_for(message_id_of(raw)) == raw for raw in raws)


def test_stream_mixes_acceptances_rejections_and_duplicates_in_order(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    eu_signer = pki.identity("EU")
    good = [envelope(eu_signer) for _ in range(30)]
    bad = tamper(envelope(eu_signer), payload=b"changed")
    wrong = envelope(eu_signer, receiver=CN)
    raws = [*good[:10], bad, good[0], *good[10:20], wrong, *good[20:], good[5]]
    before = us.inbox.count()
    exchange = PartnerExchange(eu_to_us, partner=US, trust=trust)
    verified = list(exchange.deliver_stream(raws))
    codes = [v.receipt.error_code for v in verified]
    assert codes[10] == "ENV_PAYLOAD_DIGEST_MISMATCH"
    assert codes[22] == "ENV_WRONG_RECEIVER"
    assert [i for i, c in enumerate(codes) if c] == [10, 22]
    assert verified[11].raw == verified[0].raw  # the resend gets the first receipt again
    assert verified[-1].raw == verified[5].raw
    assert us.inbox.count() == before + 30


def test_stream_from_a_tls_peer_that_is_not_the_sender(
    pki: Pki, trust: TrustStore, eu: Gateway
) -> None:
    cn_signed = [envelope(pki.identity("CN"), receiver=EU) for _ in range(5)]
    before = eu.inbox.count()
    with GrpcPartnerClient(eu.server.target, tls=client_tls(pki, "US", "EU")) as us_client:
        answers = list(us_client.stream(cn_signed))
    codes = {
        check(a, trust, r, issuer=EU).receipt.error_code
        for a, r in zip(answers, cn_signed, strict=True)
    }
    assert codes == {"TRUST_WRONG_PARTNER"}
    assert eu.inbox.count() == before


def test_concurrent_calls_from_different_tls_peers_are_judged_each_by_its_own_peer(
    pki: Pki, trust: TrustStore, eu: Gateway
) -> None:
    """Calls are checked in shared batches; the TLS peer of each must still be its own."""
    cn_signed = [envelope(pki.identity("CN"), receiver=EU) for _ in range(24)]
    before = eu.inbox.count()
    with (
        GrpcPartnerClient(eu.server.target, tls=client_tls(pki, "CN", "EU")) as cn_client,
        GrpcPartnerClient(eu.server.target, tls=client_tls(pki, "US", "EU")) as us_client,
        ThreadPoolExecutor(16) as pool,
    ):
        # Even-numbered envelopes come from CN itself, odd ones are replayed by US.
        clients = [cn_client if i % 2 == 0 else us_client for i in range(len(cn_signed))]
        answers = list(pool.map(lambda c, raw: c.submit(raw), clients, cn_signed))
    for index, (raw, answer) in enumerate(zip(cn_signed, answers, strict=True)):
        verified = check(answer, trust, raw, issuer=EU)
        if index % 2 == 0:
            assert verified.accepted, verified.receipt.error_code
        else:
            assert verified.receipt.error_code == "TRUST_WRONG_PARTNER"
    assert eu.inbox.count() == before + 12


def test_a_stream_cancelled_half_way_leaves_the_server_serving(
    pki: Pki, trust: TrustStore, us: Gateway, eu_to_us: GrpcPartnerClient
) -> None:
    eu_signer = pki.identity("EU")
    raws = [envelope(eu_signer) for _ in range(100)]
    answers = eu_to_us.stream(raws)
    first = [next(answers) for _ in range(3)]
    answers.close()  # the client gives up: the call is cancelled
    assert all(check(a, trust, r).accepted for a, r in zip(first, raws, strict=False))
    # What the server stored before the cancellation is answered as a duplicate on resend.
    again = list(eu_to_us.stream(raws))
    assert len(again) == 100 and again[:3] == first
    assert all(check(a, trust, r).accepted for a, r in zip(again, raws, strict=True))


def test_stream_batches_on_the_client_and_answers_in_order_across_batches(
    pki: Pki, trust: TrustStore, us: Gateway
) -> None:
    """Batches of 7 envelopes (or fewer bytes): 20 envelopes make several batches, and the
    receipts still come back one per envelope, in order, each signed on its own."""
    raws = [envelope(pki.identity("EU")) for _ in range(20)]
    before = us.inbox.count()
    tls = client_tls(pki, "EU", "US")
    for batch, batch_bytes in ((7, 1 << 20), (64, 2 * len(raws[0]) + 1)):
        with GrpcPartnerClient(
            us.server.target, tls=tls, stream_batch=batch, stream_batch_bytes=batch_bytes
        ) as client:
            answers = list(client.stream(raws))  # the second pass: duplicates, same receipts
        assert len(answers) == 20
        for raw, answer in zip(raws, answers, strict=True):
            assert check(answer, trust, raw).accepted
    assert us.inbox.count() == before + 20


def _stream_call(pki: Pki, gateway: Gateway, batches: list[bytes]) -> list[bytes]:
    """Raw Stream call: the given EnvelopeBatch messages out, the ReceiptBatch messages back."""
    tls = client_tls(pki, "EU", "US")
    with grpc.secure_channel(gateway.server.target, channel_credentials(tls)) as channel:
        stream = channel.stream_stream(f"/{SERVICE_NAME}/Stream")
        return list(stream(iter(batches), timeout=10))


def test_stream_batch_over_the_count_limit_ends_the_call_and_stores_nothing_of_it(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    server = GrpcGatewayServer(node, tls=tls_identity(pki, "US"), max_stream_batch=4)
    server.start()
    gateway = Gateway(node, server)
    try:
        raws = [envelope(pki.identity("EU")) for _ in range(9)]
        first = pb.EnvelopeBatch(envelopes=raws[:4]).SerializeToString()
        over = pb.EnvelopeBatch(envelopes=raws[4:]).SerializeToString()
        with pytest.raises(grpc.RpcError) as caught:
            _stream_call(pki, gateway, [first, over])
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ENV_OVERSIZE" in caught.value.details()
        assert "5 envelopes" in caught.value.details()
        assert all(node.inbox.envelope_for(message_id_of(raw)) is None for raw in raws[4:])
        # Through the client: the same refusal is a transport error naming the status.
        with (
            GrpcPartnerClient(server.target, tls=client_tls(pki, "EU", "US"), stream_batch=5) as c,
            pytest.raises(TransportError) as refused,
        ):
            list(c.stream([envelope(pki.identity("EU")) for _ in range(5)]))
        assert refused.value.code == "TRN_PROTOCOL"
        assert "RESOURCE_EXHAUSTED" in str(refused.value)
    finally:
        stop_gateway(gateway)


def test_stream_batch_over_the_bytes_limit_ends_the_call(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    raws = [envelope(pki.identity("EU")) for _ in range(3)]
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    limit = 2 * len(raws[0]) + 10
    server = GrpcGatewayServer(node, tls=tls_identity(pki, "US"), max_stream_batch_bytes=limit)
    server.start()
    gateway = Gateway(node, server)
    try:
        fits = pb.EnvelopeBatch(envelopes=raws[:2]).SerializeToString()
        answers = _stream_call(pki, gateway, [fits])
        receipts = list(pb.ReceiptBatch.FromString(answers[0]).receipts)
        assert [check(r, trust, raw).accepted for r, raw in zip(receipts, raws, strict=False)] == [
            True,
            True,
        ]
        with pytest.raises(grpc.RpcError) as caught:
            _stream_call(pki, gateway, [pb.EnvelopeBatch(envelopes=raws).SerializeToString()])
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ENV_OVERSIZE" in caught.value.details()
        assert node.inbox.envelope_for(message_id_of(raws[2])) is None
    finally:
        stop_gateway(gateway)


def test_stream_message_that_is_not_an_envelope_batch_is_refused(pki: Pki, us: Gateway) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _stream_call(pki, us, [b"\xff\xff not a batch"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TRN_PROTOCOL" in caught.value.details()


def test_each_envelope_of_a_batch_is_judged_on_its_own(
    pki: Pki, trust: TrustStore, us: Gateway
) -> None:
    """A tampered envelope inside a batch gets its own rejection; its neighbours are stored."""
    raws = [envelope(pki.identity("EU")) for _ in range(3)]
    raws[1] = tamper(raws[1], payload=b"changed")
    answers = _stream_call(pki, us, [pb.EnvelopeBatch(envelopes=raws).SerializeToString()])
    receipts = list(pb.ReceiptBatch.FromString(answers[0]).receipts)
    codes = [check(r, trust, raw).receipt.error_code for r, raw in zip(receipts, raws, strict=True)]
    assert codes == ["", "ENV_PAYLOAD_DIGEST_MISMATCH", ""]
    assert us.inbox.envelope_for(message_id_of(raws[1])) is None


# --- operations: health, reflection, restart, configuration ---------------------------------------
def test_health_check_reports_serving(pki: Pki, us: Gateway) -> None:
    tls = client_tls(pki, "EU", "US")
    with grpc.secure_channel(us.server.target, channel_credentials(tls)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_refuses_a_client_the_trust_store_refuses(pki: Pki, us: Gateway) -> None:
    """A revoked certificate passes the TLS handshake (no CRLs there), then learns nothing."""
    tls = client_tls(pki, "EU", "US", stem="revoked")
    with grpc.secure_channel(us.server.target, channel_credentials(tls)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "TRUST_REVOKED" in (caught.value.details() or "")


def test_reflection_lists_the_exchange_service(pki: Pki, us: Gateway) -> None:
    tls = client_tls(pki, "EU", "US")
    with grpc.secure_channel(us.server.target, channel_credentials(tls)) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert SERVICE_NAME in services
        assert "grpc.health.v1.Health" in services
        descriptor = database.FindFileContainingSymbol(SERVICE_NAME)
        assert descriptor.package == "gnc.v1"
        assert {m.name for m in descriptor.service[0].method} == {"Submit", "Stream"}


def test_restart_keeps_receipted_messages_and_answers_resends_as_duplicates(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    db = tmp_path / "inbox.db"
    raws = [envelope(pki.identity("EU")) for _ in range(3)]
    first = start_gateway(pki, trust, "US", db)
    with GrpcPartnerClient(first.server.target, tls=client_tls(pki, "EU", "US")) as client:
        receipts = [client.submit(raw) for raw in raws]
    stop_gateway(first)

    second = start_gateway(pki, trust, "US", db)
    try:
        assert second.inbox.count() == 3
        with GrpcPartnerClient(second.server.target, tls=client_tls(pki, "EU", "US")) as client:
            again = list(client.stream(raws))
        assert again == receipts
        assert second.node.stats.duplicates == 3 and second.node.stats.accepted == 0
        assert second.inbox.count() == 3
    finally:
        stop_gateway(second)


def test_health_is_not_serving_when_the_store_is_gone(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    gateway = start_gateway(pki, trust, "US", tmp_path / "inbox.db")
    try:
        gateway.inbox.close()  # the writer stops: nothing could be stored any more
        tls = client_tls(pki, "EU", "US")
        with grpc.secure_channel(gateway.server.target, channel_credentials(tls)) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10
            )
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        gateway.server.stop(grace=None)


def test_plaintext_only_when_asked_for_and_only_on_loopback(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    try:
        with pytest.raises(ConfigError):
            GrpcGatewayServer(node)  # no TLS identity and no explicit plaintext
        with pytest.raises(ConfigError):
            GrpcGatewayServer(node, address="0.0.0.0:0", insecure_loopback=True)
        with pytest.raises(ConfigError):
            GrpcPartnerClient("10.0.0.1:443", insecure=True)
        with (
            GrpcGatewayServer(node, insecure_loopback=True) as server,
            GrpcPartnerClient(server.target, insecure=True) as client,
        ):
            raw = envelope(pki.identity("EU"))
            assert check(client.submit(raw), trust, raw).accepted
    finally:
        node.inbox.close()
