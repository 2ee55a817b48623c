"""EU input: the EOS AEO export (XML and CSV, full and change feed), the mapping spec, samples."""

from __future__ import annotations

from datetime import date

import pytest
from aeo_strategies import SPEC_PATH, VECTORS, distinct_records, load_spec
from hypothesis import given, settings
from lxml import etree

from gateway.errors import AeoError
from gateway.model.aeo import AeoRecord, AeoRejected, AeoStatus, AeoType, CrossReference
from gateway.model.aeo_list import AeoList
from gateway.model.codes import Administration
from gateway.translate import eos_aeo
from gateway.translate.eos_aeo import (
    ExportKind,
    MappingSpec,
    coverage_report,
    load_mapping_spec,
    parse_eos_csv,
    parse_eos_export,
    parse_eos_xml,
    write_eos_csv,
    write_eos_xml,
)
from gateway.translate.sample_aeo import (
    generate_change_feed,
    generate_eos_export,
    generate_records,
)

SPEC = load_spec()


def refused(call: object, *args: object, **kwargs: object) -> AeoRejected:
    with pytest.raises(AeoRejected) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    assert info.value.code == "AEO_IMPORT_REJECTED"
    return info.value


# --- the mapping spec ---------------------------------------------------------------------------
def test_spec_maps_every_canonical_field_with_wco_ids_where_they_exist() -> None:
    assert [f.canonical for f in SPEC.fields] == list(eos_aeo.CANONICAL_FIELDS)
    ids = {f.canonical: f.wco_id for f in SPEC.fields}
    assert ids["holder_id"] == "R144"
    assert ids["aeo_type"] == "R145"
    assert ids["cross_references"] == "R143"
    assert ids["address.city"] == "241" and ids["address.postcode"] == "245"
    for field in SPEC.fields:
        assert field.wco_id or field.notes.strip(), field.canonical
    report = coverage_report(SPEC)
    assert "R144  AuthorisationHolder.ID" in report
    assert "9 with a WCO ID" in report


def test_translator_uses_the_spec_for_csv_columns() -> None:
    """Renaming a column in the spec renames it in what is written and read: no copy in code."""
    text = SPEC_PATH.read_text(encoding="utf-8").replace('csv = "HolderName"', 'csv = "Name"')
    renamed = load_mapping_spec(text, "renamed.toml")
    records = list(generate_records(3, seed=5))
    data = write_eos_csv(records, renamed)
    assert data.split(b"\r\n")[0].split(b",")[4] == b"Name"
    assert parse_eos_csv(data, renamed, kind=ExportKind.FULL).records == tuple(records)
    with pytest.raises(AeoRejected, match="missing columns \\['Name'\\]"):
        parse_eos_csv(write_eos_csv(records, SPEC), renamed, kind=ExportKind.FULL)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('wco_id = "R144"', 'wco_id = "R1444"', "field[2].wco_id"),
        ("[spec]\n", '[spec]\ncolour = "blue"\n', "spec.colour"),
        ('csv = "City"', 'csv = "Street"', "field[7].csv"),
        ('xml = "eos:HolderID"', 'xml = "//HolderID"', "field[2].xml"),
        (
            'required = true\nnotes = "Street',
            'required = "yes"\nnotes = "Street',
            "field[5].required",
        ),
        ('canonical = "version"', 'canonical = "version"\nfoo = 1', "field[0].foo"),
    ],
)
def test_spec_errors_name_file_and_key(old: str, new: str, where: str) -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(AeoError) as info:
        load_mapping_spec(text.replace(old, new, 1), "eos-aeo.toml")
    assert info.value.code == "AEO_MAPPING_SPEC_INVALID"
    assert info.value.location == f"eos-aeo.toml:{where}"


def test_spec_without_wco_id_needs_a_note() -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    start = text.index('canonical = "status_reason"')
    note = text.index("notes = ", start)
    end = text.index("\n", note)
    with pytest.raises(AeoError, match="notes must say why"):
        load_mapping_spec(text[:note] + 'notes = ""' + text[end:], "x.toml")


def test_translator_refuses_a_spec_that_does_not_cover_the_record() -> None:
    partial = MappingSpec(**{**SPEC.__dict__, "fields": SPEC.fields[:-1]})
    with pytest.raises(AeoError) as info:
        parse_eos_csv(b"", partial, kind=ExportKind.FULL)
    assert info.value.code == "AEO_MAPPING_SPEC_INVALID"
    assert "cross_references" in info.value.message


