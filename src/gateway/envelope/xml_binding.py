"""The XML binding: an envelope document in urn:gnc-gateway:envelope:1, signed with XML-DSig.

    <Envelope xmlns="urn:gnc-gateway:envelope:1">
      <Header>MessageId ... HandlingLabel</Header>
      <Payload>base64 of the exact payload bytes</Payload>
      <ds:Signature>enveloped, over the whole document (gateway.envelope.xmldsig)</ds:Signature>
    </Envelope>

Opening runs, in this order: hardened parse (no DTD, limits), strict signature verification,
validation against the XSD shipped in the package, header and payload extraction from the very
tree whose canonical form was digested, and the payload digest check against the signed header.
Receipts use the same scheme with a `Receipt` document. No I/O: the schemas are package data,
read once through importlib.resources and resolved in memory.

Limits: envelopes are refused above `max_bytes` (ENV_OVERSIZE) before parsing; their fixed shape
allows depth 8 and 64 elements; the payload can be at most MAX_PAYLOAD_BYTES (libxml2's 10 MB
text-node ceiling on its base64 form), which `seal` enforces so we never send what no peer can
parse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from lxml import etree

from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, OpenedEnvelope
from gateway.envelope.receipts import OpenedReceipt, Outcome, Receipt
from gateway.envelope.xmldsig import sign_enveloped, verify_enveloped
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import (
    HEADER_INVALID,
    OVERSIZE,
    PAYLOAD_DIGEST_MISMATCH,
    TRN_PROTOCOL,
    XML_SCHEMA,
    ConfigError,
    EnvelopeError,
    TransportError,
    XmlIntakeError,
)
from gateway.model.header import (
    EnvelopeHeader,
    parse_administration,
    parse_handling_label,
    parse_utility_block,
)

__all__ = [
    "DEFAULT_MAX_ENVELOPE_BYTES",
    "DEFAULT_MAX_RECEIPT_BYTES",
    "ENVELOPE_TAG",
    "HEADER_FIELDS",
    "MAX_PAYLOAD_BYTES",
    "NS",
    "RECEIPT_TAG",
    "envelope_document",
    "envelope_schema",
    "format_datetime",
    "header_from_xml",
    "header_to_xml",
    "open_envelope",
    "open_receipt",
    "parse_datetime",
    "read_header_unverified",
    "receipt_document",
    "seal",
    "seal_receipt",
]

NS = "urn:gnc-gateway:envelope:1"
ENVELOPE_TAG = f"{{{NS}}}Envelope"
RECEIPT_TAG = f"{{{NS}}}Receipt"
HEADER_TAG = f"{{{NS}}}Header"
PAYLOAD_TAG = f"{{{NS}}}Payload"
DEFAULT_MAX_ENVELOPE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_RECEIPT_BYTES = 256 * 1024
# The documents have a fixed shape: Envelope/ds:Signature/SignedInfo/Reference/Transforms/
# Transform/InclusiveNamespaces is the deepest path (7), and about 30 elements with a full chain.
# libxml2 (without XML_PARSE_HUGE, which stays off) refuses a text node over 10,000,000 bytes, so
# the base64 Payload caps what the XML binding can carry: 7,499,997 bytes -> 9,999,996 chars.
MAX_PAYLOAD_BYTES = 7_499_997
MAX_DEPTH = 8
MAX_ELEMENTS = 64
MAX_ERROR_MESSAGE = 4000

# (XML element name, EnvelopeHeader attribute), in document order.
HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("MessageId", "message_id"),
    ("CorrelationId", "correlation_id"),
    ("UtilityBlock", "utility_block"),
    ("MessageType", "message_type"),
    ("Sender", "sender"),
    ("Receiver", "receiver"),
    ("CreatedAt", "created_at"),
    ("SchemaVersion", "schema_version"),
    ("PayloadContentType", "payload_content_type"),
    ("PayloadSHA256", "payload_sha256"),
    ("HandlingLabel", "handling_label"),
)
_DATETIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


# --- schema -------------------------------------------------------------------------------------

_SCHEMA_FILES = ("envelope.xsd", "xmldsig-profile.xsd", "exc-c14n.xsd")
_SCHEMA_BASE = "gnc-gateway-package:///schemas/"


@cache
def _schema_bytes(name: str) -> bytes:
    return (resources.files("gateway.envelope") / "schemas" / name).read_bytes()


class _PackageSchemas(etree.Resolver):
    """Serves our schema files from package data; anything else is refused, never fetched."""

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        name = (system_url or "").rsplit("/", 1)[-1]
        if name not in _SCHEMA_FILES:
            raise ConfigError(f"schema reference {system_url!r} is not a packaged schema")
        return self.resolve_string(_schema_bytes(name), context, base_url=_SCHEMA_BASE + name)


@lru_cache(maxsize=1)
def _schema_document() -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(_PackageSchemas())
    root = etree.fromstring(
        _schema_bytes("envelope.xsd"), parser, base_url=_SCHEMA_BASE + "envelope.xsd"
    )
    return root.getroottree()


_thread_schemas = threading.local()


def envelope_schema() -> etree.XMLSchema:
    """The compiled envelope/receipt schema: built once per thread (lxml validators keep
    per-instance error logs, so one instance is not shared between threads)."""
    schema: etree.XMLSchema | None = getattr(_thread_schemas, "schema", None)
    if schema is None:
        schema = etree.XMLSchema(_schema_document())
        _thread_schemas.schema = schema
    return schema


def _validate(root: etree._Element) -> None:
    schema = envelope_schema()
    if not schema.validate(root.getroottree()):
        error = schema.error_log.last_error
        if error is None:  # pragma: no cover - libxml2 always logs why
            raise XmlIntakeError("not valid against envelope.xsd", code=XML_SCHEMA)
        message = error.message.replace("{" + NS + "}", "")
        raise XmlIntakeError(
            f"not valid against envelope.xsd: {message}",
            code=XML_SCHEMA,
            location=f"line {error.line}: {error.path}" if error.line else error.path,
        )


# --- header -------------------------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """UTC, 'Z', exactly six fractional digits (the XSD's UtcMicroDateTime)."""
    if value.tzinfo is None:
        raise EnvelopeError("time must be timezone-aware", code=HEADER_INVALID)
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}Z"
    )


