"""Receipts signed per batch: one JWS over the RFC 9162 Merkle tree of a batch's receipts, each
receipt carrying the signed tree head and its inclusion proof, so each verifies on its own.

Every alteration a sender (or anyone in between) could try must fail `open_receipt`: the receipt
bytes, the audit path, the leaf index, the tree head (root, size, issuer), a receipt moved into
another batch's proof, and mixing the two signature forms.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import pytest

from gateway import testpki
from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope import receipts as rc
from gateway.envelope.jws import sign_detached
from gateway.envelope.keys import SigningIdentity
from gateway.errors import SIG_DIGEST, SIG_MALFORMED, GatewayError, SignatureError
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.testpki import init_test_pki

EU, US = Administration.EU, Administration.US
Pki = testpki.TestPki  # not imported by name: pytest would try to collect a Test* class


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return init_test_pki(tmp_path_factory.mktemp("receipt-batch-pki"), ("EU", "US"))


@pytest.fixture(scope="module")
def us(pki: Pki) -> SigningIdentity:
    return pki.identity("US")


def receipt(index: int, issuer: Administration = US) -> rc.Receipt:
    return rc.Receipt(
        receipt_id=str(uuid.uuid4()),
        message_id=str(uuid.uuid4()),
        received_sha256=hashlib.sha256(b"envelope %d" % index).digest(),
        payload_sha256=hashlib.sha256(b"payload %d" % index).digest(),
        outcome=rc.Outcome.ACCEPTED,
        issuer=issuer,
        recipient=EU,
        issued_at=utc_now(),
    )


def batch(identity: SigningIdentity, size: int) -> tuple[list[rc.Receipt], list[bytes]]:
    receipts = [receipt(i) for i in range(size)]
    return receipts, rc.seal_receipts(receipts, identity)


def signed(raw: bytes) -> pb.SignedReceipt:
    return pb.SignedReceipt.FromString(raw)


def code_of(raw: bytes) -> str:
    with pytest.raises(GatewayError) as caught:
        rc.open_receipt(raw)
    return caught.value.code


# --- the tree itself ---------------------------------------------------------------------------
def reference_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 Merkle Tree Hash, written out as the RFC states it."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64, 100])
def test_root_and_every_audit_path_follow_rfc_9162(size: int) -> None:
    leaves = [rc.leaf_hash(b"receipt %d" % i) for i in range(size)]
    root, paths = rc.merkle_tree(leaves)
    assert root == reference_root(leaves)
    for index, path in enumerate(paths):
        assert rc.root_from_path(leaves[index], index, size, path) == root
        if size > 1:  # the same path proves nothing for another index (the size is signed)
            assert rc.root_from_path(leaves[index], (index + 1) % size, size, path) != root


def test_leaf_and_interior_hashes_are_domain_separated() -> None:
    assert rc.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    leaves = [rc.leaf_hash(b"a"), rc.leaf_hash(b"b")]
    root, _ = rc.merkle_tree(leaves)
    assert root == hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    assert root != rc.leaf_hash(leaves[0] + leaves[1])


def test_index_outside_the_tree_proves_nothing() -> None:
    leaves = [rc.leaf_hash(b"%d" % i) for i in range(5)]
    _, paths = rc.merkle_tree(leaves)
    assert rc.root_from_path(leaves[0], 5, 5, paths[0]) is None
    assert rc.root_from_path(leaves[0], -1, 5, paths[0]) is None
    assert rc.root_from_path(leaves[0], 0, 5, [*paths[0], paths[0][0]]) is None  # too long
    assert rc.root_from_path(leaves[0], 0, 5, paths[0][:-1]) is None  # too short


# --- sealing and opening ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [2, 3, 64, 65])
def test_each_receipt_of_a_batch_verifies_on_its_own(us: SigningIdentity, size: int) -> None:
    receipts, sealed = batch(us, size)
    jws = {signed(raw).jws for raw in sealed}
    assert len(jws) == 1  # one signature for the whole batch
    for index, (original, raw) in enumerate(zip(receipts, sealed, strict=True)):
        message = signed(raw)
        assert message.HasField("proof")
        assert message.proof.leaf_index == index
        opened = rc.open_receipt(raw)
        assert opened.receipt == original
        assert opened.signer_chain[0] == us.chain[0]


def test_a_batch_of_one_is_signed_alone(us: SigningIdentity) -> None:
    (raw,) = rc.seal_receipts([receipt(0)], us)
    assert not signed(raw).HasField("proof")
    assert rc.open_receipt(raw).receipt.issuer == US


def test_a_batch_only_holds_receipts_the_signer_issues(us: SigningIdentity) -> None:
    with pytest.raises(ValueError):
        rc.seal_receipts([receipt(0), receipt(1, issuer=EU)], us)


def test_a_receipt_signed_alone_still_verifies(us: SigningIdentity) -> None:
    raw = rc.seal_receipt(receipt(0), us)
    assert not signed(raw).HasField("proof")
    assert rc.open_receipt(raw).receipt.recipient == EU


# --- tampering ----------------------------------------------------------------------------------
def test_altered_receipt_fails(us: SigningIdentity) -> None:
    _, sealed = batch(us, 9)
    for index in (0, 4, 8):
        message = signed(sealed[index])
        body = pb.Receipt.FromString(message.receipt)
        body.outcome = pb.REJECTED
        body.error_code = "ENV_PAYLOAD_DIGEST_MISMATCH"
        message.receipt = body.SerializeToString(deterministic=True)
        assert code_of(message.SerializeToString()) == SIG_DIGEST
        message = signed(sealed[index])
        message.receipt = message.receipt + b"\x00"  # one byte more: another leaf
        assert code_of(message.SerializeToString()) == SIG_DIGEST


def test_altered_audit_path_fails(us: SigningIdentity) -> None:
    _, sealed = batch(us, 9)
    for index in (0, 5, 8):
        for step in range(len(signed(sealed[index]).proof.audit_path)):
            message = signed(sealed[index])
            hashes = list(message.proof.audit_path)
            hashes[step] = bytes([hashes[step][0] ^ 1]) + hashes[step][1:]
            del message.proof.audit_path[:]
            message.proof.audit_path.extend(hashes)
            assert code_of(message.SerializeToString()) == SIG_DIGEST
        message = signed(sealed[index])
        message.proof.audit_path.append(b"\x00" * 32)  # too long for the signed tree size
        assert code_of(message.SerializeToString()) == SIG_MALFORMED
        message = signed(sealed[index])
        del message.proof.audit_path[-1]  # too short
        assert code_of(message.SerializeToString()) == SIG_MALFORMED
        message = signed(sealed[index])
        message.proof.audit_path[0] = message.proof.audit_path[0][:31]  # not a SHA-256
        assert code_of(message.SerializeToString()) == SIG_MALFORMED


def test_altered_leaf_index_fails(us: SigningIdentity) -> None:
    _, sealed = batch(us, 9)
    for index, other in ((0, 1), (3, 2), (8, 0), (8, 9), (0, 1000)):
        message = signed(sealed[index])
        message.proof.leaf_index = other
        assert code_of(message.SerializeToString()) in {SIG_DIGEST, SIG_MALFORMED}


def test_altered_tree_head_fails_the_signature(us: SigningIdentity) -> None:
    _, sealed = batch(us, 9)
    head = pb.ReceiptTreeHead.FromString(signed(sealed[2]).proof.tree_head)
    changes = [
        pb.ReceiptTreeHead(tree_size=10, root_sha256=head.root_sha256, issuer=head.issuer),
        pb.ReceiptTreeHead(tree_size=9, root_sha256=b"\x00" * 32, issuer=head.issuer),
        pb.ReceiptTreeHead(tree_size=9, root_sha256=head.root_sha256, issuer="EU"),
    ]
    for changed in changes:
        message = signed(sealed[2])
        message.proof.tree_head = changed.SerializeToString(deterministic=True)
        with pytest.raises(SignatureError) as caught:
            rc.open_receipt(message.SerializeToString())
        assert caught.value.code == "SIG_INVALID"


def test_receipt_moved_to_another_batch_fails(us: SigningIdentity) -> None:
    _, first = batch(us, 8)
    _, second = batch(us, 8)
    for index in range(8):
        moved = signed(first[index])
        other = signed(second[index])
        moved.jws = other.jws
        moved.proof.tree_head = other.proof.tree_head  # the other batch's signed head
        assert code_of(moved.SerializeToString()) == SIG_DIGEST
        moved.proof.CopyFrom(other.proof)  # ... and its path as well
        assert code_of(moved.SerializeToString()) == SIG_DIGEST


def test_proofs_swapped_within_a_batch_fail(us: SigningIdentity) -> None:
    _, sealed = batch(us, 6)
    first, second = signed(sealed[1]), signed(sealed[4])
    first.proof.CopyFrom(second.proof)
    assert code_of(first.SerializeToString()) == SIG_DIGEST


def test_the_two_signature_forms_cannot_be_mixed(us: SigningIdentity) -> None:
    _, sealed = batch(us, 4)
    stripped = signed(sealed[0])
    stripped.ClearField("proof")  # the batch JWS presented as a receipt's own signature
    assert code_of(stripped.SerializeToString()) in {SIG_MALFORMED, "SIG_INVALID"}
    alone = signed(rc.seal_receipt(receipt(0), us))
    grafted = signed(sealed[0])
    grafted.jws = alone.jws  # a receipt's own JWS presented as a batch signature
    assert code_of(grafted.SerializeToString()) in {SIG_MALFORMED, "SIG_INVALID"}


def test_tree_head_naming_another_issuer_than_the_receipt_is_refused(us: SigningIdentity) -> None:
    """A batch signer cannot vouch for receipts that name another administration as issuer."""
    receipts = [receipt(0, issuer=EU), receipt(1, issuer=EU)]
    bodies = [rc.receipt_to_proto(r).SerializeToString(deterministic=True) for r in receipts]
    root, paths = rc.merkle_tree([rc.leaf_hash(body) for body in bodies])
    head = pb.ReceiptTreeHead(tree_size=2, root_sha256=root, issuer="US").SerializeToString()
    jws = sign_detached(head, us, rc.RECEIPT_BATCH_JWS_TYPE)
    raw = pb.SignedReceipt(
        receipt=bodies[0],
        jws=jws,
        proof=pb.ReceiptProof(tree_head=head, leaf_index=0, audit_path=paths[0]),
    ).SerializeToString()
    assert code_of(raw) == SIG_MALFORMED


def test_receipt_ids_are_random_uuid4_in_canonical_form() -> None:
    ids = rc.receipt_ids(500)
    assert len(set(ids)) == 500
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert rc.receipt_ids(0) == []
