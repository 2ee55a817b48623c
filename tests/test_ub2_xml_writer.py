"""The UB2 XML writer (ub2_exchange.encode, XML form) against its oracle: the protobuf message of
the same record (``to_message``) rendered by reflection, element by element in field-number
order, with lxml, as the binding was first written. Same bytes for every record, including text
that needs escaping; values XML cannot carry are refused, never written."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from ub2_strategies import consignments, control_results

from gateway.errors import TransactionError
from gateway.model.consignment import (
    Address,
    Consignment,
    CustomsOffice,
    OfficeRole,
    Party,
    PartyRole,
    SourceMessage,
)
from gateway.translate.ub2_exchange import (
    NAMESPACE,
    PayloadForm,
    Ub2Kind,
    Ub2Record,
    decode,
    element_name,
    encode,
    kind_of,
    to_message,
)

NS = f"{{{NAMESPACE}}}"
MANY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reflect(msg: Any, element: etree._Element) -> None:
    for field in msg.DESCRIPTOR.fields:
        name = NS + element_name(field)
        if field.is_repeated:
            items = list(getattr(msg, field.name))
        elif field.has_presence:
            items = [getattr(msg, field.name)] if msg.HasField(field.name) else []
        else:
            items = [getattr(msg, field.name)]
        for item in items:
            child = etree.SubElement(element, name)
            if field.message_type is not None:
                _reflect(item, child)
            elif isinstance(item, bool):
                child.text = "true" if item else "false"
            else:
                child.text = str(item)


def oracle(record: Ub2Record) -> bytes:
    """The XML binding by protobuf reflection and lxml serialisation."""
    root = etree.Element(NS + kind_of(record).value, nsmap={None: NAMESPACE})
    _reflect(to_message(record), root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


# Text that must be escaped (or is whitespace libxml2 writes as a character reference).
awkward = st.lists(
    st.sampled_from(["a", "&", "<", ">", "\r", "\n", "\t", '"', "'", "]]>", "é", " "])
).map("".join)


@MANY
@given(consignments(findings=True) | control_results())
def test_writer_equals_the_reflection_oracle(record: Ub2Record) -> None:
    assert encode(record, PayloadForm.XML) == oracle(record)


@MANY
@given(consignments(), awkward, awkward)
def test_escaped_text_equals_the_oracle_and_round_trips(
    record: Consignment, reference: str, name: str
) -> None:
    record = replace(
        record,
        reference="R" + reference,  # the XSD wants a reference of one character or more
        parties=(Party(PartyRole.CONSIGNOR, name=name, address=Address(street=reference)),),
    )
    data = encode(record, PayloadForm.XML)
    assert data == oracle(record)
    assert decode(data, Ub2Kind.TRANSACTION, PayloadForm.XML) == record


def test_empty_text_and_empty_groups() -> None:
    record = Consignment(
        source=SourceMessage.CC315A,
        reference="R",
        parties=(Party(PartyRole.CARRIER, name="", address=Address()),),
    )
    data = encode(record, PayloadForm.XML)
    assert data == oracle(record)
    assert b"<Name></Name><Address/>" in data
    assert decode(data, Ub2Kind.TRANSACTION, PayloadForm.XML) == record
    office = replace(record, offices=(CustomsOffice(OfficeRole.EXIT, ""),))
    assert encode(office, PayloadForm.XML) == oracle(office)
    assert b"<Office><RoleCode>EXIT</RoleCode><ID></ID></Office>" in oracle(office)


@pytest.mark.parametrize("bad", ["\x00", "a\x01b", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_characters_xml_cannot_carry_are_refused(bad: str) -> None:
    record = Consignment(source=SourceMessage.CC315A, reference="R", mrn=bad)
    with pytest.raises(TransactionError) as caught:
        encode(record, PayloadForm.XML)
    assert caught.value.code == "UB2_VALUE_INVALID"
    assert caught.value.location == "mrn"


@pytest.mark.parametrize(
    ("record", "location"),
    [
        (
            Consignment(source=SourceMessage.CC315A, reference="R", total_items=2**63),
            "total_items",
        ),
        (Consignment(source=SourceMessage.CC315A, reference="R", mrn=7), "mrn"),  # type: ignore[arg-type]
        (
            Consignment(
                source=SourceMessage.CC315A, reference="R", total_gross_mass=Decimal("Infinity")
            ),
            "total_gross_mass",
        ),
        (
            Consignment(source=SourceMessage.CC315A, reference=None),  # type: ignore[arg-type]
            "reference",
        ),
        (
            Consignment(source=SourceMessage.CC315A, reference="R", seals=("S", 5)),  # type: ignore[arg-type]
            "seals[1]",
        ),
        (
            Consignment(
                source=SourceMessage.CC315A,
                reference="R",
                offices=(CustomsOffice(OfficeRole.EXIT, 5),),  # type: ignore[arg-type]
            ),
            "offices[0].identifier",
        ),
    ],
)
def test_values_that_cannot_travel_name_their_field(record: Consignment, location: str) -> None:
    with pytest.raises(TransactionError) as caught:
        encode(record, PayloadForm.XML)
    assert caught.value.code == "UB2_VALUE_INVALID"
    assert caught.value.location == location