def parse_datetime(text: str, location: str) -> datetime:
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        raise EnvelopeError(
            f"{text!r} is not a UTC time of the form YYYY-MM-DDThh:mm:ss.ffffffZ",
            code=HEADER_INVALID,
            location=location,
        )
    year, month, day, hour, minute, second, micro = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as exc:
        raise EnvelopeError(
            f"{text!r} is not a valid time: {exc}", code=HEADER_INVALID, location=location
        ) from None


def _parse_hex_digest(text: str, location: str, *, allow_empty: bool = False) -> bytes:
    if allow_empty and text == "":
        return b""
    if not _HEX64_RE.fullmatch(text):
        raise EnvelopeError(
            f"{text!r} is not a SHA-256 in lower-case hex (64 characters)",
            code=HEADER_INVALID,
            location=location,
        )
    return bytes.fromhex(text)


def _header_values(header: EnvelopeHeader) -> tuple[str, ...]:
    return (
        header.message_id,
        header.correlation_id,
        header.utility_block.value,
        header.message_type,
        header.sender.value,
        header.receiver.value,
        format_datetime(header.created_at),
        header.schema_version,
        header.payload_content_type,
        header.payload_sha256.hex(),
        header.handling_label.value,
    )


def _fill(
    parent: etree._Element, names: tuple[str, ...], values: tuple[str, ...], indent: str
) -> None:
    parent.text = indent + "  "
    last: etree._Element | None = None
    for name, value in zip(names, values, strict=True):
        last = etree.SubElement(parent, _q(name))
        last.text = value
        last.tail = indent + "  "
    if last is not None:
        last.tail = indent


