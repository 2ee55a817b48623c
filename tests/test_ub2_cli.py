"""gncgw translate / validate / mapping coverage / send (UB2 path) / ub2 control results.

Real schema packs and samples from ../shared/data; real EU and CN gateways on loopback over
gRPC (tests/ub2_gateways.py) for the sends. The CLI runs in-process (gateway.cli.main).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ub2_data import cds_declaration_samples, ics_pack, shared_data, wco_dm_pack
from ub2_gateways import CN, Gateway, eu_cn

from gateway.cli import main
from gateway.model.codes import Administration
from gateway.model.control_result import ControlOutcome, ControlResult, ControlType, SealCheck
from gateway.testpki import TestPki
from gateway.translate import ub2_exchange
from gateway.translate.eu_messages import load_schema_packs
from gateway.translate.ub2_exchange import Ub2Kind
from gateway.translate.ub2_pipeline import Ub2Pipeline
from gateway.translate.ub2_translate import load_mapping_specs
from gateway.translate.ub3_exchange import PayloadForm

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.shared_data
IE = "http://ics.dgtaxud.ec/CC315A"
CONTAINER_XPATH = "/ie:CC315A/GOOITEGDS[1]/CONNR2[1]/ConNumNR21[1]"


def valid_sample() -> Path:
    return shared_data() / "ics-ens" / "examples" / "CC315A-schemaValidSample-v11-2.xml"


def packs_args() -> list[str]:
    return ["--ics-ens", str(ics_pack()), "--wco-dm", str(wco_dm_pack())]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def on_lane(
    reference: str,
    *,
    loading: str = "CNSHA",
    unloading: str = "NLRTM",
    container: str = "CSQU3054383",
) -> bytes:
    """The valid CC315A sample with its placeholder codes made real and its places and parties
    on the shipped CN lane Shanghai-Rotterdam (an ENS TIN is an..17 starting with two letters,
    so the participating operator named is the lane's EORI NL810000001)."""
    document = etree.fromstring(valid_sample().read_bytes())
    values = {
        "RefNumHEA4": reference,
        "TraModAtBorHEA76": "1",
        "PlaLoaGOOITE334": loading, "PlaLoaGOOITE333": loading,
        "PlaUnlGOOITE334": unloading, "PlaUnlGOOITE333": unloading,
        "TINCO159": "NL810000001", "TINCO259": "NL810000001",
        "TINCE159": "NL810000001", "TINCE259": "NL810000001",
        "RefNumCOL1": "NL000396", "RefNumCUSOFFFENT731": "NL000396",
        "RefNumSUBENR909": "NL000396",
        "ComNomCMD1": "846230", "KinOfPacGS23": "CS", "ConNumNR21": container,
    }  # fmt: skip
    for element in document.iter():
        if not isinstance(element.tag, str):
            continue
        local = etree.QName(element).localname
        if local in values:
            element.text = values[local]
        elif element.text == "EN" and not local.endswith("LNG"):
            element.text = "NL"  # "EN" is no country: the Netherlands throughout
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8")


# --- translate ---------------------------------------------------------------------------------
def test_translate_to_ub2_xml_valid_against_the_ub2_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "translate", str(valid_sample()), *packs_args())
    assert code == 0
    document = etree.fromstring(out.encode("utf-8"))
    ub2_exchange.schema().assertValid(document)
    assert "translated CC315A ABC123" in err
    # The sample's placeholder codes are warnings, each with the XPath of the value.
    assert "warning: UB2_CONTAINER_INVALID: 'ABC123' is not an ISO 6346" in err
    assert f"(at {CONTAINER_XPATH})" in err


def test_translate_to_json_and_proto_round_trip_to_the_pipeline_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pipeline = Ub2Pipeline(
        load_schema_packs(ics_pack(), wco_dm_pack()), load_mapping_specs(ROOT / "adapters/mappings")
    )
    expected = pipeline.translate(valid_sample().read_bytes()).consignment

    code, out, _ = run(capsys, "translate", str(valid_sample()), "--to", "json", *packs_args())
    assert code == 0
    assert ub2_exchange.from_json(out, Ub2Kind.TRANSACTION) == expected

    proto = tmp_path / "out.pb"
    code, _, _ = run(capsys, "translate", str(valid_sample()), "--to", "ub2-proto", "-o",
                     str(proto), *packs_args())  # fmt: skip
    assert code == 0
    decoded = ub2_exchange.decode(proto.read_bytes(), Ub2Kind.TRANSACTION, PayloadForm.PROTOBUF)
    assert decoded == expected


