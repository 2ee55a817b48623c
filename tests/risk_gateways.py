"""Real gateways on loopback for the UB3 tests: EU, CN (reached over gRPC) and HK (over XML/HTTPS).

Configuration files are written with the test PKI; the EU links the handling rules of
adapters/handling (cn.toml, hk.toml, us.toml; US is configured but never reached); CN and HK link
test rules for the EU (feedback only). Each gateway has real SQLite, real gRPC and HTTPS
listeners with mutual TLS, and a delivery worker driven by the test (``deliver``).
"""

from __future__ import annotations

from pathlib import Path

import loopback_gateways as loopback
from loopback_gateways import PartnerEntry, free_port, write_config

from gateway import testpki
from gateway.model.codes import Administration
from gateway.services.risk import RiskService, service_for

ROOT = Path(__file__).resolve().parent.parent
HANDLING = ROOT / "adapters" / "handling"
VECTORS = Path(__file__).resolve().parent / "vectors" / "risk"
EU, CN, HK, US = Administration.EU, Administration.CN, Administration.HK, Administration.US

# What CN and HK may send the EU: feedback only (test rules, written beside the configs).
EU_RULES = """
[partner]
administration = "EU"
[agreement]
name = "test: feedback to the EU"
reference = "test"
[receive]
messages = ["RiskFeedback"]
risk_areas = []
max_label = "RESTRICTED"
[remove]
personal_data = "refuse"
fields = []
[retention]
days = 30
"""


Gateway = loopback.Gateway[RiskService]


def start_gateway(config_path: Path) -> Gateway:
    return loopback.start_gateway(config_path, service_for, outbox_of=lambda s: s.outbox)


def _handling(path: Path) -> dict[str, Path]:
    return {"handling": path}


def eu_cn_hk(base: Path, pki: testpki.TestPki) -> dict[Administration, Gateway]:
    """EU with CN (gRPC), HK (XML) and US (configured, unreachable) as UB3 partners."""
    ports = {admin: (free_port(), free_port()) for admin in ("EU", "CN", "HK")}
    eu_rules = base / "eu-rules.toml"
    eu_rules.write_text(EU_RULES)

    def grpc(admin: str) -> str:
        return f"127.0.0.1:{ports[admin][0]}"

    def xml(admin: str) -> str:
        return f"https://127.0.0.1:{ports[admin][1]}/gnc/v1/envelopes"

    configs = {
        EU: write_config(base / "eu.toml", pki, "EU", ports["EU"], [
            PartnerEntry("CN", "grpc", grpc("CN"), _handling(HANDLING / "cn.toml")),
            PartnerEntry("HK", "xml", xml("HK"), _handling(HANDLING / "hk.toml")),
            PartnerEntry("US", "grpc", f"127.0.0.1:{free_port()}", _handling(HANDLING / "us.toml")),
        ]),
        CN: write_config(base / "cn.toml", pki, "CN", ports["CN"], [
            PartnerEntry("EU", "grpc", grpc("EU"), _handling(eu_rules)),
        ]),
        HK: write_config(base / "hk.toml", pki, "HK", ports["HK"], [
            PartnerEntry("EU", "xml", xml("EU"), _handling(eu_rules)),
        ]),
    }  # fmt: skip
    return loopback.start_all(configs, start_gateway)
