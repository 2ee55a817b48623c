"""What the delivery worker reports once a pass's settlements have committed: counts and log lines.

Called after the commit, not inside the units of work, so a settlement that was rolled back
(its unit refused, or the whole commit failed) is neither counted nor logged as done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway.envelope.intake import header_unverified
from gateway.errors import GatewayError
from gateway.ops.logs import log_fields
from gateway.ops.metrics import GatewayMetrics, SendOutcome
from gateway.store.outbox import OutboundItem

log = logging.getLogger("gateway.delivery")


class SettledPass(Protocol):
    """services.delivery.DeliveryReport, as read here."""

    delivered: list[str]
    retrying: list[str]
    dead: list[str]
    codes: dict[str, str]


def correlation_id_of(item: OutboundItem) -> str:
    """The correlation id in one of our own sealed envelopes ("" when it has no envelope)."""
    if not item.envelope:
        return ""
    try:
        return header_unverified(item.envelope, item.binding).correlation_id
    except GatewayError:
        return ""


def item_fields(item: OutboundItem, error_code: str = "") -> dict[str, str]:
    """`extra=` for a log line about a queued message."""
    return log_fields(
        message_id=item.message_id,
        correlation_id=correlation_id_of(item),
        partner=item.partner.value,
        utility_block=item.utility_block.value,
        message_type=item.message_type,
        error_code=error_code,
    )


def observe_settled(
    metrics: GatewayMetrics | None,
    report: SettledPass,
    items: Sequence[OutboundItem],
    outcomes: Sequence[object],
    commit_started: float,
) -> None:
    """Count and log each of `items` whose settlement committed (`outcomes`: write_each's
    answer per item, a GatewayError where its unit was rolled back); `commit_started`: the
    perf_counter() taken before the commit."""
    if metrics is not None:
        metrics.committed("outbox", commit_started)
    delivered, dead = set(report.delivered), set(report.dead)
    retrying = set(report.retrying)
    codes: Mapping[str, str] = report.codes
    info = log.isEnabledFor(logging.INFO)
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, GatewayError):
            continue
        message_id, partner = item.message_id, item.partner.value
        code = codes.get(message_id, "")
        if message_id in delivered:
            result = SendOutcome.DELIVERED
            if info:
                log.info(
                    "delivered %s %s %s to %s",
                    item.utility_block.value,
                    item.message_type,
                    message_id,
                    partner,
                    extra=item_fields(item),
                )
        elif message_id in retrying:
            result = SendOutcome.FAILED_ATTEMPT
            if info:
                log.info(
                    "delivery of %s to %s failed (attempt %d, %s): retrying later",
                    message_id,
                    partner,
                    item.attempts + 1,
                    code,
                    extra=item_fields(item, code),
                )
        elif message_id in dead:
            result = SendOutcome.DEAD_LETTERED  # the worker logged it (a warning) when settling
        else:
            continue
        if metrics is not None:
            metrics.sent_one(partner, item.utility_block.value, result, code)


__all__ = ["SettledPass", "correlation_id_of", "item_fields", "observe_settled"]
