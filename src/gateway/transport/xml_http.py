"""The XML binding's transport: signed envelopes POSTed over HTTPS with mutual TLS.

Protocol (docs/configuration.md has the operator's view):

* ``POST /gnc/v1/envelopes`` with ``Content-Type: application/xml`` and a ``Content-Length``
  (chunked bodies are refused: the size limit is enforced before a byte of the body is read).
  Every envelope that reaches the gateway node is answered **200 with the signed XML receipt**,
  whether it says ACCEPTED or REJECTED: the signed receipt is the answer, an HTTP status is
  unsigned and could be altered on the way, so a sender must open the receipt in any case.
* Answers that are *not* receipts are non-2xx with an RFC 7807 ``application/problem+xml`` body
  carrying the stable error code in ``<code>``: 413 ``ENV_OVERSIZE`` (Content-Length above
  ``IntakeLimits.max_envelope_bytes``; the body is never read), 411/400/415/404/405
  ``TRN_BAD_REQUEST``, 403 with the trust code when the client certificate passed the handshake
  but the trust store refuses it (e.g. revoked), 503 ``DLV_STORE_UNAVAILABLE`` while stopping.
* ``GET /healthz``: 200 when the message store answers, else 503.

The TLS peer's administration comes from its client certificate and the intermediate CAs it
sent in the handshake (TrustStore.administration_of_tls_peer) and is handed to the node, which
refuses an envelope whose signed sender is another administration (TRUST_WRONG_PARTNER).

Slow clients cannot pin threads: every socket read has a timeout, a watchdog closes connections
whose handshake or request (line, headers, body) takes longer than a deadline, and the number of
open connections is bounded, in all and per client address. A connection holds its slot from
accept, before the TLS handshake says who it is, so without the per-address bound one host
holding idle TCP connections could refuse every partner; keep the listener reachable from
partner networks only, so that no one else has an address to open them from.
"""

from __future__ import annotations

import _ssl
import contextlib
import heapq
import http.client
import itertools
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from gateway.envelope.opened import Binding
from gateway.errors import (
    OVERSIZE,
    TRN_BAD_REQUEST,
    TRN_PROTOCOL,
    DeliveryError,
    GatewayError,
    TransportError,
    TrustError,
    registry,
)
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.node import GatewayNode, VerifiedReceipt, verify_partner_receipt
from gateway.transport.admission import Slots
from gateway.transport.tls import ClientTls, TlsIdentity, check_certificates_pem
from gateway.trust.store import TrustStore

log = logging.getLogger("gateway.transport.xml_http")

ENVELOPES_PATH = "/gnc/v1/envelopes"
INQUIRIES_PATH = "/gnc/v1/inquiries"  # request/answer (UB1 AEO query): see transport.inquiry
HEALTH_PATH = "/healthz"
XML_CONTENT_TYPES = frozenset({"application/xml", "text/xml"})
PROBLEM_CONTENT_TYPE = "application/problem+xml"
PROBLEM_NS = "urn:ietf:rfc:7807"
ERROR_TYPE_PREFIX = "urn:gnc-gateway:error:"
MAX_RECEIPT_BYTES = 1024 * 1024  # a client never reads a bigger answer