def test_translate_usage_strict_and_missing_packs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sample = str(valid_sample())
    code, out, err = run(capsys, "translate", sample, "--to", "ub2-proto", *packs_args())
    assert code == 2 and out == "" and "-o FILE" in err

    code, out, err = run(capsys, "translate", sample, "--strict", *packs_args())
    assert code == 1 and out == ""
    assert "error: UB2_CONTAINER_INVALID" in err and "nothing written" in err

    code, out, err = run(capsys, "translate", sample)
    assert code == 1 and out == "" and "error: UB2_SCHEMA_PACK_MISSING" in err

    code, out, err = run(capsys, "translate", sample, "--no-validate")
    assert code == 0 and "NOT schema-validated" in err
    etree.fromstring(out.encode("utf-8"))

    clean = tmp_path / "clean.xml"
    clean.write_bytes(on_lane("NL25ENS000000001"))
    code, out, err = run(capsys, "translate", str(clean), "--strict", *packs_args())
    assert code == 0 and "warning" not in err and "NL25ENS000000001" in out


def test_translate_writes_no_ub2_xml_that_our_schema_refuses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """DEC-DMS takes a lower-case country code; ub2-transaction.xsd does not. The value is a
    warning, and the UB2 XML it would break is refused: nothing written, exit 1."""
    source = next(p for p in cds_declaration_samples() if p.name.startswith("New_Export"))
    document = etree.parse(str(source))
    countries = [
        e for e in document.iter() if isinstance(e.tag, str) and e.tag.endswith("}CountryCode")
    ]
    assert countries
    for element in countries:
        element.text = (element.text or "").lower()
    lower = tmp_path / "lower-case-countries.xml"
    lower.write_bytes(etree.tostring(document))
    written = tmp_path / "out.xml"

    code, out, err = run(capsys, "translate", str(lower), "-o", str(written), *packs_args())
    assert code == 1 and out == "" and not written.exists()
    assert "warning: UB2_COUNTRY_INVALID: 'pk'" in err
    assert "error: UB2_OUTPUT_INVALID:" in err and "nothing written" in err
    assert "(at UB2 XML /*/" in err

    # The same record in the other forms is still written, with the warnings.
    code, out, err = run(capsys, "translate", str(lower), "--to", "json", *packs_args())
    assert code == 0 and '"pk"' in out and "warning: UB2_COUNTRY_INVALID" in err


def test_wrong_namespace_and_unknown_message_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-ns.xml"
    wrong.write_bytes(valid_sample().read_bytes().replace(IE.encode(), b"http://ics.dgtaxud.ec/X"))
    code, out, err = run(capsys, "translate", str(wrong), *packs_args())
    assert code == 1 and out == ""
    assert err.startswith("error: UB2_WRONG_NAMESPACE: ") and "(at /*[local-name()='CC315A']" in err

    unknown = tmp_path / "cc999a.xml"
    unknown.write_bytes(b'<ie:CC999A xmlns:ie="http://ics.dgtaxud.ec/CC999A"><A/></ie:CC999A>')
    code, out, err = run(capsys, "validate", str(unknown), *packs_args())
    assert code == 1 and "error: UB2_UNKNOWN_MESSAGE: the ICS message CC999A" in err


# --- validate and coverage ---------------------------------------------------------------------
def test_validate_reports_every_schema_error_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    invalid = shared_data() / "ics-ens" / "examples" / "CC315A-schemaInvalidSample-v11-2.xml"
    code, out, _ = run(capsys, "validate", str(invalid), *packs_args())
    assert code == 1
    assert "schema: INVALID" in out and "result: NOT OK" in out
    assert "(at /ie:CC315A/HEAHEA/TotNumOfIteHEA305, line " in out
    assert "/ie:CC315A/GOOITEGDS[2]/PACGS2/NumOfPacGS24" in out


def test_validate_a_clean_message_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    clean = tmp_path / "clean.xml"
    clean.write_bytes(on_lane("NL25ENS000000002"))
    code, out, _ = run(capsys, "validate", str(clean), *packs_args())
    assert code == 0, out
    assert "schema: valid" in out and "code lists: every value ok" in out

    code, out, _ = run(capsys, "validate", str(valid_sample()), *packs_args())
    assert code == 1 and "schema: valid" in out and "error: UB2_COUNTRY_INVALID" in out


