"""UB1 exchange payloads: both wire forms lossless, bad payloads refused with stable codes."""

from __future__ import annotations

import uuid
from datetime import date
from importlib import resources

import pytest
from aeo_strategies import PARTNERS_DIR, distinct_records, load_spec, records, regex
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway._proto.gnc.v1 import aeo_pb2
from gateway.errors import AeoError
from gateway.model.aeo import Address, AeoRecord, AeoRejected, AeoStatus, AeoType
from gateway.model.aeo_list import AeoChange, AeoList, ChangeKind, summarise
from gateway.model.codes import Administration
from gateway.partners.profile import load_profile, partner_delta, partner_view
from gateway.translate.aeo_exchange import (
    FullList,
    MessageType,
    PayloadForm,
    Query,
    QueryAnswer,
    StatusChanges,
    decode,
    encode,
    full_list_for,
    partner_list_to_eu,
)
from gateway.translate.eos_aeo import parse_eos_xml
from gateway.translate.sample_aeo import generate_change_feed, generate_records

SPEC = load_spec()
US = load_profile((PARTNERS_DIR / "us.toml").read_text(encoding="utf-8"), "us.toml")
FORMS = list(PayloadForm)


def round_trip(payload: object, form: PayloadForm) -> object:
    data = encode(payload, form)  # type: ignore[arg-type]
    return decode(data, payload.message_type, form)  # type: ignore[attr-defined]


# --- strategies ---------------------------------------------------------------------------------
@st.composite
def changes(draw: st.DrawFn) -> AeoChange:
    record = draw(records())
    kind = draw(st.sampled_from(ChangeKind))
    previous = draw(st.sampled_from(AeoStatus))
    if kind is ChangeKind.ADDED:
        return AeoChange.added(record)
    if kind is ChangeKind.CHANGED:
        return AeoChange.changed(previous, record)
    return AeoChange.removed(
        record,
        version=record.version,
        status=draw(st.sampled_from(AeoStatus)),
        effective_date=record.status_effective,
        reason=record.status_reason,
    )


owners = st.sampled_from(Administration)
query_ids = st.uuids().map(str)
identifiers = regex(r"[A-Za-z0-9][A-Za-z0-9./-]{0,34}")


# --- lossless round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
@settings(max_examples=30, deadline=None)
@given(owner=owners, items=st.lists(changes(), max_size=4))
def test_status_changes_round_trip(
    form: PayloadForm, owner: Administration, items: list[AeoChange]
) -> None:
    payload = StatusChanges(owner, tuple(items))
    assert round_trip(payload, form) == payload


@pytest.mark.parametrize("form", FORMS)
@settings(max_examples=30, deadline=None)
@given(owner=owners, as_of=st.dates(), recs=distinct_records())
def test_full_list_round_trip(
    form: PayloadForm, owner: Administration, as_of: date, recs: list[AeoRecord]
) -> None:
    payload = FullList.build(owner, as_of, recs)
    decoded = round_trip(payload, form)
    assert decoded == payload
    assert isinstance(decoded, FullList) and decoded.summary == summarise(recs)


@pytest.mark.parametrize("form", FORMS)
@settings(max_examples=30, deadline=None)
@given(
    query_id=query_ids,
    identifier=identifiers,
    record=st.none() | records(),
    refusal=st.sampled_from(["", "AEO_TYPE_NOT_ELIGIBLE"]),
)
def test_query_and_answer_round_trip(
    form: PayloadForm, query_id: str, identifier: str, record: AeoRecord | None, refusal: str
) -> None:
    assert round_trip(Query(query_id, identifier), form) == Query(query_id, identifier)
    if record is not None:
        refusal = ""
    answer = QueryAnswer(query_id, identifier, record, refusal, "why" if refusal else "")
    assert round_trip(answer, form) == answer


@settings(max_examples=20, deadline=None)
@given(recs=distinct_records())
def test_both_forms_carry_the_same_list(recs: list[AeoRecord]) -> None:
    payload = FullList.build(Administration.EU, date(2026, 1, 15), recs)
    assert round_trip(payload, PayloadForm.PROTOBUF) == round_trip(payload, PayloadForm.XML)


def test_protobuf_encoding_is_deterministic() -> None:
    payload = FullList.build(Administration.EU, date(2026, 1, 15), generate_records(50, 1))
    assert encode(payload, PayloadForm.PROTOBUF) == encode(payload, PayloadForm.PROTOBUF)


# --- the reconciliation summary is enforced -----------------------------------------------------
def sample_list() -> FullList:
    return FullList.build(Administration.EU, date(2026, 1, 15), generate_records(20, 3))


def test_full_list_with_a_changed_record_is_refused_protobuf() -> None:
    msg = aeo_pb2.AeoFullList()
    msg.ParseFromString(encode(sample_list(), PayloadForm.PROTOBUF))
    msg.records[3].holder_name = "Somebody Else GmbH"
    with pytest.raises(AeoError) as info:
        decode(msg.SerializeToString(), MessageType.FULL_LIST, PayloadForm.PROTOBUF)
    assert info.value.code == "AEO_SUMMARY_MISMATCH"