# --- TLS contexts --------------------------------------------------------------------------------
def _load_identity(context: ssl.SSLContext, identity: TlsIdentity) -> None:
    """Load a key and chain held in memory: Python's ssl reads them only from a path.

    On Linux the PEM goes into an anonymous memory file (memfd), so the key never touches a
    file system; elsewhere into a private temporary directory removed at once.
    """
    data = identity.cert_pem.rstrip(b"\n") + b"\n" + identity.key_pem
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("gncgw-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="gncgw-tls-") as tmp:  # pragma: no cover - non-Linux
        path = Path(tmp) / "identity.pem"
        path.touch(mode=0o600)
        path.write_bytes(data)
        context.load_cert_chain(str(path))


def server_ssl_context(identity: TlsIdentity, client_ca_pem: bytes) -> ssl.SSLContext:
    """Server side of mutual TLS: our TLS certificate, and a client certificate required from
    any partner CA (which partner it is, is decided after the handshake by the trust store)."""
    check_certificates_pem(client_ca_pem, "client CA certificates (trust anchors)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_identity(context, identity)
    context.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_ssl_context(tls: ClientTls) -> ssl.SSLContext:
    """Client side of mutual TLS: trust only the partner's CA(s), present our TLS certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server and its host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=tls.partner_roots_pem.decode("ascii"))
    _load_identity(context, tls.identity)
    return context


# --- problem documents (RFC 7807, XML form) ------------------------------------------------------
def problem_document(status: int, code: str, detail: str) -> bytes:
    """An unsigned error answer for what never became a receipt, carrying the stable code."""
    known = registry().get(code)
    root = ET.Element(f"{{{PROBLEM_NS}}}problem")
    for name, text in (
        ("type", ERROR_TYPE_PREFIX + code),
        ("title", known.summary if known else code),
        ("status", str(status)),
        ("detail", detail),
        ("code", code),
    ):
        ET.SubElement(root, f"{{{PROBLEM_NS}}}{name}").text = text
    out: bytes = ET.tostring(
        root, encoding="UTF-8", xml_declaration=True, default_namespace=PROBLEM_NS
    )
    return out


def _problem_fields(body: bytes) -> tuple[str, str]:
    """(code, detail) of a problem document; ("", "") when the body is not one.

    The body comes from a partner: without a DOCTYPE there can be no entity declarations, so
    refusing any DOCTYPE leaves nothing for the parser to expand or fetch.
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        return "", ""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    if root.tag != f"{{{PROBLEM_NS}}}problem":
        return "", ""
    code = root.findtext(f"{{{PROBLEM_NS}}}code") or ""
    detail = root.findtext(f"{{{PROBLEM_NS}}}detail") or ""
    return code, detail


# --- the TLS peer --------------------------------------------------------------------------------
def _sent_chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """DER of the certificates the TLS client sent (as sent, not the verified path); () if the
    running Python cannot tell, and the leaf alone is then all the trust store sees.

    Python 3.13 has SSLSocket.get_unverified_chain() (DER bytes); 3.10-3.12 only the private
    one on `_sslobj` (_ssl.Certificate objects). Whether the leaf is in it is left to the
    caller, which drops it.
    """
    try:
        public = getattr(sock, "get_unverified_chain", None)
        if public is not None:
            return tuple(bytes(der) for der in public() or ())
        private = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
        if private is None:
            return ()
        return tuple(cert.public_bytes(_ssl.ENCODING_DER) for cert in private() or ())
    except (AttributeError, TypeError, ValueError, ssl.SSLError) as exc:  # a private API
        log.warning("XML listener: cannot read the TLS client's chain (%s); using its leaf", exc)
        return ()


@lru_cache(maxsize=256)
def _peer_chain(
    leaf_der: bytes, sent: tuple[bytes, ...]
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The client's leaf and the other certificates it sent (its intermediates), parsed once
    per distinct chain: new connections of the same partner reuse the same objects."""
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
        return leaf, tuple(x509.load_der_x509_certificate(der) for der in sent if der != leaf_der)
    except ValueError as exc:
        raise TrustError(f"the TLS client's certificate chain cannot be read: {exc}") from None


# --- the server ----------------------------------------------------------------------------------
@dataclass
class _Connection:
    sock: socket.socket
    deadline: float | None  # monotonic time by which the current read phase must end
    busy: bool = False  # a request has been read and is being answered


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that does the TLS handshake in the connection's own thread."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: XmlHttpServer, address: tuple[str, int]) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, cast(Any, _Handler))

    def process_request(self, request: Any, client_address: Any) -> None:
        refusal = self.owner._slots.take(client_address[0], client_address[0])
        if refusal:
            log.warning("XML listener: %s, refusing %s", refusal, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.owner._slots.give(client_address[0])
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._slots.give(client_address[0])

    def finish_request(self, request: Any, client_address: Any) -> None:
        owner = self.owner
        raw: socket.socket = request
        raw.settimeout(owner.read_timeout)
        # Answers are written as headers then body: without NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold the body back for ~40 ms.
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        token = owner._track(raw)
        try:
            try:
                tls = owner._ssl.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.info("XML listener: TLS handshake with %s failed: %s", client_address, exc)
                return
            owner._retrack(token, tls)
            try:
                handler = _Handler(tls, client_address, self, token)
                if handler.linger:
                    _linger(tls, owner.linger_seconds)
            except OSError as exc:  # the peer went away, or stop() cut the connection
                log.debug("XML listener: connection from %s ended: %s", client_address, exc)
            finally:
                with contextlib.suppress(OSError):
                    tls.close()
        finally:
            owner._untrack(token)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("XML listener: unexpected failure serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    connection: ssl.SSLSocket
    protocol_version = "HTTP/1.1"
    server_version = "gncgw"
    sys_version = ""

    def __init__(self, request: Any, client_address: Any, server: _Server, token: int) -> None:
        self._token = token
        self.linger = False  # a body was left unread: drain it before closing (see _linger)
        self._peer_chain: tuple[x509.Certificate, tuple[x509.Certificate, ...]] | None = None
        self._length = 0
        self._peer: Administration | None = None
        super().__init__(request, client_address, server)

    # -- plumbing -------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("XML listener %s: " + format, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        self.server.owner._arm(self._token)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if not self.server.owner._begin(self._token):
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE, DeliveryError.code, "the gateway is stopping"
            )
            return False
        return True

    def handle_expect_100(self) -> bool:
        # Refuse before the client sends the body (curl and others wait for 100 Continue).
        if self.command == "POST" and self.path == ENVELOPES_PATH and not self._admissible():
            return False
        return super().handle_expect_100()

    def _problem(
        self, status: HTTPStatus, code: str, detail: str, *, allow: str | None = None
    ) -> None:
        body = problem_document(status.value, code, detail)
        self.send_response(status.value)
        if allow is not None:
            self.send_header("Allow", allow)
        self.send_header("Content-Type", PROBLEM_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.server.owner._end(self._token)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status.value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
        self.server.owner._end(self._token)

    def _refuse(
        self, status: HTTPStatus, code: str, detail: str, *, allow: str | None = None
    ) -> None:
        """A problem answer after which the connection closes (the body was not read)."""
        self.close_connection = True
        self.linger = True
        self._problem(status, code, detail, allow=allow)

    # -- request checks -------------------------------------------------------------------------
    def _check_headers(self) -> bool:
        """Content-Type and Content-Length of an envelope POST; answer and return False if bad."""
        limit = self.server.owner.node.limits.max_envelope_bytes
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(
                HTTPStatus.LENGTH_REQUIRED,
                TRN_BAD_REQUEST,
                "Transfer-Encoding is not accepted: send the envelope with a Content-Length",
            )
            return False
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in XML_CONTENT_TYPES:
            self._refuse(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                TRN_BAD_REQUEST,
                f"Content-Type {ctype or '(none)'!r} is not application/xml",
            )
            return False
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._refuse(
                HTTPStatus.LENGTH_REQUIRED, TRN_BAD_REQUEST, "Content-Length header is required"
            )
            return False
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
            self._refuse(
                HTTPStatus.BAD_REQUEST,
                TRN_BAD_REQUEST,
                f"Content-Length {', '.join(lengths)!r} is not one decimal number",
            )
            return False
        length = int(lengths[0])
        if length > limit:
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                OVERSIZE,
                f"Content-Length {length} exceeds the limit of {limit} bytes",
            )
            return False
        if length == 0:
            self._refuse(HTTPStatus.BAD_REQUEST, TRN_BAD_REQUEST, "the request body is empty")
            return False
        self._length = length
        return True

    def _admissible(self) -> bool:
        """The TLS peer is a trusted partner and the headers fit the profile; else answered."""
        try:
            self._peer = self._tls_peer()
        except GatewayError as error:
            log.warning("XML listener: TLS client %s refused: %s", self.client_address[0], error)
            self._refuse(HTTPStatus.FORBIDDEN, error.code, error.message)
            return False
        return self._check_headers()

    def _tls_peer(self) -> Administration:
        """The partner the client's certificate, with the intermediates it sent, chains to."""
        if self._peer_chain is None:
            der = self.connection.getpeercert(binary_form=True)
            if der is None:  # cannot happen with CERT_REQUIRED; refuse rather than assume
                raise TrustError("the TLS client presented no certificate")
            self._peer_chain = _peer_chain(der, _sent_chain(self.connection))
        leaf, intermediates = self._peer_chain
        node = self.server.owner.node
        return node.trust.administration_of_tls_peer(leaf, node.clock(), intermediates)

    # -- methods --------------------------------------------------------------------------------
    def do_POST(self) -> None:
        inquiry = self.server.owner.inquiry if self.path == INQUIRIES_PATH else None
        if self.path != ENVELOPES_PATH and inquiry is None:
            self._not_found()
            return
        if not self._admissible():
            return
        peer = self._peer
        if peer is None:  # pragma: no cover - _admissible sets it or answers
            return
        body = self.rfile.read(self._length)
        if len(body) != self._length:
            self.close_connection = True  # the client went away or was cut off: no answer
            return
        self.server.owner._disarm(self._token)
        try:
            if inquiry is not None:
                answer = inquiry(body, Binding.XML, peer)
            else:
                answer = self.server.owner.node.receive(body, Binding.XML, peer)
        except DeliveryError as error:  # the store failed (e.g. a query's log row): no answer
            log.error("XML listener: not answered for %s: %s", peer.value, error)
            self.close_connection = True
            self._problem(
                HTTPStatus.SERVICE_UNAVAILABLE,
                error.code,
                f"nothing was answered or accepted ({error.message}); resend later",
            )
            return
        except Exception:
            log.exception("XML listener: the node failed on an envelope from %s", peer.value)
            self.close_connection = True
            self._problem(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                GatewayError.code,
                "unexpected internal failure; nothing was accepted",
            )
            return
        self._send(HTTPStatus.OK, "application/xml", answer)

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._health()
        elif self.path == ENVELOPES_PATH:
            self._method_not_allowed("POST")
        else:
            self._not_found()

    def do_HEAD(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, TRN_BAD_REQUEST, "HEAD is not supported")

    def do_PUT(self) -> None:
        if self.path == ENVELOPES_PATH:
            self._method_not_allowed("POST")
        elif self.path == HEALTH_PATH:
            self._method_not_allowed("GET")
        else:
            self._not_found()

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    def _health(self) -> None:
        node = self.server.owner.node
        if self.server.owner.stopping or not node.inbox.is_usable():
            self._problem(
                HTTPStatus.SERVICE_UNAVAILABLE,
                DeliveryError.code,
                "the gateway is stopping"
                if self.server.owner.stopping
                else "the message store is unusable",
            )
            return
        body = f'{{"status": "SERVING", "administration": "{node.administration.value}"}}\n'
        self._send(HTTPStatus.OK, "application/json", body.encode())

    def _not_found(self) -> None:
        self._refuse(
            HTTPStatus.NOT_FOUND,
            TRN_BAD_REQUEST,
            f"no resource {self.path!r}: envelopes go to POST {ENVELOPES_PATH}",
        )

    def _method_not_allowed(self, allowed: str) -> None:
        self._refuse(
            HTTPStatus.METHOD_NOT_ALLOWED,
            TRN_BAD_REQUEST,
            f"{self.command} is not allowed on {self.path}; use {allowed}",
            allow=allowed,
        )


class XmlHttpServer:
    """The HTTPS listener of one gateway node; `start()` serves in a background thread."""

    def __init__(
        self,
        node: GatewayNode,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        identity: TlsIdentity,
        client_ca_pem: bytes | None = None,
        read_timeout: float = 10.0,
        request_deadline: float = 120.0,
        max_connections: int = 256,
        max_connections_per_address: int = 32,
        drain_timeout: float = 10.0,
    ) -> None:
        """`client_ca_pem` defaults to every partner anchor in the node's trust store.

        read_timeout bounds each socket read and idle keep-alive; request_deadline bounds the
        handshake and the whole read of one request (line, headers and body) however it trickles;
        max_connections the connections open at once, max_connections_per_address those of one
        client address (a partner's sender keeps a few).
        """
        self.node = node
        self.read_timeout = read_timeout
        self.request_deadline = request_deadline
        self.drain_timeout = drain_timeout
        self.linger_seconds = min(2.0, read_timeout)
        ca = client_ca_pem if client_ca_pem is not None else node.trust.anchors_pem()
        self._ssl = server_ssl_context(identity, ca)
        self._slots: Slots[str] = Slots(
            per_holder=max_connections_per_address,
            total=max_connections,
            noun="connections",
            holder="client address",
        )
        self._lock = threading.Lock()
        self._connections: dict[int, _Connection] = {}
        self._next_token = 0
        self._stopping = False
        self._stopped = threading.Event()
        self._httpd = _Server(self, (host, port))
        self._threads: list[threading.Thread] = []
        self._started = False
        # POST /gnc/v1/inquiries: (request envelope, binding, TLS peer) -> signed answer envelope.
        self.inquiry: Callable[[bytes, Binding, Administration], bytes] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}{ENVELOPES_PATH}"

    def start(self) -> XmlHttpServer:
        serve = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="xml-http-accept",
            daemon=True,
        )
        watch = threading.Thread(target=self._watchdog, name="xml-http-watchdog", daemon=True)
        self._threads = [serve, watch]
        self._started = True
        serve.start()
        watch.start()
        log.info("XML over HTTPS listening on %s (mutual TLS)", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish, then close."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            idle = [c.sock for c in self._connections.values() if not c.busy]
        if self._started:
            self._httpd.shutdown()
        self._httpd.server_close()
        for sock in idle:
            _cut(sock)
        end = time.monotonic() + self.drain_timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._connections:
                    break
            time.sleep(0.02)
        with self._lock:
            left = [c.sock for c in self._connections.values()]
        for sock in left:
            _cut(sock)
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> XmlHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connection book-keeping (called from handler threads) ----------------------------------
    def _track(self, sock: socket.socket) -> int:
        with self._lock:
            self._next_token += 1
            token = self._next_token
            deadline = time.monotonic() + self.request_deadline
            self._connections[token] = _Connection(sock, deadline)
            if self._stopping:
                _cut(sock)
            return token

    def _retrack(self, token: int, sock: socket.socket) -> None:
        with self._lock:
            self._connections[token].sock = sock

    def _untrack(self, token: int) -> None:
        with self._lock:
            self._connections.pop(token, None)

    def _arm(self, token: int) -> None:
        """A new read phase: waiting for and reading the next request must end in time."""
        with self._lock:
            conn = self._connections[token]
            conn.deadline = time.monotonic() + self.request_deadline
            conn.busy = False
            if self._stopping:
                _cut(conn.sock)

    def _begin(self, token: int) -> bool:
        """A request line and headers were read; False if the server is stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._connections[token].busy = True
            return True

    def _disarm(self, token: int) -> None:
        with self._lock:
            self._connections[token].deadline = None

    def _end(self, token: int) -> None:
        with self._lock:
            self._connections[token].busy = False

    def _watchdog(self) -> None:
        tick = max(0.02, min(0.25, self.request_deadline / 4))
        while not self._stopped.wait(tick):
            now = time.monotonic()
            with self._lock:
                late = [
                    c.sock
                    for c in self._connections.values()
                    if c.deadline is not None and now > c.deadline
                ]
                for token, conn in self._connections.items():
                    if conn.deadline is not None and now > conn.deadline:
                        conn.deadline = None
                        log.info("XML listener: connection %d too slow, closing it", token)
            for sock in late:
                _cut(sock)


def _linger(sock: ssl.SSLSocket, seconds: float) -> None:
    """Close politely after refusing a request whose body was not read.

    Closing a socket with unread data makes the kernel send a reset, which can destroy our
    answer (the 413) before the client reads it. So: send FIN, then discard what still arrives,
    for a bounded time, without decrypting it.
    """
    end = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_WR)
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            if not socket.socket.recv(sock, 65536):
                break


def _cut(sock: socket.socket) -> None:
    """Shut a connection down from another thread; its blocked read then ends at once.

    socket.socket.shutdown is called directly so an SSLSocket's TLS state is left alone.
    """
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# --- the client ----------------------------------------------------------------------------------
def check_receipt(
    raw_receipt: bytes,
    *,
    partner: Administration,
    trust: TrustStore,
    message_id: str,
    sent: bytes,
    now: datetime,
) -> VerifiedReceipt:
    """An XML receipt, checked as a sender checks any receipt (node.verify_partner_receipt)."""
    return verify_partner_receipt(
        Binding.XML,
        raw_receipt,
        partner=partner,
        trust=trust,
        message_id=message_id,
        sent=sent,
        now=now,
    )


class HttpAnswerError(TransportError):
    """The partner answered with an HTTP error instead of a receipt (code TRN_PROTOCOL)."""

    def __init__(self, message: str, *, status: int, remote_code: str) -> None:
        super().__init__(message, code=TRN_PROTOCOL)
        self.status = status
        self.remote_code = remote_code  # the stable code from the problem document, if any


class _HttpsConnection(http.client.HTTPSConnection):
    """HTTPSConnection that can check the server certificate against another name than the host
    it connects to (ClientTls.server_name), as the gRPC client can."""

    def __init__(
        self, host: str, port: int, *, timeout: float, context: ssl.SSLContext, server_name: str
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context = context
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = self._tls_context.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise


class _Deadline:
    """One exchange's deadline: `expired` once the watchdog has cut its connection."""

    __slots__ = ("_conn", "at", "done", "expired")

    def __init__(self, conn: http.client.HTTPSConnection, at: float) -> None:
        self.at = at
        self.done = False  # the exchange ended: nothing to cut
        self.expired = False
        self._conn = conn

    def cut(self) -> None:
        self.expired = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.done = True


class _Watchdog:
    """Cuts a client connection whose exchange is not over by its deadline. A socket timeout
    bounds each read only, so a partner trickling its answer a byte at a time could otherwise
    hold the delivery worker, and every partner behind it, for as long as it likes.

    One thread for every client: arming costs a heap push (a timer thread per request cost
    ~130 µs, measured), and with one timeout for all, a new deadline is never the earliest, so
    the thread is woken only when one falls due."""

    def __init__(self) -> None:
        self._room = threading.Condition()
        self._due: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, conn: http.client.HTTPSConnection, seconds: float) -> _Deadline:
        deadline = _Deadline(conn, time.monotonic() + seconds)
        with self._room:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="xml-client-deadlines", daemon=True
                )
                self._thread.start()
            earlier = not self._due or deadline.at < self._due[0][0]
            heapq.heappush(self._due, (deadline.at, next(self._order), deadline))
            if earlier:
                self._room.notify()
        return deadline

    def _run(self) -> None:
        with self._room:
            while True:
                while self._due and self._due[0][2].done:
                    heapq.heappop(self._due)
                if not self._due:
                    self._room.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._room.wait(left)
                    continue
                heapq.heappop(self._due)[2].cut()


