"""gncgw aeo on two real gateways: import, sync with delivery, summaries that agree, query,
show, and a partner list exported in the EU's format."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from aeo_gateways import EU, US, Gateway, mapping_spec, running_eu_and_us

from gateway import testpki
from gateway.cli import main
from gateway.envelope.opened import Binding, new_header
from gateway.model.aeo import Address, AeoRecord, AeoStatus, AeoType
from gateway.model.codes import UtilityBlock
from gateway.node import open_receipt, seal_envelope
from gateway.partners.profile import eligible_for
from gateway.translate import aeo_exchange
from gateway.translate.aeo_exchange import CONTENT_TYPES, FullList, PayloadForm
from gateway.translate.eos_aeo import parse_eos_xml
from gateway.translate.sample_aeo import generate_eos_export


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("cli-pki"), ("EU", "US"))


@pytest.fixture
def pair(module_pki: testpki.TestPki, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    with running_eu_and_us(tmp_path, module_pki) as pair:
        yield pair


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _digests(text: str) -> list[str]:
    return re.findall(r"\b[0-9a-f]{64}\b", text)


def test_import_sync_summary_query_show(
    pair: tuple[Gateway, Gateway], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eu, us = pair
    eu_toml, us_toml = str(eu.config.path), str(us.config.path)
    export = tmp_path / "eos.csv"
    export.write_bytes(generate_eos_export(120, 21, "csv", spec=mapping_spec()))

    code, out, _ = _run(capsys, "aeo", "import", str(export), "--kind", "full", "--config", eu_toml)
    assert code == 0, out
    assert "imported 120 records (FULL): 120 changes applied" in out
    assert re.search(r"US: \d+ changes in 1 envelope\(s\) queued; not sent: AEO_", out)

    code, out, err = _run(capsys, "aeo", "sync", "--to", "US", "--deliver", "--part-size", "10",
                          "--config", eu_toml)  # fmt: skip
    assert code == 0, err
    assert "delivered: US holds the list" in out and "delivering [" in err

    _, eu_summary, _ = _run(capsys, "aeo", "summary", "--partner", "US", "--config", eu_toml)
    _, us_summary, _ = _run(capsys, "aeo", "summary", "--partner", "EU", "--config", us_toml)
    assert len(_digests(eu_summary)) == 4
    assert _digests(eu_summary) == _digests(us_summary)

    profile = eu.service.partner(US).profile
    record = next(r for r in eu.store.records(EU) if eligible_for(profile, r) and r.is_aeo)
    code, out, _ = _run(capsys, "aeo", "query", "--partner", "EU", record.holder_id,
                        "--config", us_toml)  # fmt: skip
    assert code == 0, out
    assert f"is an AEO of EU since {record.authorised_since}" in out and "(verified)" in out

    code, out, _ = _run(capsys, "aeo", "show", record.authorisation_number, "--config", us_toml)
    assert code == 0 and "list received from EU" in out and "history:" in out
    code, out, _ = _run(capsys, "aeo", "show", record.holder_id, "--config", eu_toml)
    assert code == 0 and "own list" in out and "ADDED" in out

    code, _, err = _run(capsys, "aeo", "show", "NOSUCHID", "--config", eu_toml)
    assert code == 1 and "no record" in err


def test_import_refusal_prints_the_code(
    pair: tuple[Gateway, Gateway], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eu, _ = pair
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<notAnExport/>")
    code, _, err = _run(capsys, "aeo", "import", str(bad), "--config", str(eu.config.path))
    assert code == 1 and "error: AEO_" in err
    assert eu.outbox.list() == []


def test_export_a_partner_list_in_eu_format(
    pair: tuple[Gateway, Gateway], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eu, us = pair
    us_record = AeoRecord(
        administration=US,
        holder_id="CTPAT-0042",
        holder_name="Example Importers Inc.",
        address=Address("1 Harbor Way", "90731", "San Pedro", "US"),
        authorisation_number="US-CTPAT-0042",
        aeo_type=None,
        issuing_country="US",
        competent_authority="U.S. Customs and Border Protection",
        authorised_since=date(2015, 3, 1),
        status=AeoStatus.GRANTED,
        status_effective=date(2015, 3, 1),
        consent=True,
        consent_date=date(2015, 3, 1),
        version=1,
        partner_programme="CTPAT-IMPORTER",
    )
    payload = FullList.build(US, date(2026, 1, 15), [us_record])
    data = aeo_exchange.encode(payload, PayloadForm.PROTOBUF)
    header = new_header(
        payload=data, utility_block=UtilityBlock.UB1, message_type="AeoFullList", sender=US,
        receiver=EU, payload_content_type=CONTENT_TYPES[PayloadForm.PROTOBUF],
    )  # fmt: skip
    raw = seal_envelope(Binding.PROTOBUF, header, data, us.config.signing_identity)
    receipt = open_receipt(Binding.PROTOBUF, eu.node.receive(raw, Binding.PROTOBUF, US))
    assert receipt.receipt.accepted, receipt.receipt.error_message

    out_file = tmp_path / "us-list.xml"
    code, _, err = _run(capsys, "aeo", "export", "--partner", "US", "-o", str(out_file),
                          "--config", str(eu.config.path))  # fmt: skip
    assert code == 0, err
    exported = parse_eos_xml(out_file.read_bytes(), mapping_spec())
    (record,) = exported.records
    assert record.authorisation_number == "US-CTPAT-0042" and record.aeo_type is AeoType.AEOS
