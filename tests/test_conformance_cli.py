"""`gncgw conformance run|listen` and `gncgw partner promote` end to end: real gateways on
loopback, real certificates, the run recorded in the gateway's SQLite store."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aeo_gateways import free_port
from lxml import etree
from test_conformance_helpers import (
    ROOT,
    SUITES,
    TARGET_MAX_ENVELOPE,
    grpc_target,
    start_target,
    xml_target,
)

from gateway import testpki
from gateway.cli import main
from gateway.conformance.listen import Listener, ListenerIdentity
from gateway.conformance.model import DEFAULT_MAX_ENVELOPE_BYTES
from gateway.conformance.reports import run_dict
from gateway.conformance.runner import _flip_signature
from gateway.conformance.suites import load_suite, suite_profile
from gateway.envelope.opened import Binding, new_header
from gateway.errors import GatewayError
from gateway.model.aeo import AeoRecord
from gateway.model.aeo_list import AeoChange
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import message_id_of, open_receipt, seal_envelope
from gateway.translate import aeo_exchange
from gateway.translate.aeo_exchange import CONTENT_TYPES, PayloadForm, StatusChanges
from gateway.translate.sample_aeo import generate_records
from gateway.transport.grpc_client import GrpcPartnerClient
from gateway.transport.tls import ClientTls, TlsIdentity
from gateway.trust.loading import partner_trust_from_pem
from gateway.trust.store import TrustStore


def _eu_config(tmp_path: Path, pki: testpki.TestPki, partner: str, profile: Path) -> Path:
    config = tmp_path / "eu.toml"
    config.write_text(
        f"""{pki.gateway_table("EU")}

[store]
url = "sqlite:///eu.db"

[[partners]]
administration = "{partner}"
binding = "grpc"
endpoint = "127.0.0.1:9"
ca = "{pki.path(partner, "ca")}"
crl = "{pki.path(partner, "crl")}"
profile = "{profile}"
"""
    )
    return config


def test_unreachable_target_fails_each_case_and_the_run_goes_on(
    pki: testpki.TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens here
    code = main(
        [
            "conformance",
            "run",
            "--suite",
            str(SUITES / "no"),
            "--pki",
            str(pki.root),
            "--target",
            f"grpc://127.0.0.1:{port}",
            "--timeout",
            "0.5",
            "--report-dir",
            str(tmp_path / "reports"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads((tmp_path / "reports" / "conformance-no.json").read_text())
    sent = [c for c in report["cases"] if c["expected"].split()[0] != "not_sent"]
    assert sent and all(c["status"] == "failed" for c in sent)
    assert all("no answer" in c["reasons"][0] for c in sent)
    withheld = [c for c in report["cases"] if c["expected"].startswith("not_sent")]
    assert withheld and all(c["status"] == "passed" for c in withheld)  # the run went on
    assert "FAIL bad-signature (protobuf)" in out and "FAILED: suite no" in out


def test_oversize_case_runs_in_both_bindings_at_the_default_limit(
    pki: testpki.TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At the default 8 MiB the XML envelope must carry its payload in base64 and still be
    sealed (the XML binding seals at most ~7.2 MiB of payload); one case, two case runs."""
    default = DEFAULT_MAX_ENVELOPE_BYTES
    target = start_target(tmp_path / "target", pki, "US", max_envelope=default)
    try:
        code = main(
            [
                "conformance", "run", "--suite", str(SUITES / "us"), "--pki", str(pki.root),
                "--target", grpc_target(target), "--target", xml_target(target),
                "--case", "oversize-message", "--report-dir", str(tmp_path / "reports"),
            ]
        )  # fmt: skip
    finally:
        target.close()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 case runs" in out
    report = json.loads((tmp_path / "reports" / "conformance-us.json").read_text())
    runs = {(c["id"], c["binding"]): c for c in report["cases"]}
    for binding in ("protobuf", "xml"):
        case = runs[("oversize-message", binding)]
        assert case["status"] == "passed", case
        assert case["steps"][0]["size"] > default