_WATCHDOG = _Watchdog()


class XmlPartnerClient:
    """Sends XML envelopes to one partner's HTTPS endpoint over mutual TLS; thread-safe.

    One keep-alive connection is reused; a request on a connection the partner had closed is
    retried once on a fresh one (safe: a re-sent envelope is answered as a duplicate).
    """

    def __init__(
        self,
        url: str,
        *,
        tls: ClientTls,
        timeout: float = 30.0,
        max_receipt_bytes: int = MAX_RECEIPT_BYTES,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise TransportError(f"partner URL {url!r} is not an https:// URL", code=TRN_PROTOCOL)
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 443
        self._path = parts.path or ENVELOPES_PATH
        self._timeout = timeout
        self._max = max_receipt_bytes
        self._ssl = client_ssl_context(tls)
        self._server_name = tls.server_name or parts.hostname
        self._lock = threading.Lock()
        self._conn: http.client.HTTPSConnection | None = None

    def submit(self, raw: bytes) -> bytes:
        """POST one signed envelope; the partner's signed receipt bytes (accepted or rejected).

        The receipt is not opened here: open it with the XML binding and check it (signer trust,
        message id, digest) before relying on it.
        """
        with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                conn = self._connection()
                deadline = _WATCHDOG.arm(conn, self._timeout)
                try:
                    conn.request(
                        "POST",
                        self._path,
                        body=raw,
                        headers={"Content-Type": "application/xml", "Accept": "application/xml"},
                    )
                    response = conn.getresponse()
                    return self._answer(response)
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    self.close()
                    if deadline.expired:
                        raise self._too_slow() from None
                    if fresh or attempt == 2:
                        raise self._unavailable(e) from None
                except (OSError, http.client.HTTPException) as e:
                    self.close()
                    raise (self._too_slow() if deadline.expired else self._unavailable(e)) from None
                finally:
                    deadline.cancel()
        raise AssertionError("unreachable")

    def deliver(
        self,
        raw: bytes,
        *,
        partner: Administration,
        trust: TrustStore,
        message_id: str,
        now: datetime | None = None,
    ) -> VerifiedReceipt:
        """submit(), then check_receipt(): the answer as a receipt this partner verifiably gave."""
        answer = self.submit(raw)
        return check_receipt(
            answer,
            partner=partner,
            trust=trust,
            message_id=message_id,
            sent=raw,
            now=now or utc_now(),
        )

    def health(self) -> bool:
        """True when the partner's /healthz answers 200."""
        with self._lock:
            conn = self._connection()
            try:
                conn.request("GET", HEALTH_PATH)
                response = conn.getresponse()
                response.read(self._max)
                if response.will_close:
                    self.close()
                return response.status == 200
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise self._unavailable(e) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> XmlPartnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.close()

    # -- internals ------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = _HttpsConnection(
                self._host,
                self._port,
                timeout=self._timeout,
                context=self._ssl,
                server_name=self._server_name,
            )
        return self._conn

    def _unavailable(self, error: BaseException) -> TransportError:
        return TransportError(f"cannot exchange with {self.url}: {error}")

    def _too_slow(self) -> TransportError:
        return TransportError(f"no complete answer from {self.url} within {self._timeout:g} s")

    def _answer(self, response: http.client.HTTPResponse) -> bytes:
        body = response.read(self._max + 1)
        if response.will_close:
            self.close()
        if len(body) > self._max:
            self.close()
            raise TransportError(
                f"{self.url} answered more than {self._max} bytes", code=TRN_PROTOCOL
            )
        ctype = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if response.status != 200:
            code, detail = _problem_fields(body) if ctype == PROBLEM_CONTENT_TYPE else ("", "")
            what = f"{code}: {detail}" if code else (body[:200].decode("utf-8", "replace"))
            raise HttpAnswerError(
                f"{self.url} answered HTTP {response.status} instead of a receipt: {what}",
                status=response.status,
                remote_code=code,
            )
        if ctype not in XML_CONTENT_TYPES or not body:
            raise TransportError(
                f"{self.url} answered {ctype or 'no content type'} ({len(body)} bytes), "
                "not an XML receipt",
                code=TRN_PROTOCOL,
            )
        return body
