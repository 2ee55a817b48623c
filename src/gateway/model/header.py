"""The envelope header: one model, rendered by the protobuf and the XML binding alike."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.errors import HEADER_INVALID, UNKNOWN_ADMINISTRATION, EnvelopeError
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock

MESSAGE_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
SCHEMA_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){0,3}$")
# RFC 6838 type/subtype, parameters allowed (e.g. "application/xml; charset=utf-8").
CONTENT_TYPE_RE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
    r"(; ?[a-z0-9_.-]+=[A-Za-z0-9_.-]+)*$"
)


# The canonical text form of a UUID (what str(uuid.UUID(...)) gives): checked by one match.
_CANONICAL_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _invalid(field_name: str, why: str) -> EnvelopeError:
    return EnvelopeError(why, code=HEADER_INVALID, location=f"header.{field_name}")


def parse_uuid(value: str, field_name: str) -> str:
    """A UUID in its canonical lower-case form; anything else is refused, not normalised."""
    if isinstance(value, str) and _CANONICAL_UUID_RE.fullmatch(value):
        return value  # exactly the strings that the check below lets through
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise _invalid(field_name, f"{value!r} is not a UUID") from None
    if str(parsed) != value:
        raise _invalid(field_name, f"{value!r} is not in canonical lower-case UUID form")
    return value


def parse_administration(value: str, field_name: str) -> Administration:
    try:
        return Administration(value)
    except ValueError:
        raise EnvelopeError(
            f"{value!r} is not a known administration code",
            code=UNKNOWN_ADMINISTRATION,
            location=f"header.{field_name}",
        ) from None


def parse_utility_block(value: str) -> UtilityBlock:
    try:
        return UtilityBlock(value)
    except ValueError:
        raise _invalid("utility_block", f"{value!r} is not UB1, UB2 or UB3") from None


def parse_handling_label(value: str) -> HandlingLabel:
    try:
        return HandlingLabel(value)
    except ValueError:
        allowed = ", ".join(label.value for label in HandlingLabel)
        raise _invalid("handling_label", f"{value!r} is not one of {allowed}") from None


def utc_now() -> datetime:
    """Now, at the microsecond precision both bindings carry losslessly."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class EnvelopeHeader:
    message_id: str
    correlation_id: str
    utility_block: UtilityBlock
    message_type: str
    sender: Administration
    receiver: Administration
    created_at: datetime
    schema_version: str
    payload_content_type: str
    payload_sha256: bytes
    handling_label: HandlingLabel = field(default=HandlingLabel.LIMITED)

    def __post_init__(self) -> None:
        parse_uuid(self.message_id, "message_id")
        parse_uuid(self.correlation_id, "correlation_id")
        if not isinstance(self.utility_block, UtilityBlock):
            raise _invalid("utility_block", "must be a UtilityBlock")
        if not isinstance(self.sender, Administration):
            raise _invalid("sender", "must be an Administration")
        if not isinstance(self.receiver, Administration):
            raise _invalid("receiver", "must be an Administration")
        if self.sender == self.receiver:
            raise _invalid("receiver", "sender and receiver must differ")
        if not MESSAGE_TYPE_RE.fullmatch(self.message_type):
            raise _invalid(
                "message_type", f"{self.message_type!r} breaks {MESSAGE_TYPE_RE.pattern}"
            )
        if not SCHEMA_VERSION_RE.fullmatch(self.schema_version):
            raise _invalid(
                "schema_version", f"{self.schema_version!r} breaks {SCHEMA_VERSION_RE.pattern}"
            )
        if not CONTENT_TYPE_RE.fullmatch(self.payload_content_type):
            raise _invalid(
                "payload_content_type", f"{self.payload_content_type!r} is not a media type"
            )
        if not isinstance(self.payload_sha256, bytes) or len(self.payload_sha256) != 32:
            raise _invalid("payload_sha256", "must be 32 bytes (SHA-256)")
        if not isinstance(self.handling_label, HandlingLabel):
            raise _invalid("handling_label", "must be a HandlingLabel")
        created = self.created_at
        if created.tzinfo is None or created.utcoffset() != UTC.utcoffset(None):
            raise _invalid("created_at", "must be timezone-aware UTC")
        if created.tzinfo is not UTC:
            object.__setattr__(self, "created_at", created.astimezone(UTC))


def new_message_id() -> str:
    return str(uuid.uuid4())
