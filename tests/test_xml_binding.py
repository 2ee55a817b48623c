"""The XML binding of the envelope and the receipt: shape, round trips, and each refusal."""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.envelope import xml_binding as xb
from gateway.envelope.intake import check_envelope
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.envelope.receipts import (
    Outcome,
    Receipt,
    accepted_receipt,
    check_receipt_matches,
    rejection_receipt,
)
from gateway.envelope.xmldsig import DS_NS, sign_enveloped
from gateway.errors import EnvelopeError, GatewayError, SignatureError
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.header import EnvelopeHeader
from gateway.testpki import FOREIGN, TestPki
from gateway.trust.store import PartnerTrust, TrustStore

EU, US, CN = Administration.EU, Administration.US, Administration.CN
PAYLOAD = (
    b'<AEOList xmlns="urn:example"><Operator id="DE1234567">M\xc3\xbcller GmbH</Operator></AEOList>'
)


def header_for(payload: bytes = PAYLOAD, **changes: object) -> EnvelopeHeader:
    fields: dict[str, object] = {
        "payload": payload,
        "utility_block": UtilityBlock.UB1,
        "message_type": "AEO.FullList",
        "sender": EU,
        "receiver": US,
        "payload_content_type": "application/xml; charset=utf-8",
        "schema_version": "3.6.1",
        "handling_label": HandlingLabel.RESTRICTED,
    }
    fields.update(changes)
    return new_header(**fields)  # type: ignore[arg-type]


def code_of(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(GatewayError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.code


def sign_document(root: etree._Element, pki: TestPki, stem: str = "signing") -> bytes:
    sign_enveloped(root, pki.identity("EU", stem))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# --- sealing and opening -----------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["signing", "signing-rsa"])
def test_seal_then_open_gives_back_header_payload_and_signer(pki: TestPki, stem: str) -> None:
    identity = pki.identity("EU", stem)
    header = header_for()
    raw = xb.seal(header, PAYLOAD, identity)
    opened = xb.open_envelope(raw)
    assert opened.binding is Binding.XML
    assert opened.header == header
    assert opened.payload == PAYLOAD
    assert opened.signer_chain[0].public_bytes(Encoding.DER) == identity.certificate.public_bytes(
        Encoding.DER
    )
    assert opened.received_sha256 == hashlib.sha256(raw).digest()


def test_chain_travels_and_comes_back_leaf_first_in_any_order(pki: TestPki) -> None:
    base = pki.identity("EU")
    ca = pki.ca("EU")
    identity = SigningIdentity(base.administration, base.private_key, base.certificate, (ca,))
    raw = xb.seal(header_for(), PAYLOAD, identity)
    assert xb.open_envelope(raw).signer_chain == (base.certificate, ca)
    # KeyInfo is not signed: anyone can reorder X509Data, which must not change the outcome.
    root = etree.fromstring(raw)
    x509_data = root.find(f".//{{{DS_NS}}}X509Data")
    assert x509_data is not None and len(x509_data) == 2
    x509_data.append(x509_data[0])  # now CA first, leaf second
    reordered = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert reordered != raw
    assert xb.open_envelope(reordered).signer_chain == (base.certificate, ca)


def test_sealed_document_shape(pki: TestPki) -> None:
    header = header_for()
    raw = xb.seal(header, PAYLOAD, pki.identity("EU"))
    assert raw.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<Envelope ")
    root = etree.fromstring(raw)
    assert root.tag == f"{{{xb.NS}}}Envelope"
    assert [etree.QName(c).localname for c in root] == ["Header", "Payload", "Signature"]
    assert etree.QName(root[2]).namespace == DS_NS
    fields = {etree.QName(c).localname: c.text for c in root[0]}
    assert fields["CreatedAt"] == header.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert fields["PayloadSHA256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert base64.b64decode(root[1].text or "") == PAYLOAD
    assert xb.envelope_schema().validate(root.getroottree())


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\x01\xff\xfe binary", "\u00fc\u4e2d\U0001f600".encode("utf-16"), b"x" * 200_000],
)
def test_any_payload_bytes_travel_exactly(pki: TestPki, payload: bytes) -> None:
    header = header_for(payload, payload_content_type="application/octet-stream")
    opened = xb.open_envelope(xb.seal(header, payload, pki.identity("EU")))
    assert opened.payload == payload


def test_payload_base64_with_line_breaks_is_read(pki: TestPki) -> None:
    root = xb.envelope_document(header_for(), PAYLOAD)
    text = root[1].text or ""
    root[1].text = "\n".join(text[i : i + 20] for i in range(0, len(text), 20))
    assert xb.open_envelope(sign_document(root, pki)).payload == PAYLOAD


def test_seal_refuses_a_sender_other_than_the_signer(pki: TestPki) -> None:
    header = header_for(sender=CN)
    with pytest.raises(EnvelopeError) as caught:
        xb.seal(header, PAYLOAD, pki.identity("EU"))
    assert caught.value.code == "ENV_HEADER_INVALID"
    assert caught.value.location == "header.sender"


def test_seal_refuses_a_payload_that_does_not_match_the_header(pki: TestPki) -> None:
    assert code_of(xb.seal, header_for(), PAYLOAD + b" ", pki.identity("EU")) == (
        "ENV_PAYLOAD_DIGEST_MISMATCH"
    )


def test_signed_but_inconsistent_payload_is_refused(pki: TestPki) -> None:
    root = xb.envelope_document(header_for(), PAYLOAD)
    root[1].text = base64.b64encode(b"another payload").decode()
    raw = sign_document(root, pki)
    assert code_of(xb.open_envelope, raw) == "ENV_PAYLOAD_DIGEST_MISMATCH"


def test_signed_unknown_administration_gets_its_own_code(pki: TestPki) -> None:
    root = xb.envelope_document(header_for(), PAYLOAD)
    root[0][5].text = "ZZ"  # Receiver: the right form, but no such administration
    with pytest.raises(EnvelopeError) as caught:
        xb.open_envelope(sign_document(root, pki))
    assert caught.value.code == "ENV_UNKNOWN_ADMINISTRATION"
    assert caught.value.location == "header.receiver"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (6, "2026-01-01T00:00:00Z"),  # CreatedAt without microseconds
        (6, "2026-01-01T00:00:00.000000+01:00"),  # not UTC
        (9, hashlib.sha256(PAYLOAD).hexdigest().upper()),  # upper-case hex
        (2, "UB4"),
        (3, " AEO.FullList"),  # leading space: xs:string keeps it, the pattern refuses it
        (10, "SECRET"),
    ],
)
def test_signed_but_schema_invalid_header_is_refused(pki: TestPki, field: int, value: str) -> None:
    root = xb.envelope_document(header_for(), PAYLOAD)
    root[0][field].text = value
    with pytest.raises(GatewayError) as caught:
        xb.open_envelope(sign_document(root, pki))
    assert caught.value.code == "XML_SCHEMA_INVALID"
    assert caught.value.location is not None and "line" in caught.value.location


