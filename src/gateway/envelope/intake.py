"""The acceptance rules every inbound envelope passes, in either binding. No I/O.

Order matters: the signature is checked over the exact bytes first, then trust in the signer
for the administration the signed header names, then addressing and freshness. Nothing about a
message is believed before its signature verifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.envelope import protobuf_binding
from gateway.envelope.opened import Binding, OpenedEnvelope
from gateway.errors import CLOCK_SKEW, WRONG_RECEIVER, EnvelopeError
from gateway.model.codes import Administration
from gateway.model.header import EnvelopeHeader
from gateway.trust.store import TrustedSigner, TrustStore


@dataclass(frozen=True)
class IntakeLimits:
    max_envelope_bytes: int = 8 * 1024 * 1024
    clock_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)  # older messages are replays unless re-sent afresh
    # Per sender, from its partner profile: tolerated clock skew, and the duplicate window
    # (message ids are remembered for ever; older created-at times are refused as replays).
    clock_skew_by_sender: Mapping[Administration, timedelta] = field(default_factory=dict)
    max_age_by_sender: Mapping[Administration, timedelta] = field(default_factory=dict)

    def skew_for(self, sender: Administration) -> timedelta:
        return self.clock_skew_by_sender.get(sender, self.clock_skew)

    def max_age_for(self, sender: Administration) -> timedelta:
        return self.max_age_by_sender.get(sender, self.max_age)


DEFAULT_LIMITS = IntakeLimits()


@dataclass(frozen=True)
class Accepted:
    envelope: OpenedEnvelope
    signer: TrustedSigner


def open_any(raw: bytes, binding: Binding, limits: IntakeLimits) -> OpenedEnvelope:
    if binding is Binding.PROTOBUF:
        return protobuf_binding.open_envelope(raw, max_bytes=limits.max_envelope_bytes)
    from gateway.envelope import xml_binding

    return xml_binding.open_envelope(raw, max_bytes=limits.max_envelope_bytes)


def header_unverified(raw: bytes, binding: Binding) -> EnvelopeHeader:
    """The header an envelope carries, read WITHOUT checking its signature.

    Only for envelopes we sealed ourselves (our own bookkeeping), or to show, marked as not
    verified, what a refused envelope claims (``gncgw inspect``); never to believe anything
    received."""
    if binding is Binding.PROTOBUF:
        return protobuf_binding.read_header_unverified(raw)
    from gateway.envelope import xml_binding

    return xml_binding.read_header_unverified(raw)


def check_envelope(
    raw: bytes,
    binding: Binding,
    *,
    trust: TrustStore,
    own: Administration,
    now: datetime,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> Accepted:
    """Accept or raise a GatewayError naming the rule that refused the envelope."""
    opened = open_any(raw, binding, limits)
    header = opened.header
    signer = trust.check_signer(header.sender, opened.signer_chain, now)
    if header.receiver != own:
        raise EnvelopeError(
            f"addressed to {header.receiver.value}, this gateway is {own.value}",
            code=WRONG_RECEIVER,
            location="header.receiver",
        )
    skew = limits.skew_for(header.sender)
    if header.created_at > now + skew:
        raise EnvelopeError(
            f"created_at {header.created_at.isoformat()} is in the future beyond {skew} "
            f"(tolerance for {header.sender.value})",
            code=CLOCK_SKEW,
            location="header.created_at",
        )
    max_age = limits.max_age_for(header.sender)
    if header.created_at < now - max_age:
        raise EnvelopeError(
            f"created_at {header.created_at.isoformat()} is older than {max_age} "
            f"(duplicate window for {header.sender.value})",
            code=CLOCK_SKEW,
            location="header.created_at",
        )
    return Accepted(opened, signer)
