"""A link to one partner, in the binding its configuration names: send an envelope, get a
receipt whose signature, signer and subject were checked."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.config import GatewayConfig
from gateway.envelope.opened import Binding
from gateway.envelope.receipts import Receipt
from gateway.model.codes import Administration
from gateway.node import VerifiedReceipt, message_id_of, verify_partner_receipt
from gateway.trust.store import TrustStore


class _Submitter(Protocol):
    def submit(self, raw: bytes) -> bytes: ...
    def close(self) -> None: ...


@dataclass
class PartnerLink:
    partner: Administration
    binding: Binding
    endpoint: str
    trust: TrustStore
    client: _Submitter
    # A gRPC stream of envelopes ends, answered or not, within this many seconds plus
    # `stream_seconds_per_mib` per MiB sent: a partner that takes envelopes and never answers
    # fails the pass (a transient error, retried) instead of holding the delivery worker, and
    # every other partner behind it, for ever.
    stream_base_seconds: float = 30.0
    stream_seconds_per_mib: float = 1.0

    def stream_deadline(self, raw_envelopes: Sequence[bytes]) -> float:
        sent = sum(len(raw) for raw in raw_envelopes)
        return self.stream_base_seconds + self.stream_seconds_per_mib * sent / (1 << 20)

    def deliver(self, raw_envelope: bytes) -> VerifiedReceipt:
        """Send one sealed envelope and check the receipt that comes back."""
        answer = self.client.submit(raw_envelope)
        return verify_partner_receipt(
            self.binding,
            answer,
            partner=self.partner,
            trust=self.trust,
            message_id=message_id_of(self.binding, raw_envelope),
            sent=raw_envelope,
        )

    def deliver_many(self, raw_envelopes: Sequence[bytes]) -> Iterator[VerifiedReceipt]:
        """Send several sealed envelopes and yield each one's checked receipt, in order.

        Over gRPC they share one stream call; over XML they go one request each. A failure
        (transport, or a receipt that does not check) is raised where it happens: the receipts
        yielded before it stand, the envelopes after it have no answer.
        """
        if self.binding is Binding.PROTOBUF:
            from gateway.transport.grpc_client import GrpcPartnerClient, PartnerExchange

            if isinstance(self.client, GrpcPartnerClient):
                exchange = PartnerExchange(self.client, partner=self.partner, trust=self.trust)
                timeout = self.stream_deadline(raw_envelopes)
                yield from exchange.deliver_stream(raw_envelopes, timeout=timeout)
                return
        for raw in raw_envelopes:
            yield self.deliver(raw)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PartnerLink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_link(config: GatewayConfig, partner: Administration) -> PartnerLink:
    settings = config.partner(partner)
    tls = config.client_tls(partner)
    client: _Submitter
    binding = settings.envelope_binding
    if binding is Binding.XML:
        from gateway.transport.xml_http import XmlPartnerClient

        client = XmlPartnerClient(settings.endpoint, tls=tls)
    else:
        from gateway.transport.grpc_client import GrpcPartnerClient

        client = GrpcPartnerClient(settings.endpoint, tls=tls)
    return PartnerLink(partner, binding, settings.endpoint, config.trust, client)


__all__ = ["PartnerLink", "Receipt", "VerifiedReceipt", "open_link"]