def test_signed_extra_header_element_is_schema_invalid(pki: TestPki) -> None:
    root = xb.envelope_document(header_for(), PAYLOAD)
    etree.SubElement(root[0], f"{{{xb.NS}}}Priority").text = "HIGH"
    assert code_of(xb.open_envelope, sign_document(root, pki)) == "XML_SCHEMA_INVALID"


def test_oversize_envelope_is_refused_before_parsing(pki: TestPki) -> None:
    raw = xb.seal(header_for(), PAYLOAD, pki.identity("EU"))
    assert xb.open_envelope(raw, max_bytes=len(raw)).payload == PAYLOAD
    with pytest.raises(EnvelopeError) as caught:
        xb.open_envelope(raw, max_bytes=len(raw) - 1)
    assert caught.value.code == "ENV_OVERSIZE"


def test_seal_refuses_a_payload_beyond_what_libxml2_parses(pki: TestPki) -> None:
    fits = b"\0" * xb.MAX_PAYLOAD_BYTES
    header = header_for(fits, payload_content_type="application/octet-stream")
    raw = xb.seal(header, fits, pki.identity("EU"))
    assert xb.open_envelope(raw, max_bytes=16 << 20).payload == fits
    too_big = fits + b"\0"
    header = header_for(too_big, payload_content_type="application/octet-stream")
    assert code_of(xb.seal, header, too_big, pki.identity("EU")) == "ENV_OVERSIZE"


