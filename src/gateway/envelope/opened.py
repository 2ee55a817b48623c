"""What a binding hands back after checking a signature: the facts the signature covers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509

from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.header import EnvelopeHeader, new_message_id, utc_now


class Binding(StrEnum):
    PROTOBUF = "protobuf"
    XML = "xml"


@dataclass(frozen=True)
class OpenedEnvelope:
    """An envelope whose signature verified; trust in the signer is not yet decided."""

    binding: Binding
    header: EnvelopeHeader
    payload: bytes
    signer_chain: tuple[x509.Certificate, ...]  # leaf first, as carried by the signature
    received_sha256: bytes  # SHA-256 of the exact envelope bytes received


def new_header(
    *,
    payload: bytes,
    utility_block: UtilityBlock,
    message_type: str,
    sender: Administration,
    receiver: Administration,
    payload_content_type: str,
    schema_version: str = "1.0",
    handling_label: HandlingLabel = HandlingLabel.LIMITED,
    message_id: str | None = None,
    correlation_id: str | None = None,
    created_at: datetime | None = None,
) -> EnvelopeHeader:
    """A header for `payload`, with its digest, a fresh id and the current time by default."""
    message_id = message_id or new_message_id()
    return EnvelopeHeader(
        message_id=message_id,
        correlation_id=correlation_id or message_id,
        utility_block=utility_block,
        message_type=message_type,
        sender=sender,
        receiver=receiver,
        created_at=created_at or utc_now(),
        schema_version=schema_version,
        payload_content_type=payload_content_type,
        payload_sha256=hashlib.sha256(payload).digest(),
        handling_label=handling_label,
    )