# --- good vectors -------------------------------------------------------------------------------
def test_good_full_export_xml_and_csv_agree() -> None:
    xml = parse_eos_xml((VECTORS / "good-full.xml").read_bytes(), SPEC)
    csv = parse_eos_csv((VECTORS / "good-full.csv").read_bytes(), SPEC, kind=ExportKind.FULL)
    assert xml.kind is ExportKind.FULL
    assert xml.records == csv.records
    nordsee, rhein, atlantic = xml.records
    assert nordsee.holder_id == "DE123456789012345"
    assert nordsee.aeo_type is AeoType.AEOF
    assert nordsee.administration is Administration.EU
    assert nordsee.address.street == "Hafenstraße 12"
    assert nordsee.cross_references == (
        CrossReference("JP-AEO", "JPAEO-EU-4711"),
        CrossReference("US-MID", "DENORLOG12HAM"),
    )
    assert rhein.authorised_since == date(2010, 6, 1)
    assert not atlantic.consent and atlantic.consent_date is None
    assert xml.locations[0].startswith("line ")


def test_change_feed_applies_to_the_full_list() -> None:
    full = parse_eos_xml((VECTORS / "good-full.xml").read_bytes(), SPEC)
    feed = parse_eos_xml((VECTORS / "good-changes.xml").read_bytes(), SPEC)
    assert feed.kind is ExportKind.CHANGES and len(feed.records) == 3
    lst = AeoList.from_records(full.records).apply_records(feed.records, feed.locations)
    assert lst.get("DEAEOF00001234").status is AeoStatus.GRANTED  # type: ignore[union-attr]
    assert lst.get("DEAEOF00001234").version == 3  # type: ignore[union-attr]
    assert lst.get("NLAEOS00000042").status is AeoStatus.CONSENT_WITHDRAWN  # type: ignore[union-attr]


def test_parse_eos_export_tells_xml_from_csv() -> None:
    xml = parse_eos_export((VECTORS / "good-full.xml").read_bytes(), SPEC)
    csv = parse_eos_export((VECTORS / "good-full.csv").read_bytes(), SPEC, csv_kind=ExportKind.FULL)
    assert xml.records == csv.records
    problem = refused(parse_eos_export, (VECTORS / "good-full.csv").read_bytes(), SPEC)
    assert "full export or a change feed" in str(problem)


# --- bad vectors --------------------------------------------------------------------------------
def test_bad_full_csv_is_refused_whole_listing_every_bad_record() -> None:
    error = refused(
        parse_eos_csv,
        (VECTORS / "bad-full.csv").read_bytes(),
        SPEC,
        kind=ExportKind.FULL,
        source="bad-full.csv",
    )
    found = {(p.where, p.code) for p in error.problems}
    assert found == {
        ("line 3", "AEO_EORI_INVALID"),
        ("line 4", "AEO_EORI_INVALID"),
        ("line 5", "AEO_UNKNOWN_TYPE"),
        ("line 6", "AEO_AUTHORISATION_NUMBER_INVALID"),
        ("line 8", "AEO_RECORD_INVALID"),
        ("line 9", "AEO_EORI_NOT_VALID"),
        ("line 10", "AEO_DUPLICATE_AUTHORISATION"),
    }
    text = str(error)
    assert "rule EORI-1" in text and "rule EORI-2" in text and "rule AUTH-2" in text
    assert "line 3: holder_id:" in text and error.location == "bad-full.csv"


def test_change_for_unknown_authorisation_is_refused_and_nothing_applied() -> None:
    lst = AeoList.from_records(
        parse_eos_xml((VECTORS / "good-full.xml").read_bytes(), SPEC).records
    )
    before = lst.summary()
    feed = parse_eos_csv(
        (VECTORS / "bad-changes-unknown.csv").read_bytes(), SPEC, kind=ExportKind.CHANGES
    )
    with pytest.raises(AeoRejected) as info:
        lst.apply_records(feed.records, feed.locations)
    assert [(p.where, p.code) for p in info.value.problems] == [
        ("line 3 (ITAEOS00009999)", "AEO_UNKNOWN_AUTHORISATION")
    ]
    assert lst.summary() == before


def test_change_feed_out_of_order_and_illegal_transition() -> None:
    error = refused(
        parse_eos_csv,
        (VECTORS / "bad-changes-order.csv").read_bytes(),
        SPEC,
        kind=ExportKind.CHANGES,
    )
    assert [(p.where, p.code) for p in error.problems] == [
        ("line 3", "AEO_OUT_OF_ORDER"),
        ("line 5", "AEO_ILLEGAL_TRANSITION"),
    ]


def test_schema_invalid_xml_is_refused_with_lines() -> None:
    error = refused(parse_eos_xml, (VECTORS / "bad-schema.xml").read_bytes(), SPEC)
    assert error.problems and all(p.code == "XML_SCHEMA_INVALID" for p in error.problems)
    assert error.problems[0].where == "line 6"  # Address where HolderName was expected
    assert "HolderName" in error.problems[0].message


