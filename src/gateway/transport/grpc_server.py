"""The gRPC server of a gateway: gnc.v1.Exchange over mutual TLS, with health and reflection.

Handlers take the request as the exact bytes received (no request deserializer): the node
verifies the JWS over those bytes, never over a re-serialisation. Per call, the administration
the client proved in the TLS handshake is looked up in the trust store and handed to the node as
`tls_peer`, so a US client cannot submit an envelope whose sender is CN.

Sizes: grpc refuses a message over `max_envelope_bytes + OVERSIZE_SLACK` by itself (status
RESOURCE_EXHAUSTED, no receipt: it is never read whole). A message between the intake limit and
that hard cap reaches the node and is answered with a signed ENV_OVERSIZE rejection receipt.

Batching: every envelope, from a unary Submit or from a Stream, goes into one intake that checks
whatever has arrived as a micro-batch (`node.check_many` then `node.finish_receive`: one
grouped commit, one hand-off to the store's writer), instead of one node call per grpc thread
(measured with 16 unary calls in flight: about 800 calls/s unbatched, 1,000-1,150 batched). An
envelope's receipt is released only after its batch is committed; a stream's receipts are
written strictly in the order of its envelopes. `batch_workers` batches may be checked at a time.

Streams carry batches (`EnvelopeBatch` in, `ReceiptBatch` out): gRPC's per-message cost in
Python (about 125 us a message, measured) is paid once per batch instead of once per envelope.
Each element of a batch is the exact bytes of one SignedEnvelope and is checked, stored and
receipted on its own; the receipts of a checked stream batch are signed with one signature over
their Merkle tree, each carrying its inclusion proof (envelope.receipts.seal_receipts), so each
still verifies alone while the batch costs one ECDSA signature instead of one per envelope.
Unary Submit receipts are always signed alone. A batch over `max_stream_batch` envelopes or
`max_stream_batch_bytes` ends the call with RESOURCE_EXHAUSTED ("ENV_OVERSIZE: ..."); nothing
of that batch is checked.

Sharing (transport.admission): a stream holds a pool thread for its life, so the streams open
per TLS peer and in all are bounded (a refused stream ends with RESOURCE_EXHAUSTED "TRN_BUSY:
..."), leaving threads for unary calls, health checks and inquiries; a stream that sends no
batch for `stream_idle_seconds` with nothing left to answer is closed; and the envelope bytes
read from all streams but not yet answered are bounded (a reader waits for room: back-pressure).
Every batch is answered with one ReceiptBatch, an empty batch with an empty one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

import gateway._proto.gnc.v1.envelope_pb2 as envelope_pb2  # registers gnc.v1 for reflection
from gateway.envelope.opened import Binding
from gateway.errors import (
    OVERSIZE,
    TRN_BUSY,
    TRN_PROTOCOL,
    ConfigError,
    GatewayError,
    TransportError,
)
from gateway.model.codes import Administration
from gateway.node import CheckedBatch, GatewayNode, merge_checked
from gateway.transport.admission import ByteBudget, Slots
from gateway.transport.tls import TlsIdentity, is_loopback, server_credentials, split_host_port

log = logging.getLogger("gateway.transport.grpc")

SERVICE_NAME: str = envelope_pb2.DESCRIPTOR.services_by_name["Exchange"].full_name
SUBMIT_METHOD = f"/{SERVICE_NAME}/Submit"
STREAM_METHOD = f"/{SERVICE_NAME}/Stream"
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
OVERSIZE_SLACK = 1024 * 1024  # read this much past the intake limit, to answer ENV_OVERSIZE
MAX_STREAM_BATCH = 256  # envelopes in one EnvelopeBatch of a Stream, by default
MAX_STREAMS_PER_PEER = 8  # streams one partner may hold open at once, by default
STREAM_BYTES_IN_FLIGHT = 128 * 1024 * 1024  # envelope bytes read from streams, not yet answered
STREAM_IDLE_SECONDS = 120.0  # a stream that sends nothing this long, owed nothing, is closed


class _Stopping(TransportError):
    """The server stopped before this envelope was checked: nothing about it was stored."""

    def __init__(self) -> None:
        super().__init__("the gateway is shutting down; the envelope was not received")


@lru_cache(maxsize=256)
def _peer_chain(
    leaf_pem: bytes, chain_pem: bytes
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The client's leaf and the intermediates it sent, parsed once per distinct chain.

    Keyed by the raw PEM grpc hands over, so a repeat call costs a dict lookup; the same objects
    come back, which keeps the trust store's fingerprint memo warm. grpc's chain property holds
    what the peer sent after its leaf (it is absent when only the leaf was sent); a leaf found
    in it anyway is dropped, so both forms give the same intermediates.
    """
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    if not chain_pem.strip():
        return leaf, ()
    sent = x509.load_pem_x509_certificates(chain_pem)
    return leaf, tuple(cert for cert in sent if cert != leaf)


