"""The gRPC client a gateway uses to deliver envelopes to a partner, and to check its receipts.

`GrpcPartnerClient` moves bytes: a sealed SignedEnvelope out, the partner's SignedReceipt back,
one call each (`submit`) or many over one bidirectional stream (`stream`). `PartnerExchange`
adds what a sender must check before it may treat a message as delivered: the receipt's
signature, that its signer is trusted for the partner administration, and that it names the
message and the SHA-256 of exactly the bytes sent.

Failures of the transport raise TransportError: TRN_UNAVAILABLE when the partner could not be
reached or did not answer in time (retry later), TRN_PROTOCOL when it answered with a gRPC error
instead of a receipt (e.g. RESOURCE_EXHAUSTED for a message over its hard size cap).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.protobuf_binding import decode
from gateway.envelope.receipts import Receipt, check_receipt_matches, open_receipt
from gateway.errors import (
    RECEIPT_MISMATCH,
    TRN_PROTOCOL,
    ConfigError,
    DeliveryError,
    EnvelopeError,
    TransportError,
)
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.transport.grpc_server import STREAM_METHOD, SUBMIT_METHOD
from gateway.transport.tls import ClientTls, channel_credentials, is_loopback, split_host_port
from gateway.trust.store import TrustedSigner, TrustStore

MAX_RECEIPT_BYTES = 1024 * 1024
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
        self.target = target
        channel_options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_receipt_bytes),
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
        self._stream = self._channel.stream_stream(STREAM_METHOD)

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

        The envelopes are consumed lazily by a grpc thread. Stopping the iteration early
        cancels the call (the partner still answers what it already stored, on a resend).
        """
        call = self._stream(iter(raw_envelopes), timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise _transport_error(exc, self.target, "Stream") from None
        finally:
            call.cancel()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcPartnerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class VerifiedReceipt:
    """A partner receipt whose signature, signer and subject were checked."""

    receipt: Receipt
    signer: TrustedSigner
    raw: bytes

    @property
    def accepted(self) -> bool:
        return self.receipt.accepted


def message_id_of(raw_envelope: bytes) -> str:
    """The message id in one of our own sealed protobuf envelopes (read, not verified)."""
    envelope = decode(raw_envelope)
    header = pb.EnvelopeHeader()
    try:
        header.ParseFromString(envelope.header)
    except DecodeError as exc:
        raise EnvelopeError(
            f"envelope header cannot be decoded: {exc}", location="header"
        ) from None
    return header.message_id


def verify_receipt(
    raw_receipt: bytes,
    *,
    partner: Administration,
    trust: TrustStore,
    message_id: str,
    sent: bytes,
    now: datetime,
) -> VerifiedReceipt:
    """Check a receipt for `sent` from `partner`; raise a GatewayError naming what is wrong.

    An accepted receipt must name `message_id`; a rejection may leave the id empty (the partner
    could not trust the header), but must still name the SHA-256 of exactly the bytes sent.
    """
    opened = open_receipt(raw_receipt)
    chain = tuple(c for c in opened.signer_chain if isinstance(c, x509.Certificate))
    signer = trust.check_signer(partner, chain, now)
    receipt = opened.receipt
    if receipt.issuer != partner:
        raise DeliveryError(
            f"receipt issued by {receipt.issuer.value}, expected {partner.value}",
            code=RECEIPT_MISMATCH,
            location="receipt.issuer",
        )
    expected_id = message_id
    if not receipt.accepted and receipt.message_id == "":
        expected_id = ""
    check_receipt_matches(receipt, expected_id, sent)
    return VerifiedReceipt(receipt, signer, raw_receipt)


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

        def outgoing() -> Iterator[bytes]:
            for raw in raw_envelopes:
                message_id = message_id_of(raw)
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

    def _verify(self, answer: bytes, message_id: str, raw: bytes) -> VerifiedReceipt:
        return verify_receipt(
            answer,
            partner=self.partner,
            trust=self.trust,
            message_id=message_id,
            sent=raw,
            now=self.clock(),
        )
