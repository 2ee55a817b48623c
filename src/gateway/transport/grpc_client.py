"""The gRPC client a gateway uses to deliver envelopes to a partner, and to check its receipts.

`GrpcPartnerClient` moves bytes: a sealed SignedEnvelope out, the partner's SignedReceipt back,
one call each (`submit`) or many over one bidirectional stream (`stream`), which carries the
envelopes in batches (EnvelopeBatch: each element the exact bytes of one sealed envelope) and
hands back one receipt per envelope, in order. `PartnerExchange`
adds what a sender must check before it may treat a message as delivered (the shared
`node.verify_partner_receipt`): the receipt's signature, that its signer is trusted for the
partner administration, and that it names the message and the SHA-256 of exactly the bytes sent.

Failures of the transport raise TransportError: TRN_UNAVAILABLE when the partner could not be
reached or did not answer in time (retry later), TRN_PROTOCOL when it answered with a gRPC error
instead of a receipt (e.g. RESOURCE_EXHAUSTED for a message over its hard size cap).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway import node
from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.opened import Binding
from gateway.errors import TRN_PROTOCOL, ConfigError, GatewayError, TransportError
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.node import VerifiedReceipt
from gateway.transport.grpc_server import STREAM_METHOD, SUBMIT_METHOD
from gateway.transport.tls import ClientTls, channel_credentials, is_loopback, split_host_port
from gateway.trust.store import TrustStore

MAX_RECEIPT_BYTES = 1024 * 1024
STREAM_BATCH = 64  # envelopes per EnvelopeBatch (the server's default limit is 256)
STREAM_BATCH_BYTES = 4 * 1024 * 1024  # envelope bytes per EnvelopeBatch (server: 8 MiB)
_UNAVAILABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def _transport_error(exc: grpc.RpcError, target: str, what: str) -> TransportError:
    status = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    name = status.name if status is not None else "UNKNOWN"
    message = f"{what} to {target} failed: gRPC {name}: {details}"
    if status in _UNAVAILABLE:
        return TransportError(message, location=target)
    return TransportError(message, code=TRN_PROTOCOL, location=target)


class GrpcPartnerClient:
    """A channel to one partner's gnc.v1.Exchange endpoint (mutual TLS unless told otherwise)."""

    def __init__(
        self,
        target: str,
        *,
        tls: ClientTls | None = None,
        insecure: bool = False,
        max_receipt_bytes: int = MAX_RECEIPT_BYTES,
        options: Iterable[tuple[str, Any]] = (),
        stream_batch: int = STREAM_BATCH,
        stream_batch_bytes: int = STREAM_BATCH_BYTES,
    ) -> None:
        host, _ = split_host_port(target)
        if tls is None and not insecure:
            raise ConfigError(
                f"a gRPC client to {target} needs TLS material (mutual TLS); plaintext must be "
                "asked for explicitly",
                location="grpc.tls",
            )
        if tls is not None and insecure:
            raise ConfigError("choose TLS or insecure, not both", location="grpc.tls")
        if insecure and not is_loopback(host):
            raise ConfigError(
                f"plaintext gRPC is allowed to a loopback address only, not {host}",
                location="grpc.target",
            )
        if stream_batch < 1 or stream_batch_bytes < 1:
            raise ConfigError("stream batch limits must be positive", location="grpc")
        self.target = target
        self.stream_batch = stream_batch
        self.stream_batch_bytes = stream_batch_bytes
        # A ReceiptBatch holds up to `stream_batch` receipts, each within max_receipt_bytes.
        max_answer = max_receipt_bytes * stream_batch
        channel_options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_answer),
            ("grpc.max_send_message_length", -1),
            *options,
        ]
        if tls is not None and tls.server_name:
            channel_options.append(("grpc.ssl_target_name_override", tls.server_name))
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.secure_channel(
                target, channel_credentials(tls), options=channel_options
            )
        # No serializers: bytes go out exactly as sealed, receipts come back exactly as signed.
        self._submit = self._channel.unary_unary(SUBMIT_METHOD)
        self._max_receipt_bytes = max_receipt_bytes
        self._stream = self._channel.stream_stream(
            STREAM_METHOD, request_serializer=_serialize_batch
        )

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Connect (and complete the TLS handshake) now rather than on the first call."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise TransportError(
                f"no connection to {self.target} within {timeout} s", location=self.target
            ) from None

    def submit(self, raw_envelope: bytes, timeout: float | None = 30.0) -> bytes:
        """Send one sealed envelope; return the partner's signed receipt bytes (unchecked)."""
        try:
            answer: bytes = self._submit(raw_envelope, timeout=timeout)
        except grpc.RpcError as exc:
            raise _transport_error(exc, self.target, "Submit") from None
        return answer

    def stream(
        self, raw_envelopes: Iterable[bytes], timeout: float | None = None
    ) -> Generator[bytes, None, None]:
        """Send envelopes over one stream; yield one receipt per envelope, in the same order.

        The envelopes are consumed lazily by a grpc thread and sent in batches of up to
        `stream_batch` envelopes and `stream_batch_bytes` bytes (an envelope larger than that
        travels alone); a batch is sent once it is full or the iterable is exhausted, so a
        source that waits for receipts before yielding more needs `stream_batch=1`. Stopping
        the iteration early cancels the call (the partner still answers what it already
        stored, on a resend).
        """
        sizes: deque[int] = deque()
        lock = threading.Lock()

        def batches() -> Iterator[list[bytes]]:
            batch: list[bytes] = []
            size = 0
            for raw in raw_envelopes:
                if batch and (
                    len(batch) >= self.stream_batch or size + len(raw) > self.stream_batch_bytes
                ):
                    with lock:
                        sizes.append(len(batch))
                    yield batch
                    batch, size = [], 0
                batch.append(raw)
                size += len(raw)
            if batch:
                with lock:
                    sizes.append(len(batch))
                yield batch

        call = self._stream(batches(), timeout=timeout)
        try:
            for answer in call:
                receipts = self._read_receipts(answer)
                with lock:
                    expected = sizes.popleft() if sizes else 0
                if len(receipts) != expected:
                    raise TransportError(
                        f"the partner answered a batch of {expected} envelope(s) with "
                        f"{len(receipts)} receipt(s)",
                        code=TRN_PROTOCOL,
                        location=self.target,
                    )
                yield from receipts
        except grpc.RpcError as exc:
            raise _transport_error(exc, self.target, "Stream") from None
        finally:
            call.cancel()

    def _read_receipts(self, answer: bytes) -> list[bytes]:
        batch = pb.ReceiptBatch()
        try:
            batch.ParseFromString(answer)
        except DecodeError as exc:
            raise TransportError(
                f"the partner's answer is not a ReceiptBatch: {exc}",
                code=TRN_PROTOCOL,
                location=self.target,
            ) from None
        receipts = list(batch.receipts)
        if any(len(receipt) > self._max_receipt_bytes for receipt in receipts):
            raise TransportError(
                f"a receipt exceeds {self._max_receipt_bytes} bytes",
                code=TRN_PROTOCOL,
                location=self.target,
            )
        return receipts

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcPartnerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _serialize_batch(envelopes: list[bytes]) -> bytes:
    return pb.EnvelopeBatch(envelopes=envelopes).SerializeToString()


