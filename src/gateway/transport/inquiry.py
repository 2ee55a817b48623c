"""Request/answer exchanges on the wire (the UB1 online AEO query).

gRPC: ``gnc.v1.Inquiry/Ask`` (proto/gnc/v1/inquiry.proto), a signed protobuf envelope in, a
signed protobuf envelope out, served on the gateway's gRPC port and mutual TLS. XML: ``POST
/gnc/v1/inquiries`` on the XML listener, a signed XML envelope in, the signed XML answer out
(200, application/xml). As on the envelope endpoints, the administration the client's TLS
certificate proves is handed to the responder, which refuses a request whose signed sender is
another one.

An answer is given only once it is in the responder's message log: when the log cannot be
written (DeliveryError), gRPC answers UNAVAILABLE and XML a 503 problem, both with the
DeliveryError's code (the asker may retry).

What answers is a *responder*: ``respond(raw, binding, tls_peer) -> signed answer bytes``
(services.aeo.AeoQueryResponder.respond). Bytes move unchanged both ways: the asker verifies
the answer's signature over exactly what it received.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from typing import Protocol

import grpc

import gateway._proto.gnc.v1.inquiry_pb2 as inquiry_pb2
from gateway.envelope.opened import Binding
from gateway.errors import ConfigError, DeliveryError, GatewayError
from gateway.model.codes import Administration
from gateway.transport.grpc_client import _transport_error
from gateway.transport.grpc_server import GrpcGatewayServer
from gateway.transport.tls import ClientTls, channel_credentials
from gateway.transport.xml_http import INQUIRIES_PATH, XmlHttpServer, XmlPartnerClient

__all__ = [
    "ASK_METHOD",
    "INQUIRIES_PATH",
    "INQUIRY_SERVICE",
    "GrpcInquiryClient",
    "InquiryClient",
    "Responder",
    "XmlInquiryClient",
    "inquiry_url",
    "open_inquiry_client",
    "serve_inquiries",
]

log = logging.getLogger("gateway.transport.inquiry")

INQUIRY_SERVICE: str = inquiry_pb2.DESCRIPTOR.services_by_name["Inquiry"].full_name
ASK_METHOD = f"/{INQUIRY_SERVICE}/Ask"
MAX_ANSWER_BYTES = 4 * 1024 * 1024

Responder = Callable[[bytes, Binding, Administration | None], bytes]


class InquiryClient(Protocol):
    def ask(self, raw: bytes) -> bytes: ...
    def close(self) -> None: ...


def _grpc_handler(server: GrpcGatewayServer, respond: Responder) -> grpc.GenericRpcHandler:
    def ask(raw: bytes, context: grpc.ServicerContext) -> bytes:
        peer = server.tls_peer(context)
        try:
            return respond(raw, Binding.PROTOBUF, peer)
        except DeliveryError as error:  # the answer could not be logged: none is given
            log.error("an inquiry from %s was not answered: %s", peer, error)
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"{error.code}: the query was not answered: {error.message}",
            )
            raise  # abort raises; this keeps type checkers informed
        except GatewayError as error:  # no receiver could be named: nothing to sign for
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{error.code}: {error.message}")
            raise  # abort raises; this keeps type checkers informed
        except Exception:
            log.exception("answering an inquiry failed")
            context.abort(grpc.StatusCode.INTERNAL, "GNC_INTERNAL: the query was not answered")
            raise

    # No (de)serializers: the responder gets, and the caller receives, the exact bytes.
    return grpc.method_handlers_generic_handler(
        INQUIRY_SERVICE, {"Ask": grpc.unary_unary_rpc_method_handler(ask)}
    )


def serve_inquiries(
    respond: Responder,
    *,
    grpc_server: GrpcGatewayServer | None = None,
    xml_server: XmlHttpServer | None = None,
) -> None:
    """Answer inquiries on these listeners (register on the gRPC server before it starts)."""
    if grpc_server is not None:
        grpc_server.add_service(_grpc_handler(grpc_server, respond))
    if xml_server is not None:
        xml_server.inquiry = respond


class GrpcInquiryClient:
    """Asks one partner's gnc.v1.Inquiry over mutual TLS; bytes out, bytes back unchanged."""

    def __init__(self, target: str, *, tls: ClientTls, timeout: float = 30.0) -> None:
        options: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", MAX_ANSWER_BYTES),
            ("grpc.max_send_message_length", -1),
        ]
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        self.target = target
        self._timeout = timeout
        self._channel = grpc.secure_channel(target, channel_credentials(tls), options=options)
        self._ask = self._channel.unary_unary(ASK_METHOD)

    def ask(self, raw: bytes) -> bytes:
        try:
            answer: bytes = self._ask(raw, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _transport_error(exc, self.target, "Inquiry/Ask") from None
        return answer

    def close(self) -> None:
        self._channel.close()


class XmlInquiryClient:
    """POSTs XML query envelopes to a partner's /gnc/v1/inquiries."""

    def __init__(self, url: str, *, tls: ClientTls, timeout: float = 30.0) -> None:
        self._client = XmlPartnerClient(
            url, tls=tls, timeout=timeout, max_receipt_bytes=MAX_ANSWER_BYTES
        )

    def ask(self, raw: bytes) -> bytes:
        return self._client.submit(raw)

    def close(self) -> None:
        self._client.close()


def inquiry_url(envelopes_url: str) -> str:
    """The inquiries URL beside a partner's envelopes URL (same host and port)."""
    parts = urllib.parse.urlsplit(envelopes_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"{envelopes_url!r} is not an https:// URL", location="endpoint")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, INQUIRIES_PATH, "", ""))


def open_inquiry_client(
    binding: Binding, endpoint: str, tls: ClientTls, timeout: float = 30.0
) -> InquiryClient:
    """A client for the partner's inquiry endpoint in its binding (endpoint as configured)."""
    if binding is Binding.PROTOBUF:
        return GrpcInquiryClient(endpoint, tls=tls, timeout=timeout)
    return XmlInquiryClient(inquiry_url(endpoint), tls=tls, timeout=timeout)
