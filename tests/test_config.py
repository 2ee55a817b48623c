"""The TOML configuration: a valid file builds a working node; each bad key is named."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from crl_partitions import partition_crl
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import testpki
from gateway.config import PartnerBinding, build_node, load_config
from gateway.envelope.opened import Binding, new_header
from gateway.errors import ConfigError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import open_receipt, seal_envelope
from gateway.testpki import init_test_pki

Pki = testpki.TestPki  # not imported by name: pytest would try to collect a Test* class
Config = dict[str, Any]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cfg-pki") / "pki"
    init_test_pki(root, ("EU", "US", "CN"))
    return root


@pytest.fixture
def conf_dir(pki_dir: Path, tmp_path: Path) -> Path:
    """A directory holding the PKI under pki/ (so relative paths are exercised) and data/."""
    shutil.copytree(pki_dir, tmp_path / "pki")
    (tmp_path / "data").mkdir()
    return tmp_path


def valid() -> Config:
    return {
        "gateway": {
            "administration": "EU",
            "signing_key": "pki/EU/signing.key.pem",
            "signing_cert": "pki/EU/signing.pem",
            "tls_key": "pki/EU/tls.key.pem",
            "tls_cert": "pki/EU/tls.pem",
        },
        "store": {"url": "sqlite:///data/inbox.db"},
        "listen": {"grpc": "127.0.0.1:0", "xml": "127.0.0.1:0"},
        "intake": {"max_envelope_bytes": 1048576, "clock_skew_seconds": 120},
        "partners": [
            {
                "administration": "US",
                "binding": "grpc",
                "endpoint": "127.0.0.1:50052",
                "ca": ["pki/US/ca.pem"],
                "crl": ["pki/US/crl.pem"],
                "signers": [
                    {"cert": "pki/US/signing.pem", "until": datetime(2030, 1, 1, tzinfo=UTC)},
                    {"cert": "pki/US/signing-next.pem"},
                ],
            },
            {
                "administration": "CN",
                "binding": "xml",
                "endpoint": "https://localhost:8443/gnc/v1/envelopes",
                "ca": "pki/CN/ca.pem",
                "crl": "pki/CN/crl.pem",
            },
        ],
    }


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string


def render(config: Config) -> str:
    lines: list[str] = []
    for name, table in config.items():
        if name == "partners":
            continue
        if isinstance(table, dict):
            lines.append(f"[{name}]")
            lines += [f"{k} = {_value(v)}" for k, v in table.items()]
        else:
            lines.insert(0, f"{name} = {_value(table)}")
    for partner in config.get("partners", []):
        lines.append("[[partners]]")
        lines += [f"{k} = {_value(v)}" for k, v in partner.items() if k != "signers"]
        for signer in partner.get("signers", []):
            lines.append("[[partners.signers]]")
            lines += [f"{k} = {_value(v)}" for k, v in signer.items()]
    return "\n".join(lines) + "\n"


def write(conf_dir: Path, config: Config) -> Path:
    path = conf_dir / "gateway.toml"
    path.write_text(render(config))
    return path


def test_a_valid_configuration_builds_a_working_node(conf_dir: Path, pki_dir: Path) -> None:
    config = load_config(write(conf_dir, valid()))
    assert config.administration is Administration.EU
    assert config.store_path == (conf_dir / "data" / "inbox.db").resolve()
    assert config.signing_cert == (conf_dir / "pki" / "EU" / "signing.pem").resolve()
    assert config.listen.grpc == ("127.0.0.1", 0) and config.listen.xml == ("127.0.0.1", 0)
    assert config.limits.max_envelope_bytes == 1048576
    assert config.limits.clock_skew == timedelta(seconds=120)
    us, cn = config.partners
    assert us.binding is PartnerBinding.GRPC and cn.binding is PartnerBinding.XML
    assert us.signers is not None and us.signers[0].until == datetime(2030, 1, 1, tzinfo=UTC)
    assert cn.signers is None
    assert config.partner("cn") is cn
    assert config.client_tls("US").partner_roots_pem.startswith(b"-----BEGIN CERTIFICATE")

    node = build_node(config)
    try:
        # The node receives what a configured partner signs, and answers with our signature.
        pki = testpki.TestPki(conf_dir / "pki")
        payload = b"<Ping/>"
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock.UB1,
            message_type="PING",
            sender=Administration.CN,
            receiver=Administration.EU,
            payload_content_type="application/xml",
        )
        raw = seal_envelope(Binding.XML, header, payload, pki.identity("CN"))
        receipt = open_receipt(Binding.XML, node.receive(raw, Binding.XML, Administration.CN))
        assert receipt.receipt.accepted, receipt.receipt.error_message
        assert node.inbox.count() == 1
        # US may sign only with its pinned certificates: its RSA key is refused.
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock.UB1,
            message_type="PING",
            sender=Administration.US,
            receiver=Administration.EU,
            payload_content_type="application/xml",
        )
        raw = seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("US", "signing-rsa"))
        refused = open_receipt(Binding.PROTOBUF, node.receive(raw, Binding.PROTOBUF))
        assert refused.receipt.error_code == "TRUST_CERT_NOT_ALLOWED"
        # The node's message log is chained and signs checkpoints with the gateway's key.
        assert node.message_log is not None
        assert node.message_log.signer == config.signing_identity
        checkpoint = node.message_log.checkpoint()
        assert checkpoint is not None and checkpoint.entries == len(node.message_log.chain())
    finally:
        node.inbox.close()


def test_an_absolute_store_url_and_optional_sections(conf_dir: Path) -> None:
    config = valid()
    config["store"]["url"] = f"sqlite:///{conf_dir}/data/abs.db"  # sqlite:////abs/path
    del config["listen"], config["intake"]
    loaded = load_config(write(conf_dir, config))
    assert loaded.store_path == conf_dir / "data" / "abs.db"
    assert loaded.listen.grpc is None and loaded.listen.xml is None
    assert loaded.limits.max_envelope_bytes == 8 * 1024 * 1024


def _set(path: str, value: Any) -> Callable[[Config], None]:
    """A mutation setting config[a][b]... (list indexes as numbers); None deletes the key."""

    def apply(config: Config) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        target: Any = config
        for key in keys[:-1]:
            target = target[key]
        if value is None:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return apply


def _duplicate_partner(config: Config) -> None:
    config["partners"].append(copy.deepcopy(config["partners"][1]))


def _same_ca_for_two_partners(config: Config) -> None:
    config["partners"][1]["ca"] = "pki/US/ca.pem"
    config["partners"][1]["crl"] = "pki/US/crl.pem"


BAD: list[tuple[str, Callable[[Config], None], str]] = [
    ("unknown administration", _set("gateway.administration", "XX"), "gateway.administration"),
    (
        "unknown partner administration",
        _set("partners.0.administration", "ZZ"),
        "partners[0].administration",
    ),
    ("partner is ourselves", _set("partners.0.administration", "EU"), "own administration"),
    ("missing file", _set("partners.1.ca", ["pki/CN/nope.pem"]), "partners[1].ca[0]: file not"),
    ("missing signing key", _set("gateway.signing_key", "pki/EU/none.pem"), "gateway.signing_key"),
    ("bad binding", _set("partners.0.binding", "soap"), "partners[0].binding: 'soap'"),
    (
        "signing key does not match cert",
        _set("gateway.signing_key", "pki/US/signing.key.pem"),
        "gateway.signing_key: private key does not belong",
    ),
    (
        "TLS key does not match cert",
        _set("gateway.tls_key", "pki/EU/signing.key.pem"),
        "gateway.tls_key: private key does not belong",
    ),
    (
        "expired signing certificate",
        lambda c: c["gateway"].update(
            signing_key="pki/EU/expired.key.pem", signing_cert="pki/EU/expired.pem"
        ),
        "gateway.signing_cert: certificate expired",
    ),
    ("store scheme", _set("store.url", "mysql://db/gnc"), "store.url: store scheme"),
    ("store postgresql no db", _set("store.url", "postgresql://db"), "store.url: "),
    ("store not a URL", _set("store.url", "inbox.db"), "store.url"),
    ("store in-memory", _set("store.url", "sqlite:///:memory:"), "store.url"),
    ("store directory missing", _set("store.url", "sqlite:///nodir/x.db"), "store.url: directory"),
    ("duplicate partner", _duplicate_partner, "partners[2].administration: partner CN is already"),
    ("same CA for two partners", _same_ca_for_two_partners, "partners: CA"),
    ("unknown key", _set("gateway.signing_kye", "x"), "gateway.signing_kye: unknown key"),
    ("unknown section", _set("listener", {"xml": "x"}), "listener: unknown key"),
    ("missing partners", _set("partners", None), "partners: missing"),
    ("grpc endpoint is a URL", _set("partners.0.endpoint", "https://x:1"), "partners[0].endpoint"),
    ("xml endpoint not https", _set("partners.1.endpoint", "http://x/"), "partners[1].endpoint"),
    ("listen address", _set("listen.xml", "localhost"), "listen.xml"),
    ("listen port", _set("listen.grpc", "127.0.0.1:70000"), "listen.grpc"),
    ("intake range", _set("intake.max_envelope_bytes", 10), "intake.max_envelope_bytes"),
    ("intake type", _set("intake.clock_skew_seconds", "5m"), "intake.clock_skew_seconds"),
    ("no CRL", _set("partners.1.crl", None), "partners[1].crl: missing"),
    (
        "CRL of another CA",
        _set("partners.1.crl", "pki/US/crl.pem"),
        "partners[1].crl: ",
    ),
    ("CA file is a key", _set("partners.1.ca", "pki/CN/tls.key.pem"), "partners[1].ca: cannot"),
    (
        "signer until without zone",
        _set("partners.0.signers.0.until", "2030-01-01T00:00:00"),
        "partners[0].signers[0].until",
    ),
    ("signer cert missing", _set("partners.0.signers.1.cert", None), "partners[0].signers[1].cert"),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_key_is_a_config_error_naming_it(
    conf_dir: Path, case: str, mutate: Callable[[Config], None], expected: str
) -> None:
    config = valid()
    mutate(config)
    path = write(conf_dir, config)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    error = excinfo.value
    assert error.code == "CFG_INVALID"
    assert error.message.startswith("config error: ")
    assert expected in error.message, error.message
    assert error.location == str(path)


def test_a_crl_not_allowed_to_be_missing_can_be_waived(conf_dir: Path) -> None:
    config = valid()
    del config["partners"][1]["crl"]
    config["partners"][1]["require_crl"] = False
    loaded = load_config(write(conf_dir, config))
    assert loaded.partners[1].require_crl is False
    assert loaded.trust.partner(Administration.CN).require_crl is False


def test_a_crl_of_one_distribution_point_stops_the_start(conf_dir: Path) -> None:
    """It covers only part of its CA's certificates: taken as complete, it could pass one
    revoked on another partition. Refused at start-up with its key and file."""
    pki = testpki.TestPki(conf_dir / "pki")
    key = serialization.load_pem_private_key(pki.key_path("CN", "ca").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    partition = partition_crl(
        pki.ca("CN"), key, "http://crl.cn.example/part-1.crl", (),
        now - timedelta(hours=1), now + timedelta(days=7),
    )  # fmt: skip
    (conf_dir / "pki" / "CN" / "part-1.crl.pem").write_bytes(
        partition.public_bytes(serialization.Encoding.PEM)
    )
    config = valid()
    config["partners"][1]["crl"] = "pki/CN/part-1.crl.pem"
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(conf_dir, config))
    assert "part-1.crl.pem is partitioned" in excinfo.value.message
    assert "distribution point" in excinfo.value.message


def test_not_toml_and_missing_file(conf_dir: Path) -> None:
    bad = conf_dir / "bad.toml"
    bad.write_text("[gateway\nadministration = 'EU'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(conf_dir / "absent.toml")


# --- partner profiles linked from the configuration, and [delivery] -----------------------------
PROFILES = Path(__file__).resolve().parent.parent / "adapters" / "partners"


@pytest.fixture
def with_profiles(conf_dir: Path) -> Path:
    (conf_dir / "profiles").mkdir()
    for name in ("us.toml", "cn.toml", "jp.toml"):
        shutil.copy(PROFILES / name, conf_dir / "profiles" / name)
    return conf_dir


def test_a_linked_profile_supplies_agreement_rules_and_retry(with_profiles: Path) -> None:
    config = valid()
    config["partners"][0]["profile"] = "profiles/us.toml"  # relative to the config file
    config["delivery"] = {"poll_seconds": 0.25}
    loaded = load_config(write(with_profiles, config))
    us, cn = loaded.partners
    assert us.profile is not None and cn.profile is None
    assert us.profile_path == (with_profiles / "profiles" / "us.toml").resolve()
    assert us.profile.administration is Administration.US
    assert us.profile.retry.max_attempts == 12
    assert us.profile.retry.delay(1) == timedelta(seconds=2)
    assert us.profile.duplicate_window == timedelta(days=7)
    assert "C-TPAT" in us.profile.agreement.name
    # The deployment keeps its own values: the profile's endpoint and CA paths are not used.
    assert us.endpoint == "127.0.0.1:50052"
    assert loaded.delivery.poll_seconds == 0.25


def test_without_delivery_section_the_worker_polls_every_second(conf_dir: Path) -> None:
    assert load_config(write(conf_dir, valid())).delivery.poll_seconds == 1.0


PROFILE_BAD: list[tuple[str, Callable[[Config], None], str, str]] = [
    (
        "binding disagrees",
        _set("partners.1.profile", "profiles/cn.toml"),  # CN is configured as xml, profile grpc
        "partners[1].binding: 'xml' disagrees with transport.binding = 'grpc' in the profile",
        "CFG_INVALID",
    ),
    (
        "profile of another partner",
        _set("partners.0.profile", "profiles/jp.toml"),
        "partners[0].profile: ",
        "CFG_INVALID",
    ),
    (
        "profile missing",
        _set("partners.0.profile", "profiles/none.toml"),
        "partners[0].profile: file not found",
        "CFG_INVALID",
    ),
    ("poll type", _set("delivery", {"poll_seconds": "1s"}), "delivery.poll_seconds", "CFG_INVALID"),
    ("poll range", _set("delivery", {"poll_seconds": 0}), "delivery.poll_seconds", "CFG_INVALID"),
    ("delivery key", _set("delivery", {"poll": 1}), "delivery.poll: unknown key", "CFG_INVALID"),
]


@pytest.mark.parametrize(
    ("case", "mutate", "expected", "code"), PROFILE_BAD, ids=[b[0] for b in PROFILE_BAD]
)
def test_each_bad_profile_link_is_named(
    with_profiles: Path, case: str, mutate: Callable[[Config], None], expected: str, code: str
) -> None:
    config = valid()
    mutate(config)
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(with_profiles, config))
    assert excinfo.value.code == code
    assert expected in excinfo.value.message, excinfo.value.message


def test_a_broken_profile_keeps_its_profile_error_code_and_names_the_config_key(
    with_profiles: Path,
) -> None:
    broken = with_profiles / "profiles" / "us.toml"
    broken.write_text(broken.read_text().replace("max_attempts = 12", "max_attempts = 0"))
    config = valid()
    config["partners"][0]["profile"] = "profiles/us.toml"
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(with_profiles, config))
    assert excinfo.value.code == "PRF_BAD_RETRY"
    assert excinfo.value.message.startswith("config error: partners[0].profile: retry.max_attempts")
