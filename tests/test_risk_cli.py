"""gncgw risk, on real gateways (the command opens the running gateway's store, as an operator
would beside gncgw serve): send with delivery, outstanding, feedback, logged list and show,
refusals with their code and rule, exit status 1 with `error: CODE` on bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from risk_gateways import CN, EU, HK, VECTORS, Gateway, eu_cn_hk

from gateway.cli import main
from gateway.model.codes import Administration
from gateway.testpki import TestPki


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki
) -> Iterator[dict[Administration, Gateway]]:
    started = eu_cn_hk(tmp_path_factory.mktemp("ub3cli"), pki)
    yield started
    for node in started.values():
        node.close()


def run(gateway: Gateway, *args: str) -> int:
    return main(["risk", args[0], "--config", str(gateway.config.path), "--as", "op1", *args[1:]])


def test_send_feedback_outstanding_show(
    gateways: dict[Administration, Gateway], capsys: pytest.CaptureFixture[str]
) -> None:
    eu, hk, cn = gateways[EU], gateways[HK], gateways[CN]
    assert run(eu, "send", "--to", "HK", str(VECTORS / "ipr-shoes.xml"), "--deliver") == 0
    out = capsys.readouterr().out
    assert "queued RiskInformation EU/RIF-2025-IPR-0001 (LIMITED) for HK" in out
    assert "ACCEPTED " in out and " by HK" in out
    assert run(eu, "send", "--to", "CN", str(VECTORS / "ipr-shoes.xml"), "--deliver") == 0
    assert "removed before signing: indicators.operators[0].identifier" in capsys.readouterr().out

    assert run(eu, "outstanding") == 0
    out = capsys.readouterr().out
    assert "2 record(s) awaiting feedback" in out

    assert run(hk, "show", "RIF-2025-IPR-0001") == 0
    out = capsys.readouterr().out
    assert "RiskInformation" in out and "LIMITED" in out and "640299" in out
    assert run(hk, "show", "RIF-2025-IPR-0001", "--form") == 0
    assert "<RiskInformationForm" in capsys.readouterr().out
    assert run(hk, "list") == 0
    assert "1 received record(s)" in capsys.readouterr().out
    assert run(hk, "access-log") == 0
    out = capsys.readouterr().out
    assert out.count("op1") == 3 and "3 read(s)" in out

    assert run(hk, "feedback", "RIF-2025-IPR-0001", str(VECTORS / "feedback-seizure.xml"),
               "--deliver") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "ACCEPTED " in out and " by EU" in out
    assert run(eu, "outstanding", "--partner", "HK") == 0
    assert "0 record(s) awaiting feedback" in capsys.readouterr().out
    assert run(eu, "outstanding", "--partner", "CN") == 0
    assert "1 record(s) awaiting feedback" in capsys.readouterr().out
    assert cn.service.store.received(reference="RIF-2025-IPR-0001")


def test_refusals_exit_1_with_code(
    gateways: dict[Administration, Gateway], capsys: pytest.CaptureFixture[str]
) -> None:
    eu, hk = gateways[EU], gateways[HK]
    assert run(eu, "send", "--to", "CN", str(VECTORS / "ipr-natural-person.xml")) == 1
    err = capsys.readouterr().err
    assert "error: RISK_PERSONAL_DATA_FORBIDDEN" in err and "cn.toml:remove.personal_data" in err
    assert run(eu, "send", "--to", "CN", str(VECTORS / "bad-unknown-area.xml")) == 1
    assert "error: RISK_UNKNOWN_AREA" in capsys.readouterr().err
    assert run(eu, "refusals") == 0
    out = capsys.readouterr().out
    assert "RISK_PERSONAL_DATA_FORBIDDEN" in out and "RISK_UNKNOWN_AREA" in out and "op1" in out
    assert run(hk, "feedback", "RIF-NOPE", str(VECTORS / "feedback-seizure.xml")) == 1
    assert "error: RISK_UNKNOWN_REFERENCE" in capsys.readouterr().err
    assert run(hk, "show", "RIF-NOPE") == 1
    assert "error: RISK_UNKNOWN_REFERENCE" in capsys.readouterr().err
