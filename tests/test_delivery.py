"""The delivery worker end to end: an EU sender with a real SQLite outbox and message log, a US
gateway on loopback (gRPC or XML over HTTPS, mutual TLS, real certificates, its own SQLite
inbox and message log). Every receipt is checked the way a partner's would be."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway import testpki
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.errors import TransportError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import GatewayNode, open_receipt, seal_envelope
from gateway.partners.profile import RetryPolicy
from gateway.services.delivery import DeliveryWorker
from gateway.store.inbox import SqliteInbox
from gateway.store.message_log import Direction, LogOutcome, SqliteMessageLog
from gateway.store.outbox import OutboundMessage, OutboundState, SqliteOutbox
from gateway.store.sqlite import SqliteDatabase
from gateway.transport.grpc_client import GrpcPartnerClient
from gateway.transport.grpc_server import SERVICE_NAME, GrpcGatewayServer
from gateway.transport.links import PartnerLink
from gateway.transport.tls import ClientTls, TlsIdentity
from gateway.transport.xml_http import XmlHttpServer, XmlPartnerClient
from gateway.trust.store import PartnerTrust, TrustStore

EU, US = Administration.EU, Administration.US
Pki = testpki.TestPki  # not imported by name: pytest would try to collect a Test* class
FAST = RetryPolicy(3, timedelta(seconds=2), 2.0, timedelta(seconds=60))


class Clock:
    """The worker's clock (scheduling only; certificates are checked against real time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    """The US gateway: node, store, and whichever listener a test started."""

    node: GatewayNode
    log: SqliteMessageLog
    stops: list[Callable[[], None]] = field(default_factory=list)

    @property
    def inbox(self) -> SqliteInbox:
        return self.node.inbox

    def received(self) -> list[tuple[str, LogOutcome, str]]:
        return [(e.message_id, e.outcome, e.code) for e in self.log.entries()]

    def serve_grpc(self, pki: Pki, port: int = 0) -> str:
        server = GrpcGatewayServer(
            self.node,
            address=f"127.0.0.1:{port}",
            tls=TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls")),
        )
        server.start()
        self.stops.append(lambda: server.stop(grace=None))
        return server.target

    def serve_xml(self, pki: Pki) -> str:
        tls = TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls"))
        server = XmlHttpServer(self.node, host="127.0.0.1", port=0, identity=tls).start()
        self.stops.append(server.stop)
        return server.url

    def stop_listeners(self) -> None:
        while self.stops:
            self.stops.pop()()


@pytest.fixture
def receiver(pki: Pki, tmp_path: Path) -> Iterator[Receiver]:
    inbox = SqliteInbox(tmp_path / "us.db")
    database = inbox.database
    log = SqliteMessageLog(database)
    trust = TrustStore([PartnerTrust(EU, (pki.ca("EU"),), (pki.crl("EU"),))])
    node = GatewayNode(pki.identity("US"), trust, inbox, message_log=log)
    receiver = Receiver(node, log)
    yield receiver
    receiver.stop_listeners()
    database.close()


@dataclass
class Sender:
    """The EU side: outbox and message log on one SQLite file, and a worker over them."""

    database: SqliteDatabase
    outbox: SqliteOutbox
    log: SqliteMessageLog
    worker: DeliveryWorker

    def sent(self) -> list[tuple[str, LogOutcome, str]]:
        return [(e.message_id, e.outcome, e.code) for e in self.log.entries()]

    def close(self) -> None:
        self.worker.stop()
        self.database.close()


def sender_trust(pki: Pki) -> TrustStore:
    return TrustStore([PartnerTrust(US, (pki.ca("US"),), (pki.crl("US"),))])


def link_to(pki: Pki, binding: Binding, endpoint: str) -> Callable[[Administration], PartnerLink]:
    def open_link(partner: Administration) -> PartnerLink:
        tls = ClientTls(
            TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls")),
            pki.path("US", "ca").read_bytes(),
        )
        client: GrpcPartnerClient | XmlPartnerClient = (
            GrpcPartnerClient(endpoint, tls=tls)
            if binding is Binding.PROTOBUF
            else XmlPartnerClient(endpoint, tls=tls)
        )
        return PartnerLink(partner, binding, endpoint, sender_trust(pki), client)

    return open_link


def open_sender(
    path: Path,
    links: Callable[[Administration], PartnerLink],
    clock: Clock,
    retry: RetryPolicy = FAST,
) -> Sender:
    database = SqliteDatabase(path)
    outbox = SqliteOutbox(database)
    log = SqliteMessageLog(database)
    worker = DeliveryWorker(
        outbox, links, partners=[US], retry={US: retry}, clock=clock, message_log=log
    )
    return Sender(database, outbox, log, worker)


