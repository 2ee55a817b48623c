"""A message received again in other envelope bytes, and a message id another administration
already used, on SQLite and on PostgreSQL.

The same message (sender, id, payload) may reach a node in other bytes: sent again over the
other binding, or an equivalent copy (an ECDSA signature rewritten as (r, n - s) still
verifies). It is stored once, and each copy is answered with a receipt its sender can check
against what it sent. An id another administration already used is refused without handing
out that administration's receipt."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from store_engines import ENGINES, fresh_database

from gateway import testpki
from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.opened import Binding, new_header
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import EnvelopeHeader
from gateway.node import GatewayNode, open_receipt, seal_envelope, verify_partner_receipt
from gateway.store.inbox import SqliteInbox
from gateway.store.message_log import LogOutcome, SqliteMessageLog
from gateway.trust.store import PartnerTrust, TrustStore

EU, US, CN = Administration.EU, Administration.US, Administration.CN
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PAYLOAD = b"<Ping>resend</Ping>"


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("resend-pki"), ("EU", "US", "CN"))


@pytest.fixture(params=ENGINES)
def node(
    module_pki: testpki.TestPki, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[GatewayNode]:
    """US's receiving node, trusting EU and CN."""
    trust = TrustStore(
        PartnerTrust(a, (module_pki.ca(a.value),), (module_pki.crl(a.value),)) for a in (EU, CN)
    )
    with fresh_database(request.param, tmp_path) as database:
        inbox = SqliteInbox(database=database)
        yield GatewayNode(
            module_pki.identity("US"), trust, inbox, message_log=SqliteMessageLog(database)
        )


def _header(sender: Administration, message_id: str | None = None) -> EnvelopeHeader:
    header = new_header(
        payload=PAYLOAD,
        utility_block=UtilityBlock.UB1,
        message_type="PING",
        sender=sender,
        receiver=US,
        payload_content_type="application/xml",
    )
    return header if message_id is None else replace(header, message_id=message_id)


def _checked_by_sender(
    pki: testpki.TestPki, binding: Binding, answer: bytes, sent: bytes, message_id: str
) -> bool:
    """What the sender checks (signature, signer trusted for US, id, digest of what it sent);
    the receipt's duplicate mark."""
    trust = TrustStore([PartnerTrust(US, (pki.ca("US"),), (pki.crl("US"),))])
    verified = verify_partner_receipt(
        binding, answer, partner=US, trust=trust, message_id=message_id, sent=sent
    )
    assert verified.receipt.accepted
    return verified.receipt.duplicate


def _high_low_s(raw: bytes) -> bytes:
    """The same protobuf envelope with its ES256 signature (r, s) rewritten as (r, n - s)."""
    envelope = pb.SignedEnvelope.FromString(raw)
    protected, _, signature = envelope.jws.rpartition(".")
    sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    r, s = sig[:32], int.from_bytes(sig[32:], "big")
    other = r + (P256_ORDER - s).to_bytes(32, "big")
    envelope.jws = f"{protected}.{base64.urlsafe_b64encode(other).rstrip(b'=').decode()}"
    return envelope.SerializeToString()


def test_the_same_bytes_again_get_the_original_receipt(
    module_pki: testpki.TestPki, node: GatewayNode
) -> None:
    raw = seal_envelope(Binding.PROTOBUF, _header(EU), PAYLOAD, module_pki.identity("EU"))
    first = node.receive(raw, Binding.PROTOBUF, EU)
    assert node.receive(raw, Binding.PROTOBUF, EU) == first
    assert node.inbox.count() == 1


def test_resent_over_the_other_binding_is_stored_once_and_answered_in_that_binding(
    module_pki: testpki.TestPki, node: GatewayNode
) -> None:
    header = _header(EU)
    identity = module_pki.identity("EU")
    as_protobuf = seal_envelope(Binding.PROTOBUF, header, PAYLOAD, identity)
    as_xml = seal_envelope(Binding.XML, header, PAYLOAD, identity)

    first = node.receive(as_protobuf, Binding.PROTOBUF, EU)
    again = node.receive(as_xml, Binding.XML, EU)

    assert not _checked_by_sender(
        module_pki, Binding.PROTOBUF, first, as_protobuf, header.message_id
    )
    assert _checked_by_sender(module_pki, Binding.XML, again, as_xml, header.message_id)
    assert node.inbox.count() == 1
    assert node.inbox.envelope_for(header.message_id) == as_protobuf  # the first stays stored
    assert node.message_log is not None
    logged = [(e.outcome, e.receipt) for e in node.message_log.entries()]
    assert logged == [(LogOutcome.ACCEPTED, first), (LogOutcome.DUPLICATE, again)]


def test_an_equivalent_copy_first_does_not_spoil_the_senders_receipt(
    module_pki: testpki.TestPki, node: GatewayNode
) -> None:
    """A copy with the other valid ECDSA s arrives first (a man in the middle inside the TLS
    of another path, or a retry through a re-signing proxy); the genuine bytes still get a
    receipt naming their own digest, so the sender does not refuse it as a mismatch."""
    header = _header(EU)
    genuine = seal_envelope(Binding.PROTOBUF, header, PAYLOAD, module_pki.identity("EU"))
    copy = _high_low_s(genuine)
    assert copy != genuine

    node.receive(copy, Binding.PROTOBUF, EU)
    answer = node.receive(genuine, Binding.PROTOBUF, EU)

    assert _checked_by_sender(module_pki, Binding.PROTOBUF, answer, genuine, header.message_id)
    assert node.inbox.count() == 1


def test_an_id_another_administration_used_is_a_conflict_and_discloses_nothing(
    module_pki: testpki.TestPki, node: GatewayNode
) -> None:
    eu_header = _header(EU)
    eu_raw = seal_envelope(Binding.PROTOBUF, eu_header, PAYLOAD, module_pki.identity("EU"))
    eu_receipt = node.receive(eu_raw, Binding.PROTOBUF, EU)

    cn_raw = seal_envelope(
        Binding.PROTOBUF, _header(CN, eu_header.message_id), PAYLOAD, module_pki.identity("CN")
    )
    answer = node.receive(cn_raw, Binding.PROTOBUF, CN)

    assert answer != eu_receipt
    receipt = open_receipt(Binding.PROTOBUF, answer).receipt
    assert not receipt.accepted and receipt.error_code == "DLV_DUPLICATE_CONFLICT"
    assert "another administration" in receipt.error_message
    assert receipt.recipient is CN
    assert node.inbox.count() == 1
    assert node.inbox.envelope_for(eu_header.message_id) == eu_raw
