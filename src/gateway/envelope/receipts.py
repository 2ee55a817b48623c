"""Signed receipts: non-repudiation of receipt, and the carrier of rejection codes.

An accepted message's receipt names its id, the SHA-256 of the exact envelope bytes received and
of the verified payload, and is signed by the receiving administration. A rejection carries a
stable error code (docs/errors.md) and is signed too, so a sender can prove what it was told.

A batch of receipts (the answer to a Stream's EnvelopeBatch) may be signed with one signature:
`seal_receipts` builds the RFC 9162 Merkle tree (SHA-256) over the exact bytes of each receipt,
signs the tree head once, and gives every receipt its inclusion proof, so each one still
verifies on its own (`open_receipt` accepts both forms; proto/gnc/v1/envelope.proto has the
rules). One ECDSA signature per batch instead of one per receipt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from google.protobuf.message import DecodeError

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.jws import sign_detached, verify_detached
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import OpenedEnvelope
from gateway.envelope.protobuf_binding import datetime_from_parts, datetime_to_parts, sha256
from gateway.errors import (
    RECEIPT_MISMATCH,
    SIG_DIGEST,
    SIG_MALFORMED,
    DeliveryError,
    EnvelopeError,
    GatewayError,
    SignatureError,
    TransportError,
    registry,
)
from gateway.model.codes import Administration
from gateway.model.header import parse_administration, utc_now

RECEIPT_JWS_TYPE = "gnc-receipt+jws"
RECEIPT_BATCH_JWS_TYPE = "gnc-receipt-batch+jws"  # signs a ReceiptTreeHead, never a receipt
MAX_AUDIT_PATH = 32  # hashes in one inclusion proof: trees of up to 2**32 receipts


class Outcome(StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    message_id: str
    received_sha256: bytes
    payload_sha256: bytes
    outcome: Outcome
    issuer: Administration
    recipient: Administration | None
    issued_at: object  # datetime; kept loose so bindings own their conversions
    error_code: str = ""
    error_message: str = ""
    duplicate: bool = False

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


def receipt_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs in canonical text form, from one read of the OS's
    random source rather than one per id (`uuid.uuid4()`); the same ids as uuid4 would give."""
    pool = os.urandom(16 * count)
    out = []
    for start in range(0, 16 * count, 16):
        raw = bytearray(pool[start : start + 16])
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def accepted_receipt(
    opened: OpenedEnvelope,
    issuer: Administration,
    *,
    duplicate: bool = False,
    receipt_id: str | None = None,
) -> Receipt:
    return Receipt(
        receipt_id=receipt_id or str(uuid.uuid4()),
        message_id=opened.header.message_id,
        received_sha256=opened.received_sha256,
        payload_sha256=opened.header.payload_sha256,
        outcome=Outcome.ACCEPTED,
        issuer=issuer,
        recipient=opened.header.sender,
        issued_at=utc_now(),
        duplicate=duplicate,
    )


def rejection_receipt(
    raw: bytes,
    error: GatewayError,
    issuer: Administration,
    *,
    message_id: str = "",
    recipient: Administration | None = None,
) -> Receipt:
    return Receipt(
        receipt_id=str(uuid.uuid4()),
        message_id=message_id,
        received_sha256=sha256(raw),
        payload_sha256=b"",
        outcome=Outcome.REJECTED,
        issuer=issuer,
        recipient=recipient,
        issued_at=utc_now(),
        error_code=error.code,
        error_message=str(error)[:1000],
    )


def receipt_to_proto(receipt: Receipt) -> pb.Receipt:
    message = pb.Receipt(
        receipt_id=receipt.receipt_id,
        message_id=receipt.message_id,
        received_sha256=receipt.received_sha256,
        payload_sha256=receipt.payload_sha256,
        outcome=pb.ACCEPTED if receipt.accepted else pb.REJECTED,
        error_code=receipt.error_code,
        error_message=receipt.error_message,
        issuer=receipt.issuer.value,
        recipient=receipt.recipient.value if receipt.recipient else "",
        duplicate=receipt.duplicate,
    )
    seconds, nanos = datetime_to_parts(receipt.issued_at)  # type: ignore[arg-type]
    message.issued_at.seconds = seconds
    message.issued_at.nanos = nanos
    return message