_HEADER_NAMES = tuple(name for name, _ in HEADER_FIELDS)


def header_to_xml(header: EnvelopeHeader) -> etree._Element:
    """A standalone <Header> element in the envelope namespace."""
    element = etree.Element(HEADER_TAG, nsmap={None: NS})
    _fill(element, _HEADER_NAMES, _header_values(header), "\n  ")
    return element


def _name(element: etree._Element) -> str:
    """Local name in our namespace; Clark notation for anything else."""
    qname = etree.QName(element)
    return qname.localname if qname.namespace == NS else qname.text


def _field_texts(parent: etree._Element, names: tuple[str, ...], where: str) -> dict[str, str]:
    """Texts of `parent`'s children, which must be exactly `names` in order, each text-only."""
    children = [c for c in parent if isinstance(c.tag, str)]
    got = tuple(_name(c) for c in children)
    if got != names:
        raise EnvelopeError(
            f"{where} must contain {', '.join(names)} in this order; found {', '.join(got)}",
            code=HEADER_INVALID,
            location=where,
        )
    texts: dict[str, str] = {}
    for name, child in zip(names, children, strict=True):
        if len(child):
            raise EnvelopeError(
                f"{name} must contain only text", code=HEADER_INVALID, location=f"{where}.{name}"
            )
        texts[name] = child.text or ""
    return texts


def header_from_xml(element: etree._Element) -> EnvelopeHeader:
    """Read a <Header> element; every field is checked by the model's rules."""
    if element.tag != HEADER_TAG:
        raise EnvelopeError(f"expected {{{NS}}}Header, found {_name(element)}", location="header")
    t = _field_texts(element, _HEADER_NAMES, "header")
    return EnvelopeHeader(
        message_id=t["MessageId"],
        correlation_id=t["CorrelationId"],
        utility_block=parse_utility_block(t["UtilityBlock"]),
        message_type=t["MessageType"],
        sender=parse_administration(t["Sender"], "sender"),
        receiver=parse_administration(t["Receiver"], "receiver"),
        created_at=parse_datetime(t["CreatedAt"], "header.created_at"),
        schema_version=t["SchemaVersion"],
        payload_content_type=t["PayloadContentType"],
        payload_sha256=_parse_hex_digest(t["PayloadSHA256"], "header.payload_sha256"),
        handling_label=parse_handling_label(t["HandlingLabel"]),
    )


# --- envelope -----------------------------------------------------------------------------------


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def envelope_document(header: EnvelopeHeader, payload: bytes) -> etree._Element:
    """The unsigned <Envelope> (Header, Payload): what `seal` signs, or an external signer."""
    if not hmac.compare_digest(hashlib.sha256(payload).digest(), header.payload_sha256):
        raise EnvelopeError("payload does not match header digest", code=PAYLOAD_DIGEST_MISMATCH)
    root = etree.Element(ENVELOPE_TAG, nsmap={None: NS})
    root.text = "\n  "
    header_element = etree.SubElement(root, HEADER_TAG)
    _fill(header_element, _HEADER_NAMES, _header_values(header), "\n  ")
    header_element.tail = "\n  "
    payload_element = etree.SubElement(root, PAYLOAD_TAG)
    payload_element.text = base64.b64encode(payload).decode("ascii")
    payload_element.tail = "\n  "
    return root


