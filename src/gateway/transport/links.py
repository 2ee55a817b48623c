"""A link to one partner, in the binding its configuration names: send an envelope, get a
receipt whose signature, signer and subject were checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.config import GatewayConfig, PartnerBinding
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
    if settings.binding is PartnerBinding.XML:
        from gateway.transport.xml_http import XmlPartnerClient

        client = XmlPartnerClient(settings.endpoint, tls=tls)
        binding = Binding.XML
    else:
        from gateway.transport.grpc_client import GrpcPartnerClient

        client = GrpcPartnerClient(settings.endpoint, tls=tls)
        binding = Binding.PROTOBUF
    return PartnerLink(partner, binding, settings.endpoint, config.trust, client)


__all__ = ["PartnerLink", "Receipt", "VerifiedReceipt", "open_link"]
