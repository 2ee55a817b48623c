"""The last step every Utility Block service takes to send: seal and queue, in the caller's
unit of work.

A service decides *whether* something may go to a partner (profiles, lanes, handling rules) and
what it records about it; sealing the payload and queuing the envelope in the outbox is the same
for all, and happens inside the caller's transaction, so what was recorded as sent and what the
outbox will deliver can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.errors import GatewayError
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.header import utc_now
from gateway.node import seal_envelope
from gateway.store.database import Database
from gateway.store.outbox import OutboundMessage, SqliteOutbox
from gateway.translate.ub3_exchange import PayloadForm

__all__ = ["PartnerSettings", "SendingService", "form_for", "seal_and_queue"]


class PartnerSettings(Protocol):
    """What a service keeps per partner: at least whom it is for."""

    @property
    def administration(self) -> Administration: ...


class _Store(Protocol):
    @property
    def database(self) -> Database: ...


P = TypeVar("P", bound=PartnerSettings)
S = TypeVar("S", bound=_Store)


class SendingService(Generic[P, S]):
    """The frame of a Utility Block service: its store and outbox (one database, so what is
    recorded as sent and what is queued commit together), its signing identity, its partners
    and its clock. Subclasses say how an unknown partner is refused (``_unknown_partner``)."""

    def __init__(
        self,
        *,
        store: S,
        outbox: SqliteOutbox,
        identity: SigningIdentity,
        partners: Sequence[P],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if store.database is not outbox.database:
            raise ValueError(f"the {type(self).__name__} store and outbox must share one database")
        self.store = store
        self.outbox = outbox
        self.identity = identity
        self.own = identity.administration
        self.partners = {p.administration: p for p in partners}
        self.clock = clock

    def partner(self, code: Administration) -> P:
        found = self.partners.get(code)
        if found is None:
            known = ", ".join(sorted(p.value for p in self.partners)) or "none"
            raise self._unknown_partner(code, known)
        return found

    def _unknown_partner(self, code: Administration, known: str) -> GatewayError:
        raise NotImplementedError


def form_for(binding: Binding) -> PayloadForm:
    """The payload form a partner's envelope binding carries (protobuf in protobuf, XML in XML)."""
    return PayloadForm.PROTOBUF if binding is Binding.PROTOBUF else PayloadForm.XML


def seal_and_queue(
    conn: Any,
    outbox: SqliteOutbox,
    identity: SigningIdentity,
    *,
    partner: Administration,
    binding: Binding,
    utility_block: UtilityBlock,
    message_type: str,
    payload: bytes,
    content_type: str,
    schema_version: str,
    ordering_key: str,
    now: datetime,
    correlation_id: str | None = None,
    handling_label: HandlingLabel = HandlingLabel.LIMITED,
    before_queue: Callable[[str], None] | None = None,
) -> str:
    """Seal `payload` for `partner` and queue it on `conn`; the new message id.

    `before_queue(message_id)` runs first, in the same unit of work: the service's own record of
    what it sends (its refusal leaves nothing queued)."""
    header = new_header(
        payload=payload,
        utility_block=utility_block,
        message_type=message_type,
        sender=identity.administration,
        receiver=partner,
        payload_content_type=content_type,
        schema_version=schema_version,
        handling_label=handling_label,
        correlation_id=correlation_id,
    )
    raw = seal_envelope(binding, header, payload, identity)
    if before_queue is not None:
        before_queue(header.message_id)
    outbox.enqueue(
        conn,
        OutboundMessage(
            message_id=header.message_id,
            partner=partner,
            binding=binding,
            ordering_key=ordering_key,
            utility_block=utility_block,
            message_type=message_type,
            envelope=raw,
        ),
        now=now,
    )
    return header.message_id