def test_full_list_with_a_dropped_record_is_refused_xml() -> None:
    root = etree.fromstring(encode(sample_list(), PayloadForm.XML))
    first = root.find("{urn:gnc-gateway:ub1:aeo:1}Record")
    assert first is not None
    root.remove(first)
    with pytest.raises(AeoError) as info:
        decode(etree.tostring(root), MessageType.FULL_LIST, PayloadForm.XML)
    assert info.value.code == "AEO_SUMMARY_MISMATCH"
    assert "records vs summary" in info.value.message


def test_full_list_with_a_forged_summary_is_refused() -> None:
    payload = sample_list()
    msg = aeo_pb2.AeoFullList()
    msg.ParseFromString(encode(payload, PayloadForm.PROTOBUF))
    msg.summary.statuses[0].count += 1
    with pytest.raises(AeoError) as info:
        decode(msg.SerializeToString(), MessageType.FULL_LIST, PayloadForm.PROTOBUF)
    assert info.value.code == "AEO_SUMMARY_MISMATCH"
    del msg.summary.statuses[3]
    with pytest.raises(AeoError) as info:
        decode(msg.SerializeToString(), MessageType.FULL_LIST, PayloadForm.PROTOBUF)
    assert info.value.code == "AEO_SUMMARY_MISMATCH"
    with pytest.raises(AeoError) as info:
        FullList(payload.list_owner, payload.as_of, payload.records[1:], payload.summary)
    assert info.value.code == "AEO_SUMMARY_MISMATCH"


def test_full_list_with_duplicate_authorisation_is_refused() -> None:
    rec = next(generate_records(1, 1))
    with pytest.raises(AeoError) as info:
        FullList(Administration.EU, date(2026, 1, 1), (rec, rec), summarise([rec, rec]))
    assert info.value.code == "AEO_DUPLICATE_AUTHORISATION"


# --- bad payloads -------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_garbage_is_malformed(form: PayloadForm) -> None:
    with pytest.raises(AeoError) as info:
        decode(b"\xff\x00garbage<", MessageType.FULL_LIST, form)
    assert info.value.code == "AEO_PAYLOAD_MALFORMED"
    with pytest.raises(AeoError) as info:
        decode(b"", "AeoSomethingElse", form)
    assert info.value.code == "AEO_PAYLOAD_MALFORMED"


def test_xml_payload_of_another_type_or_invalid_is_malformed() -> None:
    query = encode(Query(str(uuid.uuid4()), "DE123"), PayloadForm.XML)
    with pytest.raises(AeoError, match="expected"):
        decode(query, MessageType.QUERY_ANSWER, PayloadForm.XML)
    bad = query.replace(b"queryId=", b"queryID=")
    with pytest.raises(AeoError, match=r"ub1-aeo\.xsd") as info:
        decode(bad, MessageType.QUERY, PayloadForm.XML)
    assert info.value.code == "AEO_PAYLOAD_MALFORMED"
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + query.split(b"?>", 1)[1]
    with pytest.raises(AeoError, match="DOCTYPE"):
        decode(doctype, MessageType.QUERY, PayloadForm.XML)


def test_bad_records_in_a_list_are_all_named_with_model_codes() -> None:
    msg = aeo_pb2.AeoFullList()
    msg.ParseFromString(encode(sample_list(), PayloadForm.PROTOBUF))
    msg.records[2].holder_id = "US123"
    msg.records[5].status = 9  # type: ignore[assignment]
    msg.records[7].aeo_type = 7  # type: ignore[assignment]
    with pytest.raises(AeoRejected) as info:
        decode(msg.SerializeToString(), MessageType.FULL_LIST, PayloadForm.PROTOBUF)
    assert [(p.where, p.code) for p in info.value.problems] == [
        ("records[2]", "AEO_EORI_INVALID"),
        ("records[5]", "AEO_UNKNOWN_STATUS"),
        ("records[7]", "AEO_UNKNOWN_TYPE"),
    ]


def test_unknown_status_in_xml_is_named() -> None:
    data = encode(sample_list(), PayloadForm.XML).replace(
        b"<ub1:Status>GRANTED</ub1:Status>", b"<ub1:Status>DORMANT</ub1:Status>", 1
    )
    with pytest.raises(AeoRejected) as info:
        decode(data, MessageType.FULL_LIST, PayloadForm.XML)
    assert info.value.problems[0].code == "AEO_UNKNOWN_STATUS"
    assert "line" in info.value.problems[0].field


def test_query_validation() -> None:
    with pytest.raises(AeoError) as info:
        Query("not-a-uuid", "DE123")
    assert info.value.code == "AEO_PAYLOAD_MALFORMED"
    with pytest.raises(AeoError):
        QueryAnswer(str(uuid.uuid4()), "DE123", next(generate_records(1, 1)), "AEO_NO_CONSENT")


