"""Signed receipts: non-repudiation of receipt, and the carrier of rejection codes.

An accepted message's receipt names its id, the SHA-256 of the exact envelope bytes received and
of the verified payload, and is signed by the receiving administration. A rejection carries a
stable error code (docs/errors.md) and is signed too, so a sender can prove what it was told.
"""

from __future__ import annotations

import uuid
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
    DeliveryError,
    EnvelopeError,
    GatewayError,
    TransportError,
    registry,
)
from gateway.model.codes import Administration
from gateway.model.header import parse_administration, utc_now

RECEIPT_JWS_TYPE = "gnc-receipt+jws"


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


def accepted_receipt(
    opened: OpenedEnvelope, issuer: Administration, *, duplicate: bool = False
) -> Receipt:
    return Receipt(
        receipt_id=str(uuid.uuid4()),
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


@dataclass(frozen=True)
class OpenedReceipt:
    receipt: Receipt
    signer_chain: tuple[x509.Certificate, ...]


def open_receipt(raw: bytes) -> OpenedReceipt:
    """Verify a SignedReceipt's JWS over its exact bytes; trust in the signer is separate."""
    signed = pb.SignedReceipt()
    try:
        signed.ParseFromString(raw)
    except DecodeError as exc:
        raise TransportError(f"answer is not a SignedReceipt: {exc}", code="TRN_PROTOCOL") from None
    verified = verify_detached(signed.jws, signed.receipt, RECEIPT_JWS_TYPE)
    message = pb.Receipt()
    try:
        message.ParseFromString(signed.receipt)
    except DecodeError as exc:
        raise TransportError(f"receipt cannot be decoded: {exc}", code="TRN_PROTOCOL") from None
    return OpenedReceipt(receipt_from_proto(message), verified.chain)


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
        raise DeliveryError(f"receipt carries unknown error code {receipt.error_code!r}")