def test_mapping_coverage_lists_carried_and_dropped_elements(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "mapping", "coverage", "CC315A", *packs_args())
    assert code == 0
    lines = out.splitlines()
    carried = [line for line in lines if line.startswith("carried ")]
    dropped = [line for line in lines if line.startswith("dropped ")]
    assert any("HEAHEA/RefNumHEA4" in line and "reference" in line for line in carried)
    assert any("MesSenMES3" in line and "signed UB2 envelope" in line for line in dropped)
    assert lines[-1].endswith("0 not covered")

    spec = ROOT / "adapters" / "mappings" / "cc313a.toml"
    samples = shared_data() / "ics-ens" / "examples"
    code, out, err = run(capsys, "mapping", "coverage", str(spec), "--samples", str(samples),
                         *packs_args())  # fmt: skip
    assert code == 0 and "CC313A mapping coverage" in out and "CC313A message(s)" in err
    assert 0 < len(out.splitlines()) < len(lines)  # restricted to what the samples hold

    code, _, err = run(capsys, "mapping", "coverage", "CC999A", *packs_args())
    assert code == 1 and "error: UB2_MAPPING_INVALID" in err


# --- send over real gateways -------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("ub2cli")
    started = eu_cn(base, pki)
    packs = (
        f'\n[ub2]\nschema_packs.ics_ens = "{ics_pack()}"\nschema_packs.wco_dm = "{wco_dm_pack()}"\n'
    )
    for name in ("eu.toml", "cn.toml"):  # the CLI reads the files; the running nodes need not
        (base / name).write_text((base / name).read_text() + packs)
    yield {"base": base, **started}
    for gateway in started.values():
        gateway.close()


def cn_holds(gateway: Gateway, reference: str) -> bool:
    return any(t.reference == reference for t in gateway.service.received())


def eu_outbox_for(gateways: dict[str, Any], reference: str) -> list[Any]:
    eu: Gateway = gateways["EU"]
    return [t for t in eu.service.sent(CN) if t.reference == reference]


def send(capsys: pytest.CaptureFixture[str], gateways: dict[str, Any], data: bytes, name: str
         ) -> tuple[int, str, str]:  # fmt: skip
    path = gateways["base"] / f"{name}.xml"
    path.write_bytes(data)
    return run(capsys, "send", "--to", "CN", str(path), "--config",
               str(gateways["base"] / "eu.toml"))  # fmt: skip


def test_send_on_lane_is_accepted_and_stored_by_cn(
    capsys: pytest.CaptureFixture[str], gateways: dict[str, Any]
) -> None:
    reference = "NL25ENS000000010"
    code, out, err = send(capsys, gateways, on_lane(reference), "on-lane")
    assert code == 0, err
    assert "on lane Shanghai-Rotterdam" in out
    assert "ACCEPTED" in out and "by CN" in out and "(matches what was sent)" in out
    assert cn_holds(gateways["CN"], reference)
    (sent,) = eu_outbox_for(gateways, reference)
    item = gateways["EU"].outbox.get(sent.message_id)
    assert item is not None and item.state.value == "delivered"


@pytest.mark.parametrize(
    ("name", "data", "code", "location"),
    [
        (
            "off-lane",
            dict(loading="DEHAM"),
            "UB2_NO_LANE",
            "/ie:CC315A/HEAHEA[1]/PlaLoaGOOITE334[1]",
        ),
        # CSQU3054383 is valid: its check digit is 3; 4 is wrong.
        ("bad-digit", dict(container="CSQU3054384"), "UB2_CONTAINER_INVALID", CONTAINER_XPATH),
    ],
)
def test_a_refused_send_sends_nothing(
    capsys: pytest.CaptureFixture[str],
    gateways: dict[str, Any],
    name: str,
    data: dict[str, str],
    code: str,
    location: str,
) -> None:
    reference = f"NL25ENS0000000{20 + len(name)}"
    cn: Gateway = gateways["CN"]
    inbox_before = len(cn.inbox_envelopes())
    outbox_before = len(gateways["EU"].outbox.list(partner=CN))
    exit_code, out, err = send(capsys, gateways, on_lane(reference, **data), name)
    assert exit_code == 1
    assert f"error: {code}: " in err and location in err
    assert "nothing was sent to CN" in err
    assert "ACCEPTED" not in out
    assert len(cn.inbox_envelopes()) == inbox_before and not cn_holds(cn, reference)
    assert len(gateways["EU"].outbox.list(partner=CN)) == outbox_before
    assert eu_outbox_for(gateways, reference) == []