def sealed(
    identity: SigningIdentity, key: str, binding: Binding = Binding.PROTOBUF, n: int = 0
) -> OutboundMessage:
    payload = f"<AeoStatusChange><Key>{key}</Key><N>{n}</N></AeoStatusChange>".encode()
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        sender=EU,
        receiver=US,
        payload_content_type="application/xml",
    )
    return OutboundMessage(
        message_id=header.message_id,
        partner=US,
        binding=binding,
        ordering_key=key,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        envelope=seal_envelope(binding, header, payload, identity),
    )


def test_due_messages_go_over_one_stream_with_verified_receipts_and_are_logged_both_sides(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    target = receiver.serve_grpc(pki)
    clock = Clock()
    sender = open_sender(tmp_path / "eu.db", link_to(pki, Binding.PROTOBUF, target), clock)
    try:
        identity = pki.identity("EU")
        keyed = [sealed(identity, "NLAEOS0001", n=i) for i in range(3)]
        others = [sealed(identity, f"DEAEOF{i:04d}") for i in range(5)]
        sender.outbox.enqueue_all([keyed[0], *others[:2], keyed[1], *others[2:], keyed[2]])

        first = sender.worker.run_once(US)
        assert len(first.delivered) == 6  # every key's head, in one stream call
        assert first.delivered[0] == keyed[0].message_id and not first.retrying
        rest = sender.worker.run_until_idle(US)
        assert rest.delivered == [keyed[1].message_id, keyed[2].message_id]

        assert receiver.inbox.count() == 8
        assert sender.outbox.counts()["delivered"] == 8
        # Each stored receipt is the partner's signed acceptance of exactly what was sent.
        for message in (*keyed, *others):
            raw_receipt = sender.outbox.receipt_for(message.message_id)
            assert raw_receipt is not None
            receipt = open_receipt(Binding.PROTOBUF, raw_receipt).receipt
            assert receipt.accepted and receipt.message_id == message.message_id
            assert receipt.issuer is US
        # One row per envelope on each side, with the receipt; order per key held.
        assert [o for _, o, _ in sender.sent()] == [LogOutcome.ACCEPTED] * 8
        assert all(e.receipt and e.direction is Direction.SENT for e in sender.log.entries())
        received = receiver.received()
        assert [o for _, o, _ in received] == [LogOutcome.ACCEPTED] * 8
        order = [m for m, _, _ in received if m in {k.message_id for k in keyed}]
        assert order == [k.message_id for k in keyed]
        sent_receipts = {e.message_id: e.receipt for e in sender.log.entries()}
        assert sent_receipts == {e.message_id: e.receipt for e in receiver.log.entries()}
    finally:
        sender.close()


def test_a_partner_that_is_down_is_retried_with_back_off_then_dead_lettered_then_replayed(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    clock = Clock()
    t0 = clock.now
    links = link_to(pki, Binding.PROTOBUF, f"127.0.0.1:{port}")
    sender = open_sender(tmp_path / "eu.db", links, clock)
    try:
        identity = pki.identity("EU")
        first, second = sealed(identity, "NLAEOS0001", n=1), sealed(identity, "NLAEOS0001", n=2)
        sender.outbox.enqueue_all([first, second])

        report = sender.worker.run_once(US)
        assert report.retrying == [first.message_id]  # the second waits behind the first
        assert report.codes == {first.message_id: "TRN_UNAVAILABLE"}
        item = sender.outbox.get(first.message_id)
        assert item is not None and item.attempts == 1
        assert item.next_attempt == t0 + timedelta(seconds=2)  # FAST.delay(1)

        clock.advance(1.9)
        assert sender.worker.run_once(US).attempted == 0  # not yet
        clock.advance(0.1)
        assert sender.worker.run_once(US).retrying == [first.message_id]
        item = sender.outbox.get(first.message_id)
        assert item is not None and item.next_attempt == clock.now + timedelta(seconds=4)
        clock.advance(4)
        report = sender.worker.run_once(US)  # third attempt of three
        assert report.dead == [first.message_id] and report.codes[first.message_id] == (
            "TRN_UNAVAILABLE"
        )
        dead = sender.outbox.get(first.message_id)
        assert dead is not None and dead.state is OutboundState.DEAD and dead.attempts == 3

        # The partner comes back: the dead letter still blocks its key until replayed.
        receiver.serve_grpc(pki, port)
        clock.advance(3600)
        assert sender.worker.run_until_idle(US).attempted == 0
        assert receiver.inbox.count() == 0
        assert sender.outbox.replay(first.message_id) == 1
        done = sender.worker.run_until_idle(US)
        assert done.delivered == [first.message_id, second.message_id]
        assert receiver.inbox.count() == 2
        assert [m for m, _, _ in receiver.received()] == [first.message_id, second.message_id]
        assert sender.sent() == [
            (first.message_id, LogOutcome.FAILED, "TRN_UNAVAILABLE"),
            (first.message_id, LogOutcome.FAILED, "TRN_UNAVAILABLE"),
            (first.message_id, LogOutcome.FAILED, "TRN_UNAVAILABLE"),
            (first.message_id, LogOutcome.ACCEPTED, ""),
            (second.message_id, LogOutcome.ACCEPTED, ""),
        ]
    finally:
        sender.close()


def test_a_permanent_rejection_is_a_dead_letter_at_once_with_the_partners_code(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    target = receiver.serve_grpc(pki)
    sender = open_sender(tmp_path / "eu.db", link_to(pki, Binding.PROTOBUF, target), Clock())
    try:
        revoked = sealed(pki.identity("EU", "revoked"), "NLAEOS0001")
        after = sealed(pki.identity("EU"), "NLAEOS0001", n=2)
        sender.outbox.enqueue_all([revoked, after])

        report = sender.worker.run_once(US)
        assert report.dead == [revoked.message_id]
        assert report.codes == {revoked.message_id: "TRUST_REVOKED"}
        item = sender.outbox.get(revoked.message_id)
        assert item is not None and item.state is OutboundState.DEAD and item.attempts == 1
        assert item.last_error_code == "TRUST_REVOKED"
        proof = sender.outbox.receipt_for(revoked.message_id)  # the signed refusal is kept
        assert proof is not None
        assert open_receipt(Binding.PROTOBUF, proof).receipt.error_code == "TRUST_REVOKED"
        assert sender.sent() == [(revoked.message_id, LogOutcome.REJECTED, "TRUST_REVOKED")]
        assert receiver.inbox.count() == 0
        assert [(o, c) for _, o, c in receiver.received()] == [
            (LogOutcome.REJECTED, "TRUST_REVOKED")
        ]

        # Its key is blocked until the operator discards it; then the next one goes.
        assert sender.worker.run_until_idle(US).attempted == 0
        sender.outbox.discard(revoked.message_id)
        assert sender.worker.run_until_idle(US).delivered == [after.message_id]
        assert receiver.inbox.count() == 1
    finally:
        sender.close()


def test_a_transient_rejection_is_retried_and_delivered_once_the_partner_recovers(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    target = receiver.serve_grpc(pki)
    clock = Clock()
    sender = open_sender(tmp_path / "eu.db", link_to(pki, Binding.PROTOBUF, target), clock)
    try:
        message = sealed(pki.identity("EU"), "NLAEOS0001")
        sender.outbox.enqueue_all([message])
        # The partner's store goes away: it answers with a signed DLV_STORE_UNAVAILABLE.
        store_path = receiver.inbox.database.path
        receiver.node.message_log = None
        receiver.inbox.close()
        report = sender.worker.run_once(US)
        assert report.retrying == [message.message_id]
        assert report.codes == {message.message_id: "DLV_STORE_UNAVAILABLE"}

        receiver.node.inbox = SqliteInbox(store_path)  # the partner's store is back
        try:
            clock.advance(2)
            assert sender.worker.run_once(US).delivered == [message.message_id]
            assert receiver.node.inbox.count() == 1
        finally:
            receiver.node.inbox.close()
        assert [o for _, o, _ in sender.sent()] == [LogOutcome.REJECTED, LogOutcome.ACCEPTED]
    finally:
        sender.close()


def test_a_restart_mid_way_loses_nothing_and_stores_nothing_twice(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    target = receiver.serve_grpc(pki)
    links = link_to(pki, Binding.PROTOBUF, target)
    identity = pki.identity("EU")
    messages = [sealed(identity, f"KEY{i % 4}", n=i) for i in range(12)]
    sender = open_sender(tmp_path / "eu.db", links, Clock())
    sender.outbox.enqueue_all(messages)
    sender.worker.run_once(US)  # the four heads are delivered and settled
    # Then a crash between sending and settling: the next heads reach the partner, but the
    # outbox never hears of it.
    unsettled = sender.outbox.due(US, datetime.now(UTC), 64)
    with links(US) as link:
        receipts = list(link.deliver_many([item.envelope or b"" for item in unsettled]))
    assert all(r.accepted for r in receipts) and len(receipts) == 4
    sender.close()
    assert receiver.inbox.count() == 8

    again = open_sender(tmp_path / "eu.db", links, Clock())
    try:
        assert again.outbox.counts()["pending"] == 8
        again.worker.run_until_idle(US)
        assert again.outbox.counts() == {"pending": 0, "delivered": 12, "dead": 0, "discarded": 0}
        assert receiver.inbox.count() == 12  # the resent four were answered as duplicates
        outcomes = [o for _, o, _ in receiver.received()]
        assert outcomes.count(LogOutcome.ACCEPTED) == 12
        assert outcomes.count(LogOutcome.DUPLICATE) == 4
        for item in again.outbox.list():
            raw = again.outbox.receipt_for(item.message_id)
            assert raw is not None and open_receipt(Binding.PROTOBUF, raw).receipt.accepted
    finally:
        again.close()


def test_the_background_worker_delivers_over_xml_and_stops_cleanly(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    url = receiver.serve_xml(pki)
    database = SqliteDatabase(tmp_path / "eu.db")
    outbox = SqliteOutbox(database)
    log = SqliteMessageLog(database)
    worker = DeliveryWorker(
        outbox,
        link_to(pki, Binding.XML, url),
        partners=[US],
        message_log=log,
        poll_seconds=0.05,
    )
    identity = pki.identity("EU")
    try:
        worker.start()
        messages = [sealed(identity, f"K{i % 2}", Binding.XML, n=i) for i in range(6)]
        for message in messages:
            outbox.enqueue_all([message])  # while the worker runs
        deadline = time.monotonic() + 30
        while outbox.counts()["delivered"] < 6:
            assert time.monotonic() < deadline, outbox.counts()
            time.sleep(0.05)
        started = time.monotonic()
        worker.stop()
        assert not worker.running and time.monotonic() - started < 5
        assert receiver.inbox.count() == 6
        assert [e.message_id for e in log.entries()] == [m.message_id for m in messages]
        for key in ("K0", "K1"):
            expected = [m.message_id for m in messages if m.ordering_key == key]
            got = [m for m, _, _ in receiver.received() if m in expected]
            assert got == expected
    finally:
        worker.stop()
        database.close()


def test_two_workers_on_one_sqlite_file_take_turns_and_send_nothing_twice(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    """`gncgw serve` and a command delivering at once (`gncgw send`) open the same SQLite file
    separately: a pass runs only while its worker holds the store's delivery turn, so a
    message is sent, settled and logged once."""
    target = receiver.serve_grpc(pki)
    clock = Clock()
    links = link_to(pki, Binding.PROTOBUF, target)
    serve = open_sender(tmp_path / "eu.db", links, clock)
    command = open_sender(tmp_path / "eu.db", links, clock)  # another open of the same file
    try:
        messages = [sealed(pki.identity("EU"), f"NLAEOS{i:04d}") for i in range(4)]
        command.outbox.enqueue_all(messages)

        with serve.outbox.delivery_turn() as ours:
            assert ours
            assert not command.worker.run_once(US).attempted  # not its turn: nothing sent
        assert receiver.inbox.count() == 0
        assert len(command.worker.run_once(US).delivered) == 4  # its turn now
        assert not serve.worker.run_once(US).attempted  # nothing left that is due

        assert [o for _, o, _ in serve.sent()] == [LogOutcome.ACCEPTED] * 4  # one row each
        assert [o for _, o, _ in receiver.received()] == [LogOutcome.ACCEPTED] * 4
    finally:
        command.close()
        serve.close()


def test_a_partner_that_takes_the_stream_and_never_answers_fails_the_pass_in_time(
    pki: Pki, tmp_path: Path
) -> None:
    """Without a deadline the pass, and every partner behind it, would wait for ever."""
    release = threading.Event()

    def swallow(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for _ in requests:
            pass
        release.wait(30)  # takes every envelope, answers none
        return iter(())

    server = grpc.server(futures.ThreadPoolExecutor(4))
    handlers = {"Stream": grpc.stream_stream_rpc_method_handler(swallow)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = GrpcPartnerClient(f"127.0.0.1:{port}", insecure=True)
    link = PartnerLink(
        US, Binding.PROTOBUF, f"127.0.0.1:{port}", sender_trust(pki), client,
        stream_base_seconds=1.0,
    )  # fmt: skip
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as excinfo:
            list(link.deliver_many([sealed(pki.identity("EU"), "NLAEOS0001").envelope]))
        assert time.monotonic() - started < 10
        assert excinfo.value.code == "TRN_UNAVAILABLE"  # transient: retried with back-off
        assert "DEADLINE_EXCEEDED" in excinfo.value.message
    finally:
        release.set()
        client.close()
        server.stop(None)