def test_a_receipt_is_not_an_envelope(pki: TestPki) -> None:
    opened = xb.open_envelope(xb.seal(header_for(), PAYLOAD, pki.identity("EU")))
    receipt = xb.seal_receipt(accepted_receipt(opened, US), pki.identity("US"))
    assert code_of(xb.open_envelope, receipt) == "ENV_MALFORMED"


def test_an_envelope_is_not_a_receipt(pki: TestPki) -> None:
    raw = xb.seal(header_for(), PAYLOAD, pki.identity("EU"))
    assert code_of(xb.open_receipt, raw) == "TRN_PROTOCOL"


# --- header conversion -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(5, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 1, 14, 0, tzinfo=UTC) + timedelta(microseconds=123_456),
    ],
)
def test_created_at_survives_at_microsecond_precision(created_at: datetime) -> None:
    header = header_for(created_at=created_at)
    element = xb.header_to_xml(header)
    reparsed = etree.fromstring(etree.tostring(element))
    assert xb.header_from_xml(reparsed).created_at == created_at


def test_header_from_xml_refuses_fields_out_of_order() -> None:
    element = xb.header_to_xml(header_for())
    element.insert(0, element[1])  # CorrelationId first
    with pytest.raises(EnvelopeError) as caught:
        xb.header_from_xml(element)
    assert caught.value.code == "ENV_HEADER_INVALID"
    assert "MessageId, CorrelationId" in caught.value.message


def test_header_from_xml_refuses_markup_inside_a_field() -> None:
    element = xb.header_to_xml(header_for())
    etree.SubElement(element[3], "b").text = "x"
    with pytest.raises(EnvelopeError) as caught:
        xb.header_from_xml(element)
    assert caught.value.location == "header.MessageType"


@pytest.mark.parametrize(
    ("index", "value", "code", "location"),
    [
        (0, "not-a-uuid", "ENV_HEADER_INVALID", "header.message_id"),
        (4, "XX", "ENV_UNKNOWN_ADMINISTRATION", "header.sender"),
        (6, "2026-02-30T00:00:00.000000Z", "ENV_HEADER_INVALID", "header.created_at"),
        (9, "00", "ENV_HEADER_INVALID", "header.payload_sha256"),
        (10, "TOP", "ENV_HEADER_INVALID", "header.handling_label"),
    ],
)
def test_header_from_xml_applies_the_model_rules(
    index: int, value: str, code: str, location: str
) -> None:
    element = xb.header_to_xml(header_for())
    element[index].text = value
    with pytest.raises(EnvelopeError) as caught:
        xb.header_from_xml(element)
    assert (caught.value.code, caught.value.location) == (code, location)


def test_header_from_xml_wants_a_header_element() -> None:
    assert code_of(xb.header_from_xml, etree.Element(f"{{{xb.NS}}}Payload")) == "ENV_MALFORMED"


# --- receipts ----------------------------------------------------------------------------------


def test_accepted_receipt_round_trip_and_sender_check(pki: TestPki) -> None:
    raw = xb.seal(header_for(), PAYLOAD, pki.identity("EU"))
    opened = xb.open_envelope(raw)
    receipt = accepted_receipt(opened, US, duplicate=True)
    signed = xb.seal_receipt(receipt, pki.identity("US"))
    back = xb.open_receipt(signed)
    assert back.receipt == receipt
    assert back.receipt.accepted and back.receipt.duplicate
    assert back.signer_chain[0] == pki.cert("US", "signing")
    check_receipt_matches(back.receipt, opened.header.message_id, raw)


@pytest.mark.parametrize("stem", ["signing", "signing-rsa"])
def test_rejection_receipt_round_trip(pki: TestPki, stem: str) -> None:
    error = SignatureError("bad \x00 bytes \x1b[31m in \ud800 message", code="SIG_INVALID")
    receipt = rejection_receipt(b"garbage", error, US)
    back = xb.open_receipt(xb.seal_receipt(receipt, pki.identity("US", stem))).receipt
    assert back.outcome is Outcome.REJECTED
    assert back.error_code == "SIG_INVALID"
    assert back.message_id == "" and back.recipient is None and back.payload_sha256 == b""
    # Characters XML cannot carry are replaced, the rest is kept.
    assert back.error_message == receipt.error_message.replace("\x00", "\ufffd").replace(
        "\x1b", "\ufffd"
    ).replace("\ud800", "\ufffd")
    assert back.received_sha256 == hashlib.sha256(b"garbage").digest()


