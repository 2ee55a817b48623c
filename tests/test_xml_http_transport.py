"""XML over HTTPS end to end: a real HTTPS server on 127.0.0.1 with mutual TLS, real
certificates, a real SQLite inbox; every receipt is checked the way the sending partner would."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import testpki
from gateway.envelope import xml_binding
from gateway.envelope.intake import IntakeLimits
from gateway.envelope.opened import new_header
from gateway.errors import TransportError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import GatewayNode
from gateway.store.inbox import SqliteInbox
from gateway.testpki import FOREIGN, init_test_pki
from gateway.transport.tls import ClientTls, TlsIdentity
from gateway.transport.xml_http import (
    ENVELOPES_PATH,
    HEALTH_PATH,
    PROBLEM_CONTENT_TYPE,
    HttpAnswerError,
    XmlHttpServer,
    XmlPartnerClient,
    _problem_fields,
    check_receipt,
    client_ssl_context,
    server_ssl_context,
)
from gateway.trust.store import PartnerTrust, TrustStore

EU, US, CN = Administration.EU, Administration.US, Administration.CN
Pki = testpki.TestPki  # not imported by name: pytest would try to collect a Test* class
PAYLOAD = b"<AEO><Name>Example Trading BV</Name><Id>NL123456789</Id></AEO>"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return init_test_pki(tmp_path_factory.mktemp("xml-pki"), ("EU", "US", "CN"))


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustStore:
    """Each side trusts the others (and the sender's side uses it to check US receipts)."""
    return TrustStore(
        PartnerTrust(Administration(a), (pki.ca(a),), (pki.crl(a),)) for a in ("EU", "US", "CN")
    )


@dataclass
class UsGateway:
    node: GatewayNode
    server: XmlHttpServer


@pytest.fixture
def us(pki: Pki, trust: TrustStore, tmp_path: Path) -> Iterator[UsGateway]:
    node = GatewayNode(
        pki.identity("US"),
        trust,
        SqliteInbox(tmp_path / "us-inbox.db", synchronous="NORMAL"),
        limits=IntakeLimits(max_envelope_bytes=LIMIT),
    )
    server = XmlHttpServer(
        node,
        identity=TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls")),
        read_timeout=0.5,
        request_deadline=1.0,
        drain_timeout=2.0,
    ).start()
    try:
        yield UsGateway(node, server)
    finally:
        server.stop()
        node.inbox.close()


def client_tls(pki: Pki, admin: str = "EU", stem: str = "tls", partner: str = "US") -> ClientTls:
    return ClientTls.from_files(
        pki.key_path(admin, stem), pki.path(admin, stem), pki.path(partner, "ca")
    )


def xml_envelope(pki: Pki, sender: str = "EU", payload: bytes = PAYLOAD) -> tuple[str, bytes]:
    identity = pki.identity(sender)
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        sender=identity.administration,
        receiver=US,
        payload_content_type="application/xml",
    )
    return header.message_id, xml_binding.seal(header, payload, identity)


def raw_https(pki: Pki, server: XmlHttpServer) -> http.client.HTTPSConnection:
    host, port = server.address
    return http.client.HTTPSConnection(
        host, port, timeout=5, context=client_ssl_context(client_tls(pki))
    )


def tls_socket(pki: Pki, server: XmlHttpServer) -> ssl.SSLSocket:
    host, port = server.address
    sock = socket.create_connection((host, port), timeout=5)
    return client_ssl_context(client_tls(pki)).wrap_socket(sock, server_hostname=host)