def message_id_of(raw_envelope: bytes) -> str:
    """The message id in one of our own sealed protobuf envelopes (read, not verified)."""
    return node.message_id_of(Binding.PROTOBUF, raw_envelope)


def verify_receipt(
    raw_receipt: bytes,
    *,
    partner: Administration,
    trust: TrustStore,
    message_id: str,
    sent: bytes,
    now: datetime,
) -> VerifiedReceipt:
    """Check a protobuf receipt for `sent` from `partner` (node.verify_partner_receipt)."""
    return node.verify_partner_receipt(
        Binding.PROTOBUF,
        raw_receipt,
        partner=partner,
        trust=trust,
        message_id=message_id,
        sent=sent,
        now=now,
    )


class PartnerExchange:
    """Deliver to one partner and accept only receipts the partner verifiably signed."""

    def __init__(
        self,
        client: GrpcPartnerClient,
        *,
        partner: Administration,
        trust: TrustStore,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.client = client
        self.partner = partner
        self.trust = trust
        self.clock = clock

    def deliver(self, raw_envelope: bytes, *, timeout: float | None = 30.0) -> VerifiedReceipt:
        message_id = message_id_of(raw_envelope)
        answer = self.client.submit(raw_envelope, timeout=timeout)
        return self._verify(answer, message_id, raw_envelope)

    def deliver_stream(
        self, raw_envelopes: Iterable[bytes], *, timeout: float | None = None
    ) -> Generator[VerifiedReceipt, None, None]:
        """Stream the envelopes; yield each one's verified receipt, in order."""
        sent: deque[tuple[str, bytes]] = deque()
        lock = threading.Lock()
        refused: list[GatewayError] = []

        def outgoing() -> Iterator[bytes]:
            # Runs on a grpc thread: an error here would only show as a cancelled call, so it
            # ends the stream cleanly and is raised once the answers to what was sent are in.
            for raw in raw_envelopes:
                try:
                    message_id = message_id_of(raw)
                except GatewayError as error:
                    refused.append(error)
                    return
                with lock:
                    sent.append((message_id, raw))
                yield raw

        for answer in self.client.stream(outgoing(), timeout=timeout):
            with lock:
                if not sent:
                    raise TransportError(
                        "the partner sent more receipts than envelopes",
                        code=TRN_PROTOCOL,
                        location=self.client.target,
                    )
                message_id, raw = sent.popleft()
            yield self._verify(answer, message_id, raw)
        if sent:
            raise TransportError(
                f"the stream ended with {len(sent)} envelope(s) unanswered",
                code=TRN_PROTOCOL,
                location=self.client.target,
            )
        if refused:
            raise refused[0]

    def _verify(self, answer: bytes, message_id: str, raw: bytes) -> VerifiedReceipt:
        return verify_receipt(
            answer,
            partner=self.partner,
            trust=self.trust,
            message_id=message_id,
            sent=raw,
            now=self.clock(),
        )


__all__ = [
    "GrpcPartnerClient",
    "PartnerExchange",
    "VerifiedReceipt",
    "message_id_of",
    "verify_receipt",
]
