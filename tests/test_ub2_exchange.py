"""UB2 exchange (translate/ub2_exchange.py): both bindings and JSON are lossless, every XML
payload is valid against ub2-transaction.xsd (whose every element names its WCO ID), decoding
refuses what is malformed; and the EU-side DMS Response of a control result is valid against
the real WCO_RES_2_DMS.xsd."""

from __future__ import annotations

import json
import os
import types
import typing
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from ub2_strategies import consignments, control_results

from gateway.errors import GatewayError, TransactionError
from gateway.model.codes import Administration
from gateway.model.consignment import Consignment, SourceMessage
from gateway.model.control_result import (
    ControlOutcome,
    ControlResult,
    ControlType,
    Discrepancy,
    DiscrepancyKind,
    SealCheck,
)
from gateway.translate import ub2_exchange
from gateway.translate.eu_control_result import to_dms_notification
from gateway.translate.ub2_exchange import (
    NAMESPACE,
    PayloadForm,
    Ub2Kind,
    Ub2Record,
    decode,
    encode,
    from_json,
    to_json,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RES_XSD = SHARED_DATA / "wco-dm-cds" / "schemas" / "notification" / "WCO_RES_2_DMS.xsd"
XS = "{http://www.w3.org/2001/XMLSchema}"
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
records = consignments(findings=True) | control_results()


def shared_file(path: Path) -> Path:
    """A file of ../shared/data; skip without it (fail on CI, which must have it)."""
    if not path.is_file():
        reason = f"{path} is missing (../shared/data beside the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must have it")
        pytest.skip(reason)
    return path


def _kind(record: Ub2Record) -> Ub2Kind:
    return ub2_exchange.kind_of(record)


# --- round trips ---
@FAST
@given(records, st.sampled_from(PayloadForm))
def test_both_bindings_round_trip(record: Ub2Record, form: PayloadForm) -> None:
    data = encode(record, form)
    assert decode(data, _kind(record), form) == record
    assert encode(record, form) == data  # deterministic


@FAST
@given(records)
def test_xml_is_valid_against_the_shipped_xsd(record: Ub2Record) -> None:
    root = etree.fromstring(encode(record, PayloadForm.XML))
    assert root.tag == f"{{{NAMESPACE}}}{_kind(record).value}"
    assert ub2_exchange.schema().validate(root), ub2_exchange.schema().error_log


@FAST
@given(records)
def test_json_round_trip_is_stable(record: Ub2Record) -> None:
    text = to_json(record)
    assert from_json(text, _kind(record)) == record
    assert json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n" == text


def test_decimals_and_times_travel_exactly() -> None:
    record = Consignment(
        source=SourceMessage.CC315A,
        reference="refnum",
        total_gross_mass=Decimal("1250.500"),
        declared_at=datetime(2003, 2, 11, 12, 34),  # ENS: local time, no offset
        accepted_at=datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC),
    )
    xml = encode(record, PayloadForm.XML)
    assert b"<TotalGrossMassMeasure>1250.500</TotalGrossMassMeasure>" in xml
    assert b"<IssueDateTime>2003-02-11T12:34:00</IssueDateTime>" in xml
    assert b"<AcceptanceDateTime>2024-05-01T08:00:00.123456Z</AcceptanceDateTime>" in xml
    for form in PayloadForm:
        back = decode(encode(record, form), Ub2Kind.TRANSACTION, form)
        assert isinstance(back, Consignment)
        assert str(back.total_gross_mass) == "1250.500"
        assert back.declared_at is not None and back.declared_at.tzinfo is None
    assert '"total_gross_mass": "1250.500"' in to_json(record)


