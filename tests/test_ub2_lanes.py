"""UB2 partner profiles and lanes: CN SSTL port pairs, MD/UA TIR border crossings, strict loading.

Pure: profiles are read from adapters/partners, consignments built directly (ub2_gateways).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from ub2_gateways import (
    CN_IMPORTER,
    NL_EXPORTER,
    PARTNERS,
    SOURCE_PATHS,
    profile,
    sstl_consignment,
    tir_consignment,
    with_party,
)

from gateway.errors import AeoError, ProfileError, TransactionError
from gateway.model.aeo import Address, AeoRecord, AeoStatus, AeoType
from gateway.model.aeo_list import AeoList
from gateway.model.codes import Administration
from gateway.model.consignment import Consignment, CustomsOffice, OfficeRole, Party, PartyRole
from gateway.partners.lanes import LanePattern, Ub2Rules, lane_for
from gateway.partners.profile import (
    answer_query,
    eligible_for,
    from_partner,
    load_profile,
    partner_delta,
    partner_view,
    to_partner,
)

CN_RULES, MD_RULES, UA_RULES = (profile(code).ub2 for code in ("CN", "MD", "UA"))
CN_TEXT = (PARTNERS / "cn.toml").read_text(encoding="utf-8")
MD_TEXT = (PARTNERS / "md.toml").read_text(encoding="utf-8")


def rules(code: str) -> Ub2Rules:
    found = profile(code).ub2
    assert found is not None
    return found


def refused(consignment: Consignment, code: str) -> TransactionError:
    with pytest.raises(TransactionError) as caught:
        lane_for(consignment, rules(code))
    assert caught.value.code == "UB2_NO_LANE"
    return caught.value


# --- the shipped profiles -----------------------------------------------------------------------
def test_cn_profile_agrees_sstl_lanes_both_ways() -> None:
    cn = profile("CN")
    assert cn.ub1 is not None, "CN keeps its UB1 agreement"
    ub2 = rules("CN")
    assert ub2.pattern is LanePattern.SSTL
    assert ub2.messages == {"TransactionData", "ControlResult"}
    pairs = {(lane.origin, lane.destination) for lane in ub2.lanes}
    assert {("NLRTM", "CNSHA"), ("CNSHA", "NLRTM")} <= pairs
    assert all("CN" in (o[:2], d[:2]) for o, d in pairs)
    assert all(lane.operators for lane in ub2.lanes)


@pytest.mark.parametrize("code", ["MD", "UA"])
def test_md_and_ua_are_staging_tir_profiles_without_ub1(code: str) -> None:
    loaded = profile(code)
    assert loaded.status.value == "staging"
    assert loaded.ub1 is None
    ub2 = rules(code)
    assert ub2.pattern is LanePattern.TIR
    for lane in ub2.lanes:
        assert lane.destination.startswith(code)
        assert len(lane.origin) == len(lane.destination) == 8  # office reference numbers
        assert lane.operators


# --- SSTL (CN) ----------------------------------------------------------------------------------
def test_on_the_rotterdam_shanghai_lane() -> None:
    lane = lane_for(sstl_consignment(), rules("CN"))
    assert (lane.name, lane.origin, lane.destination) == ("Rotterdam-Shanghai", "NLRTM", "CNSHA")


def test_the_return_lane_is_its_own_lane() -> None:
    back = sstl_consignment(loading="CNSHA", unloading="NLRTM")
    back = with_party(back, 0, identifier=CN_IMPORTER)
    back = with_party(back, 1, identifier=NL_EXPORTER)
    assert lane_for(back, rules("CN")).name == "Shanghai-Rotterdam"
    # The same operators the other way round only hold on a lane they take part in.
    assert lane_for(sstl_consignment(), rules("CN")).name == "Rotterdam-Shanghai"


def test_locode_written_with_a_space_matches() -> None:
    assert lane_for(sstl_consignment(loading="NL RTM"), rules("CN")).name == "Rotterdam-Shanghai"


def test_port_pair_not_agreed() -> None:
    error = refused(sstl_consignment(unloading="USNYC"), "CN")
    assert "port pair NLRTM -> USNYC is not agreed" in error.message
    assert "NLRTM -> CNSHA" in error.message  # the agreed pairs are listed
    assert error.location is not None
    assert SOURCE_PATHS["place_of_unloading"] in error.location


def test_ports_of_two_lanes_are_no_lane() -> None:
    # Loaded in Hamburg (a lane to Tianjin) and unloaded in Shanghai (a lane from Rotterdam).
    error = refused(sstl_consignment(loading="DEHAM"), "CN")
    assert "DEHAM -> CNSHA" in error.message


def test_non_participating_consignee() -> None:
    error = refused(sstl_consignment(consignee="91310000MA1FL0XX0X"), "CN")
    assert "consignee 91310000MA1FL0XX0X is not a participating operator" in error.message
    assert "Rotterdam-Shanghai" in error.message
    assert error.location == SOURCE_PATHS["parties[1].identifier"]


def test_non_participating_exporter_and_consignee_both_named() -> None:
    error = refused(sstl_consignment(exporter="NL999999999", consignee="CN0000000000"), "CN")
    assert "exporter NL999999999" in error.message and "consignee CN0000000000" in error.message
    assert error.location == ", ".join(
        [SOURCE_PATHS["parties[0].identifier"], SOURCE_PATHS["parties[1].identifier"]]
    )


def test_operator_of_another_lane_is_not_on_this_one() -> None:
    # DE4711000000001 takes part in Hamburg-Tianjin only.
    refused(sstl_consignment(exporter="DE4711000000001"), "CN")


def test_every_named_party_of_a_side_must_participate() -> None:
    c = sstl_consignment()
    extra = Party(PartyRole.CONSIGNOR, "Forwarder BV", "NL777777777")
    error = refused(replace(c, parties=(*c.parties, extra)), "CN")
    assert "consignor NL777777777" in error.message
    assert error.location == "parties[2].identifier"  # no source path known: the field path


def test_goods_item_consignee_counts() -> None:
    c = sstl_consignment()
    item = replace(c.goods_items[0], parties=(Party(PartyRole.CONSIGNEE, "X", "CN1111111111"),))
    error = refused(replace(c, goods_items=(item,)), "CN")
    assert error.location == "goods_items[0].parties[0].identifier"


def test_goods_item_loaded_elsewhere() -> None:
    c = sstl_consignment()
    item = replace(c.goods_items[0], place_of_loading="BEANR")
    error = refused(replace(c, goods_items=(item,)), "CN")
    assert "goods_items[0].place_of_loading" in (error.location or "")


def test_a_side_must_be_named() -> None:
    c = sstl_consignment()
    error = refused(replace(c, parties=c.parties[:1]), "CN")
    assert "no receiver (consignee/importer) named" in error.message


def test_party_without_identifier() -> None:
    error = refused(with_party(sstl_consignment(), 1, identifier=None), "CN")
    assert "has no identifier" in error.message


def test_no_places_declared() -> None:
    error = refused(replace(sstl_consignment(), place_of_loading=None), "CN")
    assert "no place of loading declared" in error.message


# --- TIR (MD, UA) -------------------------------------------------------------------------------
def test_md_tir_lane() -> None:
    assert lane_for(tir_consignment(), rules("MD")).name == "Albita-Leuseni"
    other = tir_consignment(exit_office="ROGL1700", entry_office="MD100220")
    assert lane_for(other, rules("MD")).name == "Galati-Giurgiulesti"


def test_md_holder_not_participating_on_that_crossing() -> None:
    # ROU/001/000123 is a holder on Albita-Leuseni only.
    c = tir_consignment(exit_office="ROGL1700", entry_office="MD100220", holder="ROU/001/000123")
    error = refused(c, "MD")
    assert "carrier ROU/001/000123 is not a participating operator" in error.message
    assert error.location == "parties[2].identifier"


def test_md_crossing_not_agreed() -> None:
    error = refused(tir_consignment(entry_office="MD100220"), "MD")
    assert "border crossing pair ROVS0800 -> MD100220 is not agreed" in error.message


def test_md_without_office_of_first_entry() -> None:
    error = refused(tir_consignment(entry_office=None), "MD")
    assert "no office of first entry declared" in error.message


def test_md_without_tir_holder() -> None:
    c = tir_consignment()
    error = refused(replace(c, parties=c.parties[:2]), "MD")
    assert "no TIR holder (carrier) named" in error.message


def test_ua_tir_lanes() -> None:
    c = tir_consignment(exit_office="HU201000", entry_office="UA305020", holder="HUN/002/000042")
    assert lane_for(c, rules("UA")).name == "Zahony-Chop"
    refused(replace(c, offices=(CustomsOffice(OfficeRole.EXIT, "PL301010"), c.offices[1])), "UA")
    refused(tir_consignment(exit_office="HU201000", entry_office="UA305020"), "UA")  # MD holder
    # An MD lane is no UA lane.
    refused(tir_consignment(), "UA")


# --- strict loading of [ub2] --------------------------------------------------------------------
BAD_UB2 = [
    ('pattern = "sstl"', 'pattern = "sstl"\ncolour = 1', "PRF_UNKNOWN_KEY", "cn.toml:ub2.colour"),
    ('loading = "NLRTM"', 'loading = "NLRTM"\nexit_office = "NL000396"', "PRF_UNKNOWN_KEY",
     "cn.toml:ub2.lanes[0].exit_office"),
    ('loading = "NLRTM"', 'loading = "XXRTM"', "PRF_INVALID", "cn.toml:ub2.lanes[0].loading"),
    ('loading = "NLRTM"', 'loading = "NL000396"', "PRF_INVALID", "cn.toml:ub2.lanes[0].loading"),
    ('loading = "NLRTM"', 'loading = "Rotterdam"', "PRF_INVALID", "cn.toml:ub2.lanes[0].loading"),
    ('loading = "NLRTM"', "loading = 5", "PRF_WRONG_TYPE", "cn.toml:ub2.lanes[0].loading"),
    ('unloading = "CNSHA"', 'unloading = "DEHAM"', "PRF_INVALID", "cn.toml:ub2.lanes[0].loading"),
    ('loading = "NLRTM"', 'loading = "CNSHA"', "PRF_INVALID", "cn.toml:ub2.lanes[0].unloading"),
    ('pattern = "sstl"', 'pattern = "rail"', "PRF_INVALID", "cn.toml:ub2.pattern"),
    ('messages = ["TransactionData", "ControlResult"]', 'messages = ["TransactionData", "Risk"]',
     "PRF_INVALID", "cn.toml:ub2.messages[1]"),
    ('messages = ["TransactionData", "ControlResult"]', "messages = []", "PRF_MISSING_KEY",
     "cn.toml:ub2.messages"),
    ('operators = ["NL810000001", "NL820000457", "91310115MA1K3YJ20B"]', "operators = []",
     "PRF_MISSING_KEY", "cn.toml:ub2.lanes[0].operators"),
    ('operators = ["NL810000001", "NL820000457", "91310115MA1K3YJ20B"]',
     'operators = ["NL 81?"]', "PRF_INVALID", "cn.toml:ub2.lanes[0].operators[0]"),
    ('name = "Shanghai-Rotterdam"', 'name = "Rotterdam-Shanghai"', "PRF_INVALID",
     "cn.toml:ub2.lanes[1]"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "code", "location"), BAD_UB2)
def test_each_bad_ub2_key(old: str, new: str, code: str, location: str) -> None:
    assert old in CN_TEXT
    with pytest.raises(ProfileError) as caught:
        load_profile(CN_TEXT.replace(old, new, 1), "cn.toml")
    assert (caught.value.code, caught.value.location) == (code, location)


@pytest.mark.parametrize(
    ("old", "new", "location"),
    [
        ('exit_office = "ROVS0800"', 'exit_office = "NLRTM"', "md.toml:ub2.lanes[0].exit_office"),
        (
            'exit_office = "ROVS0800"',
            'exit_office = "QQ123456"',
            "md.toml:ub2.lanes[0].exit_office",
        ),
        ('exit_office = "ROVS0800"', 'loading = "ROVS0800"', "md.toml:ub2.lanes[0].loading"),
    ],
)
def test_tir_lanes_are_customs_offices(old: str, new: str, location: str) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(MD_TEXT.replace(old, new, 1), "md.toml")
    assert caught.value.location == location
    assert caught.value.code in {"PRF_INVALID", "PRF_UNKNOWN_KEY"}


def test_transaction_data_needs_a_lane() -> None:
    text = MD_TEXT.split("[[ub2.lanes]]")[0] + MD_TEXT[MD_TEXT.index("[transport]") :]
    with pytest.raises(ProfileError) as caught:
        load_profile(text, "md.toml")
    assert (caught.value.code, caught.value.location) == ("PRF_MISSING_KEY", "md.toml:ub2.lanes")
    # Control results alone need no lane.
    only_results = text.replace('["TransactionData", "ControlResult"]', '["ControlResult"]')
    loaded = load_profile(only_results, "md.toml")
    assert loaded.ub2 is not None and loaded.ub2.lanes == ()


def test_a_profile_agrees_ub1_or_ub2() -> None:
    text = MD_TEXT[: MD_TEXT.index("[ub2]")] + MD_TEXT[MD_TEXT.index("[transport]") :]
    with pytest.raises(ProfileError) as caught:
        load_profile(text, "md.toml")
    assert caught.value.code == "PRF_MISSING_KEY"


# --- a profile without [ub1] on the UB1 code paths ------------------------------------------------
def test_partner_without_ub1_gets_no_ub1() -> None:
    md = profile("MD")
    record = AeoRecord(
        administration=Administration.EU,
        holder_id="RO12345678",
        holder_name="Agro Vaslui SRL",
        address=Address("Strada Stefan cel Mare 1", "730001", "Vaslui", "RO"),
        competent_authority="Directia Regionala Vamala Iasi",
        authorisation_number="ROAEOF0000001",
        aeo_type=AeoType.AEOF,
        issuing_country="RO",
        authorised_since=date(2020, 1, 1),
        status=AeoStatus.GRANTED,
        status_effective=date(2020, 1, 1),
        consent=True,
        consent_date=date(2020, 1, 2),
        version=1,
    )
    assert eligible_for(profile("CN"), record), "the same record is eligible for CN"
    eligibility = eligible_for(md, record)
    assert not eligibility and eligibility.code == "AEO_NO_AGREEMENT"
    assert partner_view(md, [record]) == []
    assert partner_delta(md, None, record) is None
    with pytest.raises(AeoError) as caught:
        to_partner(md, record)
    assert caught.value.code == "AEO_NO_AGREEMENT"
    with pytest.raises(AeoError) as caught:
        from_partner(md, replace(record, administration=Administration.MD))
    assert (caught.value.code, caught.value.location) == ("AEO_NO_AGREEMENT", "md.toml:ub1")
    answer = answer_query(md, AeoList.from_records([record]), record.holder_id)
    assert answer.record is None and answer.refusal_code == "AEO_NO_AGREEMENT"
