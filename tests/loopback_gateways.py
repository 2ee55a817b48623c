"""Real gateways on loopback, shared by the UB1, UB2 and UB3 test fixtures.

A gateway here is what `gncgw serve` runs, assembled in-process so tests can reach into it: a
configuration file written with the test PKI, the node `build_node` makes of it (real SQLite),
gRPC and XML/HTTPS listeners with mutual TLS on free 127.0.0.1 ports, the Utility Block
service under test, and a delivery worker the test drives (``deliver``).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from gateway import testpki
from gateway.config import GatewayConfig, build_node, load_config
from gateway.model.codes import Administration
from gateway.node import GatewayNode
from gateway.services.delivery import DeliveryReport, DeliveryWorker
from gateway.store.database import Database
from gateway.store.outbox import SqliteOutbox
from gateway.transport.grpc_server import GrpcGatewayServer
from gateway.transport.links import open_link
from gateway.transport.xml_http import XmlHttpServer

S = TypeVar("S")
K = TypeVar("K")


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()
_CANDIDATES = [p for p in range(20000, 32000) if p not in _EPHEMERAL]
_GIVEN: set[int] = set()  # never the same port twice in one test run


def free_port() -> int:
    """A loopback port free now, for a server whose port must be written in a config before
    it starts. Chosen outside the kernel's ephemeral range: a port the kernel handed out and
    took back (bind to 0) can be handed out again, e.g. as the source port of an outgoing
    connection, before the server binds it, and the server then fails with "address already
    in use". A port outside that range is only ever taken by a bind that names it."""
    for _ in range(200 if _CANDIDATES else 0):
        port = random.choice(_CANDIDATES)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as sock:  # none outside the range (a custom one): the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PartnerEntry:
    """One `[[partners]]` block; `links` are its linked files, e.g. {"profile": path}."""

    admin: str
    binding: str
    endpoint: str
    links: Mapping[str, Path] | None = None


def write_config(
    path: Path,
    pki: testpki.TestPki,
    own: str,
    ports: tuple[int, int],
    partners: Iterable[PartnerEntry],
) -> Path:
    """A gateway config for `own` (store `<path stem>.db` beside it, gRPC and XML listeners)."""
    text = f"""{pki.gateway_table(own)}

[store]
url = "sqlite:///{path.stem}.db"

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
        for key, linked in (p.links or {}).items():
            text += f'{key} = "{linked}"\n'
    path.write_text(text)
    return path


@dataclass
class Gateway(Generic[S]):
    config: GatewayConfig
    node: GatewayNode
    grpc: GrpcGatewayServer
    xml: XmlHttpServer
    service: S
    outbox: SqliteOutbox
    worker: DeliveryWorker

    def deliver(self, partner: Administration) -> DeliveryReport:
        return self.worker.run_until_idle(partner)

    def inbox_envelopes(self) -> list[bytes]:
        """Every envelope this gateway's inbox stored: what reached it over the wire."""
        rows = self.node.inbox.database.reader().execute("SELECT envelope FROM inbox").fetchall()
        return [bytes(row[0]) for row in rows]

    def close(self) -> None:
        self.worker.stop()  # also closes its partner links
        self.grpc.stop(grace=None)
        self.xml.stop()
        self.node.inbox.close()


def start_gateway(
    config_path: Path,
    make_service: Callable[[GatewayConfig, Database], S],
    *,
    outbox_of: Callable[[S], SqliteOutbox],
    before_start: Callable[[GatewayConfig, Database, GrpcGatewayServer, XmlHttpServer], None]
    | None = None,
) -> Gateway[S]:
    """Load the config, build the node, start both listeners, make the service and worker."""
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
    if before_start is not None:
        before_start(config, database, grpc_server, xml_server)
    grpc_server.start()
    xml_server.start()
    service = make_service(config, database)
    outbox = outbox_of(service)
    worker = DeliveryWorker(
        outbox,
        lambda partner: open_link(config, partner),
        partners=[p.administration for p in config.partners],
        message_log=node.message_log,
    )
    return Gateway(config, node, grpc_server, xml_server, service, outbox, worker)


def start_all(
    configs: Mapping[K, Path], start: Callable[[Path], Gateway[S]]
) -> dict[K, Gateway[S]]:
    """Start every gateway, or none: those already started are closed if one fails."""
    started: dict[K, Gateway[S]] = {}
    try:
        for name, path in configs.items():
            started[name] = start(path)
    except BaseException:
        for gateway in started.values():
            gateway.close()
        raise
    return started