def test_a_declared_offset_travels_as_declared() -> None:
    """DEC-DMS accepted at 00:30+01:00 on 15 January: the partner must see 15 January, not
    23:30Z on the 14th. Equal instants compare equal in Python, so check the offset itself."""
    plus_one = timezone(timedelta(hours=1))
    record = Consignment(
        source=SourceMessage.DEC_DMS_EXPORT,
        reference="acc",
        accepted_at=datetime(2026, 1, 15, 0, 30, tzinfo=plus_one),
    )
    xml = encode(record, PayloadForm.XML)
    assert b"<AcceptanceDateTime>2026-01-15T00:30:00+01:00</AcceptanceDateTime>" in xml
    assert '"accepted_at": "2026-01-15T00:30:00+01:00"' in to_json(record)
    for form in PayloadForm:
        back = decode(encode(record, form), Ub2Kind.TRANSACTION, form)
        assert isinstance(back, Consignment) and back.accepted_at is not None
        assert back.accepted_at.utcoffset() == timedelta(hours=1)
        assert back.accepted_at.date().isoformat() == "2026-01-15"
    back = from_json(to_json(record), Ub2Kind.TRANSACTION)
    assert isinstance(back, Consignment) and back.accepted_at is not None
    assert back.accepted_at.utcoffset() == timedelta(hours=1)


def test_absent_and_empty_are_different() -> None:
    a = Consignment(source=SourceMessage.CC313A, reference="R", mrn=None)
    b = replace(a, mrn="")
    for form in PayloadForm:
        assert decode(encode(a, form), "TransactionData", form) == a
        assert decode(encode(b, form), "TransactionData", form) == b


def test_provenance_does_not_travel() -> None:
    record = Consignment(
        source=SourceMessage.CC315A,
        reference="R",
        source_paths=types.MappingProxyType({"reference": "/ie:CC315A/HEAHEA/RefNumHEA4"}),
    )
    for form in PayloadForm:
        assert b"RefNumHEA4" not in encode(record, form)
    assert "RefNumHEA4" not in to_json(record)


# --- every field of the model is carried ---
def _full(cls: Any, depth: int = 0) -> Any:
    """An instance of a record class with every field set to a non-default value, from the type
    hints: a field added to the model and forgotten by the bindings fails the round trip."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if not f.compare:
            continue
        values[f.name] = _sample(hints[f.name], f.name, depth)
    return cls(**values)


def _sample(hint: Any, name: str, depth: int) -> Any:
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        return _sample(next(a for a in typing.get_args(hint) if a is not type(None)), name, depth)
    if origin is tuple:
        return (_sample(typing.get_args(hint)[0], name, depth),)
    if isinstance(hint, type) and is_dataclass(hint):
        return _full(hint, depth + 1)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return list(hint)[-1]
    if hint is Decimal:
        return Decimal("12.340")
    if hint is datetime:
        return datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    if hint is int:
        return 7
    if hint is str:
        return "DE" if "countr" in name or "nationality" in name else f"v-{name}"
    raise AssertionError(f"no sample for {hint!r}")  # pragma: no cover


def test_every_consignment_field_is_carried() -> None:
    record = _full(Consignment)
    for form in PayloadForm:
        assert decode(encode(record, form), Ub2Kind.TRANSACTION, form) == record
    assert from_json(to_json(record), Ub2Kind.TRANSACTION) == record
    assert ub2_exchange.schema().validate(etree.fromstring(encode(record, PayloadForm.XML)))


# --- the XSD ---
def _xsd() -> etree._ElementTree:
    data = (resources.files("gateway.translate") / "schemas" / "ub2-transaction.xsd").read_bytes()
    return etree.ElementTree(etree.fromstring(data))


def test_every_xsd_element_names_its_wco_id() -> None:
    elements = list(_xsd().iter(f"{XS}element"))
    assert len(elements) > 90
    for element in elements:
        appinfo = element.findall(f"{XS}annotation/{XS}appinfo")
        wco = [a for a in appinfo if a.get("source") == "urn:wco:datamodel:WCOID"]
        canonical = [a for a in appinfo if a.get("source") == "urn:gnc-gateway:canonical"]
        name = element.get("name")
        assert len(wco) == 1 and len(canonical) == 1, name
        if not (wco[0].text or "").strip():  # no WCO element: the annotation must say so
            doc = element.find(f"{XS}annotation/{XS}documentation")
            assert doc is not None and doc.text, name


def test_xsd_follows_the_protobuf_messages() -> None:
    """Each XSD sequence lists its message's fields, named as the binding names them, in order."""
    from gateway._proto.gnc.v1 import transaction_pb2 as pb

    tree = _xsd()
    types_by_name = {t.get("name"): t for t in tree.getroot().iter(f"{XS}complexType")}
    roots = {str(e.get("name")): e for e in tree.getroot().findall(f"{XS}element")}
    pairs = {
        "Address": pb.TransactionAddress,
        "Party": pb.TransactionParty,
        "Packaging": pb.TransactionPackaging,
        "Document": pb.TransactionDocument,
        "TransportMeans": pb.TransactionTransportMeans,
        "Office": pb.TransactionOffice,
        "GoodsItem": pb.TransactionGoodsItem,
        "SealCheck": pb.ControlSealCheck,
        "Discrepancy": pb.ControlDiscrepancy,
    }
    checked = 0
    for xsd_name, message in [*pairs.items(), *((n, getattr(pb, n)) for n in roots)]:
        node = types_by_name.get(xsd_name)
        if node is None:
            node = roots[xsd_name].find(f"{XS}complexType")
        assert node is not None, xsd_name
        sequence = [e.get("name") for e in node.findall(f"{XS}sequence/{XS}element")]
        assert sequence == [ub2_exchange.element_name(f) for f in message.DESCRIPTOR.fields], (
            xsd_name
        )
        checked += 1
    assert checked == 11


