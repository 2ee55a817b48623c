"""UB3 conformance cases: suites naming handling rules, the pure UB3 generators built under
those rules exactly as services.risk sends (withheld with the rule's code, removals applied),
and suite files that cannot play UB3 refused before anything runs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from test_conformance_helpers import ROOT, SUITES

from gateway.conformance.generators import GeneratorInput, generate
from gateway.conformance.model import Outcome
from gateway.conformance.suites import load_suite, suite_profile
from gateway.errors import (
    CNF_SUITE_INVALID,
    RISK_AREA_NOT_CLEARED,
    RISK_LABEL_ABOVE_CLEARANCE,
    RISK_PERSONAL_DATA_FORBIDDEN,
    GatewayError,
)
from gateway.model.codes import Administration
from gateway.model.risk import Feedback, RiskInformation
from gateway.partners.handling import prepare_outbound

TODAY = date(2026, 3, 2)
HANDLING = ROOT / "adapters" / "handling"


def _input(partner: str) -> GeneratorInput:
    suite = load_suite(SUITES / partner)
    assert suite.rules is not None
    return GeneratorInput(suite_profile(SUITES / partner, suite), "123456789001", TODAY, {},
                          suite.rules)  # fmt: skip


@pytest.mark.parametrize("partner", ["cn", "us"])
def test_suites_with_handling_rules_carry_ub3_cases(partner: str) -> None:
    suite = load_suite(SUITES / partner)
    assert suite.rules is not None and suite.rules.administration.value == partner.upper()
    ub3 = [c for c in suite.cases if str(c.exchange).startswith("UB3/")]
    outcomes = {c.expect.outcome for c in ub3}
    assert {Outcome.ACCEPTED, Outcome.REJECTED, Outcome.NOT_SENT} <= outcomes
    codes = {c.expect.code_for(b) for c in ub3 for b in c.bindings}
    assert {RISK_AREA_NOT_CLEARED, RISK_LABEL_ABOVE_CLEARANCE, "RISK_VALIDITY_EXPIRED"} <= codes


def test_suites_without_handling_rules_have_no_ub3_cases() -> None:
    suite = load_suite(SUITES / "jp")
    assert suite.rules is None and not suite.needs_handling


def test_risk_information_is_built_as_the_gateway_sends_it() -> None:
    inp = _input("cn")
    plan = generate("risk_information", inp)
    assert not plan.withheld_code
    (record,) = plan.messages
    assert isinstance(record, RiskInformation)
    assert inp.rules is not None and inp.rules.cleared_for(record.area)
    assert record.label is inp.rules.max_label
    assert record.originator is Administration.EU
    # CN removes operator identifiers: what is sent is what prepare_outbound returns
    assert all(op.identifier == "" for op in record.indicators.operators)
    assert prepare_outbound(inp.rules, record, TODAY).record == record


@pytest.mark.parametrize(
    ("partner", "generator", "code"),
    [
        ("cn", "risk_area_not_cleared", RISK_AREA_NOT_CLEARED),
        ("cn", "risk_label_above_clearance", RISK_LABEL_ABOVE_CLEARANCE),
        ("cn", "risk_personal_data", RISK_PERSONAL_DATA_FORBIDDEN),
        ("us", "risk_area_not_cleared", RISK_AREA_NOT_CLEARED),
        ("us", "risk_label_above_clearance", RISK_LABEL_ABOVE_CLEARANCE),
        ("us", "risk_personal_data", ""),  # the US allows personal data: sent
    ],
)
def test_sender_side_refusals_use_the_handling_rules(
    partner: str, generator: str, code: str
) -> None:
    plan = generate(generator, _input(partner))
    assert plan.withheld_code == code
    assert bool(plan.messages) is (code == "")
    if code:
        assert f"{partner}.toml:" in plan.withheld_reason  # names the rule that refused it


def test_target_side_negatives_skip_only_the_check_they_test() -> None:
    inp = _input("cn")
    (expired,) = generate("risk_validity_expired", inp).messages
    assert isinstance(expired, RiskInformation) and expired.valid_until < TODAY
    (feedback,) = generate("risk_feedback_unknown_reference", inp).messages
    assert isinstance(feedback, Feedback)
    assert feedback.originator is Administration.CN and feedback.reporter is Administration.EU


def _suite(tmp_path: Path, body: str, handling: str = "") -> Path:
    directory = tmp_path / "xx"
    directory.mkdir(exist_ok=True)
    profile = ROOT / "adapters" / "partners" / "us.toml"
    extra = f'handling = "{handling}"\n' if handling else ""
    (directory / "suite.toml").write_text(
        f'[suite]\npartner = "US"\nversion = "2012"\nprofile = "{profile}"\n{extra}{body}'
    )
    return directory


CASE = """
[[case]]
id = "risk"
exchange = "UB3/RiskInformation"
input = { generator = "risk_information" }
expect = { outcome = "accepted" }
"""


@pytest.mark.parametrize(
    ("body", "handling", "message"),
    [
        (CASE, "", "must name the partner's UB3 handling rules"),
        (CASE, str(HANDLING / "cn.toml"), "are for CN, the suite for US"),
        (CASE, str(HANDLING / "nope.toml"), "handling rules"),
        (CASE.replace('input = { generator = "risk_information" }\n', 'direction = "receive"\n'),
         str(HANDLING / "us.toml"), "listen checks UB1 exchanges only"),
        (CASE.replace('"accepted"', '"accepted", values = { list_owner_is_sender = true }'),
         str(HANDLING / "us.toml"), "a UB3 case takes none"),
        (CASE.replace("risk_information", "status_changes"), str(HANDLING / "us.toml"),
         "produces AeoStatusChanges"),
    ],
)  # fmt: skip
def test_suites_that_cannot_play_ub3_are_refused(
    tmp_path: Path, body: str, handling: str, message: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        load_suite(_suite(tmp_path, body, handling))
    assert caught.value.code == CNF_SUITE_INVALID
    assert message in caught.value.message


def test_handling_rules_change_the_suite_digest(tmp_path: Path) -> None:
    plain = load_suite(_suite(tmp_path, CASE, str(HANDLING / "us.toml")))
    copy = tmp_path / "us.toml"
    copy.write_text((HANDLING / "us.toml").read_text().replace("1825", "1826"))
    changed = load_suite(_suite(tmp_path, CASE, str(copy)))
    assert plain.sha256 != changed.sha256
