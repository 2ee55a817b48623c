"""The UB2 pipeline (read, validate, translate, code lists) and the [ub2] configuration table,
on the real schema packs and samples of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from ub2_data import ics_pack, shared_data, wco_dm_pack
from ub2_gateways import PARTNERS, PartnerEntry, write_config

from gateway.config import load_config
from gateway.errors import (
    UB2_COUNTRY_INVALID,
    UB2_SCHEMA_INVALID,
    UB2_SCHEMA_PACK_INVALID,
    UB2_SCHEMA_PACK_MISSING,
    ConfigError,
    TransactionError,
)
from gateway.model.consignment import SourceMessage
from gateway.testpki import TestPki
from gateway.translate.eu_messages import PACK_FILES, PackKind, load_schema_packs
from gateway.translate.ub2_pipeline import Ub2Pipeline
from gateway.translate.ub2_translate import load_mapping_specs

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "adapters" / "mappings"
pytestmark = pytest.mark.shared_data


def sample(name: str) -> bytes:
    return (shared_data() / "ics-ens" / "examples" / name).read_bytes()


@pytest.fixture(scope="module")
def pipeline() -> Ub2Pipeline:
    return Ub2Pipeline(load_schema_packs(ics_pack(), wco_dm_pack()), load_mapping_specs(MAPPINGS))


def test_translate_a_cc315a_keeps_its_figures_and_locates_each_finding(
    pipeline: Ub2Pipeline,
) -> None:
    data = sample("CC315A-schemaValidSample-v11-2.xml")
    translation = pipeline.translate(data)
    c = translation.consignment
    assert translation.validated and translation.message.source is SourceMessage.CC315A
    document = etree.fromstring(data)
    ns = {"ie": "http://ics.dgtaxud.ec/CC315A"}
    assert c.reference == document.findtext("HEAHEA/RefNumHEA4")
    assert len(c.goods_items) == len(document.findall("GOOITEGDS"))
    # The sample's placeholder codes ("EN" is no country) are findings, each pointing at the
    # element it came from in the message as received.
    countries = [f for f in translation.findings if f.code == UB2_COUNTRY_INVALID]
    assert countries and not translation.clean
    for finding in translation.findings:
        assert finding.location is not None
        (element,) = document.getroottree().xpath(finding.location, namespaces=ns)
        assert element.text is not None and element.text.strip() in finding.message


def test_the_enveloped_sample_translates_to_the_same_record(pipeline: Ub2Pipeline) -> None:
    bare = pipeline.translate(sample("CC315A-schemaValidSample-v11-2.xml"))
    wrapped = pipeline.translate(sample("CC315A-schemaValidSampleWithEnvelope-v11-2.xml"))
    assert wrapped.message.wrapped == "soap12"
    assert wrapped.consignment.reference and wrapped.consignment.goods_items
    assert bare.message.wrapped is None


def test_a_schema_invalid_message_is_refused_with_its_element(pipeline: Ub2Pipeline) -> None:
    with pytest.raises(TransactionError) as caught:
        pipeline.translate(sample("CC315A-schemaInvalidSample-v11-2.xml"))
    assert caught.value.code == UB2_SCHEMA_INVALID
    assert caught.value.location == "/ie:CC315A/HEAHEA/TotNumOfIteHEA305"


def test_check_lists_every_schema_error_with_its_path(pipeline: Ub2Pipeline) -> None:
    report = pipeline.check(sample("CC315A-schemaInvalidSample-v11-2.xml"))
    assert not report.ok and report.translation is None
    paths = [f.path for f in report.schema_errors]
    assert "/ie:CC315A/HEAHEA/TotNumOfIteHEA305" in paths
    assert len(paths) >= 2  # libxml2 stops at the first; the report has them all

    valid = pipeline.check(sample("CC315A-schemaValidSample-v11-2.xml"))
    assert valid.schema_errors == () and valid.translation is not None
    assert valid.findings and not valid.ok  # schema-valid, but its codes are placeholders


def test_without_packs_only_an_explicit_no_validate_translates() -> None:
    bare = Ub2Pipeline(None, load_mapping_specs(MAPPINGS))
    data = sample("CC315A-schemaValidSample-v11-2.xml")
    with pytest.raises(TransactionError) as caught:
        bare.translate(data)
    assert caught.value.code == UB2_SCHEMA_PACK_MISSING
    translation = bare.translate(data, validate=False)
    assert not translation.validated and translation.consignment.reference


# --- the [ub2] table -----------------------------------------------------------------------------
def gateway_config(base: Path, pki: TestPki, ub2: str) -> Path:
    path = write_config(
        base / "eu.toml", pki, "EU", (50051, 50052),
        [PartnerEntry("CN", "grpc", "127.0.0.1:50053", {"profile": PARTNERS / "cn.toml"})],
    )  # fmt: skip
    path.write_text(path.read_text() + "\n" + ub2)
    return path


def test_ub2_table_loads_packs_relative_to_the_config(tmp_path: Path, pki: TestPki) -> None:
    (tmp_path / "packs").symlink_to(shared_data())
    path = gateway_config(
        tmp_path, pki,
        '[ub2]\nschema_packs.ics_ens = "packs/ics-ens/xsds"\n'
        'schema_packs.wco_dm = "packs/wco-dm-cds/schemas"\n',
    )  # fmt: skip
    config = load_config(path)
    assert config.ub2 is not None
    assert config.ub2.ics_ens == ics_pack().resolve()
    assert set(config.ub2.specs) == set(SourceMessage)
    assert config.ub2.mappings == MAPPINGS  # none beside the config: the source tree's
    translation = config.ub2.pipeline().translate(sample("CC313A-schemaValidSample-v11-2.xml"))
    assert translation.message.source is SourceMessage.CC313A


def test_no_ub2_table_means_no_ub2(tmp_path: Path, pki: TestPki) -> None:
    assert load_config(gateway_config(tmp_path, pki, "")).ub2 is None


def test_a_pack_missing_a_schema_stops_the_gateway_at_start_up(
    tmp_path: Path, pki: TestPki
) -> None:
    """A pack directory without tcl-v11-2.xsd (the code-list types the messages import)."""
    pack = tmp_path / "ics"
    pack.mkdir()
    missing = "tcl-v11-2.xsd"
    assert missing in PACK_FILES[PackKind.ICS_ENS]
    for file in ics_pack().iterdir():
        if file.name != missing:
            (pack / file.name).symlink_to(file)
    path = gateway_config(tmp_path, pki, '[ub2]\nschema_packs.ics_ens = "ics"\n')
    with pytest.raises(TransactionError) as caught:
        load_config(path)
    error = caught.value
    assert error.code == UB2_SCHEMA_PACK_INVALID
    assert error.location == str(pack / missing)
    assert "ub2.schema_packs.ics_ens" in error.message and missing in error.message


def test_a_pack_that_is_not_a_directory_and_unknown_keys_are_refused(
    tmp_path: Path, pki: TestPki
) -> None:
    with pytest.raises(TransactionError) as caught:
        load_config(gateway_config(tmp_path, pki, '[ub2]\nschema_packs.wco_dm = "nowhere"\n'))
    assert caught.value.code == UB2_SCHEMA_PACK_INVALID
    assert "ub2.schema_packs.wco_dm" in caught.value.message
    with pytest.raises(ConfigError) as unknown:
        load_config(gateway_config(tmp_path, pki, '[ub2]\nschema_pack.ics_ens = "x"\n'))
    assert "ub2.schema_pack: unknown key" in unknown.value.message