def test_receipt_leaves_out_empty_optional_fields(pki: TestPki) -> None:
    receipt = Receipt(
        receipt_id="7d7c1b1e-8a3c-4a47-9f59-2f1f4d1e2a10",
        message_id="",
        received_sha256=bytes(32),
        payload_sha256=b"",
        outcome=Outcome.REJECTED,
        issuer=US,
        recipient=None,
        issued_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    root = etree.fromstring(xb.seal_receipt(receipt, pki.identity("US")))
    names = [etree.QName(c).localname for c in root]
    assert "ErrorCode" not in names and "Recipient" not in names and "ErrorMessage" not in names
    assert root.findtext(f"{{{xb.NS}}}IssuedAt") == "2026-01-02T03:04:05.000006Z"


def test_tampered_receipt_is_refused(pki: TestPki) -> None:
    opened = xb.open_envelope(xb.seal(header_for(), PAYLOAD, pki.identity("EU")))
    signed = xb.seal_receipt(accepted_receipt(opened, US), pki.identity("US"))
    tampered = signed.replace(b"<Outcome>ACCEPTED<", b"<Outcome>REJECTED<")
    assert tampered != signed
    assert code_of(xb.open_receipt, tampered) == "SIG_DIGEST_MISMATCH"


# --- schema ------------------------------------------------------------------------------------


def test_schema_is_compiled_once_per_thread() -> None:
    first = xb.envelope_schema()
    assert xb.envelope_schema() is first
    other: list[etree.XMLSchema] = []
    thread = threading.Thread(target=lambda: other.append(xb.envelope_schema()))
    thread.start()
    thread.join()
    assert other and other[0] is not first


def test_schema_resolver_serves_only_packaged_files() -> None:
    resolver = xb._PackageSchemas()
    with pytest.raises(GatewayError):
        resolver.resolve("http://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd", None, None)


# --- the intake rules with the XML binding -----------------------------------------------------


def trust(pki: TestPki) -> TrustStore:
    return TrustStore(
        PartnerTrust(Administration(a), (pki.ca(a),), (pki.crl(a),)) for a in ("EU", "US", "CN")
    )


def test_intake_accepts_a_trusted_xml_envelope(pki: TestPki) -> None:
    header = header_for()
    raw = xb.seal(header, PAYLOAD, pki.identity("EU"))
    accepted = check_envelope(raw, Binding.XML, trust=trust(pki), own=US, now=header.created_at)
    assert accepted.envelope.header == header
    assert accepted.signer.administration is EU


@pytest.mark.parametrize(
    ("admin", "stem", "code"),
    [
        (FOREIGN, "EU-impostor", "TRUST_UNTRUSTED"),
        ("EU", "expired", "TRUST_EXPIRED"),
        ("EU", "revoked", "TRUST_REVOKED"),
    ],
)
def test_intake_refuses_untrusted_xml_signers(
    pki: TestPki, admin: str, stem: str, code: str
) -> None:
    header = header_for()
    raw = xb.seal(header, PAYLOAD, pki.identity(admin, stem))
    assert xb.open_envelope(raw).header == header  # the signature itself is fine
    assert (
        code_of(check_envelope, raw, Binding.XML, trust=trust(pki), own=US, now=header.created_at)
        == code
    )


def test_intake_refuses_a_signature_by_another_partner(pki: TestPki) -> None:
    root = xb.envelope_document(header_for(), PAYLOAD)  # sender EU ...
    sign_enveloped(root, pki.identity("CN"))  # ... signed by CN's key
    raw = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    now = datetime.now(UTC)
    assert code_of(check_envelope, raw, Binding.XML, trust=trust(pki), own=US, now=now) == (
        "TRUST_WRONG_PARTNER"
    )


def test_a_sender_reads_its_own_envelope_header_without_reverifying(pki: TestPki) -> None:
    header = header_for()
    raw = xb.seal(header, PAYLOAD, pki.identity("EU"))
    assert xb.read_header_unverified(raw) == header
    with pytest.raises(EnvelopeError) as caught:
        xb.read_header_unverified(b"<Other xmlns='urn:x'/>")
    assert caught.value.code == "ENV_MALFORMED"
