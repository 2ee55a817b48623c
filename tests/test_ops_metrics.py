"""Operations: Prometheus metrics scraped over HTTP from a running `gncgw serve`, readiness and
gRPC health when the store is lost, and the metrics of in-process nodes kept apart."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ops_serve import (
    CN,
    EU,
    MESSAGE_TYPE,
    US,
    UsClient,
    enqueue_for_us,
    http_get,
    scrape,
    seal_us_envelope,
    seed_full_list_sent,
    serve,
    total,
    value,
    wait_until,
    write_config,
)

from gateway import testpki
from gateway.envelope.opened import Binding
from gateway.errors import WRONG_RECEIVER, ConfigError
from gateway.node import GatewayNode
from gateway.ops.health import ReadinessCheck, StoreMonitor
from gateway.ops.http import OpsHttpServer
from gateway.store.inbox import SqliteInbox
from gateway.transport.grpc_server import SERVICE_NAME, GrpcGatewayServer
from gateway.transport.tls import ClientTls, TlsIdentity, channel_credentials
from gateway.trust.store import PartnerTrust, TrustStore

RECEIVED = "gnc_messages_received_total"


def test_serve_exposes_exact_counts_queue_depth_and_dead_letters(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pki, extra='\n[metrics]\nlisten = "127.0.0.1:0"\n')
    seed_full_list_sent(tmp_path / "eu.db")
    with serve(config) as served:
        wait_until(lambda: http_get(f"{served.metrics_url}/readyz")[0] == 200, "readiness")
        assert json.loads(http_get(f"{served.metrics_url}/readyz")[1]) == {"status": "READY"}
        assert http_get(f"{served.metrics_url}/healthz")[0] == 200
        assert http_get(f"{served.metrics_url}/nothing")[0] == 404
        before = scrape(served.metrics_url)
        assert value(before, "gnc_store_up") == 1
        assert total(before, RECEIVED) == 0
        # Configured partners are reported in every state from the start.
        assert value(before, "gnc_outbox_messages", partner="US", state="pending") == 0
        assert value(before, "gnc_outbox_messages", partner="US", state="delivered") == 1

        us = UsClient(pki, served.grpc_target)
        try:
            first_id, first = us.envelope()
            second_id, second = us.envelope()
            assert us.submit(first_id, first).accepted
            assert us.submit(second_id, second).accepted
            assert us.submit(first_id, first).accepted  # again: a duplicate
            stray_id, stray = us.envelope(receiver=CN)  # signed, but not addressed to EU
            refused = us.submit(stray_id, stray)
            assert refused.receipt.error_code == WRONG_RECEIVER
        finally:
            us.close()

        after = scrape(served.metrics_url)
        labels = {"partner": "US", "utility_block": "UB1", "message_type": MESSAGE_TYPE}
        assert value(after, RECEIVED, **labels, outcome="accepted", error_code="") == 2
        assert value(after, RECEIVED, **labels, outcome="duplicate", error_code="") == 1
        # Refused before its header could be trusted: labelled by the TLS peer only.
        assert (
            value(
                after,
                RECEIVED,
                partner="US",
                utility_block="unknown",
                message_type="unknown",
                outcome="refused",
                error_code=WRONG_RECEIVER,
            )
            == 1
        )
        assert total(after, RECEIVED) == 4
        assert value(after, "gnc_receipts_issued_total", partner="US", outcome="accepted") == 2
        assert value(after, "gnc_receipts_issued_total", partner="US", outcome="rejected") == 1
        assert value(after, "gnc_signature_verification_seconds_count", binding="protobuf") == 4
        # Every checked envelope's receipt is signed before the store says "duplicate" (then
        # the stored original is answered instead): 4 signatures for 3 receipts issued.
        assert value(after, "gnc_signing_seconds_count", binding="protobuf", what="receipt") == 4
        assert value(after, "gnc_store_commit_seconds_count", operation="inbox") == 3

        # Queue one message for US; the partner is unreachable: 2 attempts, then a dead letter.
        (queued,) = enqueue_for_us(tmp_path / "eu.db", pki, 1)
        queued_now = scrape(served.metrics_url)
        assert value(queued_now, "gnc_outbox_messages", partner="US", state="pending") == 1
        assert value(queued_now, "gnc_outbox_messages", partner="US", state="dead") == 0

        def dead() -> bool:
            now = scrape(served.metrics_url)
            return value(now, "gnc_outbox_messages", partner="US", state="dead") == 1

        wait_until(dead, "the dead letter", timeout=30)
        final = scrape(served.metrics_url)
        assert value(final, "gnc_outbox_messages", partner="US", state="pending") == 0
        sent = {"partner": "US", "utility_block": "UB1"}
        assert value(final, "gnc_messages_sent_total", **sent, outcome="failed_attempt") == 1
        assert value(final, "gnc_messages_sent_total", **sent, outcome="dead_lettered") == 1
        assert value(final, "gnc_messages_sent_total", **sent, outcome="delivered") == 0
        assert total(final, "gnc_delivery_retries_total", partner="US") == 1
        assert total(final, "gnc_dead_letters_total", partner="US") == 1
        codes = [
            dict(lbls)["error_code"]
            for (name, lbls), v in final.items()
            if name == "gnc_dead_letters_total" and v
        ]
        assert codes and codes[0].startswith("TRN_"), codes
        assert total(final, RECEIVED) == 4  # nothing else moved
    log = served.text()
    assert f"dead letter {queued} to US" in log


def test_serve_without_metrics_table_opens_no_metrics_port(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pki)
    seed_full_list_sent(tmp_path / "eu.db")
    with serve(config, metrics=False) as served:
        us = UsClient(pki, served.grpc_target)
        try:
            message_id, raw = us.envelope()
            assert us.submit(message_id, raw).accepted
        finally:
            us.close()
    assert "metrics and health listening" not in served.text()


# --- in process: health, readiness and per-node registries -----------------------------------
def _trust(pki: testpki.TestPki) -> TrustStore:
    return TrustStore(
        PartnerTrust(a, (pki.ca(a.value),), (pki.crl(a.value),)) for a in (EU, US, CN)
    )


def test_grpc_health_watch_and_readyz_follow_the_store(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    node = GatewayNode(pki.identity("EU"), _trust(pki), SqliteInbox(tmp_path / "eu.db"))
    server = GrpcGatewayServer(
        node, tls=TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls"))
    )
    server.start()
    monitor = StoreMonitor(node.inbox.is_usable, interval=0.1)
    monitor.on_change(server.health.refresh)
    readiness = ReadinessCheck(node.inbox.is_usable)
    readiness.listeners_up()
    http = OpsHttpServer(node.metrics.registry, readiness, port=0, administration="EU")
    http.start()
    monitor.start()
    tls = ClientTls.from_files(
        pki.key_path("US", "tls"), pki.path("US", "tls"), pki.path("EU", "ca")
    )
    try:
        assert http_get(f"{http.url}/readyz")[0] == 200
        with grpc.secure_channel(server.target, channel_credentials(tls)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            watch = stub.Watch(request, timeout=30)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

            node.inbox.close()  # the store's writer stops: nothing could be stored any more

            # The monitor pushes NOT_SERVING to the open Watch stream without a new Check.
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            answer = stub.Check(request, timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        status, body = http_get(f"{http.url}/readyz")
        assert status == 503
        assert json.loads(body) == {
            "status": "NOT_READY",
            "reasons": ["the message store is unusable"],
        }
        assert http_get(f"{http.url}/healthz")[0] == 200  # alive: a restart would not help
        scraped = scrape(http.url)
        assert value(scraped, "gnc_store_up") == 0
    finally:
        monitor.stop()
        http.stop()
        server.stop(grace=None)
        node.inbox.close()


def test_store_monitor_tells_its_listeners_when_the_store_comes_back() -> None:
    """Recovery (a PostgreSQL connection that returns): the monitor follows its probe both
    ways. An SQLite store whose writer stopped stays unusable, so the probe here is a switch."""
    up = [True]
    calls: list[bool] = []
    monitor = StoreMonitor(lambda: up[0], interval=60)
    monitor.on_change(lambda: calls.append(up[0]))
    assert monitor.check() is True and calls == []
    up[0] = False
    assert monitor.check() is False and calls == [False]
    assert monitor.check() is False and calls == [False]  # told on a change only
    up[0] = True
    assert monitor.usable is False  # the last answer, until the next probe
    assert monitor.check() is True and calls == [False, True]


def test_readiness_waits_for_the_listeners_and_says_stopping(tmp_path: Path) -> None:
    readiness = ReadinessCheck(lambda: True)
    assert readiness().reasons == ("the listeners are not up yet",)
    readiness.listeners_up()
    assert readiness().ready
    readiness.stopping()
    assert readiness().reasons == ("the gateway is stopping",)


def test_each_node_counts_only_its_own_traffic(pki: testpki.TestPki, tmp_path: Path) -> None:
    trust = _trust(pki)
    eu = GatewayNode(pki.identity("EU"), trust, SqliteInbox(tmp_path / "eu.db"))
    cn = GatewayNode(pki.identity("CN"), trust, SqliteInbox(tmp_path / "cn.db"))
    try:
        _, raw = seal_us_envelope(pki)
        eu.receive(raw, Binding.PROTOBUF, US)
        cn.receive(raw, Binding.PROTOBUF, US)  # addressed to EU: refused by CN
        assert eu.metrics.registry is not cn.metrics.registry
        eu_samples = eu.metrics.registry.get_sample_value
        cn_samples = cn.metrics.registry.get_sample_value
        key = {"partner": "US", "utility_block": "UB1", "message_type": MESSAGE_TYPE}
        assert eu_samples(RECEIVED, {**key, "outcome": "accepted", "error_code": ""}) == 1
        assert cn_samples(RECEIVED, {**key, "outcome": "accepted", "error_code": ""}) is None
        refused = {
            "partner": "US",
            "utility_block": "unknown",
            "message_type": "unknown",
            "outcome": "refused",
            "error_code": WRONG_RECEIVER,
        }
        assert cn_samples(RECEIVED, refused) == 1
        assert eu_samples(RECEIVED, refused) is None
    finally:
        eu.inbox.close()
        cn.inbox.close()


def test_metrics_listen_is_checked_and_a_busy_port_is_a_config_error(
    pki: testpki.TestPki, tmp_path: Path
) -> None:
    from gateway.config import load_config

    bad = write_config(tmp_path, pki, extra='\n[metrics]\nlisten = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        load_config(bad)
    typo = write_config(tmp_path, pki, extra='\n[metrics]\nlisten = "127.0.0.1:9464"\nport = 1\n')
    with pytest.raises(ConfigError, match=r"metrics\.port: unknown key"):
        load_config(typo)
    good = load_config(write_config(tmp_path, pki, extra='\n[metrics]\nlisten = "[::1]:9464"\n'))
    assert good.metrics.listen == ("::1", 9464)
    assert load_config(write_config(tmp_path, pki)).metrics.listen is None

    node = GatewayNode(pki.identity("EU"), _trust(pki), SqliteInbox(tmp_path / "x.db"))
    first = OpsHttpServer(node.metrics.registry, ReadinessCheck(node.inbox.is_usable), port=0)
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            OpsHttpServer(
                node.metrics.registry, ReadinessCheck(node.inbox.is_usable), port=first.port
            )
    finally:
        first.stop()
        node.inbox.close()