def receipt_from_proto(message: pb.Receipt) -> Receipt:
    if message.outcome not in (pb.ACCEPTED, pb.REJECTED):
        raise EnvelopeError("receipt outcome is missing", location="receipt.outcome")
    return Receipt(
        receipt_id=message.receipt_id,
        message_id=message.message_id,
        received_sha256=bytes(message.received_sha256),
        payload_sha256=bytes(message.payload_sha256),
        outcome=Outcome.ACCEPTED if message.outcome == pb.ACCEPTED else Outcome.REJECTED,
        issuer=parse_administration(message.issuer, "issuer"),
        recipient=parse_administration(message.recipient, "recipient")
        if message.recipient
        else None,
        issued_at=datetime_from_parts(message.issued_at.seconds, message.issued_at.nanos),
        error_code=message.error_code,
        error_message=message.error_message,
        duplicate=message.duplicate,
    )


def seal_receipt(receipt: Receipt, identity: SigningIdentity) -> bytes:
    """Serialised SignedReceipt: receipt bytes and a detached JWS over them."""
    body = receipt_to_proto(receipt).SerializeToString(deterministic=True)
    jws = sign_detached(body, identity, RECEIPT_JWS_TYPE)
    return pb.SignedReceipt(receipt=body, jws=jws).SerializeToString()


# --- receipts signed per batch (RFC 9162 Merkle tree, SHA-256) --------------------------------
def leaf_hash(receipt_bytes: bytes) -> bytes:
    """RFC 9162 leaf hash of one receipt: SHA-256(0x00 || the exact serialised Receipt)."""
    return hashlib.sha256(b"\x00" + receipt_bytes).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The Merkle Tree Hash of `leaves` (leaf hashes) and each leaf's audit path (leaf to root).

    RFC 9162 section 2.1.1 and 2.1.3.1: a tree of n > 1 leaves is split at k, the largest power
    of two below n; a leaf's path is its path in its subtree followed by the other subtree's hash.
    """
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    paths: list[list[bytes]] = [[] for _ in leaves]

    def build(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return leaves[lo]
        k = 1 << ((n - 1).bit_length() - 1)
        left = build(lo, lo + k)
        right = build(lo + k, hi)
        for index in range(lo, lo + k):
            paths[index].append(right)
        for index in range(lo + k, hi):
            paths[index].append(left)
        return _node_hash(left, right)

    return build(0, len(leaves)), paths


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2: the root that `path` proves for `leaf` at `index` of a tree of
    `size` leaves, or None when the path cannot belong to such a tree (wrong length or index)."""
    if not 0 <= index < size:
        return None
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = _node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = _node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def seal_receipts(receipts: Sequence[Receipt], identity: SigningIdentity) -> list[bytes]:
    """Serialised SignedReceipts for a batch, with one signature over their Merkle tree.

    Each receipt carries the signed tree head and its own inclusion proof, so it verifies alone
    (`open_receipt`). A batch of one is signed alone (`seal_receipt`): a proof adds nothing.
    """
    if len(receipts) <= 1:
        return [seal_receipt(receipt, identity) for receipt in receipts]
    issuers = {receipt.issuer for receipt in receipts}
    if issuers != {identity.administration}:
        raise ValueError("every receipt of a batch must be issued by the signer")
    bodies = [receipt_to_proto(r).SerializeToString(deterministic=True) for r in receipts]
    root, paths = merkle_tree([leaf_hash(body) for body in bodies])
    head = pb.ReceiptTreeHead(
        tree_size=len(bodies), root_sha256=root, issuer=identity.administration.value
    ).SerializeToString(deterministic=True)
    jws = sign_detached(head, identity, RECEIPT_BATCH_JWS_TYPE)
    return [
        pb.SignedReceipt(
            receipt=body,
            jws=jws,
            proof=pb.ReceiptProof(tree_head=head, leaf_index=index, audit_path=path),
        ).SerializeToString()
        for index, (body, path) in enumerate(zip(bodies, paths, strict=True))
    ]