def seal(header: EnvelopeHeader, payload: bytes, identity: SigningIdentity) -> bytes:
    """A signed XML envelope document (UTF-8, with XML declaration) ready for the wire."""
    if header.sender != identity.administration:
        raise EnvelopeError(
            f"header sender {header.sender.value} is not the signer's administration "
            f"{identity.administration.value}",
            code=HEADER_INVALID,
            location="header.sender",
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EnvelopeError(
            f"payload of {len(payload)} bytes exceeds the XML binding's limit of "
            f"{MAX_PAYLOAD_BYTES} (use the protobuf binding or split the message)",
            code=OVERSIZE,
            location="payload",
        )
    root = envelope_document(header, payload)
    sign_enveloped(root, identity)
    return _serialize(root)


def _open_document(raw: bytes, max_bytes: int) -> etree._Element:
    if not isinstance(raw, bytes):
        raise EnvelopeError(f"expected bytes, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise EnvelopeError(
            f"document of {len(raw)} bytes exceeds the limit of {max_bytes}", code=OVERSIZE
        )
    return parse_xml(
        raw,
        max_bytes=max_bytes,
        max_depth=MAX_DEPTH,
        max_elements=MAX_ELEMENTS,
        allow_processing_instructions=False,
        remove_comments=True,
    )


def _decode_payload(element: etree._Element) -> bytes:
    text = "".join((element.text or "").split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("Payload is not valid base64", location="payload") from None


def read_header_unverified(raw: bytes) -> EnvelopeHeader:
    """The header of an envelope we sealed ourselves, read without checking the signature.

    For a sender's own bookkeeping only; never for anything received.
    """
    root = _open_document(raw, DEFAULT_MAX_ENVELOPE_BYTES)
    if root.tag != ENVELOPE_TAG or len(root) < 1:
        raise EnvelopeError(f"not a GNC envelope: the root element is {_name(root)}", location="/")
    return header_from_xml(root[0])


def open_envelope(raw: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> OpenedEnvelope:
    """Verify and read an XML envelope; trust in the signer is decided by the caller."""
    root = _open_document(raw, max_bytes)
    if root.tag != ENVELOPE_TAG:
        raise EnvelopeError(f"not a GNC envelope: the root element is {_name(root)}", location="/")
    chain = verify_enveloped(root)
    _validate(root)
    # After the signature and the schema: exactly Header, Payload, ds:Signature, all signed.
    header_element, payload_element = root[0], root[1]
    header = header_from_xml(header_element)
    payload = _decode_payload(payload_element)
    if not hmac.compare_digest(hashlib.sha256(payload).digest(), header.payload_sha256):
        raise EnvelopeError(
            "payload SHA-256 differs from the signed header",
            code=PAYLOAD_DIGEST_MISMATCH,
            location="payload",
        )
    return OpenedEnvelope(
        binding=Binding.XML,
        header=header,
        payload=payload,
        signer_chain=chain,
        received_sha256=hashlib.sha256(raw).digest(),
    )


# --- receipts -----------------------------------------------------------------------------------

_RECEIPT_NAMES_FULL = (
    "ReceiptId",
    "MessageId",
    "ReceivedSHA256",
    "PayloadSHA256",
    "Outcome",
    "ErrorCode",
    "ErrorMessage",
    "Issuer",
    "Recipient",
    "IssuedAt",
    "Duplicate",
)
_OPTIONAL_RECEIPT_FIELDS = frozenset({"ErrorCode", "ErrorMessage", "Recipient"})


def _xml_text(value: str) -> str:
    """Characters XML 1.0 cannot carry become U+FFFD (error messages may quote raw input)."""
    return _NOT_XML_CHAR.sub("\ufffd", value)


def _receipt_values(receipt: Receipt) -> dict[str, str]:
    if not isinstance(receipt.issued_at, datetime):
        raise EnvelopeError("receipt issued_at must be a datetime", location="receipt.issued_at")
    if len(receipt.received_sha256) != 32:
        raise EnvelopeError("received_sha256 must be 32 bytes", location="receipt.received_sha256")
    if len(receipt.payload_sha256) not in (0, 32):
        raise EnvelopeError(
            "payload_sha256 must be empty or 32 bytes", location="receipt.payload_sha256"
        )
    values = {
        "ReceiptId": receipt.receipt_id,
        "MessageId": receipt.message_id,
        "ReceivedSHA256": receipt.received_sha256.hex(),
        "PayloadSHA256": receipt.payload_sha256.hex(),
        "Outcome": receipt.outcome.value,
        "ErrorCode": receipt.error_code,
        "ErrorMessage": _xml_text(receipt.error_message)[:MAX_ERROR_MESSAGE],
        "Issuer": receipt.issuer.value,
        "Recipient": receipt.recipient.value if receipt.recipient is not None else "",
        "IssuedAt": format_datetime(receipt.issued_at),
        "Duplicate": "true" if receipt.duplicate else "false",
    }
    return {k: v for k, v in values.items() if v or k not in _OPTIONAL_RECEIPT_FIELDS}


def receipt_document(receipt: Receipt) -> etree._Element:
    """The unsigned <Receipt>; optional fields that are empty are left out."""
    values = _receipt_values(receipt)
    root = etree.Element(RECEIPT_TAG, nsmap={None: NS})
    _fill(root, tuple(values), tuple(values.values()), "\n")
    return root


def seal_receipt(receipt: Receipt, identity: SigningIdentity) -> bytes:
    """A signed XML Receipt document (UTF-8, with XML declaration)."""
    root = receipt_document(receipt)
    sign_enveloped(root, identity)
    return _serialize(root)


def _receipt_from_xml(root: etree._Element) -> Receipt:
    """Read the receipt fields (schema-valid by now) that precede the ds:Signature."""
    fields = [c for c in root if isinstance(c.tag, str)][:-1]
    texts: dict[str, str] = {}
    for child in fields:
        name = etree.QName(child).localname
        if etree.QName(child).namespace != NS or len(child) or name in texts:
            raise EnvelopeError(f"unexpected receipt element {_name(child)}", location="receipt")
        texts[name] = child.text or ""
    expected = tuple(
        n for n in _RECEIPT_NAMES_FULL if n in texts or n not in _OPTIONAL_RECEIPT_FIELDS
    )
    if tuple(texts) != expected:
        raise EnvelopeError(
            f"receipt must contain {', '.join(expected)} in this order", location="receipt"
        )
    duplicate = texts["Duplicate"]
    if duplicate not in ("true", "false", "1", "0"):
        raise EnvelopeError(
            f"Duplicate {duplicate!r} is not a boolean", location="receipt.Duplicate"
        )
    outcome = texts["Outcome"]
    if outcome not in (Outcome.ACCEPTED.value, Outcome.REJECTED.value):
        raise EnvelopeError(
            f"Outcome {outcome!r} is not ACCEPTED or REJECTED", location="receipt.Outcome"
        )
    recipient = texts.get("Recipient")
    return Receipt(
        receipt_id=texts["ReceiptId"],
        message_id=texts["MessageId"],
        received_sha256=_parse_hex_digest(texts["ReceivedSHA256"], "receipt.received_sha256"),
        payload_sha256=_parse_hex_digest(
            texts["PayloadSHA256"], "receipt.payload_sha256", allow_empty=True
        ),
        outcome=Outcome(outcome),
        issuer=parse_administration(texts["Issuer"], "issuer"),
        recipient=parse_administration(recipient, "recipient") if recipient else None,
        issued_at=parse_datetime(texts["IssuedAt"], "receipt.issued_at"),
        error_code=texts.get("ErrorCode", ""),
        error_message=texts.get("ErrorMessage", ""),
        duplicate=duplicate in ("true", "1"),
    )


def open_receipt(raw: bytes, *, max_bytes: int = DEFAULT_MAX_RECEIPT_BYTES) -> OpenedReceipt:
    """Verify a signed XML Receipt over its exact content; trust in the signer is separate."""
    root = _open_document(raw, max_bytes)
    if root.tag != RECEIPT_TAG:
        raise TransportError(
            f"answer is not a GNC receipt: the root element is {_name(root)}", code=TRN_PROTOCOL
        )
    chain = verify_enveloped(root)
    _validate(root)
    return OpenedReceipt(_receipt_from_xml(root), chain)
