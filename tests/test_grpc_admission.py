"""No partner can starve the others on the gRPC listener: streams per partner and in all are
bounded (threads stay for unary calls and health checks), an idle stream is closed, the bytes
read from all streams and not yet answered are bounded, and every batch is answered. Real
gRPC servers with mutual TLS on 127.0.0.1."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_grpc_transport import check, client_tls, envelope, tls_identity

from gateway import testpki
from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.errors import ConfigError
from gateway.model.codes import Administration
from gateway.node import GatewayNode
from gateway.store.inbox import SqliteInbox
from gateway.testpki import init_test_pki
from gateway.transport.admission import ByteBudget
from gateway.transport.grpc_client import GrpcPartnerClient
from gateway.transport.grpc_server import SERVICE_NAME, GrpcGatewayServer
from gateway.transport.tls import channel_credentials
from gateway.trust.store import PartnerTrust, TrustStore

Pki = testpki.TestPki
EU, US, CN = Administration.EU, Administration.US, Administration.CN


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return init_test_pki(tmp_path_factory.mktemp("admission-pki"), ("EU", "US", "CN"))


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustStore:
    return TrustStore(
        PartnerTrust(Administration(a), (pki.ca(a),), (pki.crl(a),)) for a in ("EU", "US", "CN")
    )


def _server(pki: Pki, trust: TrustStore, tmp_path: Path, **options: Any) -> GrpcGatewayServer:
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    server = GrpcGatewayServer(node, tls=tls_identity(pki, "US"), **options)
    server.start()
    return server


class _IdleStream:
    """A Stream call from `admin` that sends nothing until closed (or sends `batches`)."""

    def __init__(self, pki: Pki, target: str, admin: str = "EU") -> None:
        self.channel = grpc.secure_channel(
            target, channel_credentials(client_tls(pki, admin, "US"))
        )
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        call = self.channel.stream_stream(f"/{SERVICE_NAME}/Stream")
        self.call = call(iter(self._out.get, None), timeout=60)

    def send(self, batch: bytes) -> None:
        self._out.put(batch)

    def status(self, within: float = 10.0) -> tuple[grpc.StatusCode, str]:
        """How the call ended (waits for it)."""
        done = threading.Event()
        self.call.add_done_callback(lambda _: done.set())
        assert done.wait(within), "the stream did not end"
        return self.call.code(), self.call.details() or ""

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()
        self.channel.close()


def _wait_open(server: GrpcGatewayServer, count: int) -> None:
    deadline = time.monotonic() + 10
    while server.open_streams < count:
        assert time.monotonic() < deadline, "the streams did not open"
        time.sleep(0.02)


def _others_are_served(pki: Pki, trust: TrustStore, server: GrpcGatewayServer) -> None:
    """CN still gets an accepted receipt for a Submit, and the health check answers."""
    raw = envelope(pki.identity("CN"))
    with GrpcPartnerClient(server.target, tls=client_tls(pki, "CN", "US")) as client:
        assert check(client.submit(raw, timeout=5), trust, raw).accepted
        with grpc.secure_channel(
            server.target, channel_credentials(client_tls(pki, "CN", "US"))
        ) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_one_partner_cannot_hold_every_thread_with_idle_streams(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    server = _server(pki, trust, tmp_path, max_workers=8, max_streams_per_peer=3)
    streams = [_IdleStream(pki, server.target) for _ in range(3)]
    try:
        _wait_open(server, 3)
        extra = _IdleStream(pki, server.target)
        code, details = extra.status()
        extra.close()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details.startswith("TRN_BUSY: EU has 3 streams open")
        _others_are_served(pki, trust, server)
        streams.pop().close()  # a slot comes back when a stream ends
        deadline = time.monotonic() + 10
        while server.open_streams > 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        streams.append(_IdleStream(pki, server.target))
        _wait_open(server, 3)
    finally:
        for stream in streams:
            stream.close()
        server.stop(grace=None)


def test_all_partners_together_leave_threads_for_unary_calls_and_health(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    """max_workers 8: streams may take 6 in all, whoever opens them."""
    server = _server(pki, trust, tmp_path, max_workers=8, max_streams_per_peer=4)
    streams = [_IdleStream(pki, server.target, admin) for admin in ("EU",) * 4 + ("CN",) * 2]
    try:
        _wait_open(server, 6)
        extra = _IdleStream(pki, server.target, "CN")
        code, details = extra.status()
        extra.close()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "6 streams are open" in details
        _others_are_served(pki, trust, server)
    finally:
        for stream in streams:
            stream.close()
        server.stop(grace=None)


def test_a_stream_that_sends_nothing_is_closed_and_frees_its_slot(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    server = _server(pki, trust, tmp_path, stream_idle_seconds=0.5)
    idle = _IdleStream(pki, server.target)
    try:
        started = time.monotonic()
        code, details = idle.status()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == "TRN_BUSY: no batch in 0.5 s: the stream is closed"
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 5
        while server.open_streams:
            assert time.monotonic() < deadline, "the slot was not given back"
            time.sleep(0.02)
    finally:
        idle.close()
        server.stop(grace=None)


def test_a_small_byte_budget_slows_streams_down_but_answers_every_batch(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    """Three streams share a budget of about two batches: readers wait for room, nothing is
    refused, every envelope gets its receipt, and the budget is whole again at the end."""
    raws = [envelope(pki.identity("EU")) for _ in range(24)]
    batch_bytes = 2 * len(raws[0])
    server = _server(pki, trust, tmp_path, stream_bytes_in_flight=2 * batch_bytes)
    tls = client_tls(pki, "EU", "US")
    answers: dict[int, list[bytes]] = {}

    def stream(index: int) -> None:
        with GrpcPartnerClient(server.target, tls=tls, stream_batch=2) as client:
            answers[index] = list(client.stream(raws[index * 8 : index * 8 + 8]))

    try:
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for index in range(3):
            sent = raws[index * 8 : index * 8 + 8]
            assert [check(a, trust, r).accepted for a, r in zip(answers[index], sent, strict=True)]
        assert server.stream_bytes_held == 0
    finally:
        server.stop(grace=None)


def test_an_empty_batch_is_answered_with_an_empty_one(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    """So a client may pair each answer with the batch it sent."""
    server = _server(pki, trust, tmp_path)
    raws = [envelope(pki.identity("EU")) for _ in range(2)]
    batches = [
        pb.EnvelopeBatch().SerializeToString(),
        pb.EnvelopeBatch(envelopes=raws).SerializeToString(),
        pb.EnvelopeBatch().SerializeToString(),
    ]
    try:
        with grpc.secure_channel(
            server.target, channel_credentials(client_tls(pki, "EU", "US"))
        ) as channel:
            call = channel.stream_stream(f"/{SERVICE_NAME}/Stream")
            answers = [pb.ReceiptBatch.FromString(a) for a in call(iter(batches), timeout=10)]
        assert [len(a.receipts) for a in answers] == [0, 2, 0]
    finally:
        server.stop(grace=None)


def test_the_byte_budget_waits_for_room_and_gives_up_when_the_call_ends() -> None:
    budget = ByteBudget(100)
    assert budget.take(60, lambda: True)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(budget.take(60, lambda: True, poll=0.01)))
    waiter.start()
    time.sleep(0.1)
    assert not got  # 60 + 60 > 100: it waits
    budget.give(60)
    waiter.join(5)
    assert got == [True] and budget.held == 60
    alive = iter([True, False])
    assert not budget.take(60, lambda: next(alive, False), poll=0.01)  # the call ended first
    assert budget.held == 60
    assert ByteBudget(10).take(50, lambda: True)  # alone, an oversize batch still goes through


def test_a_stream_cancelled_with_batches_unanswered_gives_its_bytes_back(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    """A client that sends and never reads holds the budget (back-pressure); when it goes
    away, every byte its stream held returns to the budget, else the budget would shrink with
    each such client until no stream could send."""
    server = _server(pki, trust, tmp_path, stream_window=4)
    raws = [envelope(pki.identity("EU")) for _ in range(64)]
    batch = pb.EnvelopeBatch(envelopes=raws).SerializeToString()
    stream = _IdleStream(pki, server.target)
    try:
        for _ in range(40):
            stream.send(batch)  # and never read a receipt
        deadline = time.monotonic() + 20
        while server.stream_bytes_held == 0:
            assert time.monotonic() < deadline, "the stream never held any bytes"
            time.sleep(0.05)
        stream.close()
        deadline = time.monotonic() + 20
        while server.stream_bytes_held or server.open_streams:
            assert time.monotonic() < deadline, f"{server.stream_bytes_held} bytes still held"
            time.sleep(0.05)
    finally:
        stream.close()
        server.stop(grace=None)


@pytest.mark.parametrize(
    "option",
    [
        {"max_streams_per_peer": 0},
        {"max_streams": 0},
        {"stream_bytes_in_flight": 0},
        {"stream_idle_seconds": 0.0},
    ],
)
def test_a_stream_limit_that_is_not_positive_is_a_config_error(
    pki: Pki, trust: TrustStore, tmp_path: Path, option: dict[str, Any]
) -> None:
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    try:
        with pytest.raises(ConfigError) as caught:
            GrpcGatewayServer(node, tls=tls_identity(pki, "US"), **option)
        assert caught.value.code == "CFG_INVALID" and caught.value.location == "grpc"
    finally:
        node.inbox.close()
