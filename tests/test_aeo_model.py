"""The canonical AEO record, its state machine, the AEO list and its reconciliation summary."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime

import pycountry
import pytest
from aeo_strategies import distinct_records, records
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import AeoError
from gateway.model.aeo import (
    EORI_COUNTRIES,
    EU_MEMBER_STATES,
    LEGAL_TRANSITIONS,
    Address,
    AeoRecord,
    AeoRejected,
    AeoStatus,
    AeoType,
    CrossReference,
    canonical_bytes,
    check_authorisation_number,
    check_eori,
    check_transition,
)
from gateway.model.aeo_list import (
    AeoChange,
    AeoList,
    ChangeKind,
    ReconciliationSummary,
    StatusSummary,
    SummaryBuilder,
    summarise,
)
from gateway.model.codes import Administration

G, S, R, W = AeoStatus.GRANTED, AeoStatus.SUSPENDED, AeoStatus.REVOKED, AeoStatus.CONSENT_WITHDRAWN


def make(**changes: object) -> AeoRecord:
    base = AeoRecord(
        administration=Administration.EU,
        holder_id="DE123456789012345",
        holder_name="Nordsee Logistik GmbH",
        address=Address("Hafenstraße 12", "20457", "Hamburg", "DE"),
        authorisation_number="DEAEOF00001234",
        aeo_type=AeoType.AEOF,
        issuing_country="DE",
        competent_authority="Hauptzollamt Hamburg",
        authorised_since=date(2014, 3, 1),
        status=G,
        status_effective=date(2014, 3, 1),
        consent=True,
        consent_date=date(2014, 3, 15),
        version=1,
        cross_references=(CrossReference("US-MID", "DENORLOG12HAM"),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def error_of(**changes: object) -> AeoError:
    with pytest.raises(AeoError) as info:
        make(**changes)
    return info.value


# --- EORI and authorisation number ------------------------------------------------------------
@pytest.mark.parametrize(
    "eori",
    ["DE123456789012345", "NL812345678", "FR12345678900017", "ESB12345678", "ATEOS1000000001",
     "IE1234567T", "GR123456789", "XI123456789000", "PL1234567890"],
)  # fmt: skip
def test_valid_eoris_across_member_states(eori: str) -> None:
    assert check_eori(eori) == eori


@pytest.mark.parametrize(
    ("eori", "rule"),
    [
        ("US123456789", "EORI-1"),  # not a member state
        ("GB123456789000", "EORI-1"),  # the UK left; only XI (Northern Ireland) remains
        ("EL123456789", "EORI-1"),  # Greece is GR in EORIs (EL is the VAT prefix)
        ("de123456789", "EORI-1"),  # lower-case prefix
        ("DE", "EORI-2"),  # nothing after the country code
        ("DE1234567890123456", "EORI-2"),  # 16 characters after it
        ("DE12345-6789", "EORI-2"),  # not alphanumeric
        ("DEabc123", "EORI-2"),  # lower case
    ],
)
def test_malformed_eori_names_the_rule(eori: str, rule: str) -> None:
    with pytest.raises(AeoError) as info:
        check_eori(eori)
    assert info.value.code == "AEO_EORI_INVALID"
    assert rule in info.value.message
    assert info.value.location == "holder_id"


@pytest.mark.parametrize(
    ("number", "aeo_type", "country", "rule"),
    [
        ("DEAEO00001234", AeoType.AEOF, "DE", "AUTH-1"),
        ("DE-AEOF-1234", AeoType.AEOF, "DE", "AUTH-1"),
        ("DEAEOS00001234", AeoType.AEOF, "DE", "AUTH-2"),
        ("DEAEOC00001234", AeoType.AEOS, "DE", "AUTH-2"),
        ("NLAEOF00001234", AeoType.AEOF, "DE", "AUTH-3"),
    ],
)
def test_authorisation_number_checked_against_type_and_country(
    number: str, aeo_type: AeoType, country: str, rule: str
) -> None:
    with pytest.raises(AeoError) as info:
        check_authorisation_number(number, aeo_type, country)
    assert info.value.code == "AEO_AUTHORISATION_NUMBER_INVALID"
    assert rule in info.value.message


def test_record_checks_number_against_its_type() -> None:
    assert error_of(aeo_type=AeoType.AEOS).code == "AEO_AUTHORISATION_NUMBER_INVALID"
    assert error_of(aeo_type=None).code == "AEO_UNKNOWN_TYPE"
    assert error_of(aeo_type="AEOX").code == "AEO_UNKNOWN_TYPE"


# --- record rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "location", "fragment"),
    [
        ({"consent_date": None}, "consent_date", "CONSENT-1"),
        ({"status": W}, "consent", "CONSENT-2"),
        ({"status_effective": date(2014, 2, 28)}, "status_effective", "before"),
        ({"holder_name": "  "}, "holder_name", "TEXT-1"),
        ({"holder_name": "x" * 513}, "holder_name", "TEXT-2"),
        ({"holder_name": "Evil\x00Corp"}, "holder_name", "TEXT-3"),
        ({"status_reason": "line\nbreak"}, "status_reason", "TEXT-3"),
        ({"authorised_since": datetime(2014, 3, 1)}, "authorised_since", "not a datetime"),
        ({"version": 0}, "version", "1 to 2^63-1"),
        ({"version": True}, "version", "1 to 2^63-1"),
        ({"issuing_country": "US"}, "issuing_country", "EU member state"),
        ({"address": Address("Main St 1", "", "Springfield", "DE")}, None, None),
    ],
)
def test_record_rules(
    changes: dict[str, object], location: str | None, fragment: str | None
) -> None:
    if location is None:
        make(**changes)  # an empty postcode is allowed
        return
    error = error_of(**changes)
    assert error.location == location
    assert fragment is not None and fragment in error.message


def test_address_country_must_be_iso() -> None:
    with pytest.raises(AeoError) as info:
        Address("Main St 1", "1000", "Brussels", "XX")
    assert info.value.location == "address.country"


def test_cross_references_are_kept_in_one_canonical_order_and_unique() -> None:
    a, b = CrossReference("US-MID", "B"), CrossReference("JP-AEO", "A")
    assert make(cross_references=(a, b)) == make(cross_references=(b, a))
    assert make(cross_references=(a, b)).cross_references == (b, a)
    with pytest.raises(AeoError, match="twice"):
        make(cross_references=(a, a))
    with pytest.raises(AeoError, match="scheme"):
        CrossReference("MID", "X")


def test_partner_record_has_its_own_identifier_rules() -> None:
    record = make(
        administration=Administration.US, holder_id="CTPAT-0042", authorisation_number="C-42",
        aeo_type=None, partner_programme="CTPAT-IMPORTER", issuing_country="US",
    )  # fmt: skip
    assert record.aeo_type is None
    with pytest.raises(AeoError, match="programme"):
        replace(record, partner_programme="")


# --- the state machine --------------------------------------------------------------------------
@pytest.mark.parametrize("current", list(AeoStatus))
@pytest.mark.parametrize("new", list(AeoStatus))
def test_state_machine(current: AeoStatus, new: AeoStatus) -> None:
    legal = current is not R or new is R  # REVOKED is final (amendments only)
    assert (new in LEGAL_TRANSITIONS[current]) is legal
    if legal:
        check_transition(current, new)
    else:
        with pytest.raises(AeoError) as info:
            check_transition(current, new)
        assert info.value.code == "AEO_ILLEGAL_TRANSITION"


# --- the list -----------------------------------------------------------------------------------
def suspended(record: AeoRecord, on: date = date(2026, 1, 20), version: int = 2) -> AeoRecord:
    return replace(
        record, status=S, status_effective=on, status_reason="Suspended", version=version
    )


def test_added_changed_removed() -> None:
    rec = make()
    lst = AeoList().apply([AeoChange.added(rec)])
    assert lst.get(rec.authorisation_number) == rec
    lst = lst.apply([AeoChange.changed(G, suspended(rec))])
    assert lst.get(rec.authorisation_number).status is S  # type: ignore[union-attr]
    gone = lst.apply(
        [AeoChange.removed(suspended(rec), version=3, status=W, effective_date=date(2026, 2, 1))]
    )
    assert len(gone) == 0
    # a stale re-add (older version than the removal) is refused, a newer one is fine
    with pytest.raises(AeoRejected) as info:
        gone.apply([AeoChange.added(rec)])
    assert info.value.problems[0].code == "AEO_OUT_OF_ORDER"
    readded = replace(rec, version=4, status_effective=date(2026, 3, 1))
    assert len(gone.apply([AeoChange.added(readded)])) == 1


def test_change_shapes_are_checked() -> None:
    rec = make()
    with pytest.raises(AeoError, match="names the status it changes from"):
        AeoChange(
            ChangeKind.CHANGED,
            rec.authorisation_number,
            rec.holder_id,
            1,
            G,
            rec.status_effective,
            "",
            None,
            rec,
        )
    with pytest.raises(AeoError, match="no operator data"):
        AeoChange(
            ChangeKind.REMOVED,
            rec.authorisation_number,
            rec.holder_id,
            2,
            W,
            rec.status_effective,
            "",
            G,
            rec,
        )
    with pytest.raises(AeoError, match="its record says"):
        AeoChange(
            ChangeKind.ADDED,
            rec.authorisation_number,
            rec.holder_id,
            7,
            G,
            rec.status_effective,
            "",
            None,
            rec,
        )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        # a status change for an authorisation the list does not hold
        (
            AeoChange.changed(G, suspended(make(authorisation_number="DEAEOF00009999"))),
            "AEO_UNKNOWN_AUTHORISATION",
        ),
        # an older version: a replayed or reordered change
        (AeoChange.changed(G, suspended(make(), version=1)), "AEO_OUT_OF_ORDER"),
        # the sender thinks the status was SUSPENDED, we hold GRANTED: a change was lost
        (AeoChange.changed(S, suspended(make())), "AEO_PREVIOUS_STATUS_MISMATCH"),
        # a second ADDED for a held authorisation
        (AeoChange.added(replace(make(), version=2)), "AEO_PREVIOUS_STATUS_MISMATCH"),
    ],
)
def test_bad_changes_refused(change: AeoChange, code: str) -> None:
    lst = AeoList.from_records([make()])
    with pytest.raises(AeoRejected) as info:
        lst.apply([change])
    assert info.value.problems[0].code == code
    assert info.value.code == code


def test_effective_dates_must_not_go_backwards() -> None:
    lst = AeoList.from_records([suspended(make(), on=date(2026, 1, 20))])
    lifted = replace(make(), version=3, status_effective=date(2026, 1, 10))
    with pytest.raises(AeoRejected) as info:
        lst.apply([AeoChange.changed(S, lifted)])
    assert info.value.problems[0].code == "AEO_OUT_OF_ORDER"
    assert "2026-01-10 is before the held 2026-01-20" in str(info.value)


def test_revoked_is_final_in_the_list() -> None:
    revoked = replace(make(), status=R, status_effective=date(2020, 1, 1), version=2)
    lst = AeoList.from_records([revoked])
    with pytest.raises(AeoRejected) as info:
        lst.apply(
            [AeoChange.changed(R, replace(make(), version=3, status_effective=date(2021, 1, 1)))]
        )
    assert info.value.problems[0].code == "AEO_ILLEGAL_TRANSITION"


def test_a_batch_with_one_bad_change_changes_nothing_and_lists_every_bad_one() -> None:
    a, b = (
        make(),
        make(
            holder_id="NL812345678",
            authorisation_number="NLAEOS00000042",
            aeo_type=AeoType.AEOS,
            issuing_country="NL",
        ),
    )
    lst = AeoList.from_records([a, b])
    before = lst.summary()
    batch = [
        AeoChange.changed(G, suspended(a)),  # good
        AeoChange.changed(G, suspended(make(authorisation_number="DEAEOF00000001"))),  # unknown
        AeoChange.changed(G, suspended(b, version=1)),  # out of order
    ]
    with pytest.raises(AeoRejected) as info:
        lst.apply(batch)
    assert [p.code for p in info.value.problems] == [
        "AEO_UNKNOWN_AUTHORISATION",
        "AEO_OUT_OF_ORDER",
    ]
    assert [p.where.split()[1] for p in info.value.problems] == ["1", "2"]
    assert lst.summary() == before  # the list itself is immutable: nothing applied
    assert lst.get(a.authorisation_number) == a


def test_change_feed_first_record_must_be_a_grant() -> None:
    lst = AeoList.from_records([make()])
    new = make(
        holder_id="IT01234567890",
        authorisation_number="ITAEOS00009999",
        aeo_type=AeoType.AEOS,
        issuing_country="IT",
    )
    with pytest.raises(AeoRejected) as info:
        lst.apply_records([suspended(make()), suspended(new)], ["line 2", "line 3"])
    assert [(p.where, p.code) for p in info.value.problems] == [
        ("line 3 (ITAEOS00009999)", "AEO_UNKNOWN_AUTHORISATION")
    ]
    grown = lst.apply_records([suspended(make()), new])
    assert len(grown) == 2 and grown.get("DEAEOF00001234").status is S  # type: ignore[union-attr]


def test_full_list_refuses_duplicates() -> None:
    with pytest.raises(AeoRejected) as info:
        AeoList.from_records([make(), make(), make(holder_id="DE1")])
    assert info.value.code == "AEO_DUPLICATE_AUTHORISATION"
    assert len(info.value.problems) == 2


# --- reconciliation summary ---------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(distinct_records(), st.randoms())
def test_summary_is_order_independent(recs: list[AeoRecord], rnd: object) -> None:
    shuffled = list(recs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert summarise(recs) == summarise(shuffled)
    assert summarise(recs).total == len(recs)
    for status in AeoStatus:
        assert summarise(recs).of(status).count == sum(1 for r in recs if r.status is status)


@settings(max_examples=60, deadline=None)
@given(distinct_records(), records(), st.data())
def test_summary_detects_any_field_change(
    recs: list[AeoRecord], other: AeoRecord, data: st.DataObject
) -> None:
    if not recs:
        return
    index = data.draw(st.integers(0, len(recs) - 1))
    changed = [*recs[:index], other, *recs[index + 1 :]]
    if sorted(map(canonical_bytes, changed)) == sorted(map(canonical_bytes, recs)):
        return
    assert summarise(changed) != summarise(recs)


@settings(max_examples=40, deadline=None)
@given(distinct_records())
def test_streamed_summary_equals_summarise(recs: list[AeoRecord]) -> None:
    builder = SummaryBuilder()
    for record in sorted(recs, key=lambda r: r.authorisation_number):
        builder.add(record)
    assert builder.result() == summarise(recs)


def test_streamed_summary_refuses_unordered_rows() -> None:
    builder = SummaryBuilder()
    builder.add(make())
    with pytest.raises(AeoError) as info:
        builder.add(make())
    assert info.value.code == "AEO_DUPLICATE_AUTHORISATION"
    with pytest.raises(AeoError, match="ascending"):
        builder.add(make(authorisation_number="DEAEOF00000001"))


def test_summary_digest_definition() -> None:
    rec = make()
    summary = summarise([rec])
    assert summary.of(G).sha256 == hashlib.sha256(canonical_bytes(rec) + b"\n").digest()
    assert summary.of(S) == StatusSummary(S, 0, hashlib.sha256(b"").digest())
    assert b'"holder_id":"DE123456789012345"' in canonical_bytes(rec)


def test_summary_structure_is_checked() -> None:
    entries = summarise([]).entries
    with pytest.raises(AeoError) as info:
        ReconciliationSummary(tuple(reversed(entries)))
    assert info.value.code == "AEO_SUMMARY_MISMATCH"
    with pytest.raises(AeoError):
        ReconciliationSummary((*entries[:3], StatusSummary(W, 0, b"\x00" * 32)))


def test_check_matches_names_the_status_that_differs() -> None:
    rec = make()
    summary = summarise([rec])
    summary.check_matches([rec])
    with pytest.raises(AeoError) as info:
        summary.check_matches([replace(rec, holder_name="Someone Else GmbH")])
    assert info.value.code == "AEO_SUMMARY_MISMATCH"
    assert "GRANTED" in info.value.message and "SUSPENDED" not in info.value.message


# --- query --------------------------------------------------------------------------------------
def test_query_by_eori_authorisation_number_or_mid() -> None:
    rec = make()
    lst = AeoList.from_records([rec])
    for identifier in ("DE123456789012345", "DEAEOF00001234", "DENORLOG12HAM"):
        answer = lst.query(identifier)
        assert answer.found and answer.is_aeo and answer.since == date(2014, 3, 1)
    assert not lst.query("DE999").found and lst.query("DE999").since is None
    suspended_list = lst.apply([AeoChange.changed(G, suspended(rec))])
    answer = suspended_list.query("DE123456789012345")
    assert answer.found and not answer.is_aeo and answer.since is None


def test_query_prefers_a_granted_authorisation() -> None:
    aeoc = make(
        authorisation_number="DEAEOC00000001",
        aeo_type=AeoType.AEOC,
        authorised_since=date(2010, 1, 1),
        status=R,
        status_effective=date(2015, 1, 1),
        version=2,
    )
    aeof = make()
    answer = AeoList.from_records([aeoc, aeof]).query("DE123456789012345")
    assert answer.record == aeof
    assert len(AeoList.from_records([aeoc, aeof]).find("DE123456789012345")) == 2


def test_member_state_codes_are_iso_codes() -> None:
    assert len(EU_MEMBER_STATES) == 27
    assert all(pycountry.countries.get(alpha_2=code) for code in EU_MEMBER_STATES)
    extra = EORI_COUNTRIES - EU_MEMBER_STATES
    assert extra == {"XI"}
