"""Self-test: every partner suite against the project's own gateway on loopback, in both
bindings (real gRPC and HTTPS with mutual TLS, real certificates, real SQLite), with every
report written and the Test Bed reports validated against gitb_tr.xsd from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree
from test_conformance_helpers import (
    SUITES,
    TARGET_MAX_ENVELOPE,
    gitb_schema,
    grpc_target,
    start_target,
    xml_target,
)

from gateway import testpki
from gateway.conformance.reports import write_reports
from gateway.conformance.runner import parse_target, pki_tester, run_suite
from gateway.conformance.suites import check_version, load_suite, suite_profile

PARTNERS = ("us", "jp", "cn", "ch", "no", "ad", "ca")


@pytest.mark.parametrize("partner", PARTNERS)
def test_partner_suite_passes_against_own_gateway(
    partner: str, pki: testpki.TestPki, tmp_path: Path
) -> None:
    suite = load_suite(SUITES / partner)
    profile = suite_profile(SUITES / partner, suite)
    check_version(suite, profile)
    target = start_target(
        tmp_path / "target",
        pki,
        suite.partner.value,
        clock_skew=int(profile.clock_skew.total_seconds()),
        max_age=int(profile.duplicate_window.total_seconds()),
    )
    try:
        run = run_suite(
            suite,
            profile,
            pki_tester(pki.root, suite.partner),
            [parse_target(grpc_target(target)), parse_target(xml_target(target))],
            timeout=20,
            max_envelope_bytes=TARGET_MAX_ENVELOPE,
        )
        stored = target.node.stats
        risk_received = (
            target.node.inbox.database.reader()
            .execute("SELECT COUNT(*) FROM risk_received")
            .fetchone()[0]
        )
    finally:
        target.close()
    failures = [(r.case_id, r.binding.value, r.reasons) for r in run.results if not r.passed]
    assert failures == []
    assert run.passed
    assert {b.value for b in run.bindings} == {"protobuf", "xml"}
    assert stored.accepted > 0 and stored.duplicates >= 2  # the replay case, per binding
    assert {"SIG_INVALID", "TRUST_REVOKED", "ENV_CLOCK_SKEW"} <= set(stored.rejected)
    if suite.rules is not None:  # UB3 under the partner's handling rules: refused by the target
        assert {"RISK_VALIDITY_EXPIRED", "RISK_PAYLOAD_MALFORMED", "RISK_UNKNOWN_REFERENCE"} <= set(
            stored.rejected
        )
        assert risk_received >= 2  # the accepted risk information, per binding

    written = {p.name: p for p in write_reports(run, tmp_path / "reports")}
    schema = gitb_schema()
    for name in (f"conformance-{partner}.tar.xml", f"conformance-{partner}.statement.xml"):
        document = etree.parse(str(written[name]))
        assert schema.validate(document), (name, schema.error_log)
    junit = etree.parse(str(written[f"conformance-{partner}.junit.xml"]))
    assert junit.getroot()[0].get("failures") == "0"
    statement = json.loads(written[f"conformance-{partner}.statement.json"].read_text())
    assert statement["conformant"] is True
    assert statement["profile_version"] == profile.agreement.version
    assert statement["exchanges"]["UB1/AeoStatusChanges"] == {"protobuf": "passed", "xml": "passed"}
    if suite.rules is not None:
        for exchange in ("UB3/RiskInformation", "UB3/RiskFeedback"):
            assert statement["exchanges"][exchange] == {"protobuf": "passed", "xml": "passed"}
    page = written[f"conformance-{partner}.html"].read_text()
    assert "PASSED" in page and "bad-signature" in page and "<script" not in page