def test_countries_are_a_pattern_not_a_list() -> None:
    """A schema-valid EU message with a country that does not exist still travels."""
    record = Consignment(source=SourceMessage.CC315A, reference="R", export_country="EN")
    assert decode(encode(record, PayloadForm.XML), "TransactionData", PayloadForm.XML) == record


# --- refusals ---
def _sample_result() -> ControlResult:
    return ControlResult(
        reference="CR-1",
        transaction_reference="refnum",
        transaction_message_id=None,
        controlling_administration=Administration.CN,
        controlled_at=datetime(2025, 3, 14, 9, 30, tzinfo=UTC),
        control_types=(ControlType.PHYSICAL,),
        outcome=ControlOutcome.DISCREPANCIES_FOUND,
        discrepancies=(Discrepancy(DiscrepancyKind.GROSS_MASS, "heavier", 1, "1000", "1250"),),
    )


def _malformed(data: bytes, kind: str, form: PayloadForm, **kw: Any) -> TransactionError:
    with pytest.raises(TransactionError) as caught:
        decode(data, kind, form, **kw)
    assert caught.value.code == "UB2_PAYLOAD_MALFORMED", caught.value
    assert caught.value.location
    return caught.value


def test_decode_refusals() -> None:
    xml = encode(_sample_result(), PayloadForm.XML)
    pb = encode(_sample_result(), PayloadForm.PROTOBUF)
    _malformed(xml, "RiskInformation", PayloadForm.XML)  # not a UB2 message type
    _malformed(xml, "TransactionData", PayloadForm.XML)  # wrong root for the header
    _malformed(xml.replace(NAMESPACE.encode(), b"urn:other"), "ControlResult", PayloadForm.XML)
    _malformed(xml, "ControlResult", PayloadForm.XML, max_bytes=100)  # oversize
    _malformed(pb, "ControlResult", PayloadForm.PROTOBUF, max_bytes=10)
    _malformed(b"\xff\xff\xff", "ControlResult", PayloadForm.PROTOBUF)
    _malformed(pb + b"\xa8\x06\x01", "ControlResult", PayloadForm.PROTOBUF)  # unknown field 101
    invalid = _malformed(
        xml.replace(b"<Outcome>", b"<Unexpected/><Outcome>"), "ControlResult", PayloadForm.XML
    )
    assert "ub2-transaction.xsd" in invalid.message
    # a schema-valid payload whose content breaks a rule: the model refuses it, located
    tampered = xml.replace(b"DISCREPANCIES_FOUND", b"SATISFACTORY")
    with pytest.raises(TransactionError) as caught:
        decode(tampered, "ControlResult", PayloadForm.XML)
    assert caught.value.code == "UB2_CONTROL_RESULT_INVALID"
    assert caught.value.location == "discrepancies[0]"
    bad_container = encode(
        replace(
            _sample_result(),
            control_types=(ControlType.SEAL_CHECK,),
            seals=(SealCheck("S1", False, "CSQU3054383"),),
            discrepancies=(),
        ),
        PayloadForm.XML,
    ).replace(b"CSQU3054383", b"CSQU3054384")
    with pytest.raises(TransactionError) as caught:
        decode(bad_container, "ControlResult", PayloadForm.XML)
    assert (caught.value.code, caught.value.location) == (
        "UB2_CONTAINER_INVALID",
        "seals[0].container",
    )


