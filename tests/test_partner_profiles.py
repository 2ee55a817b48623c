"""Partner profiles: every shipped profile loads, each bad key has its error, eligibility rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from aeo_strategies import PARTNERS_DIR

from gateway.errors import AeoError, ProfileError
from gateway.model.aeo import Address, AeoRecord, AeoStatus, AeoType, CrossReference
from gateway.model.aeo_list import AeoList, ChangeKind
from gateway.model.codes import Administration
from gateway.partners.profile import (
    Binding,
    LinkStatus,
    PartnerProfile,
    answer_query,
    eligible_for,
    from_partner,
    load_profile,
    load_profiles,
    partner_delta,
    partner_view,
    to_partner,
)
from gateway.translate.sample_aeo import generate_change_feed, generate_records

FILES = sorted(PARTNERS_DIR.glob("*.toml"))
US_TEXT = (PARTNERS_DIR / "us.toml").read_text(encoding="utf-8")


def profile(code: str) -> PartnerProfile:
    path = PARTNERS_DIR / f"{code.lower()}.toml"
    return load_profile(path.read_text(encoding="utf-8"), path.name)


US, JP = profile("US"), profile("JP")


def eu_record(**changes: object) -> AeoRecord:
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
        status=AeoStatus.GRANTED,
        status_effective=date(2014, 3, 1),
        consent=True,
        consent_date=date(2014, 3, 15),
        version=1,
        cross_references=(
            CrossReference("US-MID", "DENORLOG12HAM"),
            CrossReference("JP-AEO", "JPAEO-4711"),
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- the shipped profiles -----------------------------------------------------------------------
def test_every_partner_has_a_profile_and_each_loads() -> None:
    assert [p.stem for p in FILES] == ["ad", "ca", "ch", "cn", "jp", "md", "no", "ua", "us"]
    loaded_all = load_profiles({p.name: p.read_text(encoding="utf-8") for p in FILES})
    assert set(loaded_all) == {Administration(p.stem.upper()) for p in FILES}
    # MD and UA exchange UB2 (TIR) only: no AEO mutual recognition (tests/test_ub2_lanes.py).
    assert {c for c, p in loaded_all.items() if p.ub1 is None} == {
        Administration.MD, Administration.UA,
    }  # fmt: skip
    profiles = {c: p for c, p in loaded_all.items() if p.ub1 is not None}
    for code, loaded in profiles.items():
        assert loaded.ub1 is not None
        assert loaded.source == f"{code.value.lower()}.toml"
        assert loaded.ub1.full_list_interval == timedelta(hours=24)
        assert loaded.ub1.eligible_types == {AeoType.AEOS, AeoType.AEOF}
        assert set(loaded.ub1.programme) == loaded.ub1.eligible_types
        assert loaded.ub1.inbound, "each partner's own programme maps to an EU type"
        assert all(path.startswith(f"pki/{code.value}/") for path in loaded.transport.ca)
        assert loaded.retry.max_attempts >= 1
        expected = LinkStatus.STAGING if code is Administration.CA else LinkStatus.PRODUCTION
        assert loaded.status is expected
    assert profiles[Administration.US].ub1_rules().required_identifiers == ("US-MID",)
    assert all(
        not p.ub1_rules().required_identifiers
        for c, p in profiles.items()
        if c is not Administration.US
    )
    assert profiles[Administration.US].transport.binding is Binding.GRPC
    assert profiles[Administration.JP].transport.binding is Binding.XML


def test_retry_back_off_grows_and_is_capped() -> None:
    retry = US.retry
    assert retry.delay(1) == timedelta(seconds=2)
    assert retry.delay(2) == timedelta(seconds=4)
    assert retry.delay(30) == retry.max_backoff == timedelta(seconds=900)
    with pytest.raises(ValueError):
        retry.delay(0)


# --- each bad key -------------------------------------------------------------------------------
BAD = [
    ("max_attempts = 12", "max_attemps = 12", "PRF_UNKNOWN_KEY", "retry.max_attemps"),
    ("[delivery]", "[delivery]\ncolour = 1", "PRF_UNKNOWN_KEY", "delivery.colour"),
    ("[partner]\n", "[partners]\nx = 1\n[partner]\n", "PRF_UNKNOWN_KEY", "partners"),
    ("max_attempts = 12", 'max_attempts = "12"', "PRF_WRONG_TYPE", "retry.max_attempts"),
    ("max_attempts = 12", "max_attempts = true", "PRF_WRONG_TYPE", "retry.max_attempts"),
    (
        'eligible_types = ["AEOS", "AEOF"]',
        'eligible_types = ["AEOS", "AEOX"]',
        "PRF_UNKNOWN_AEO_TYPE",
        "ub1.eligible_types[1]",
    ),
    (
        'AEOS = "CTPAT-MRA"',
        'AEOC = "CTPAT-MRA"\nAEOS = "CTPAT-MRA"',
        "PRF_UNKNOWN_AEO_TYPE",
        "ub1.programme.AEOC",
    ),
    (
        'CTPAT-EXPORTER = "AEOS"',
        'CTPAT-EXPORTER = "AEO"',
        "PRF_UNKNOWN_AEO_TYPE",
        "ub1.inbound.CTPAT-EXPORTER",
    ),
    (
        'administration = "US"',
        'administration = "XX"',
        "PRF_UNKNOWN_ADMINISTRATION",
        "partner.administration",
    ),
    (
        'administration = "US"',
        'administration = "EU"',
        "PRF_UNKNOWN_ADMINISTRATION",
        "partner.administration",
    ),
    ('binding = "grpc"', 'binding = "soap"', "PRF_BAD_BINDING", "transport.binding"),
    ('binding = "grpc"', 'binding = "xml"', "PRF_BAD_BINDING", "transport.endpoint"),
    ("max_attempts = 12", "max_attempts = -1", "PRF_BAD_RETRY", "retry.max_attempts"),
    (
        "initial_backoff_seconds = 2",
        "initial_backoff_seconds = -2",
        "PRF_BAD_RETRY",
        "retry.initial_backoff_seconds",
    ),
    ("multiplier = 2.0", "multiplier = 0.5", "PRF_BAD_RETRY", "retry.multiplier"),
    (
        "max_backoff_seconds = 900",
        "max_backoff_seconds = 1",
        "PRF_BAD_RETRY",
        "retry.max_backoff_seconds",
    ),
    (
        "clock_skew_seconds = 300",
        "clock_skew_seconds = -5",
        "PRF_BAD_RETRY",
        "delivery.clock_skew_seconds",
    ),
    (
        "full_list_interval_hours = 24",
        "full_list_interval_hours = 0",
        "PRF_BAD_RETRY",
        "ub1.full_list_interval_hours",
    ),
    ('name = "U.S. Customs and Border Protection (CBP)"\n', "", "PRF_MISSING_KEY", "partner.name"),
    ('AEOF = "CTPAT-MRA"\n', "", "PRF_MISSING_KEY", "ub1.programme"),
    ('ca = ["pki/US/ca.pem"]', 'ca = ["../../etc/ca.pem"]', "PRF_WRONG_TYPE", "transport.ca[0]"),
    ('ca = ["pki/US/ca.pem"]', "ca = []", "PRF_MISSING_KEY", "transport.ca"),
    (
        'required_identifiers = ["US-MID"]',
        'required_identifiers = ["JP-AEO"]',
        "PRF_WRONG_TYPE",
        "ub1.required_identifiers[0]",
    ),
    ('status = "production"', 'status = "live"', "PRF_WRONG_TYPE", "partner.status"),
]


@pytest.mark.parametrize(("old", "new", "code", "key"), BAD, ids=[f"{c}:{k}" for *_, c, k in BAD])
def test_each_bad_key_gives_its_error(old: str, new: str, code: str, key: str) -> None:
    assert old in US_TEXT
    with pytest.raises(ProfileError) as info:
        load_profile(US_TEXT.replace(old, new, 1), "us.toml")
    assert info.value.code == code
    assert info.value.location == f"us.toml:{key}"
    assert str(info.value).startswith(f"{code}: {key}")


def test_errors_give_the_line_where_it_can_be_found() -> None:
    text = US_TEXT.replace("max_attempts = 12", "max_attempts = -1")
    line = text.splitlines().index("max_attempts = -1") + 1
    with pytest.raises(ProfileError, match=f"line {line}"):
        load_profile(text, "us.toml")


def test_not_toml_and_duplicate_partner() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("[partner\n", "broken.toml")
    assert info.value.code == "PRF_NOT_TOML" and info.value.location == "broken.toml"
    with pytest.raises(ProfileError, match=r"also defined in a\.toml"):
        load_profiles({"a.toml": US_TEXT, "b.toml": US_TEXT})


# --- eligibility --------------------------------------------------------------------------------
def test_an_eligible_record_is_translated_for_the_partner() -> None:
    record = eu_record()
    assert eligible_for(US, record)
    sent = to_partner(US, record)
    assert sent.partner_programme == "CTPAT-MRA"
    assert sent.cross_references == (CrossReference("US-MID", "DENORLOG12HAM"),)  # not JP's
    to_jp = to_partner(JP, record)
    assert to_jp.cross_references == (CrossReference("JP-AEO", "JPAEO-4711"),)
    assert to_jp.partner_programme == "JP-AEO-MRA"


@pytest.mark.parametrize(
    ("changes", "codes"),
    [
        ({"consent": False, "consent_date": None}, ["AEO_NO_CONSENT"]),
        ({"status": AeoStatus.CONSENT_WITHDRAWN, "consent": False}, ["AEO_NO_CONSENT"]),
        (
            {"aeo_type": AeoType.AEOC, "authorisation_number": "DEAEOC00001234"},
            ["AEO_TYPE_NOT_ELIGIBLE"],
        ),
        ({"cross_references": ()}, ["AEO_IDENTIFIER_MISSING"]),
        ({"consent": False, "cross_references": ()}, ["AEO_NO_CONSENT", "AEO_IDENTIFIER_MISSING"]),
    ],
)
def test_ineligible_records_are_never_sent(changes: dict[str, object], codes: list[str]) -> None:
    record = eu_record(**changes)
    eligibility = eligible_for(US, record)
    assert not eligibility and [c for c, _ in eligibility.reasons] == codes
    with pytest.raises(AeoError) as info:
        to_partner(US, record)
    assert info.value.code == codes[0]
    assert record not in partner_view(US, [record]) and partner_view(US, [record]) == []


def test_japan_does_not_need_mids() -> None:
    assert eligible_for(JP, eu_record(cross_references=()))


# --- deltas -------------------------------------------------------------------------------------
def test_consent_withdrawal_is_sent_as_a_removal_without_operator_data() -> None:
    before = eu_record()
    after = replace(
        before,
        status=AeoStatus.CONSENT_WITHDRAWN,
        consent=False,
        consent_date=date(2026, 1, 21),
        status_effective=date(2026, 1, 21),
        status_reason="Operator withdrew consent",
        version=2,
    )
    change = partner_delta(US, before, after)
    assert change is not None and change.kind is ChangeKind.REMOVED
    assert change.record is None and change.previous_status is AeoStatus.GRANTED
    assert change.version == 2 and change.status is AeoStatus.CONSENT_WITHDRAWN


def test_deltas_for_suspension_new_consent_unlinked_mid_and_unseen_records() -> None:
    before = eu_record()
    suspended = replace(
        before, status=AeoStatus.SUSPENDED, status_effective=date(2026, 1, 20), version=2
    )
    change = partner_delta(US, before, suspended)
    assert change is not None and change.kind is ChangeKind.CHANGED
    assert change.record == to_partner(US, suspended)
    unconsented = replace(before, consent=False, consent_date=None)
    added = partner_delta(US, unconsented, replace(before, version=2))
    assert added is not None and added.kind is ChangeKind.ADDED
    unlinked = partner_delta(US, before, replace(before, cross_references=(), version=2))
    assert unlinked is not None and unlinked.kind is ChangeKind.REMOVED
    assert "US-MID" in unlinked.reason
    aeoc = eu_record(aeo_type=AeoType.AEOC, authorisation_number="DEAEOC00001234")
    assert partner_delta(US, aeoc, replace(aeoc, version=2)) is None
    assert partner_delta(US, None, before) is not None


def test_receiver_applying_deltas_holds_exactly_the_senders_view() -> None:
    """The demo's claim: after a full list and a change feed, both summaries agree."""
    records = list(generate_records(300, seed=11))
    eu = AeoList.from_records(records)
    us = AeoList.from_records(partner_view(US, eu))
    assert us.summary() == AeoList.from_records(partner_view(US, eu)).summary()
    feed = generate_change_feed(records, 40, seed=12)
    deltas = []
    for new in feed:
        change = partner_delta(US, eu.get(new.authorisation_number), new)
        if change is not None:
            deltas.append(change)
    eu = eu.apply_records(feed)
    us = us.apply(deltas)
    assert deltas and any(d.kind is ChangeKind.REMOVED for d in deltas)
    assert us.summary() == AeoList.from_records(partner_view(US, eu)).summary()