# --- the XML schema names WCO IDs as the mapping spec does --------------------------------------
def test_xsd_wco_annotations_agree_with_the_mapping_spec() -> None:
    xsd = etree.fromstring(
        (resources.files("gateway.translate") / "schemas" / "ub1-aeo.xsd").read_bytes()
    )
    xs = "{http://www.w3.org/2001/XMLSchema}"
    spec_ids = {f.canonical: f.wco_id for f in SPEC.fields}
    seen = set()
    record_type = xsd.find(f"{xs}complexType[@name='Record']")
    assert record_type is not None
    for element in record_type.iter(f"{xs}element"):
        info = {a.get("source"): (a.text or "") for a in element.iter(f"{xs}appinfo")}
        if element.get("name") == "Address":
            continue
        assert "urn:wco:datamodel:WCOID" in info, element.get("name")
        canonical = info["urn:gnc-gateway:canonical"]
        assert info["urn:wco:datamodel:WCOID"] == spec_ids[canonical], canonical
        if not info["urn:wco:datamodel:WCOID"]:
            assert element.find(f"{xs}annotation/{xs}documentation") is not None
        seen.add(canonical)
    assert seen == set(spec_ids) - {"eori_status"}  # EORI status is checked on import only


# --- partner flows ------------------------------------------------------------------------------
def test_full_list_for_us_sends_only_eligible_records_and_both_sides_agree() -> None:
    eu = AeoList.from_records(generate_records(300, seed=21))
    payload = full_list_for(US, eu, date(2026, 1, 15))
    assert payload.records and all(
        r.consent and r.aeo_type is not AeoType.AEOC and r.references("US-MID")
        for r in payload.records
    )
    assert all(r.partner_programme == "CTPAT-MRA" for r in payload.records)
    received = decode(
        encode(payload, PayloadForm.PROTOBUF), MessageType.FULL_LIST, PayloadForm.PROTOBUF
    )
    assert isinstance(received, FullList)
    us = received.to_list()
    assert us.summary() == payload.summary
    # then a suspension and a consent withdrawal travel as deltas; summaries still agree
    feed = generate_change_feed(list(eu), 10, seed=22)
    deltas = [d for n in feed if (d := partner_delta(US, eu.get(n.authorisation_number), n))]
    eu = eu.apply_records(feed)
    message = StatusChanges(Administration.EU, tuple(deltas))
    got = decode(encode(message, PayloadForm.XML), MessageType.STATUS_CHANGES, PayloadForm.XML)
    assert isinstance(got, StatusChanges)
    us = us.apply(got.changes)
    assert us.summary() == summarise(partner_view(US, eu))


def test_partner_list_translated_for_eu_risk_systems() -> None:
    def ctpat(n: int, programme: str) -> AeoRecord:
        return AeoRecord(
            administration=Administration.US, holder_id=f"CTPAT-{n:04d}",
            holder_name=f"Importer {n} Inc.", address=Address("1 Harbor Blvd", "90731",
                                                              "San Pedro", "US"),
            authorisation_number=f"CT-{n:04d}", aeo_type=None, issuing_country="US",
            competent_authority="CBP C-TPAT", authorised_since=date(2012, 7, 1),
            status=AeoStatus.GRANTED, status_effective=date(2012, 7, 1), consent=True,
            consent_date=date(2012, 7, 1), version=1, partner_programme=programme,
        )  # fmt: skip

    good = FullList.build(
        Administration.US,
        date(2026, 1, 15),
        [ctpat(1, "CTPAT-IMPORTER"), ctpat(2, "CTPAT-EXPORTER")],
    )
    received = decode(encode(good, PayloadForm.XML), MessageType.FULL_LIST, PayloadForm.XML)
    assert isinstance(received, FullList)
    eu_export = parse_eos_xml(partner_list_to_eu(received, US, SPEC), SPEC)
    assert [r.aeo_type for r in eu_export.records] == [AeoType.AEOS, AeoType.AEOS]
    assert {r.administration for r in eu_export.records} == {Administration.US}
    assert eu_export.records[0].partner_programme == "CTPAT-IMPORTER"
    bad = FullList.build(
        Administration.US,
        date(2026, 1, 15),
        [ctpat(1, "CTPAT-IMPORTER"), ctpat(2, "MYSTERY"), ctpat(3, "OTHER")],
    )
    with pytest.raises(AeoRejected) as info:
        partner_list_to_eu(bad, US, SPEC)
    assert [(p.where, p.code) for p in info.value.problems] == [
        ("records[1]", "AEO_UNKNOWN_PROGRAMME"),
        ("records[2]", "AEO_UNKNOWN_PROGRAMME"),
    ]
    with pytest.raises(AeoError, match="profile is US"):
        partner_list_to_eu(FullList.build(Administration.JP, date(2026, 1, 1), []), US, SPEC)