def test_transaction_refusals() -> None:
    xml = encode(Consignment(source=SourceMessage.CC315A, reference="R"), PayloadForm.XML)
    _malformed(xml.replace(b"CC315A", b"CC999A"), "TransactionData", PayloadForm.XML)
    _malformed(
        xml.replace(b"</SourceMessage>", b"</SourceMessage><MRN>a</MRN><MRN>b</MRN>"),
        "TransactionData",
        PayloadForm.XML,
    )
    from gateway._proto.gnc.v1 import transaction_pb2 as pb

    wrong_role = pb.TransactionData(source_message="CC315A", functional_reference_id="R")
    wrong_role.party.add(role_code="SMUGGLER")
    error = _malformed(wrong_role.SerializeToString(), "TransactionData", PayloadForm.PROTOBUF)
    assert error.location == "parties[0].role"
    no_reference = pb.TransactionData(source_message="CC315A")
    _malformed(no_reference.SerializeToString(), "TransactionData", PayloadForm.PROTOBUF)


def test_xml_attacks_are_refused_by_the_hardened_parser() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<ControlResult xmlns="urn:gnc-gateway:ub2:transaction:1"><Reference>&x;</Reference>'
        b"</ControlResult>"
    )
    with pytest.raises(GatewayError) as caught:
        decode(xxe, "ControlResult", PayloadForm.XML)
    assert caught.value.code == "XML_DTD_FORBIDDEN"
    with pytest.raises(GatewayError) as caught:
        decode(b"<ControlResult", "ControlResult", PayloadForm.XML)
    assert caught.value.code == "XML_NOT_WELL_FORMED"


def test_values_that_cannot_travel_are_refused_on_encode() -> None:
    bad = Consignment(source=SourceMessage.CC315A, reference="R", invoice_amount=Decimal("NaN"))
    for form in PayloadForm:
        with pytest.raises(TransactionError) as caught:
            encode(bad, form)
        assert caught.value.code == "UB2_VALUE_INVALID"
    huge = Consignment(source=SourceMessage.CC315A, reference="R", total_items=2**70)
    with pytest.raises(TransactionError):
        encode(huge, PayloadForm.PROTOBUF)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("not json", "ControlResult"),
        ('{"kind": "ControlResult"}', "ControlResult"),
        ('{"kind": "TransactionData", "record": {"source": "CC315A", "reference": "R"}}', "X"),
        ('{"kind": "TransactionData", "record": {"source": "CC315A"}}', "TransactionData"),
        (
            '{"kind": "TransactionData", "record": {"source": "CC315A", "reference": "R", '
            '"extra": 1}}',
            "TransactionData",
        ),
        (
            '{"kind": "TransactionData", "record": {"source": "CC315A", "reference": "R", '
            '"total_items": "3"}}',
            "TransactionData",
        ),
        (
            '{"kind": "TransactionData", "record": {"source": "CC315A", "reference": "R", '
            '"total_gross_mass": 1.5}}',
            "TransactionData",
        ),
        (
            '{"kind": "ControlResult", "record": {"source": "CC315A", "reference": "R"}}',
            "TransactionData",
        ),
    ],
)
def test_json_refusals(text: str, kind: str) -> None:
    with pytest.raises(TransactionError) as caught:
        from_json(text, kind)
    assert caught.value.code == "UB2_PAYLOAD_MALFORMED"


