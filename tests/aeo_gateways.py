"""Two real gateways (EU and US) on loopback for the UB1 tests: configuration files written
with the test PKI, the EU side linking the US partner profile, real SQLite stores, real gRPC
and HTTPS listeners with mutual TLS, and the outbox delivery worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import loopback_gateways as loopback
from loopback_gateways import PartnerEntry, free_port

from gateway import testpki
from gateway.config import GatewayConfig, build_node, load_config
from gateway.model.codes import Administration
from gateway.node import GatewayNode
from gateway.services.aeo import AeoQueryResponder, AeoService, responder_for, service_for
from gateway.services.delivery import DeliveryReport, DeliveryWorker
from gateway.store.aeo_store import AeoStore
from gateway.store.outbox import SqliteOutbox
from gateway.translate.eos_aeo import MappingSpec, load_mapping_spec
from gateway.transport.grpc_server import GrpcGatewayServer
from gateway.transport.inquiry import serve_inquiries
from gateway.transport.links import open_link
from gateway.transport.xml_http import XmlHttpServer

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "adapters" / "mappings" / "eos-aeo.toml"
US_PROFILE = ROOT / "adapters" / "partners" / "us.toml"
EU, US = Administration.EU, Administration.US


def mapping_spec() -> MappingSpec:
    return load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)


def write_config(
    path: Path,
    pki: testpki.TestPki,
    own: str,
    partner: str,
    *,
    grpc_port: int,
    xml_port: int,
    partner_endpoint: str,
    binding: str = "grpc",
    profile: Path | None = None,
) -> Path:
    links = {"profile": profile} if profile else None
    entry = PartnerEntry(partner, binding, partner_endpoint, links)
    return loopback.write_config(path, pki, own, (grpc_port, xml_port), [entry])


@dataclass
class Gateway:
    config: GatewayConfig
    node: GatewayNode
    grpc: GrpcGatewayServer
    xml: XmlHttpServer
    store: AeoStore
    outbox: SqliteOutbox
    service: AeoService
    responder: AeoQueryResponder
    worker: DeliveryWorker

    def deliver(self, partner: Administration) -> DeliveryReport:
        return self.worker.run_until_idle(partner)

    def close(self) -> None:
        self.worker.stop()  # also closes its partner links
        self.grpc.stop(grace=None)
        self.xml.stop()
        self.node.inbox.close()


def start_gateway(config_path: Path, *, part_size: int = 1000, batch_size: int = 500) -> Gateway:
    config = load_config(config_path)
    node = build_node(config)
    database = node.inbox.database
    assert config.listen.grpc is not None and config.listen.xml is not None
    grpc_server = GrpcGatewayServer(
        node, address=f"127.0.0.1:{config.listen.grpc[1]}", tls=config.tls_identity
    )
    xml_server = XmlHttpServer(
        node, host="127.0.0.1", port=config.listen.xml[1], identity=config.tls_identity
    )
    responder = responder_for(config, database, message_log=node.message_log)
    serve_inquiries(responder.respond, grpc_server=grpc_server, xml_server=xml_server)
    grpc_server.start()
    xml_server.start()
    outbox = SqliteOutbox(database)
    service = service_for(
        config, database, mapping_spec(), part_size=part_size, batch_size=batch_size
    )
    worker = DeliveryWorker(
        outbox,
        lambda partner: open_link(config, partner),
        partners=[p.administration for p in config.partners],
        message_log=node.message_log,
    )
    return Gateway(
        config, node, grpc_server, xml_server, service.store, outbox, service, responder, worker
    )


def eu_and_us(
    base: Path, pki: testpki.TestPki, *, binding: str = "grpc", part_size: int = 1000
) -> tuple[Gateway, Gateway]:
    """EU (linking the US profile) and US gateways that reach each other over ``binding``."""
    ports = {name: free_port() for name in ("eu-grpc", "eu-xml", "us-grpc", "us-xml")}

    def endpoint(admin: str) -> str:
        if binding == "grpc":
            return f"127.0.0.1:{ports[admin + '-grpc']}"
        return f"https://127.0.0.1:{ports[admin + '-xml']}/gnc/v1/envelopes"

    profile = US_PROFILE
    if binding == "xml":
        text = US_PROFILE.read_text().replace('binding = "grpc"', 'binding = "xml"')
        text = text.replace(
            'endpoint = "ub1.us.gnc-gateway.example:8443"',
            'endpoint = "https://ub1.us.gnc-gateway.example/gnc/v1/envelopes"',
        )
        profile = base / "us-xml.toml"
        profile.write_text(text)
    eu_config = write_config(
        base / "eu.toml", pki, "EU", "US",
        grpc_port=ports["eu-grpc"], xml_port=ports["eu-xml"],
        partner_endpoint=endpoint("us"), binding=binding, profile=profile,
    )  # fmt: skip
    us_config = write_config(
        base / "us.toml", pki, "US", "EU",
        grpc_port=ports["us-grpc"], xml_port=ports["us-xml"],
        partner_endpoint=endpoint("eu"), binding=binding,
    )  # fmt: skip
    us = start_gateway(us_config)
    try:
        eu = start_gateway(eu_config, part_size=part_size)
    except BaseException:
        us.close()
        raise
    return eu, us


@contextmanager
def running_eu_and_us(
    base: Path, pki: testpki.TestPki, *, binding: str = "grpc", part_size: int = 1000
) -> Iterator[tuple[Gateway, Gateway]]:
    """eu_and_us, both closed when the block ends."""
    eu, us = eu_and_us(base, pki, binding=binding, part_size=part_size)
    try:
        yield eu, us
    finally:
        eu.close()
        us.close()