class _StoreHealth(health.HealthServicer):  # type: ignore[misc]
    """Health checking that answers SERVING only while the node's store is usable, and only
    to a caller the trust store recognises (`peer_check` aborts the call otherwise: a revoked
    certificate passes the TLS handshake, which has no CRLs, but learns nothing)."""

    def __init__(
        self, probe: Callable[[], bool], peer_check: Callable[[Any], object] = lambda _: None
    ) -> None:
        super().__init__()
        self._probe = probe
        self._peer_check = peer_check
        self._stopping = False
        self.refresh()

    def refresh(self) -> None:
        if self._stopping:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._probe()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            self.set(service, status)

    def shutting_down(self) -> None:
        self._stopping = True
        self.enter_graceful_shutdown()

    def Check(self, request: Any, context: Any) -> Any:
        self._peer_check(context)
        self.refresh()
        return super().Check(request, context)

    def Watch(self, request: Any, context: Any, send_response_callback: Any = None) -> Any:
        self._peer_check(context)
        self.refresh()
        return super().Watch(request, context, send_response_callback)


@dataclass(frozen=True)
class _Item:
    raws: list[bytes]
    peer: Administration | None
    answer: futures.Future[list[bytes]]  # one signed receipt per envelope of `raws`, in order
    batch_receipts: bool  # a Stream batch: receipts signed together (one Merkle tree signature)