def test_send_without_ub2_table_or_with_half_the_raw_options(
    capsys: pytest.CaptureFixture[str], gateways: dict[str, Any]
) -> None:
    base: Path = gateways["base"]
    path = base / "plain.xml"
    path.write_bytes(on_lane("NL25ENS000000030"))
    code, _, err = run(capsys, "send", "--to", "CN", str(path), "--config", str(base / "eux.toml"))
    assert code == 1 and "error: UB2_SCHEMA_PACK_MISSING" in err and "--ub and --type" in err
    code, _, err = run(capsys, "send", "--to", "CN", str(path), "--config",
                       str(base / "eu.toml"), "--ub", "UB2")  # fmt: skip
    assert code == 2 and "both --ub and --type" in err


def test_control_result_from_cn_reaches_the_eu_as_a_dms_notification(
    capsys: pytest.CaptureFixture[str], gateways: dict[str, Any]
) -> None:
    base: Path = gateways["base"]
    reference = "NL25ENS000000040"
    code, _, err = send(capsys, gateways, on_lane(reference), "controlled")
    assert code == 0, err
    (sent,) = eu_outbox_for(gateways, reference)
    result = ControlResult(
        reference="CNSHA-CTL-0001",
        transaction_reference=reference,
        transaction_message_id=sent.message_id,
        controlling_administration=Administration.CN,
        controlled_at=datetime(2025, 6, 2, 9, 30, tzinfo=UTC),
        control_types=(ControlType.SEAL_CHECK, ControlType.NON_INTRUSIVE),
        outcome=ControlOutcome.SATISFACTORY,
        seals=(SealCheck("SH0012345", True, "CSQU3054383"),),
    )
    file = base / "control.json"
    file.write_text(ub2_exchange.to_json(result))
    code, out, err = run(capsys, "ub2", "send-control-result", str(file), "--to", "EU",
                         "--config", str(base / "cn.toml"))  # fmt: skip
    assert code == 0, err
    assert "ACCEPTED" in out and "by EU" in out

    eu_toml = str(base / "eu.toml")
    code, out, err = run(capsys, "ub2", "control-results", reference, "--config", eu_toml)
    assert code == 0 and "1 control result(s) received" in err
    xml = out.split("-->", 1)[1].strip().encode("utf-8")
    response = etree.fromstring(xml)
    assert etree.QName(response).localname == "Response"
    assert response.findtext("{*}FunctionCode") == "07"
    assert reference.encode() in xml and b"SATISFACTORY" in xml

    code, out, _ = run(capsys, "ub2", "control-results", reference, "--config", eu_toml,
                       "--format", "json")  # fmt: skip
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["from"] == "CN" and entry["transaction_message_id"] == sent.message_id
    back = ub2_exchange.from_json(json.dumps(entry["control_result"]), Ub2Kind.CONTROL_RESULT)
    assert back == result

    code, _, err = run(capsys, "ub2", "control-results", "NO-SUCH-REF", "--config", eu_toml)
    assert code == 1 and "error: UB2_UNKNOWN_TRANSACTION" in err


def test_a_control_result_on_an_unknown_transaction_is_refused_before_sending(
    capsys: pytest.CaptureFixture[str], gateways: dict[str, Any]
) -> None:
    base: Path = gateways["base"]
    result = ControlResult(
        reference="CNSHA-CTL-0002",
        transaction_reference="NEVER-RECEIVED",
        transaction_message_id=None,
        controlling_administration=Administration.CN,
        controlled_at=datetime(2025, 6, 2, 9, 30, tzinfo=UTC),
        control_types=(ControlType.DOCUMENTARY,),
        outcome=ControlOutcome.SATISFACTORY,
    )
    file = base / "unknown.json"
    file.write_text(ub2_exchange.to_json(result))
    code, out, err = run(capsys, "ub2", "send-control-result", str(file), "--to", "EU",
                         "--config", str(base / "cn.toml"))  # fmt: skip
    assert code == 1 and "error: UB2_UNKNOWN_TRANSACTION" in err and "ACCEPTED" not in out