# --- queries ------------------------------------------------------------------------------------
def test_partner_query_answers_and_refusals() -> None:
    granted = eu_record()
    aeoc = eu_record(
        holder_id="NL812345678",
        authorisation_number="NLAEOC00000001",
        aeo_type=AeoType.AEOC,
        issuing_country="NL",
    )
    hidden = eu_record(
        holder_id="FR12345678900017",
        authorisation_number="FRAEOF00000002",
        issuing_country="FR",
        consent=False,
        consent_date=None,
    )
    lst = AeoList.from_records([granted, aeoc, hidden])
    answer = answer_query(US, lst, "DENORLOG12HAM")
    assert answer.is_aeo and answer.record == to_partner(US, granted)
    assert answer.record is not None and answer.record.authorised_since == date(2014, 3, 1)
    refused = answer_query(US, lst, "NL812345678")
    assert refused.record is None and refused.refusal_code == "AEO_TYPE_NOT_ELIGIBLE"
    secret = answer_query(US, lst, "FR12345678900017")
    assert secret.record is None and secret.refusal_code == "AEO_NO_CONSENT"
    assert "FR" not in secret.refusal
    unknown = answer_query(US, lst, "DE000")
    assert unknown.record is None and not unknown.refusal_code


# --- inbound ------------------------------------------------------------------------------------
def test_partner_programme_maps_to_the_eu_type() -> None:
    ctpat = AeoRecord(
        administration=Administration.US,
        holder_id="CTPAT-0042",
        holder_name="Acme Imports Inc.",
        address=Address("1 Harbor Blvd", "90731", "San Pedro", "US"),
        authorisation_number="CT-0042",
        aeo_type=None,
        issuing_country="US",
        competent_authority="CBP C-TPAT",
        authorised_since=date(2012, 7, 1),
        status=AeoStatus.GRANTED,
        status_effective=date(2012, 7, 1),
        consent=True,
        consent_date=date(2012, 7, 1),
        version=1,
        partner_programme="CTPAT-IMPORTER",
    )
    assert from_partner(US, ctpat).aeo_type is AeoType.AEOS
    with pytest.raises(AeoError) as info:
        from_partner(US, replace(ctpat, partner_programme="CTPAT-UNKNOWN"))
    assert info.value.code == "AEO_UNKNOWN_PROGRAMME"
    with pytest.raises(AeoError, match="a US record, not JP"):
        from_partner(JP, ctpat)


