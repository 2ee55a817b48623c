"""Real gateways on loopback for the UB3 tests: EU, CN (reached over gRPC) and HK (over XML/HTTPS).

Configuration files are written with the test PKI; the EU links the handling rules of
adapters/handling (cn.toml, hk.toml, us.toml; US is configured but never reached); CN and HK link
test rules for the EU (feedback only). Each gateway has real SQLite, real gRPC and HTTPS
listeners with mutual TLS, and a delivery worker driven by the test (``deliver``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from gateway import testpki
from gateway.config import GatewayConfig, build_node, load_config
from gateway.model.codes import Administration
from gateway.node import GatewayNode
from gateway.services.delivery import DeliveryReport, DeliveryWorker
from gateway.services.risk import RiskService, service_for
from gateway.store.outbox import SqliteOutbox
from gateway.transport.grpc_server import GrpcGatewayServer
from gateway.transport.links import open_link
from gateway.transport.xml_http import XmlHttpServer

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PartnerEntry:
    admin: str
    binding: str
    endpoint: str
    handling: Path | None


def write_config(
    path: Path, pki: testpki.TestPki, own: str, ports: tuple[int, int], partners: list[PartnerEntry]
) -> Path:
    text = f"""[gateway]
administration = "{own}"
signing_key = "{pki.key_path(own, "signing")}"
signing_cert = "{pki.path(own, "signing")}"
tls_key = "{pki.key_path(own, "tls")}"
tls_cert = "{pki.path(own, "tls")}"

[store]
url = "sqlite:///{own.lower()}.db"

[listen]
grpc = "127.0.0.1:{ports[0]}"
xml = "127.0.0.1:{ports[1]}"
"""
    for p in partners:
        text += f"""
[[partners]]
administration = "{p.admin}"
binding = "{p.binding}"
endpoint = "{p.endpoint}"
ca = "{pki.path(p.admin, "ca")}"
crl = "{pki.path(p.admin, "crl")}"
"""
        if p.handling is not None:
            text += f'handling = "{p.handling}"\n'
    path.write_text(text)
    return path


@dataclass
class Gateway:
    config: GatewayConfig
    node: GatewayNode
    grpc: GrpcGatewayServer
    xml: XmlHttpServer
    service: RiskService
    outbox: SqliteOutbox
    worker: DeliveryWorker

    def deliver(self, partner: Administration) -> DeliveryReport:
        return self.worker.run_until_idle(partner)

    def inbox_envelopes(self) -> list[bytes]:
        """Every envelope this gateway's inbox stored: what reached it over the wire."""
        rows = self.node.inbox.database.reader().execute("SELECT envelope FROM inbox").fetchall()
        return [bytes(row[0]) for row in rows]

    def close(self) -> None:
        self.worker.stop()
        self.grpc.stop(grace=None)
        self.xml.stop()
        self.node.inbox.close()


def start_gateway(config_path: Path) -> Gateway:
    config = load_config(config_path)
    node = build_node(config)
    assert config.listen.grpc is not None and config.listen.xml is not None
    grpc_server = GrpcGatewayServer(
        node, address=f"127.0.0.1:{config.listen.grpc[1]}", tls=config.tls_identity
    )
    xml_server = XmlHttpServer(
        node, host="127.0.0.1", port=config.listen.xml[1], identity=config.tls_identity
    )
    grpc_server.start()
    xml_server.start()
    database = node.inbox.database
    service = service_for(config, database)
    worker = DeliveryWorker(
        service.outbox,
        lambda partner: open_link(config, partner),
        partners=[p.administration for p in config.partners],
        message_log=node.message_log,
    )
    return Gateway(config, node, grpc_server, xml_server, service, service.outbox, worker)


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
            PartnerEntry("CN", "grpc", grpc("CN"), HANDLING / "cn.toml"),
            PartnerEntry("HK", "xml", xml("HK"), HANDLING / "hk.toml"),
            PartnerEntry("US", "grpc", f"127.0.0.1:{free_port()}", HANDLING / "us.toml"),
        ]),
        CN: write_config(base / "cn.toml", pki, "CN", ports["CN"], [
            PartnerEntry("EU", "grpc", grpc("EU"), eu_rules),
        ]),
        HK: write_config(base / "hk.toml", pki, "HK", ports["HK"], [
            PartnerEntry("EU", "xml", xml("EU"), eu_rules),
        ]),
    }  # fmt: skip
    started: dict[Administration, Gateway] = {}
    try:
        for admin, path in configs.items():
            started[admin] = start_gateway(path)
    except BaseException:
        for gateway in started.values():
            gateway.close()
        raise
    return started