class _Intake:
    """Every envelope the server receives, from unary calls and streams alike, goes through here.

    Each of `workers` threads takes the next item (one envelope of a Submit, or one batch of a
    Stream) and everything else that has arrived (up to `max_batch` envelopes) as one batch and
    checks it (`node.check_many`: verify, trust, receipt; nothing stored), then stores it
    (`node.finish_receive`: one grouped commit) and only then completes each item's future.
    Under load batches grow by themselves; an idle server answers a lone envelope at once (no
    timer).

    Stream batches are stored by a committer thread while the worker checks the next batch, so
    a stream's checking and its commits' fsyncs overlap (measured, alternating runs: about
    3,000 -> 3,700 envelopes/s); batches queued for the committer from one TLS peer share one
    commit. Unary envelopes are stored by the worker itself: their batches are small (at most
    the calls in flight) and the extra thread hand-off per batch cost more than the overlap
    gained (measured with 16 calls in flight: about 1,050 -> 860 calls/s). The server is
    GIL-bound: every extra runnable thread costs.
    """

    def __init__(self, node: GatewayNode, *, workers: int, max_batch: int) -> None:
        self._node = node
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._checked: queue.SimpleQueue[tuple[CheckedBatch, list[_Item]] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"grpc-intake-{i}", daemon=True)
            for i in range(workers)
        ]
        self._committer = threading.Thread(target=self._commit, name="grpc-commit", daemon=True)
        self._committer.start()
        for worker in self._workers:
            worker.start()

    def submit(
        self, raws: list[bytes], peer: Administration | None, *, batch_receipts: bool = False
    ) -> futures.Future[list[bytes]]:
        """Queue envelopes; the future holds their signed receipts, in order, once stored.

        `batch_receipts`: the receipts may be signed with one signature for the checked batch
        (node.check_many); otherwise each is signed alone (unary Submit)."""
        answer: futures.Future[list[bytes]] = futures.Future()
        if self._closed:
            answer.set_exception(_Stopping())
        else:
            self._queue.put(_Item(raws, peer, answer, batch_receipts))
        return answer

    def close(self) -> None:
        """Finish what is queued, then stop the workers and the committer."""
        self._closed = True
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        self._checked.put(None)  # after every worker's last batch
        self._committer.join(timeout=30)
        while True:  # anything queued after the end markers: refuse, never leave it hanging
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.answer.set_exception(_Stopping())

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item.raws)
            end = False
            while size < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    end = True
                    break
                batch.append(more)
                size += len(more.raws)
            self._check(batch)
            if end:
                return

    def _check(self, batch: list[_Item]) -> None:
        # One node call per TLS peer and receipt form: a receipt tree only ever holds receipts
        # answered to one peer, and unary answers are always signed alone.
        groups: dict[tuple[Administration | None, bool], list[_Item]] = {}
        for item in batch:
            groups.setdefault((item.peer, item.batch_receipts), []).append(item)
        for (peer, batch_receipts), items in groups.items():
            raws = [raw for item in items for raw in item.raws]
            try:
                checked = self._node.check_many(
                    raws, Binding.PROTOBUF, peer, batch_receipts=batch_receipts
                )
            except Exception as exc:
                self._fail(items, exc, len(raws))
                continue
            if batch_receipts:
                self._checked.put((checked, items))  # a Stream's batch: commit it over there
            else:
                self._finish(checked, items)  # unary: store here (see the class docstring)

    def _commit(self) -> None:
        while True:
            entry = self._checked.get()
            if entry is None:
                return
            entries = [entry]
            end = False
            while len(entries) < self._max_batch:
                try:
                    more = self._checked.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    end = True
                    break
                entries.append(more)
            by_peer: dict[Administration | None, list[tuple[CheckedBatch, list[_Item]]]] = {}
            for checked, items in entries:
                by_peer.setdefault(checked.tls_peer, []).append((checked, items))
            for group in by_peer.values():
                merged = merge_checked([checked for checked, _ in group])
                self._finish(merged, [item for _, items in group for item in items])
            if end:
                return

    def _finish(self, checked: CheckedBatch, items: list[_Item]) -> None:
        try:
            answers = self._node.finish_receive(checked)
            if len(answers) != len(checked.raws):
                raise RuntimeError(f"{len(answers)} receipts for {len(checked.raws)} envelopes")
        except Exception as exc:
            self._fail(items, exc, len(checked.raws))
            return
        start = 0
        for item in items:
            end = start + len(item.raws)
            item.answer.set_result(answers[start:end])
            start = end

    @staticmethod
    def _fail(items: list[_Item], exc: Exception, count: int) -> None:
        log.exception("checking a batch of %d envelopes failed", count, exc_info=exc)
        for item in items:
            item.answer.set_exception(exc)


@dataclass(frozen=True)
class _StreamLimits:
    max_envelopes: int
    max_bytes: int


