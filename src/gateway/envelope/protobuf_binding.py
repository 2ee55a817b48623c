"""The protobuf binding: header bytes and payload bytes, one detached JWS over both.

The JWS payload is the serialised header exactly as it travels; the header holds the payload's
SHA-256, so the one signature covers the header and exactly the payload bytes. Opening never
re-serialises: it verifies the bytes received, then decodes them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from google.protobuf.message import DecodeError

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.jws import sign_detached, verify_detached
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, OpenedEnvelope
from gateway.errors import (
    HEADER_INVALID,
    OVERSIZE,
    PAYLOAD_DIGEST_MISMATCH,
    EnvelopeError,
)
from gateway.model.codes import UtilityBlock
from gateway.model.header import (
    EnvelopeHeader,
    parse_administration,
    parse_handling_label,
    parse_utility_block,
)

ENVELOPE_JWS_TYPE = "gnc-envelope+jws"
DEFAULT_MAX_ENVELOPE_BYTES = 8 * 1024 * 1024

_UB_TO_PB = {
    UtilityBlock.UB1: pb.UB1,
    UtilityBlock.UB2: pb.UB2,
    UtilityBlock.UB3: pb.UB3,
}
_UB_FROM_PB = {v: k for k, v in _UB_TO_PB.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# hashlib releases the GIL for inputs of 2048 bytes or more. For an envelope of a few KB that
# costs more than the hash itself: in a threaded server every release hands the GIL to another
# thread and the hashing thread must queue to get it back (two context switches, measured as
# the largest overhead of the gRPC receive path). Up to _HOLD_GIL_UP_TO bytes are therefore
# hashed in pieces below hashlib's threshold, holding the GIL; larger inputs release it.
_GIL_MIN = 2047
_HOLD_GIL_UP_TO = 256 * 1024


def sha256(data: bytes) -> bytes:
    """SHA-256 of `data` (exactly hashlib's), without a GIL hand-off for small inputs."""
    size = len(data)
    if size <= _GIL_MIN or size > _HOLD_GIL_UP_TO:
        return hashlib.sha256(data).digest()
    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, size, _GIL_MIN):
        digest.update(view[start : start + _GIL_MIN])
    return digest.digest()


def datetime_to_parts(value: datetime) -> tuple[int, int]:
    """Seconds and nanoseconds since the epoch, exact at microsecond precision."""
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return seconds, delta.microseconds * 1000


def datetime_from_parts(seconds: int, nanos: int) -> datetime:
    if nanos % 1000:
        raise EnvelopeError(
            "created_at must have microsecond precision",
            code=HEADER_INVALID,
            location="header.created_at",
        )
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def header_to_proto(header: EnvelopeHeader) -> pb.EnvelopeHeader:
    message = pb.EnvelopeHeader(
        message_id=header.message_id,
        correlation_id=header.correlation_id,
        utility_block=_UB_TO_PB[header.utility_block],
        message_type=header.message_type,
        sender=header.sender.value,
        receiver=header.receiver.value,
        schema_version=header.schema_version,
        payload_content_type=header.payload_content_type,
        payload_sha256=header.payload_sha256,
        handling_label=header.handling_label.value,
    )
    seconds, nanos = datetime_to_parts(header.created_at)
    message.created_at.seconds = seconds
    message.created_at.nanos = nanos
    return message


def header_from_proto(message: pb.EnvelopeHeader) -> EnvelopeHeader:
    if message.utility_block not in _UB_FROM_PB:
        parse_utility_block(str(message.utility_block))
    if not message.HasField("created_at"):
        raise EnvelopeError(
            "created_at is missing", code=HEADER_INVALID, location="header.created_at"
        )
    return EnvelopeHeader(
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        utility_block=_UB_FROM_PB[message.utility_block],
        message_type=message.message_type,
        sender=parse_administration(message.sender, "sender"),
        receiver=parse_administration(message.receiver, "receiver"),
        created_at=datetime_from_parts(message.created_at.seconds, message.created_at.nanos),
        schema_version=message.schema_version,
        payload_content_type=message.payload_content_type,
        payload_sha256=bytes(message.payload_sha256),
        handling_label=parse_handling_label(message.handling_label),
    )


def seal(header: EnvelopeHeader, payload: bytes, identity: SigningIdentity) -> bytes:
    """Sign and serialise: the bytes of a SignedEnvelope ready for the wire."""
    if header.sender != identity.administration:
        raise EnvelopeError(
            f"header sender {header.sender.value} is not the signer's administration "
            f"{identity.administration.value}",
            code=HEADER_INVALID,
            location="header.sender",
        )
    if not hmac.compare_digest(sha256(payload), header.payload_sha256):
        raise EnvelopeError("payload does not match header digest", code=PAYLOAD_DIGEST_MISMATCH)
    header_bytes = header_to_proto(header).SerializeToString(deterministic=True)
    jws = sign_detached(header_bytes, identity, ENVELOPE_JWS_TYPE)
    return pb.SignedEnvelope(header=header_bytes, payload=payload, jws=jws).SerializeToString()


def decode(raw: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> pb.SignedEnvelope:
    if len(raw) > max_bytes:
        raise EnvelopeError(
            f"envelope of {len(raw)} bytes exceeds the limit of {max_bytes}", code=OVERSIZE
        )
    envelope = pb.SignedEnvelope()
    try:
        envelope.ParseFromString(raw)
    except DecodeError as exc:
        raise EnvelopeError(f"not a SignedEnvelope: {exc}") from None
    return envelope


def read_header_unverified(raw: bytes) -> EnvelopeHeader:
    """The header of an envelope we sealed ourselves, decoded without checking the signature.

    For a sender's own bookkeeping only; never for anything received.
    """
    envelope = decode(raw)
    message = pb.EnvelopeHeader()
    try:
        message.ParseFromString(envelope.header)
    except DecodeError as exc:
        raise EnvelopeError(f"header cannot be decoded: {exc}", location="header") from None
    return header_from_proto(message)


def open_envelope(raw: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> OpenedEnvelope:
    """Verify the JWS over the header bytes and the payload digest; then decode the header."""
    envelope = decode(raw, max_bytes=max_bytes)
    header_bytes = envelope.header
    if not header_bytes:
        raise EnvelopeError("the envelope has no header", location="header")
    verified = verify_detached(envelope.jws, header_bytes, ENVELOPE_JWS_TYPE)
    message = pb.EnvelopeHeader()
    try:
        message.ParseFromString(header_bytes)
    except DecodeError as exc:
        raise EnvelopeError(f"signed header cannot be decoded: {exc}", location="header") from None
    header = header_from_proto(message)
    if not hmac.compare_digest(sha256(envelope.payload), header.payload_sha256):
        raise EnvelopeError(
            "payload SHA-256 differs from the signed header",
            code=PAYLOAD_DIGEST_MISMATCH,
            location="payload",
        )
    return OpenedEnvelope(
        binding=Binding.PROTOBUF,
        header=header,
        payload=envelope.payload,
        signer_chain=verified.chain,
        received_sha256=sha256(raw),
    )
