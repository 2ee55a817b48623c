"""Suites as data: every partner suite loads, matches its profile's version, and bad suite files
are refused before anything runs with file:line; promotion decisions (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from test_conformance_helpers import ROOT, SUITES

from gateway.conformance.model import Direction, Mutation, Outcome
from gateway.conformance.record import RecordedRun, check_promotion, promoted_profile_text
from gateway.conformance.reports import render_junit
from gateway.conformance.results import CaseResult, RunResult, Status
from gateway.conformance.suites import check_version, load_suite, suite_profile
from gateway.envelope.opened import Binding
from gateway.errors import (
    CNF_PROMOTION_REFUSED,
    CNF_SUITE_INVALID,
    CNF_VERSION_MISMATCH,
    GatewayError,
)
from gateway.model.codes import Administration

PARTNERS = ("us", "jp", "cn", "ch", "no", "ad", "ca")
REQUIRED_NEGATIVES = {
    Mutation.BAD_SIGNATURE,
    Mutation.WRONG_PARTNER_CERTIFICATE,
    Mutation.EXPIRED_CERTIFICATE,
    Mutation.REVOKED_CERTIFICATE,
    Mutation.REPLAY_SAME,
    Mutation.REPLAY_CONFLICT,
    Mutation.OVERSIZE,
    Mutation.CLOCK_SKEW,
}


@pytest.mark.parametrize("partner", PARTNERS)
def test_partner_suite_loads_at_its_profile_version(partner: str) -> None:
    suite = load_suite(SUITES / partner)
    profile = suite_profile(SUITES / partner, suite)
    check_version(suite, profile)
    assert suite.partner.value == partner.upper()
    assert suite.version == profile.agreement.version
    mutations = {c.mutation for c in suite.cases}
    assert mutations >= REQUIRED_NEGATIVES  # every suite carries the negative cases (via base)
    outcomes = {c.expect.outcome for c in suite.cases}
    assert Outcome.NOT_SENT in outcomes  # an exchange the agreement does not allow
    assert any(c.fixtures for c in suite.cases)  # a schema-invalid fixture
    assert suite.selected(Direction.RECEIVE), "a case for what the partner sends (listen)"
    assert 20 <= len(suite.cases) <= 60


def test_ca_suite_is_for_the_staging_profile() -> None:
    suite = load_suite(SUITES / "ca")
    assert suite_profile(SUITES / "ca", suite).status.value == "staging"


def _suite(tmp_path: Path, body: str, header: str | None = None) -> Path:
    directory = tmp_path / "xx"
    directory.mkdir(exist_ok=True)
    profile = ROOT / "adapters" / "partners" / "us.toml"
    head = header or f'[suite]\npartner = "US"\nversion = "2012"\nprofile = "{profile}"\n'
    (directory / "suite.toml").write_text(head + body)
    return directory


def test_toml_error_points_at_the_line(tmp_path: Path) -> None:
    directory = _suite(tmp_path, '\n[[case]]\nid = "a"\nexchange = "UB1/AeoStatusChanges\n')
    with pytest.raises(GatewayError) as caught:
        load_suite(directory)
    assert caught.value.code == CNF_SUITE_INVALID
    assert caught.value.location == f"{directory / 'suite.toml'}:8"


def test_unknown_exchange_points_at_its_line(tmp_path: Path) -> None:
    body = """
[[case]]
id = "ok"
exchange = "UB1/AeoStatusChanges"
input = { generator = "status_changes" }
expect = { outcome = "accepted" }