def test_xxe_is_refused_before_parsing() -> None:
    error = refused(parse_eos_xml, (VECTORS / "xxe.xml").read_bytes(), SPEC)
    assert error.problems[0].code == "XML_DTD_FORBIDDEN"


def test_xml_wrong_root_and_limits() -> None:
    error = refused(parse_eos_xml, b'<x:Other xmlns:x="urn:other"/>', SPEC)
    assert error.problems[0].code == "XML_SCHEMA_INVALID"
    data = write_eos_xml(list(generate_records(5, 1)), ExportKind.FULL, SPEC)
    assert refused(parse_eos_xml, data, SPEC, max_bytes=100).problems[0].code == "XML_TOO_LARGE"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "a header row is required"),
        (b"Sequence,HolderID\r\n", "missing columns"),
        (b"\xff\xfe,\r\n", "not UTF-8"),
    ],
)
def test_csv_structure_errors(data: bytes, fragment: str) -> None:
    assert fragment in str(refused(parse_eos_csv, data, SPEC, kind=ExportKind.FULL))


def test_csv_unknown_column_and_short_row() -> None:
    good = (VECTORS / "good-full.csv").read_bytes()
    header, rest = good.split(b"\r\n", 1)
    assert "unknown columns ['Colour']" in str(
        refused(parse_eos_csv, header + b",Colour\r\n" + rest, SPEC, kind=ExportKind.FULL)
    )
    short = good + b"1,EU,DE1\r\n"
    error = refused(parse_eos_csv, short, SPEC, kind=ExportKind.FULL)
    assert [p.where for p in error.problems] == ["line 5"]


def test_a_required_field_left_empty_is_named() -> None:
    lines = (VECTORS / "good-full.csv").read_bytes().split(b"\r\n")
    lines[1] = lines[1].replace(b"Nordsee Logistik GmbH", b"")
    error = refused(parse_eos_csv, b"\r\n".join(lines), SPEC, kind=ExportKind.FULL)
    assert [(p.where, p.field) for p in error.problems] == [("line 2", "holder_name")]


# --- round trips --------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(distinct_records())
def test_csv_round_trip(records: list[AeoRecord]) -> None:
    data = write_eos_csv(records, SPEC)
    assert parse_eos_csv(data, SPEC, kind=ExportKind.FULL).records == tuple(records)


@settings(max_examples=40, deadline=None)
@given(distinct_records())
def test_xml_round_trip(records: list[AeoRecord]) -> None:
    data = write_eos_xml(records, ExportKind.FULL, SPEC)
    assert parse_eos_xml(data, SPEC).records == tuple(records)


# --- the sample generator -----------------------------------------------------------------------
def test_sample_export_is_valid_realistic_and_deterministic() -> None:
    xml = generate_eos_export(300, seed=7, kind="xml", spec=SPEC)
    csv = generate_eos_export(300, seed=7, kind="csv", spec=SPEC)
    assert xml == generate_eos_export(300, seed=7, kind="xml", spec=SPEC)
    assert csv != generate_eos_export(300, seed=8, kind="csv", spec=SPEC)
    records = parse_eos_xml(xml, SPEC).records
    assert records == parse_eos_csv(csv, SPEC, kind=ExportKind.FULL).records
    assert len(records) == 300 == len({r.authorisation_number for r in records})
    assert len({r.holder_id for r in records}) == 300
    assert len({r.holder_id[:2] for r in records}) >= 8  # EORIs across member states
    assert {r.aeo_type for r in records} == set(AeoType)
    assert 10 < sum(1 for r in records if not r.consent) < 80
    assert 50 < sum(1 for r in records if r.references("US-MID")) < 200
    assert any(r.status is AeoStatus.SUSPENDED for r in records)
    assert all(r.aeo_type is not AeoType.AEOC for r in records if r.references("US-MID"))
    schema = eos_aeo._schema()
    assert schema.validate(etree.fromstring(xml))
    with pytest.raises(ValueError):
        generate_eos_export(1, 1, "json", spec=SPEC)  # type: ignore[arg-type]


def test_sample_change_feed_applies_cleanly() -> None:
    records = list(generate_records(200, seed=3))
    lst = AeoList.from_records(records)
    feed = generate_change_feed(records, 20, seed=4)
    assert len(feed) == 20
    changed = lst.apply_records(feed)
    statuses = {changed.get(r.authorisation_number).status for r in feed}  # type: ignore[union-attr]
    assert AeoStatus.SUSPENDED in statuses and AeoStatus.CONSENT_WITHDRAWN in statuses
