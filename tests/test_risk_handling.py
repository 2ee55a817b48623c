"""UB3 handling rules: the adapters load, bad files are refused with HDL_* codes naming the key,
the config links them, and the gate applies each rule (pure; the wire is in test_risk_gateways)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from gateway.errors import HandlingRulesError, RiskError
from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import RiskArea, RiskInformation
from gateway.partners.handling import PersonalData, load_handling_rules, prepare_outbound
from gateway.translate.crms_risk import parse_form

ROOT = Path(__file__).resolve().parent.parent
HANDLING = ROOT / "adapters" / "handling"
VECTORS = Path(__file__).resolve().parent / "vectors" / "risk"
TODAY = date(2026, 1, 1)


def rules(name: str) -> object:
    return load_handling_rules((HANDLING / name).read_text(), name)


def sample(name: str = "ipr-shoes.xml") -> RiskInformation:
    record = parse_form((VECTORS / name).read_bytes())
    assert isinstance(record, RiskInformation)
    return record


@pytest.mark.parametrize("name", sorted(p.name for p in HANDLING.glob("*.toml")))
def test_every_adapter_loads(name: str) -> None:
    loaded = load_handling_rules((HANDLING / name).read_text(), name)
    assert loaded.administration.value == name.removesuffix(".toml").upper()


CN_TEXT = (HANDLING / "cn.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "code", "key"),
    [
        ('max_label = "LIMITED"', 'max_label = "SECRET"', "HDL_UNKNOWN_CODE", "receive.max_label"),
        ('"IPR", "SECURITY_SAFETY"', '"IPR", "ASTROLOGY"', "HDL_UNKNOWN_CODE",
         "receive.risk_areas[1]"),
        ("[retention]\ndays = 730", "[retention]\ndays = 0", "HDL_WRONG_TYPE", "retention.days"),
        ("[retention]\ndays = 730", '[retention]\ndays = "730"', "HDL_WRONG_TYPE",
         "retention.days"),
        ('personal_data = "refuse"', 'personal_data = "maybe"', "HDL_UNKNOWN_CODE",
         "remove.personal_data"),
        ('fields = ["operator_identifiers"]', 'fields = ["passport"]', "HDL_UNKNOWN_CODE",
         "remove.fields[0]"),
        ('[retention]', 'colour = "red"\n[retention]', "HDL_UNKNOWN_KEY", "remove.colour"),
        ('administration = "CN"', 'administration = "XX"', "HDL_UNKNOWN_CODE",
         "partner.administration"),
        ('max_label = "LIMITED"\n', "", "HDL_MISSING_KEY", "receive.max_label"),
        ('risk_areas = ["IPR", ', 'risk_areas = [', "HDL_WRONG_TYPE", "receive.risk_areas"),
        ("[agreement]", "[agreement", "HDL_NOT_TOML", ""),
    ],
)  # fmt: skip
def test_bad_rules_name_the_key(old: str, new: str, code: str, key: str) -> None:
    assert old in CN_TEXT
    with pytest.raises(HandlingRulesError) as caught:
        load_handling_rules(CN_TEXT.replace(old, new, 1), "cn.toml")
    assert caught.value.code == code
    assert (caught.value.location or "").startswith("cn.toml")
    assert key in (caught.value.location or "")


def test_rules_refuse_in_order_and_name_the_rule() -> None:
    cn = load_handling_rules(CN_TEXT, "cn.toml")
    record = sample()
    cases = [
        (replace(record, area=RiskArea.CASH), "RISK_AREA_NOT_CLEARED", "receive.risk_areas"),
        (replace(record, label=HandlingLabel.RESTRICTED), "RISK_LABEL_ABOVE_CLEARANCE",
         "receive.max_label"),
        (sample("ipr-natural-person.xml"), "RISK_PERSONAL_DATA_FORBIDDEN",
         "remove.personal_data"),
        (replace(record, valid_until=date(2025, 12, 31)), "RISK_VALIDITY_EXPIRED", "valid_until"),
    ]  # fmt: skip
    for candidate, code, key in cases:
        with pytest.raises(RiskError) as caught:
            prepare_outbound(cn, candidate, TODAY)
        assert caught.value.code == code
        assert (caught.value.location or "").endswith(key)


def test_family_clearance_and_removals() -> None:
    cn = load_handling_rules(CN_TEXT, "cn.toml")
    record = replace(sample(), area=RiskArea.DRUG_PRECURSORS)  # DRUGS is cleared for CN
    out = prepare_outbound(cn, record, TODAY)
    assert isinstance(out.record, RiskInformation)
    assert out.record.indicators.operators[0].identifier == ""
    assert out.removed == ("indicators.operators[0].identifier",)
    hk = load_handling_rules((HANDLING / "hk.toml").read_text(), "hk.toml")
    assert hk.personal_data is PersonalData.REMOVE
    out = prepare_outbound(hk, sample("ipr-natural-person.xml"), TODAY)
    assert out.removed == ("indicators.operators[1] (natural person)",)


def test_config_links_rules_and_names_the_key(tmp_path: Path) -> None:
    """A partner's handling link is checked at start-up; a mismatch names partners[i].handling."""
    from gateway.config import load_config
    from gateway.errors import ConfigError
    from gateway.testpki import init_test_pki

    pki = init_test_pki(tmp_path / "pki", ("EU", "CN"))

    def config(handling: str) -> Path:
        path = tmp_path / "eu.toml"
        path.write_text(f"""{pki.gateway_table("EU")}
[store]
url = "sqlite:///eu.db"
[[partners]]
administration = "CN"
binding = "grpc"
endpoint = "127.0.0.1:1"
ca = "{pki.path("CN", "ca")}"
crl = "{pki.path("CN", "crl")}"
handling = "{handling}"
""")
        return path

    loaded = load_config(config(str(HANDLING / "cn.toml")))
    assert loaded.partners[0].handling is not None
    assert loaded.partners[0].handling.administration is Administration.CN
    with pytest.raises(ConfigError, match=r"partners\[0\]\.handling: .* of HK, not CN"):
        load_config(config(str(HANDLING / "hk.toml")))
    bad = tmp_path / "bad.toml"
    bad.write_text(CN_TEXT.replace('max_label = "LIMITED"', 'max_label = "TOP"'))
    with pytest.raises(HandlingRulesError) as caught:
        load_config(config(str(bad)))
    assert caught.value.code == "HDL_UNKNOWN_CODE"
    assert "partners[0].handling" in caught.value.message


def test_free_text_repeating_a_removed_person_is_refused_not_sent() -> None:
    """HK's rules remove natural persons: the operator entry goes, and a description that
    still names the person (any case) is refused, since the gateway does not edit free text."""
    hk = load_handling_rules((HANDLING / "hk.toml").read_text(), "hk.toml")
    record = sample("ipr-natural-person.xml")
    person = next(op for op in record.indicators.operators if op.natural_person)
    assert person.name == "Jan Jansen"
    naming = replace(record, description=record.description + " Seen with JAN JANSEN at the quay.")
    with pytest.raises(RiskError) as caught:
        prepare_outbound(hk, naming, TODAY)
    assert caught.value.code == "RISK_PERSONAL_DATA_FORBIDDEN"
    assert "description repeats 'Jan Jansen'" in caught.value.message
    assert "indicators.operators[1]" in caught.value.message
    # The same record without the name in its text goes, the person removed.
    assert prepare_outbound(hk, record, TODAY).removed == (
        "indicators.operators[1] (natural person)",
    )