# --- the EU side: DMS Response ---
@pytest.fixture(scope="module")
def res_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shared_file(RES_XSD))))


@FAST
@given(result=control_results())
def test_dms_notification_is_valid(res_schema: etree.XMLSchema, result: ControlResult) -> None:
    doc = etree.fromstring(to_dms_notification(result))
    assert res_schema.validate(doc), res_schema.error_log


def test_dms_notification_carries_the_result(res_schema: etree.XMLSchema) -> None:
    result = replace(
        _sample_result(),
        transaction_message_id="6f1c1d2e-8a53-4b8e-9a4e-3c3c3c3c3c3c",
        office="CNSHA001",
        control_types=(ControlType.PHYSICAL, ControlType.SEAL_CHECK),
        seals=(SealCheck("SEAL-9", False, "CSQU3054383"),),
        remarks="x" * 600,
    )
    doc = etree.fromstring(to_dms_notification(result))
    assert res_schema.validate(doc), res_schema.error_log
    ns = {"r": "urn:wco:datamodel:WCO:RES-DMS:2", "ds": "urn:wco:datamodel:WCO:Response_DS:DMS:2"}
    assert doc.findtext("r:FunctionCode", namespaces=ns) == "07"
    assert doc.findtext("r:FunctionalReferenceID", namespaces=ns) == "CR-1"
    assert doc.findtext("r:IssueDateTime/ds:DateTimeString", namespaces=ns) == "20250314093000Z"
    assert doc.findtext("r:Declaration/r:FunctionalReferenceID", namespaces=ns) == "refnum"

    def statements(type_code: str) -> list[etree._Element]:
        return [
            info
            for info in doc.findall("r:AdditionalInformation", ns)
            if info.findtext("r:StatementTypeCode", namespaces=ns) == type_code
        ]

    assert [s.findtext("r:StatementCode", namespaces=ns) for s in statements("CTY")] == [
        "PHYSICAL",
        "SEAL_CHECK",
    ]
    assert statements("OUT")[0].findtext("r:StatementCode", namespaces=ns) == "DISCREPANCIES"
    assert statements("ADM")[0].findtext("r:StatementCode", namespaces=ns) == "CN"
    assert statements("OFF")[0].findtext("r:StatementCode", namespaces=ns) == "CNSHA001"
    seal = statements("SEL")[0]
    assert seal.findtext("r:StatementCode", namespaces=ns) == "BROKEN"
    assert "SEAL-9" in (seal.findtext("r:StatementDescription", namespaces=ns) or "")
    (dis,) = statements("DIS")
    pointers = dis.findall("r:Pointer", ns)
    assert pointers[-1].findtext("r:SequenceNumeric", namespaces=ns) == "1"
    assert pointers[-1].findtext("r:TagID", namespaces=ns) == "126"
    assert statements("DDV")[0].findtext("r:StatementDescription", namespaces=ns) == "1000"
    assert statements("DFV")[0].findtext("r:StatementDescription", namespaces=ns) == "1250"
    remarks = "".join(
        s.findtext("r:StatementDescription", namespaces=ns) or "" for s in statements("REM")
    )
    assert remarks == "x" * 600 and len(statements("REM")) == 2
