"""`gncgw serve --config FILE`: run a gateway node with the listeners its configuration names.

The configuration is checked completely before anything listens (config.load_config). Each
listener logs one line with the address it bound (a port of 0 picks a free one). SIGINT or
SIGTERM stops the node cleanly: listeners stop taking new requests, requests in flight are
answered, then the message store is closed; the exit status is then 0.

The node also runs the outbox delivery worker (services.delivery) on its message store: it
sends what is due to each configured partner, with the retry policy of the partner's profile,
pausing `[delivery] poll_seconds` when there is nothing to do. It stops first on shutdown.
Several nodes may serve one PostgreSQL store: each claims the messages it sends under its
`[gateway] node_id` (default hostname:pid) for `[delivery] lease_seconds` (docs/storage.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.config import GatewayConfig, build_node, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.node import GatewayNode
from gateway.ops.logs import LogFormat, use_log_format
from gateway.ops.serving import Operations
from gateway.services.aeo import responder_for
from gateway.services.delivery import DeliveryWorker
from gateway.store.database import check_writable, display_url
from gateway.store.outbox import SqliteOutbox
from gateway.transport.inquiry import serve_inquiries
from gateway.transport.links import open_link
from gateway.transport.xml_http import XmlHttpServer

log = logging.getLogger("gateway.serve")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a gateway node (gRPC and/or XML over HTTPS, as configured)",
        description="Run a gateway node until SIGINT or SIGTERM. See docs/configuration.md.",
    )
    parser.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the node's TOML configuration"
    )
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        help="text lines, or JSON lines with message and correlation ids (default: the "
        "configuration's [logging] format, else text)",
    )
    parser.set_defaults(func=run, log_level=logging.INFO)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Running:
    """The listeners started so far, stopped in reverse order whatever happens."""

    def __init__(self) -> None:
        self.stops: list[Callable[[], None]] = []

    def stop_all(self) -> None:
        while self.stops:
            stop = self.stops.pop()
            try:
                stop()
            except Exception:
                log.exception("error while stopping a listener")


def _start_listeners(
    config: GatewayConfig, node: GatewayNode, running: _Running, ops: Operations
) -> None:
    # Online inquiries (e.g. "is this trader an AEO of yours?") answered from our own lists;
    # every answer is in the node's message log before it leaves.
    respond = responder_for(config, node.inbox.database, message_log=node.message_log).respond
    if config.listen.grpc is not None:
        from gateway.transport.grpc_server import GrpcGatewayServer

        grpc_server = GrpcGatewayServer(
            node, address=_address(*config.listen.grpc), tls=config.tls_identity
        )
        serve_inquiries(respond, grpc_server=grpc_server)
        try:
            grpc_server.start()  # logs its listening line
        except ConfigError as error:
            raise ConfigError(
                f"config error: listen.grpc: {error.message}", location=str(config.path)
            ) from None
        running.stops.append(lambda: grpc_server.stop(grace=5.0))
        ops.on_store_change(grpc_server.health.refresh)  # Watch streams hear of a lost store
    if config.listen.xml is not None:
        host, port = config.listen.xml
        try:
            xml_server = XmlHttpServer(node, host=host, port=port, identity=config.tls_identity)
        except OSError as exc:
            raise ConfigError(
                f"config error: listen.xml: cannot listen on {_address(host, port)}: "
                f"{exc.strerror or exc}",
                location=str(config.path),
            ) from None
        serve_inquiries(respond, xml_server=xml_server)
        xml_server.start()  # logs its listening line
        running.stops.append(xml_server.stop)


def _start_full_list_schedule(config: GatewayConfig, node: GatewayNode, running: _Running) -> None:
    """The daily full list to every partner whose profile has UB1 rules."""
    if not any(p.profile is not None for p in config.partners):
        return
    from gateway.cli.aeo import mapping_spec_for
    from gateway.services.aeo import service_for
    from gateway.services.schedule import FullListSchedule

    database = node.inbox.database
    service = service_for(config, database, mapping_spec_for(config, None))
    schedule = FullListSchedule(service, SqliteOutbox(database))
    schedule.start()
    running.stops.append(schedule.stop)


def _start_retention_purge(config: GatewayConfig, node: GatewayNode, running: _Running) -> None:
    """Hourly: received UB3 records past the retention their handling rules set are purged."""
    if not any(p.handling is not None for p in config.partners):
        return
    from gateway.services.risk import service_for as risk_service_for
    from gateway.services.schedule import Periodic

    service = risk_service_for(config, node.inbox.database)
    purge = Periodic("retention-purge", lambda: service.purge_expired(actor="gncgw serve"), 3600.0)
    purge.start()
    running.stops.append(purge.stop)


def _delivery_worker(config: GatewayConfig, node: GatewayNode) -> DeliveryWorker:
    """The outbox worker for every configured partner, on the node's own store."""
    database = node.inbox.database
    outbox = SqliteOutbox(
        database,
        node_id=config.node_id or None,
        lease=timedelta(seconds=config.delivery.lease_seconds),
    )
    return DeliveryWorker(
        outbox,
        lambda partner: open_link(config, partner),
        partners=[p.administration for p in config.partners],
        retry={p.administration: p.profile.retry for p in config.partners if p.profile},
        message_log=node.message_log,
        poll_seconds=config.delivery.poll_seconds,
        metrics=node.metrics,
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    use_log_format(args.log_format or config.log_format)
    if config.listen.grpc is None and config.listen.xml is None:
        raise ConfigError(
            "config error: listen: nothing to serve; set listen.grpc and/or listen.xml",
            location=str(config.path),
        )
    node = build_node(config)
    try:
        check_writable(node.inbox.database)  # rather than serve and refuse every envelope
    except GatewayError:
        node.inbox.close()
        raise
    stopping = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    running = _Running()
    try:
        ops = Operations(config, node)  # store monitor; /metrics, /healthz, /readyz
        ops.start()
        running.stops.append(ops.stop)
        _start_listeners(config, node, running, ops)
        ops.listeners_up()
        worker = _delivery_worker(config, node)
        worker.start()
        running.stops.append(worker.stop)  # stopped first: before the listeners and the store
        _start_full_list_schedule(config, node, running)
        _start_retention_purge(config, node, running)
        log.info(
            "gateway %s serving (node %s; store %s; partners %s); stop with SIGINT or SIGTERM",
            config.administration.value,
            worker.outbox.node_id,
            display_url(config.store_url),
            ", ".join(f"{p.administration.value}/{p.binding.value}" for p in config.partners),
        )
        while not stopping.wait(1.0):
            pass
        log.info("%s received: stopping", received[0] if received else "stop")
    finally:
        running.stop_all()
        node.inbox.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("gateway %s stopped", config.administration.value)
    return 0