def test_a_case_the_tester_cannot_run_is_not_the_partners_failure_and_not_recorded(
    pki: testpki.TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --pki the tester holds no expired certificate: that case could not run. It is
    reported as not run (JUnit <error>, the exchange 'not run' in the statement), the run is
    no pass, and it is not recorded, so it cannot cancel (or stand for) a real run."""
    profile = tmp_path / "ca.toml"
    shutil.copy(ROOT / "adapters" / "partners" / "ca.toml", profile)
    config = _eu_config(tmp_path, pki, "CA", profile)
    target = start_target(tmp_path / "target", pki, "CA", max_age=86400)
    try:
        code = main(
            [
                "conformance", "run", "--suite", str(SUITES / "ca"), "--config", str(config),
                "--target", grpc_target(target), "--report-dir", str(tmp_path / "reports"),
                "--max-envelope-bytes", str(TARGET_MAX_ENVELOPE),
            ]
        )  # fmt: skip
    finally:
        target.close()
    out = capsys.readouterr().out
    assert code == 1
    assert "NOT RUN expired-certificate (protobuf)" in out
    assert "could not run" in out and "not recorded:" in out and "recorded as run" not in out
    report = json.loads((tmp_path / "reports" / "conformance-ca.json").read_text())
    statuses = {c["id"]: c["status"] for c in report["cases"]}
    assert statuses["expired-certificate"] == "error"
    assert statuses["bad-signature"] == "passed"
    assert report["counts"]["not_run"] >= 1
    statement = json.loads((tmp_path / "reports" / "conformance-ca.statement.json").read_text())
    verdicts = {v for by_binding in statement["exchanges"].values() for v in by_binding.values()}
    assert "not run" in verdicts and "failed" not in verdicts
    junit = etree.parse(str(tmp_path / "reports" / "conformance-ca.junit.xml")).getroot()[0]
    assert junit.get("errors") == str(len(junit.findall("testcase/error"))) != "0"
    assert main(["partner", "runs", "CA", "--config", str(config)]) == 0
    assert "#1" not in capsys.readouterr().out


def test_a_target_that_remembers_what_it_refused_fails(
    pki: testpki.TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target that keeps the message id of an envelope it refused (and refuses a valid
    envelope under that id later) breaks 'bad input changes nothing': the case fails."""
    target = start_target(tmp_path / "target", pki, "US")
    node = target.node
    refused: set[str] = set()
    check_many = node.check_many

    def remembering(raws: Any, binding: Binding, tls_peer: Any = None, **kw: Any) -> Any:
        def seen(raw: bytes) -> bool:
            try:
                return message_id_of(binding, raw) in refused
            except GatewayError:
                return False

        raws = [_flip_signature(binding, raw) if seen(raw) else raw for raw in raws]
        checked = check_many(raws, binding, tls_peer, **kw)
        for raw, answer in zip(raws, checked.answers, strict=True):
            if answer is not None and not open_receipt(binding, answer).receipt.accepted:
                with contextlib.suppress(GatewayError):
                    refused.add(message_id_of(binding, raw))
        return checked

    node.check_many = remembering  # type: ignore[method-assign]
    try:
        code = main(
            [
                "conformance", "run", "--suite", str(SUITES / "us"), "--pki", str(pki.root),
                "--target", grpc_target(target), "--target", xml_target(target),
                "--case", "expired-certificate",
            ]
        )  # fmt: skip
    finally:
        target.close()
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL expired-certificate (protobuf)" in out and "FAIL expired-certificate (xml)" in out
    assert "kept something of the envelope it refused" in out


def test_bad_suite_stops_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "broken"
    suite.mkdir()
    (suite / "suite.toml").write_text('[suite]\npartner = "US"\nversion = "2012"\n[[case]\n')
    code = main(["conformance", "run", "--suite", str(suite), "--target", "grpc://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 1
    assert "CNF_SUITE_INVALID" in err and f"{suite / 'suite.toml'}:4" in err


def test_promote_ca_only_after_its_suite_passes(
    pki: testpki.TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "ca.toml"
    shutil.copy(ROOT / "adapters" / "partners" / "ca.toml", profile)
    config = _eu_config(tmp_path, pki, "CA", profile)
    promote = ["partner", "promote", "CA", "--config", str(config)]  # judged by the shipped suite

    assert main(promote) == 1  # nothing recorded yet
    assert "CNF_PROMOTION_REFUSED" in capsys.readouterr().err

    # A failing run is recorded, and promotion names its failing cases.
    dead = free_port()
    assert (
        main(
            [
                "conformance",
                "run",
                "--suite",
                str(SUITES / "ca"),
                "--config",
                str(config),
                "--pki",
                str(pki.root),
                "--target",
                f"grpc://127.0.0.1:{dead}",
                "--timeout",
                "0.5",
            ]
        )
        == 1
    )
    capsys.readouterr()
    assert main(promote) == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "bad-signature [protobuf]" in err
    assert 'status = "staging"' in profile.read_text()

    target = start_target(tmp_path / "target", pki, "CA", max_age=86400)
    try:
        assert (
            main(
                [
                    "conformance",
                    "run",
                    "--suite",
                    str(SUITES / "ca"),
                    "--config",
                    str(config),
                    "--pki",
                    str(pki.root),
                    "--target",
                    grpc_target(target),
                    "--max-envelope-bytes",
                    str(TARGET_MAX_ENVELOPE),
                ]
            )
            == 0
        )
    finally:
        target.close()
    assert "recorded as run #2" in capsys.readouterr().out
    assert main(promote) == 0
    assert "promoted CA to production" in capsys.readouterr().out
    assert 'status = "production"' in profile.read_text()
    assert main(promote) == 1  # already production
    # A suite of one's own choosing is not offered: promote judges the shipped suite only.
    with pytest.raises(SystemExit):
        main([*promote, "--suite", str(tmp_path)])
    assert main(["partner", "runs", "CA", "--config", str(config)]) == 0
    assert "#2" in capsys.readouterr().out


def _us_records(n: int, programme: str, start: int = 0) -> list[AeoRecord]:
    out = []
    records = generate_records(n, 5, today=date(2026, 1, 15))
    for index, record in enumerate(records, start=start):
        out.append(
            replace(
                record,
                administration=Administration.US,
                holder_id=f"US-IMP-{index:05d}",
                authorisation_number=f"CTPAT-{index:06d}",
                aeo_type=None,
                partner_programme=programme,
                issuing_country="US",
                competent_authority="U.S. Customs and Border Protection",
                address=replace(record.address, country="US"),
                cross_references=(),
            )
        )
    return out


@pytest.mark.parametrize(("programme", "passes"), [("CTPAT-IMPORTER", True), ("CTPAT-GOLD", False)])
def test_listen_checks_what_the_partner_sends(
    pki: testpki.TestPki, tmp_path: Path, programme: str, passes: bool
) -> None:
    run = _listen_to_us(pki, tmp_path, [programme])
    assert run.passed is passes
    [result] = run.results
    assert result.case_id == "us-receive-status-changes"
    if not passes:
        assert "CTPAT-GOLD" in result.reasons[0]


def test_listen_judges_every_message_and_shows_what_no_case_judges(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    """A good first message does not hide a bad later one, nor is an unreadable one dropped."""
    run = _listen_to_us(pki, tmp_path, ["CTPAT-IMPORTER", "CTPAT-GOLD"], garbage=True)
    assert not run.passed
    [result] = run.results
    assert len(result.steps) == 2
    assert result.reasons and result.reasons[0].startswith("a later message: ")
    assert "CTPAT-GOLD" in result.reasons[0]
    assert [s.message_type for s in run.unmatched] == ["?"]
    assert run_dict(run)["unmatched"][0]["answer"]["outcome"] == "REJECTED"


def _listen_to_us(
    pki: testpki.TestPki, tmp_path: Path, programmes: list[str], *, garbage: bool = False
) -> Any:
    """A listener playing EU for the US suite; US sends one status-change message per
    programme (and, with `garbage`, an unreadable envelope); the run once all have arrived."""
    suite = load_suite(SUITES / "us")
    profile = suite_profile(SUITES / "us", suite)
    trust = TrustStore(
        [
            partner_trust_from_pem(
                "US", pki.path("US", "ca").read_bytes(), [pki.path("US", "crl").read_bytes()]
            )
        ]
    )
    identity = ListenerIdentity(
        Administration.EU,
        pki.identity("EU"),
        TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls")),
        trust,
    )
    listener = Listener(suite, profile, identity, binding=Binding.PROTOBUF, store_dir=tmp_path)
    port = listener.start()
    try:
        tls = ClientTls.from_files(
            pki.key_path("US", "tls"), pki.path("US", "tls"), pki.path("EU", "ca")
        )
        with GrpcPartnerClient(f"127.0.0.1:{port}", tls=tls) as client:
            for index, programme in enumerate(programmes):
                records = _us_records(3, programme, start=10 * index)
                payload = aeo_exchange.encode(
                    StatusChanges(Administration.US, tuple(AeoChange.added(r) for r in records)),
                    PayloadForm.PROTOBUF,
                )
                header = new_header(
                    payload=payload,
                    utility_block=UtilityBlock.UB1,
                    message_type="AeoStatusChanges",
                    sender=Administration.US,
                    receiver=Administration.EU,
                    payload_content_type=CONTENT_TYPES[PayloadForm.PROTOBUF],
                )
                client.submit(
                    seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("US")),
                    timeout=10,
                )
            if garbage:
                client.submit(b"\x0a\x03not an envelope", timeout=10)
        assert listener.wait(10)
    finally:
        listener.stop()
    return listener.result()


def test_listen_times_out_with_a_report(pki: testpki.TestPki, tmp_path: Path) -> None:
    suite = load_suite(SUITES / "jp")
    profile = suite_profile(SUITES / "jp", suite)
    trust = TrustStore(
        [
            partner_trust_from_pem(
                "JP", pki.path("JP", "ca").read_bytes(), [pki.path("JP", "crl").read_bytes()]
            )
        ]
    )
    identity = ListenerIdentity(
        Administration.EU,
        pki.identity("EU"),
        TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls")),
        trust,
    )
    listener = Listener(suite, profile, identity, binding=Binding.XML, store_dir=tmp_path)
    listener.start()
    try:
        assert not listener.wait(0.3)
    finally:
        listener.stop()
    run = listener.result()
    assert not run.passed
    assert "no UB1/AeoStatusChanges message was received" in run.results[0].reasons[0]
    _ = threading  # the listener serves on its own threads
