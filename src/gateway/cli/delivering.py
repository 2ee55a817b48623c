"""Deliver one queued message now, from a CLI command, and show the partner's verified receipt.

The UB2 and UB3 `send --deliver` style commands queue through their service (so what is sent is
what the outbox holds, in order, with its retries) and then run the delivery worker for that
partner until this message is settled. `gncgw serve` may settle it first; then the receipt it
stored is checked again, as on delivery, before it is shown.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import RECEIPT_MISMATCH, DeliveryError
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.node import GatewayNode, VerifiedReceipt, open_receipt
from gateway.services.delivery import DeliveryWorker
from gateway.store.outbox import OutboundItem, OutboundState, SqliteOutbox
from gateway.transport.links import PartnerLink, open_link


@dataclass
class _RecordingLink(PartnerLink):
    """A partner link that keeps each verified receipt, so the CLI can show the one for its
    message after the delivery worker settled it (the worker verifies and stores it)."""

    seen: dict[str, VerifiedReceipt] = field(default_factory=dict)

    def deliver_many(self, raw_envelopes: Any) -> Any:
        for verified in super().deliver_many(raw_envelopes):
            self.seen[verified.receipt.message_id] = verified
            yield verified


def _stored_receipt(
    config: GatewayConfig, outbox: SqliteOutbox, item: OutboundItem
) -> VerifiedReceipt | None:
    """The receipt stored with a message another worker delivered, checked as on delivery:
    signature, signer trusted for the partner, issuer, message id, and the SHA-256 of the
    envelope sent."""
    raw = outbox.receipt_for(item.message_id)
    if raw is None:
        return None
    opened = open_receipt(item.binding, raw)
    signer = config.trust.check_signer(item.partner, opened.signer_chain, utc_now())
    receipt = opened.receipt
    if (
        receipt.issuer != item.partner
        or receipt.message_id != item.message_id
        or receipt.received_sha256 != item.envelope_sha256
    ):
        raise DeliveryError(
            f"the receipt stored for {item.message_id} does not answer it",
            code=RECEIPT_MISMATCH,
            location=f"outbox:{item.message_id}",
        )
    return VerifiedReceipt(receipt, signer, raw)


def deliver_now(
    config: GatewayConfig,
    node: GatewayNode,
    outbox: SqliteOutbox,
    partner: Administration,
    message_id: str,
    timeout: float = 30.0,
) -> int:
    """Run the delivery worker for `partner` until `message_id` is settled; print the partner's
    verified receipt. A transient failure leaves it queued for gncgw serve (exit status 1)."""
    from gateway.cli.send import describe_receipt

    seen: dict[str, VerifiedReceipt] = {}

    def link(code: Administration) -> PartnerLink:
        opened = open_link(config, code)
        print(f"sending {message_id} to {code.value} over {opened.binding.value} "
              f"({opened.endpoint})")  # fmt: skip
        return _RecordingLink(
            opened.partner, opened.binding, opened.endpoint, opened.trust, opened.client, seen=seen
        )

    settings = config.partner(partner)
    worker = DeliveryWorker(
        outbox,
        link,
        partners=[partner],
        retry={partner: settings.profile.retry} if settings.profile else None,
        message_log=node.message_log,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            report = worker.run_once(partner)
            item = outbox.get(message_id)
            verified = seen.get(message_id)
            if item is not None and item.state is OutboundState.DELIVERED:
                verified = verified or _stored_receipt(config, outbox, item)
                print(describe_receipt(verified) if verified else "delivered (receipt verified)")
                return 0
            if item is not None and item.state is OutboundState.DEAD:
                if verified is not None:
                    print(describe_receipt(verified))
                print(f"error: {item.last_error_code}: {partner.value} did not take "
                      f"{item.message_id}: {item.last_error}", file=sys.stderr)  # fmt: skip
                return 1
            if message_id in report.retrying:
                print(f"error: {report.codes.get(message_id, '')}: not delivered yet "
                      f"({item.last_error if item else ''}); it stays queued and gncgw serve "
                      "will keep trying", file=sys.stderr)  # fmt: skip
                return 1
            if time.monotonic() > deadline:
                print("error: not delivered yet; gncgw serve will keep trying", file=sys.stderr)
                return 1
            if not report.attempted:
                time.sleep(0.2)
    finally:
        worker.stop()