def _proof_malformed(why: str) -> SignatureError:
    return SignatureError(f"receipt proof: {why}", code=SIG_MALFORMED, location="receipt.proof")


def _check_proof(signed: pb.SignedReceipt) -> tuple[tuple[x509.Certificate, ...], str]:
    """Verify a batch-signed receipt: the JWS over the tree head, then the inclusion proof.

    Returns the signer's chain and the issuer the signed tree head names."""
    proof = signed.proof
    verified = verify_detached(signed.jws, proof.tree_head, RECEIPT_BATCH_JWS_TYPE)
    head = pb.ReceiptTreeHead()
    try:
        head.ParseFromString(proof.tree_head)
    except DecodeError as exc:
        raise _proof_malformed(f"the tree head cannot be decoded ({exc})") from None
    if head.tree_size < 1 or len(head.root_sha256) != 32:
        raise _proof_malformed("the tree head needs a size of at least 1 and a 32-byte root")
    path = list(proof.audit_path)
    if len(path) > MAX_AUDIT_PATH or any(len(step) != 32 for step in path):
        raise _proof_malformed(f"the audit path must be at most {MAX_AUDIT_PATH} 32-byte hashes")
    root = root_from_path(leaf_hash(signed.receipt), proof.leaf_index, head.tree_size, path)
    if root is None:
        raise _proof_malformed(
            f"no audit path of {len(path)} hashes leads from leaf {proof.leaf_index} to the root "
            f"of a tree of {head.tree_size}"
        )
    if not hmac.compare_digest(root, head.root_sha256):
        raise SignatureError(
            "the receipt is not the one its batch signature covers (Merkle root differs)",
            code=SIG_DIGEST,
            location="receipt.proof",
        )
    return verified.chain, head.issuer


@dataclass(frozen=True)
class OpenedReceipt:
    receipt: Receipt
    signer_chain: tuple[x509.Certificate, ...]


def open_receipt(raw: bytes) -> OpenedReceipt:
    """Verify a SignedReceipt, signed alone (JWS over the exact receipt bytes) or with its batch
    (JWS over the tree head, and the receipt's inclusion proof); trust in the signer is separate."""
    signed = pb.SignedReceipt()
    try:
        signed.ParseFromString(raw)
    except DecodeError as exc:
        raise TransportError(f"answer is not a SignedReceipt: {exc}", code="TRN_PROTOCOL") from None
    head_issuer: str | None = None
    if signed.HasField("proof"):
        chain, head_issuer = _check_proof(signed)
    else:
        chain = verify_detached(signed.jws, signed.receipt, RECEIPT_JWS_TYPE).chain
    message = pb.Receipt()
    try:
        message.ParseFromString(signed.receipt)
    except DecodeError as exc:
        raise TransportError(f"receipt cannot be decoded: {exc}", code="TRN_PROTOCOL") from None
    if head_issuer is not None and head_issuer != message.issuer:
        raise _proof_malformed(
            f"the batch was signed by {head_issuer!r} but the receipt names issuer "
            f"{message.issuer!r}"
        )
    return OpenedReceipt(receipt_from_proto(message), chain)


def check_receipt_matches(receipt: Receipt, message_id: str, sent: bytes) -> None:
    """A sender's check: the receipt answers this message and names the digest of what was sent."""
    if receipt.message_id != message_id:
        raise DeliveryError(
            f"receipt names message {receipt.message_id!r}, not {message_id!r}",
            code=RECEIPT_MISMATCH,
        )
    if receipt.received_sha256 != sha256(sent):
        raise DeliveryError(
            "receipt digest differs from the SHA-256 of the envelope sent", code=RECEIPT_MISMATCH
        )
    if receipt.error_code and receipt.error_code not in registry():
        raise DeliveryError(
            f"receipt carries unknown error code {receipt.error_code!r}",
            code=RECEIPT_MISMATCH,
            location="receipt.error_code",
        )