[[case]]
id = "bad"
exchange = "UB9/Teleport"
input = { generator = "status_changes" }
expect = { outcome = "accepted" }
"""
    directory = _suite(tmp_path, body)
    with pytest.raises(GatewayError) as caught:
        load_suite(directory)
    assert caught.value.code == CNF_SUITE_INVALID
    assert caught.value.location == f"{directory / 'suite.toml'}:14"
    assert "unknown exchange 'UB9/Teleport'" in caught.value.message


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ('expect = { outcome = "rejected" }', "needs the expected error code"),
        ('expect = { outcome = "rejected", code = "NOPE" }', "is not an error code"),
        ('expect = { outcome = "accepted" }\nmutation = "gremlins"', "is not one of"),
        ('expect = { outcome = "accepted" }\ncolour = "red"', "unknown key"),
    ],
)
def test_bad_cases_are_refused(tmp_path: Path, case: str, message: str) -> None:
    body = (
        '\n[[case]]\nid = "x"\nexchange = "UB1/AeoStatusChanges"\n'
        f'input = {{ generator = "status_changes" }}\n{case}\n'
    )
    with pytest.raises(GatewayError) as caught:
        load_suite(_suite(tmp_path, body))
    assert caught.value.code == CNF_SUITE_INVALID
    assert message in caught.value.message
    assert caught.value.location is not None and ":" in caught.value.location


def test_version_mismatch_is_refused_before_running(tmp_path: Path) -> None:
    profile = ROOT / "adapters" / "partners" / "us.toml"
    directory = _suite(
        tmp_path, "", f'[suite]\npartner = "US"\nversion = "2099"\nprofile = "{profile}"\n'
    )
    suite = load_suite(directory)
    with pytest.raises(GatewayError) as caught:
        check_version(suite, suite_profile(directory, suite))
    assert caught.value.code == CNF_VERSION_MISMATCH


def _run(
    id_: int,
    passed: bool,
    failed: tuple[str, ...] = (),
    version: str = "draft",
    sha: str = "abc",
    bindings: tuple[str, ...] = ("protobuf", "xml"),
) -> RecordedRun:
    return RecordedRun(id_, "CA", "ca", version, version, sha, bindings, "run", passed, failed, "t")


def test_promotion_decision() -> None:
    suite = load_suite(SUITES / "ca")
    profile = suite_profile(SUITES / "ca", suite)
    sha = suite.sha256
    with pytest.raises(GatewayError, match="no run of the CA suite") as caught:
        check_promotion(profile, sha, "draft", [])
    assert caught.value.code == CNF_PROMOTION_REFUSED
    with pytest.raises(GatewayError, match="bad-signature \\[xml\\]"):
        check_promotion(
            profile,
            sha,
            "draft",
            [_run(2, False, ("bad-signature [xml]",), sha=sha), _run(1, True, sha=sha)],
        )
    with pytest.raises(GatewayError, match="no run"):  # a pass of an older suite does not count
        check_promotion(profile, sha, "draft", [_run(1, True, sha="old")])
    with pytest.raises(GatewayError, match="binding protobuf"):
        check_promotion(profile, sha, "draft", [_run(1, True, sha=sha, bindings=("xml",))])
    assert check_promotion(profile, sha, "draft", [_run(3, True, sha=sha)]).id == 3


def test_promoted_profile_text_keeps_the_file() -> None:
    path = ROOT / "adapters" / "partners" / "ca.toml"
    text = path.read_text()
    new = promoted_profile_text(text, str(path))
    assert 'status = "production"' in new and 'status = "staging"' not in new
    assert new.replace('status = "production"', 'status = "staging"') == text
    with pytest.raises(GatewayError) as caught:
        promoted_profile_text(new, str(path))
    assert caught.value.code == CNF_PROMOTION_REFUSED


@pytest.mark.parametrize("text", ["ftp://host:1", "grpc://host", "host:50051", "grpc://h:1/x"])
def test_a_target_that_is_neither_grpc_nor_https_is_refused(text: str) -> None:
    from gateway.conformance.runner import parse_target
    from gateway.errors import ConformanceError

    with pytest.raises(ConformanceError) as caught:
        parse_target(text)
    assert caught.value.code == "CNF_TARGET_INVALID" and caught.value.location == "--target"


def _case(case_id: str, required: bool, passed: bool) -> CaseResult:
    at = datetime(2026, 11, 28, tzinfo=UTC)
    return CaseResult(
        case_id, case_id, "UB1/AeoStatusChanges", Binding.PROTOBUF, required,
        Status.PASSED if passed else Status.FAILED, () if passed else ("why",), (), at, at,
        "suite.toml:1", "none", "accepted",
    )  # fmt: skip


def _run_of(*cases: CaseResult) -> RunResult:
    at = datetime(2026, 11, 28, tzinfo=UTC)
    return RunResult(
        "s", "t", Administration.CA, "1", "1", "staging", "00", "run", ("grpc://x",),
        Administration.EU, at, at, cases,
    )  # fmt: skip


def test_a_run_of_optional_cases_only_proves_nothing() -> None:
    assert not _run_of(_case("optional-one", False, True)).passed
    assert not _run_of().passed
    assert _run_of(_case("required", True, True), _case("optional", False, False)).passed
    assert not _run_of(_case("required", True, False), _case("optional", False, True)).passed


def test_junit_counts_are_those_of_its_elements() -> None:
    not_run = replace(_case("d", True, False), status=Status.ERROR)
    run = _run_of(
        _case("a", True, False), _case("b", False, False), _case("c", True, True), not_run
    )
    suite = etree.fromstring(render_junit(run))[0]
    assert suite.get("tests") == "4"
    assert suite.get("failures") == str(len(suite.findall("testcase/failure"))) == "1"
    assert suite.get("skipped") == str(len(suite.findall("testcase/skipped"))) == "1"
    assert suite.get("errors") == str(len(suite.findall("testcase/error"))) == "1"
    assert run.counts() == (1, 2) and run.not_run == (not_run,) and not run.passed