def test_profiles_do_no_io() -> None:
    """load_profile takes text: a path string is not opened but parsed (and refused)."""
    with pytest.raises(ProfileError):
        load_profile(str(Path(PARTNERS_DIR / "us.toml")), "us.toml")


def test_a_revoked_operator_withdrawing_consent_is_removed_but_stays_revoked() -> None:
    revoked = eu_record(
        status=AeoStatus.REVOKED,
        status_effective=date(2025, 5, 1),
        version=2,
        status_reason="Criteria no longer met",
    )
    withdrawn = replace(revoked, consent=False, consent_date=date(2026, 1, 5), version=3)
    eu = AeoList.from_records([revoked])
    us = AeoList.from_records(partner_view(US, eu))
    change = partner_delta(US, revoked, withdrawn)
    assert change is not None and change.kind is ChangeKind.REMOVED
    assert change.status is AeoStatus.REVOKED
    assert len(us.apply([change])) == 0
    eu = eu.apply_records([withdrawn])
    assert eu.get(revoked.authorisation_number).status is AeoStatus.REVOKED  # type: ignore[union-attr]
    regrant = replace(
        withdrawn,
        status=AeoStatus.GRANTED,
        consent=True,
        version=4,
        status_effective=date(2026, 2, 1),
    )
    with pytest.raises(AeoError) as info:
        eu.apply_records([regrant])
    assert info.value.code == "AEO_ILLEGAL_TRANSITION"


def test_two_profiles_for_one_administration_name_the_second() -> None:
    with pytest.raises(ProfileError) as info:
        load_profiles({"a.toml": US_TEXT, "b.toml": US_TEXT})
    assert info.value.code == "PRF_INVALID"
    assert info.value.location == "b.toml:partner.administration"