class _BatchRefused(Exception):
    """A stream batch the server will not read: the call ends with this gRPC status."""

    def __init__(self, status: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.details = details


def _read_batch(raw: bytes, limits: _StreamLimits) -> list[bytes]:
    """The envelopes of one EnvelopeBatch, each element's bytes exactly as received."""
    if len(raw) > limits.max_bytes + 16 * limits.max_envelopes:  # framing of each element
        raise _BatchRefused(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{OVERSIZE}: a stream batch of {len(raw)} bytes exceeds the limit of "
            f"{limits.max_bytes} bytes",
        )
    batch = envelope_pb2.EnvelopeBatch()
    try:
        batch.ParseFromString(raw)
    except DecodeError as exc:
        raise _BatchRefused(
            grpc.StatusCode.INVALID_ARGUMENT, f"{TRN_PROTOCOL}: not an EnvelopeBatch: {exc}"
        ) from None
    envelopes = list(batch.envelopes)
    if len(envelopes) > limits.max_envelopes:
        raise _BatchRefused(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{OVERSIZE}: a stream batch of {len(envelopes)} envelopes exceeds the limit of "
            f"{limits.max_envelopes}",
        )
    total = sum(len(envelope) for envelope in envelopes)
    if total > limits.max_bytes:
        raise _BatchRefused(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{OVERSIZE}: a stream batch of {total} envelope bytes exceeds the limit of "
            f"{limits.max_bytes} bytes",
        )
    return envelopes


class _StreamCall:
    """One Stream call: a reader thread feeds the intake batch by batch; each batch's receipts
    leave as one ReceiptBatch, in the order of the batches (and so of the envelopes)."""

    def __init__(
        self,
        intake: _Intake,
        peer: Administration | None,
        requests: Iterator[bytes],
        context: grpc.ServicerContext,
        window: int,
        limits: _StreamLimits,
        budget: ByteBudget,
        idle_seconds: float,
    ) -> None:
        self._intake = intake
        self._peer = peer
        self._requests = requests
        self._context = context
        self._limits = limits
        self._budget = budget
        self._idle_seconds = idle_seconds
        self._pending: queue.SimpleQueue[
            tuple[futures.Future[list[bytes]], int] | _BatchRefused | None
        ] = queue.SimpleQueue()
        # Back-pressure: at most `window` batches read but not yet answered.
        self._window = threading.Semaphore(window)
        self._last_read = time.monotonic()
        self._read_batches = 0  # written by the reader only
        self._answered = 0  # written by run() only
        # Bytes this stream holds of the shared budget; all given back when the call ends,
        # however it ends (batches read but never answered to a client that went away too).
        self._held = 0
        self._closed = False
        self._lock = threading.Lock()
        context.add_callback(self._close)

    def _take(self, size: int) -> bool:
        if not self._budget.take(size, self._context.is_active):
            return False
        with self._lock:
            if not self._closed:
                self._held += size
                return True
        self._budget.give(size)
        return False

    def _give(self, size: int) -> None:
        with self._lock:
            if self._closed:
                return  # _close gave back all this stream held
            self._held -= size
        self._budget.give(size)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            left, self._held = self._held, 0
        if left:
            self._budget.give(left)

    def _read(self) -> None:
        try:
            for raw in self._requests:
                self._last_read = time.monotonic()
                try:
                    envelopes = _read_batch(raw, self._limits)
                except _BatchRefused as refused:
                    self._pending.put(refused)
                    return
                while not self._window.acquire(timeout=0.5):
                    if not self._context.is_active():
                        return
                size = sum(len(envelope) for envelope in envelopes)
                if not self._take(size):
                    return
                self._read_batches += 1
                if envelopes:
                    answer = self._intake.submit(envelopes, self._peer, batch_receipts=True)
                else:  # answered too, so a client may pair answers with batches
                    answer = futures.Future()
                    answer.set_result([])
                self._pending.put((answer, size))
        except grpc.RpcError:
            pass  # the client went away; what was read is still stored and answered if it can be
        except Exception:  # pragma: no cover - defensive: never lose the end marker
            log.exception("reading the envelope stream failed")
        finally:
            self._pending.put(None)

    def run(self) -> Iterator[bytes]:
        threading.Thread(target=self._read, name="grpc-stream-reader", daemon=True).start()
        try:
            yield from self._answers()
        finally:
            self._close()

    def _answers(self) -> Iterator[bytes]:
        while True:
            try:
                entry = self._pending.get(timeout=min(1.0, self._idle_seconds))
            except queue.Empty:
                owed = self._read_batches - self._answered
                if not owed and time.monotonic() - self._last_read > self._idle_seconds:
                    self._context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{TRN_BUSY}: no batch in {self._idle_seconds:g} s: the stream is closed",
                    )
                continue
            if entry is None:
                return
            if isinstance(entry, _BatchRefused):
                log.info("stream batch refused: %s", entry.details)
                self._context.abort(entry.status, entry.details)
                return
            answer, size = entry
            try:
                receipts = _receipts_or_abort(answer, self._context)
            finally:
                self._give(size)
            self._answered += 1
            yield envelope_pb2.ReceiptBatch(receipts=receipts).SerializeToString()
            self._window.release()


def _receipts_or_abort(
    answer: futures.Future[list[bytes]], context: grpc.ServicerContext
) -> list[bytes]:
    try:
        return answer.result()
    except Exception as exc:
        if isinstance(exc, _Stopping):
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        context.abort(grpc.StatusCode.INTERNAL, f"GNC_INTERNAL: {type(exc).__name__}")
        raise  # abort raises; this keeps type checkers informed


