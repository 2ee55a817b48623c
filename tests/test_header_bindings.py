"""Property: every header field survives both bindings, and the bindings convert losslessly."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope import xml_binding as xb
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.protobuf_binding import header_from_proto, header_to_proto
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.header import EnvelopeHeader
from gateway.testpki import TestPki

# The model's own patterns, matched in full (the XSD types are the same patterns).
MESSAGE_TYPE = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
SCHEMA_VERSION = r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}"
CONTENT_TYPE = (
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,20}/[a-z0-9][a-z0-9!#$&^_.+-]{0,20}"
    r"(; ?[a-z0-9_.-]{1,10}=[A-Za-z0-9_.-]{1,10}){0,2}"
)


@st.composite
def headers(draw: st.DrawFn) -> EnvelopeHeader:
    sender, receiver = draw(
        st.lists(st.sampled_from(list(Administration)), min_size=2, max_size=2, unique=True)
    )
    return EnvelopeHeader(
        message_id=str(draw(st.uuids())),
        correlation_id=str(draw(st.uuids())),
        utility_block=draw(st.sampled_from(list(UtilityBlock))),
        message_type=draw(st.from_regex(MESSAGE_TYPE, fullmatch=True)),
        sender=sender,
        receiver=receiver,
        created_at=draw(
            st.datetimes(
                min_value=datetime(1, 1, 1),
                max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999),
                timezones=st.just(UTC),
            )
        ),
        schema_version=draw(st.from_regex(SCHEMA_VERSION, fullmatch=True)),
        payload_content_type=draw(st.from_regex(CONTENT_TYPE, fullmatch=True)),
        payload_sha256=draw(st.binary(min_size=32, max_size=32)),
        handling_label=draw(st.sampled_from(list(HandlingLabel))),
    )


@given(headers())
def test_header_to_xml_and_back_is_lossless(header: EnvelopeHeader) -> None:
    element = xb.header_to_xml(header)
    reparsed = etree.fromstring(etree.tostring(element, encoding="UTF-8"))
    assert xb.header_from_xml(reparsed) == header


@given(headers())
def test_header_to_protobuf_and_back_is_lossless(header: EnvelopeHeader) -> None:
    wire = header_to_proto(header).SerializeToString(deterministic=True)
    message = pb.EnvelopeHeader()
    message.ParseFromString(wire)
    assert header_from_proto(message) == header


@given(headers())
def test_protobuf_to_xml_to_protobuf_gives_identical_bytes(header: EnvelopeHeader) -> None:
    wire = header_to_proto(header).SerializeToString(deterministic=True)
    message = pb.EnvelopeHeader()
    message.ParseFromString(wire)
    xml_form = etree.tostring(xb.header_to_xml(header_from_proto(message)))
    back = xb.header_from_xml(etree.fromstring(xml_form))
    assert header_to_proto(back).SerializeToString(deterministic=True) == wire


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers(), payload=st.binary(max_size=64))
def test_every_generated_header_is_schema_valid_and_opens(
    pki: TestPki, header: EnvelopeHeader, payload: bytes
) -> None:
    """The XSD accepts everything the model accepts: a sealed envelope carrying any valid header
    goes through the whole open path (signature, schema, extraction) with that exact header."""
    header = dataclasses.replace(header, payload_sha256=hashlib.sha256(payload).digest())
    raw = xb.seal(header, payload, _identity(pki, header.sender))
    opened = xb.open_envelope(raw)
    assert opened.header == header
    assert opened.payload == payload


_IDENTITIES: dict[tuple[str, Administration], SigningIdentity] = {}


def _identity(pki: TestPki, admin: Administration) -> SigningIdentity:
    key = (str(pki.root), admin)
    if key not in _IDENTITIES:
        _IDENTITIES[key] = pki.identity(admin.value)
    return _IDENTITIES[key]