def read_all(sock: ssl.SSLSocket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# --- the exchange ------------------------------------------------------------------------------
def test_eu_envelope_is_accepted_and_answered_with_a_signed_xml_receipt(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    message_id, raw = xml_envelope(pki)
    with XmlPartnerClient(us.server.url, tls=client_tls(pki)) as client:
        checked = client.deliver(raw, partner=US, trust=trust, message_id=message_id)
        assert checked.accepted and not checked.receipt.duplicate
        assert checked.receipt.received_sha256 == hashlib.sha256(raw).digest()
        assert checked.receipt.recipient is EU
        assert checked.signer.certificate == pki.cert("US", "signing")
        assert us.node.inbox.count() == 1
        assert us.node.inbox.envelope_for(message_id) == raw  # the exact bytes received
        # Sent again (e.g. after a lost answer): the original receipt, nothing stored twice.
        again = client.submit(raw)
        assert again == checked.raw
        assert us.node.inbox.count() == 1


def test_tampered_envelope_gets_a_signed_rejection_and_nothing_is_stored(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    message_id, raw = xml_envelope(pki)
    start = raw.index(b"<Payload>") + len(b"<Payload>")
    flipped = b"A" if raw[start : start + 1] != b"A" else b"B"
    tampered = raw[:start] + flipped + raw[start + 1 :]
    with XmlPartnerClient(us.server.url, tls=client_tls(pki)) as client:
        answer = client.submit(tampered)  # HTTP 200: the signed receipt is the answer
    checked = check_receipt(
        answer, partner=US, trust=trust, message_id=message_id, sent=tampered, now=us.node.clock()
    )
    assert not checked.accepted
    assert checked.receipt.error_code == "SIG_DIGEST_MISMATCH"
    assert us.node.inbox.count() == 0


def test_tls_peer_of_one_partner_cannot_submit_for_another(
    pki: Pki, trust: TrustStore, us: UsGateway
) -> None:
    # A CN envelope, correctly signed by CN, arriving over EU's mutual-TLS connection.
    message_id, raw = xml_envelope(pki, sender="CN")
    with XmlPartnerClient(us.server.url, tls=client_tls(pki, "EU")) as client:
        answer = client.submit(raw)
    checked = check_receipt(
        answer, partner=US, trust=trust, message_id=message_id, sent=raw, now=us.node.clock()
    )
    assert checked.receipt.error_code == "TRUST_WRONG_PARTNER"
    assert us.node.inbox.count() == 0
    # The same envelope over CN's own connection is accepted.
    with XmlPartnerClient(us.server.url, tls=client_tls(pki, "CN")) as client:
        assert client.deliver(raw, partner=US, trust=trust, message_id=message_id).accepted


# --- size limit --------------------------------------------------------------------------------
def test_oversize_content_length_is_refused_413_before_the_body_is_read(
    pki: Pki, us: UsGateway
) -> None:
    sock = tls_socket(pki, us.server)
    with sock:
        sock.sendall(
            f"POST {ENVELOPES_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
        )
        # No body is sent. Had the server tried to read it, the read would time out and the
        # connection close without any answer: an answer at all proves it was not awaited.
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert f"Content-Type: {PROBLEM_CONTENT_TYPE}".encode() in head
    assert _problem_fields(body)[0] == "ENV_OVERSIZE"
    assert us.node.inbox.count() == 0


def test_oversize_with_expect_continue_is_refused_without_100(pki: Pki, us: UsGateway) -> None:
    sock = tls_socket(pki, us.server)
    with sock:
        sock.sendall(
            f"POST {ENVELOPES_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {10 * LIMIT}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer


def test_client_sending_an_oversize_body_reads_the_413_problem(pki: Pki, us: UsGateway) -> None:
    with (
        XmlPartnerClient(us.server.url, tls=client_tls(pki)) as client,
        pytest.raises(HttpAnswerError) as excinfo,
    ):
        client.submit(b"<x>" + b"a" * LIMIT + b"</x>")
    assert excinfo.value.code == "TRN_PROTOCOL"
    assert excinfo.value.status == 413
    assert excinfo.value.remote_code == "ENV_OVERSIZE"


# --- mutual TLS --------------------------------------------------------------------------------
def test_client_certificate_from_an_untrusted_ca_is_refused_in_the_handshake(
    pki: Pki, us: UsGateway, caplog: pytest.LogCaptureFixture
) -> None:
    impostor = client_tls(pki, FOREIGN, "EU-impostor")  # claims to be EU, foreign CA
    host, port = us.server.address
    caplog.set_level("INFO", logger="gateway.transport.xml_http")
    with (
        socket.create_connection((host, port), timeout=5) as plain,
        client_ssl_context(impostor).wrap_socket(plain, server_hostname=host) as sock,
        # TLS 1.3: the server checks the client certificate after the client's Finished and
        # answers with an alert. (Nothing is sent first: unread data would turn it into a reset.)
        pytest.raises(ssl.SSLError, match="UNKNOWN_CA"),
    ):
        sock.recv(100)
    # The alert leaves the server just before its connection thread logs the refusal.
    deadline = time.monotonic() + 5
    while "certificate verify failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "TLS handshake" in caplog.text and "certificate verify failed" in caplog.text

    _, raw = xml_envelope(pki)
    with (
        XmlPartnerClient(us.server.url, tls=impostor) as client,
        pytest.raises(TransportError) as excinfo,
    ):
        client.submit(raw)
    assert excinfo.value.code == "TRN_UNAVAILABLE"
    assert us.node.inbox.count() == 0


def test_client_without_a_certificate_is_refused(pki: Pki, us: UsGateway) -> None:
    context = ssl.create_default_context(cadata=pki.path("US", "ca").read_text())
    host, port = us.server.address
    with (
        socket.create_connection((host, port), timeout=5) as plain,
        context.wrap_socket(plain, server_hostname=host) as sock,
        pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"),
    ):
        sock.recv(100)


def test_a_revoked_client_certificate_passes_tls_but_the_trust_store_refuses_it(
    pki: Pki, us: UsGateway
) -> None:
    # OpenSSL checks no CRL in the handshake; the trust store does, per request: 403, no receipt.
    _, raw = xml_envelope(pki)
    with (
        XmlPartnerClient(us.server.url, tls=client_tls(pki, "EU", "revoked")) as client,
        pytest.raises(HttpAnswerError) as excinfo,
    ):
        client.submit(raw)
    assert excinfo.value.status == 403
    assert excinfo.value.remote_code == "TRUST_REVOKED"
    assert us.node.inbox.count() == 0


def test_client_refuses_a_server_its_partner_ca_did_not_issue(pki: Pki, us: UsGateway) -> None:
    _, raw = xml_envelope(pki)
    wrong_partner_ca = client_tls(pki, "EU", partner="CN")  # US's server cert is not CN's
    with (
        XmlPartnerClient(us.server.url, tls=wrong_partner_ca) as client,
        pytest.raises(TransportError) as excinfo,
    ):
        client.submit(raw)
    assert excinfo.value.code == "TRN_UNAVAILABLE"
    assert "certificate verify failed" in str(excinfo.value)


def test_unreachable_partner_is_trn_unavailable(pki: Pki) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        XmlPartnerClient(
            f"https://127.0.0.1:{port}{ENVELOPES_PATH}", tls=client_tls(pki)
        ) as client,
        pytest.raises(TransportError) as excinfo,
    ):
        client.submit(b"<x/>")
    assert excinfo.value.code == "TRN_UNAVAILABLE"


# --- HTTP profile ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", ENVELOPES_PATH, {"Content-Type": "application/json"}, 415),
        ("POST", ENVELOPES_PATH, {"Content-Type": "application/xml"}, 411),  # no length
        (
            "POST",
            ENVELOPES_PATH,
            {"Content-Type": "application/xml", "Transfer-Encoding": "chunked"},
            411,
        ),
        ("POST", ENVELOPES_PATH, {"Content-Type": "application/xml", "Content-Length": "-1"}, 400),
        ("GET", ENVELOPES_PATH, {}, 405),
        ("POST", "/other", {"Content-Type": "application/xml", "Content-Length": "3"}, 404),
    ],
)
def test_requests_outside_the_profile_get_a_problem_with_a_code(
    pki: Pki, us: UsGateway, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    conn = raw_https(pki, us.server)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == status
    assert response.getheader("Content-Type") == PROBLEM_CONTENT_TYPE
    if status == 405:
        assert response.getheader("Allow") == "POST"
    assert _problem_fields(body)[0] == "TRN_BAD_REQUEST"


def test_healthz_reports_the_store(pki: Pki, us: UsGateway) -> None:
    with XmlPartnerClient(us.server.url, tls=client_tls(pki)) as client:
        assert client.health() is True
        us.node.inbox.close()  # the store goes away under a running listener
        assert client.health() is False
    conn = raw_https(pki, us.server)
    conn.request("GET", HEALTH_PATH)
    response = conn.getresponse()
    assert response.status == 503
    assert _problem_fields(response.read())[0] == "DLV_STORE_UNAVAILABLE"
    conn.close()


# --- slow clients and shutdown ------------------------------------------------------------------
def test_a_silent_client_is_disconnected_after_the_read_timeout(pki: Pki, us: UsGateway) -> None:
    sock = tls_socket(pki, us.server)
    with sock:
        sock.sendall(b"POST /gnc/v1/env")  # and then nothing
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < 5  # 0.5 s read timeout, with slack for a busy box


def test_a_trickling_client_is_cut_at_the_request_deadline(pki: Pki, us: UsGateway) -> None:
    sock = tls_socket(pki, us.server)
    started = time.monotonic()
    cut_after: float | None = None
    with sock:
        while time.monotonic() - started < 8:  # far beyond the 1 s request deadline
            try:
                sock.sendall(b"x")  # one byte per 0.1 s: each read is well within its timeout
            except (OSError, ssl.SSLError):
                cut_after = time.monotonic() - started
                break
            time.sleep(0.1)
    assert cut_after is not None, "the server kept a trickling request open"
    assert cut_after < 5


def test_a_plain_tcp_client_that_never_handshakes_is_dropped(us: UsGateway) -> None:
    with socket.create_connection(us.server.address, timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 5  # 0.5 s read timeout, with slack for a busy box


def test_idle_connections_from_one_address_cannot_lock_partners_out(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    """Slots are taken at accept, before the handshake says who connects: a host opening idle
    TCP connections (from 127.0.0.2) gets its per-address share, and a partner (from 127.0.0.1)
    still delivers. The overall bound still holds."""
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    server = XmlHttpServer(
        node,
        identity=TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls")),
        read_timeout=30.0,  # the idle sockets stay for the whole test
        max_connections=8,
        max_connections_per_address=3,
    ).start()
    idle: list[socket.socket] = []
    try:
        for _ in range(10):  # more than the overall bound
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.2", 0))
            sock.connect(server.address)
            idle.append(sock)
        time.sleep(0.3)  # let the server accept (and refuse) them
        # The server closed the connections beyond the address's share.
        closed = 0
        for sock in idle:
            sock.settimeout(0.2)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                continue  # still open, waiting for a handshake
            except ConnectionResetError:
                closed += 1
        assert closed == 7

        message_id, raw = xml_envelope(pki)
        with XmlPartnerClient(server.url, tls=client_tls(pki)) as client:
            assert client.deliver(raw, partner=US, trust=trust, message_id=message_id).accepted
    finally:
        for sock in idle:
            sock.close()
        server.stop()
        node.inbox.close()


def test_stop_closes_idle_keep_alive_connections_at_once(
    pki: Pki, trust: TrustStore, tmp_path: Path
) -> None:
    node = GatewayNode(pki.identity("US"), trust, SqliteInbox(tmp_path / "inbox.db"))
    server = XmlHttpServer(
        node,
        identity=TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls")),
        read_timeout=30,
    ).start()
    client = XmlPartnerClient(server.url, tls=client_tls(pki))
    try:
        _, raw = xml_envelope(pki)
        client.submit(raw)  # leaves a keep-alive connection open on the server
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 10  # not the 30 s read timeout of the idle socket
    finally:
        client.close()
        node.inbox.close()


def test_a_partner_trickling_its_answer_is_cut_at_the_client_timeout(
    pki: Pki, trust: TrustStore
) -> None:
    """Each byte arrives well within a socket timeout; the whole answer does not arrive within
    the client's timeout: the exchange ends there (a transient error, retried by delivery)."""
    context = server_ssl_context(
        TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls")),
        trust.anchors_pem(),
    )
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)  # the request (small enough for one read)
            answer = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100\r\n\r\n"
            )
            for byte in answer:
                if stop.wait(0.2):
                    return
                with contextlib.suppress(OSError):
                    tls.sendall(bytes([byte]))

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    host, port = listener.getsockname()
    _, raw = xml_envelope(pki)
    started = time.monotonic()
    try:
        with (
            XmlPartnerClient(
                f"https://{host}:{port}{ENVELOPES_PATH}", tls=client_tls(pki), timeout=1.0
            ) as client,
            pytest.raises(TransportError) as caught,
        ):
            client.submit(raw)
        assert time.monotonic() - started < 5
        assert caught.value.code == "TRN_UNAVAILABLE"
        assert "no complete answer" in caught.value.message and "within 1 s" in caught.value.message
    finally:
        stop.set()
        listener.close()
        server.join(5)