class GrpcGatewayServer:
    """A gRPC endpoint in front of one GatewayNode.

    Mutual TLS by default: `tls` is this gateway's TLS identity and clients must present a
    certificate chaining to one of the trust store's anchors. `insecure_loopback=True` serves
    plaintext, and only on a loopback address (benchmarks against a bare echo service).

    `max_workers` bounds the calls served at once (an open stream holds one for its lifetime:
    `max_streams_per_peer` and `max_streams`, by default all but a quarter of `max_workers`,
    bound them, `stream_idle_seconds` closes one that sends nothing, and
    `stream_bytes_in_flight` bounds what all of them have sent and not yet been answered);
    `max_batch` the envelopes checked and committed together; `stream_window` the batches of
    one stream read but not yet answered (back-pressure on a fast sender); `max_stream_batch`
    and `max_stream_batch_bytes` the envelopes and envelope bytes one stream batch may carry
    (the bytes limit defaults to the intake's envelope size limit).
    """

    def __init__(
        self,
        node: GatewayNode,
        *,
        address: str = "127.0.0.1:0",
        tls: TlsIdentity | None = None,
        insecure_loopback: bool = False,
        max_workers: int = 32,
        batch_workers: int = 1,
        max_batch: int = 64,
        stream_window: int = 8,
        max_stream_batch: int = MAX_STREAM_BATCH,
        max_stream_batch_bytes: int | None = None,
        max_streams_per_peer: int = MAX_STREAMS_PER_PEER,
        max_streams: int | None = None,
        stream_bytes_in_flight: int = STREAM_BYTES_IN_FLIGHT,
        stream_idle_seconds: float = STREAM_IDLE_SECONDS,
    ) -> None:
        host, _ = split_host_port(address)
        if tls is None and not insecure_loopback:
            raise ConfigError(
                "the gRPC server needs a TLS identity (mutual TLS); plaintext must be asked for "
                "explicitly with insecure_loopback",
                location="grpc.tls",
            )
        if tls is not None and insecure_loopback:
            raise ConfigError("choose TLS or insecure_loopback, not both", location="grpc.tls")
        if insecure_loopback and not is_loopback(host):
            raise ConfigError(
                f"plaintext gRPC is allowed on a loopback address only, not {host}",
                location="grpc.address",
            )
        batch_bytes = (
            node.limits.max_envelope_bytes
            if max_stream_batch_bytes is None
            else max_stream_batch_bytes
        )
        sizes = (batch_workers, max_batch, stream_window, max_stream_batch, batch_bytes)
        if (
            min(*sizes, max_streams_per_peer, stream_bytes_in_flight) < 1
            or max_workers < 2
            or (stream_idle_seconds <= 0 or (max_streams is not None and max_streams < 1))
        ):
            raise ConfigError("gRPC worker and batch sizes must be positive", location="grpc")
        self.node = node
        self._address = address
        self._host = host
        self._tls = tls
        self._batch_workers = batch_workers
        self._max_batch = max_batch
        self._stream_window = stream_window
        self._stream_limits = _StreamLimits(max_stream_batch, batch_bytes)
        # Threads kept from streams for unary calls, health checks and inquiries.
        reserved = max(2, max_workers // 4)
        self._streams: Slots[Administration | None] = Slots(
            per_holder=max_streams_per_peer,
            total=max_streams if max_streams is not None else max(1, max_workers - reserved),
            noun="streams",
            holder="partner",
        )
        self._stream_budget = ByteBudget(stream_bytes_in_flight)
        self._stream_idle_seconds = stream_idle_seconds
        self._intake: _Intake | None = None
        hard_cap = node.limits.max_envelope_bytes + OVERSIZE_SLACK
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers, thread_name_prefix="grpc-call"),
            options=[
                ("grpc.max_receive_message_length", hard_cap),
                ("grpc.max_send_message_length", hard_cap),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._server.add_generic_rpc_handlers((self._handlers(),))
        self.health = _StoreHealth(node.inbox.is_usable, self._tls_peer)
        from grpc_health.v1 import health_pb2_grpc

        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0)."""
        try:
            if self._tls is None:
                port = self._server.add_insecure_port(self._address)
            else:
                creds = server_credentials(self._tls, self.node.trust.anchors_pem())
                port = self._server.add_secure_port(self._address, creds)
        except RuntimeError as exc:
            raise ConfigError(f"cannot bind gRPC on {self._address}: {exc}") from None
        if not port:
            raise ConfigError(f"cannot bind gRPC on {self._address}", location="grpc.address")
        self._port = int(port)
        self._intake = _Intake(self.node, workers=self._batch_workers, max_batch=self._max_batch)
        self._server.start()
        log.info(
            "gRPC %s listening on %s:%d (%s)",
            SERVICE_NAME,
            self._host,
            self._port,
            "mutual TLS" if self._tls else "PLAINTEXT loopback",
        )
        return self._port

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop taking calls, let running ones finish for `grace` seconds, then cancel them."""
        self.health.shutting_down()
        self._server.stop(grace).wait()
        if self._intake is not None:
            self._intake.close()

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> GrpcGatewayServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop(grace=None)

    @property
    def port(self) -> int:
        if self._port is None:
            raise ConfigError("the gRPC server is not started")
        return self._port

    @property
    def target(self) -> str:
        """host:port a client on this machine can dial."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "[::]", "") else self._host
        return f"{host}:{self.port}"

    # -- handlers ------------------------------------------------------------------------------
    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                # No deserializers: the handlers get the exact bytes that were received.
                "Submit": grpc.unary_unary_rpc_method_handler(self._submit),
                "Stream": grpc.stream_stream_rpc_method_handler(self._stream),
            },
        )

    def _tls_peer(self, context: grpc.ServicerContext) -> Administration | None:
        """The administration the client's TLS certificate proves (None in plaintext mode).

        The intermediates the client sent in the handshake go to the trust store with the leaf,
        so a partner whose PKI issues TLS certificates from an intermediate CA is recognised.
        """
        if self._tls is None:
            return None
        auth = context.auth_context()
        pems = auth.get("x509_pem_cert")
        if not pems:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "TRUST_UNTRUSTED: no client certificate")
        try:
            cert, intermediates = _peer_chain(
                bytes(pems[0]), b"".join(auth.get("x509_pem_cert_chain") or ())
            )
            peer: Administration = self.node.trust.administration_of_tls_peer(
                cert, self.node.clock(), intermediates
            )
        except GatewayError as error:
            log.info("TLS peer refused: %s", error)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{error.code}: {error.message}")
        except ValueError as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"TRUST_UNTRUSTED: {exc}")
        return peer

    def _submit(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        peer = self._tls_peer(context)
        assert self._intake is not None  # started before the server takes calls
        return _receipts_or_abort(self._intake.submit([raw], peer), context)[0]

    def _stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        peer = self._tls_peer(context)
        assert self._intake is not None
        refusal = self._streams.take(peer, peer.value if peer is not None else "this client")
        if refusal:
            log.warning("stream refused: %s", refusal)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{TRN_BUSY}: {refusal}")
        if not context.add_callback(lambda: self._streams.give(peer)):
            self._streams.give(peer)  # the call has already ended
        return _StreamCall(
            self._intake,
            peer,
            requests,
            context,
            self._stream_window,
            self._stream_limits,
            self._stream_budget,
            self._stream_idle_seconds,
        ).run()

    @property
    def open_streams(self) -> int:
        """Stream calls open now (operations, tests)."""
        return self._streams.open_count()

    @property
    def stream_bytes_held(self) -> int:
        """Envelope bytes read from streams and not yet answered."""
        return self._stream_budget.held

    # -- extra services (e.g. gnc.v1.Inquiry, transport.inquiry) -------------------------------
    def add_service(self, handler: grpc.GenericRpcHandler) -> None:
        """Serve another service on this server's port and mutual TLS; call before start()."""
        self._server.add_generic_rpc_handlers((handler,))

    def tls_peer(self, context: grpc.ServicerContext) -> Administration | None:
        """The administration the caller's TLS certificate proves (aborts the call if none)."""
        return self._tls_peer(context)
