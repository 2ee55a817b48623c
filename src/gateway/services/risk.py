"""The UB3 application: risk information, feedback and IPR detention data, under handling rules.

Sending side (``RiskService``). Every outbound record goes through one gate, in this order:

1. the partner must have handling rules linked in the configuration (RISK_NO_AGREEMENT);
2. only the originator sends its records (RISK_NOT_ORIGINATOR: no onward sharing);
3. ``partners.handling.prepare_outbound``: the message must be agreed, the validity not over,
   the risk area and the label cleared, personal data allowed (or removed), and the fields the
   rules name removed;
4. only then is the record encoded, sealed (node.seal_envelope) and queued in the outbox, in ONE
   unit of work with its ``risk_sent`` row, so what was sent and what was queued agree.

A refusal at any step raises its RiskError after appending it, with the rule that refused it, to
``risk_refusals``: nothing was signed, nothing queued, nothing sent. Feedback must answer a
record this gateway received (RISK_UNKNOWN_REFERENCE otherwise) and goes to its originator.

Receiving side (``Ub3InboundHandler``, registered on the node by config.build_node): decodes the
payload (refusing malformed ones and unknown codes with their own codes), refuses an expired
record, a record whose sender is not its originator, an envelope labelled below its record, and
feedback on a reference this gateway never sent that partner; otherwise stores the record with
its label in the inbox transaction.

Reads of received records go through ``show`` / ``list_received``, which append the reader,
the time and the records to ``risk_access_log`` BEFORE returning them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.config import GatewayConfig, PartnerBinding
from gateway.envelope.intake import Accepted
from gateway.envelope.opened import Binding
from gateway.errors import (
    RISK_NO_AGREEMENT,
    RISK_NOT_ORIGINATOR,
    RISK_PAYLOAD_MALFORMED,
    RISK_UNKNOWN_REFERENCE,
    GatewayError,
    RiskError,
)
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import utc_now
from gateway.model.risk import Feedback, RiskInformation, RiskKind, UB3Record
from gateway.node import Apply, InboundHandler
from gateway.partners.handling import HandlingRules, prepare_outbound
from gateway.services.sending import SendingService, form_for, seal_and_queue
from gateway.store.database import Database
from gateway.store.outbox import SqliteOutbox
from gateway.store.risk_store import Received, RiskStore, Sent
from gateway.translate import ub3_exchange
from gateway.translate.crms_risk import parse_feedback_form, parse_form
from gateway.translate.ub3_exchange import CONTENT_TYPES

__all__ = [
    "RiskPartner",
    "RiskService",
    "SendResult",
    "Ub3InboundHandler",
    "ordering_key",
    "risk_partners",
    "service_for",
    "ub3_handlers",
]

log = logging.getLogger("gateway.services.risk")
SCHEMA_VERSION = "1.0"


def ordering_key(partner: Administration) -> str:
    """All UB3 traffic to one partner is delivered in the order queued (feedback after record)."""
    return f"ub3:{partner.value}"


@dataclass(frozen=True)
class RiskPartner:
    """A partner this gateway may send UB3 to: its handling rules and envelope binding."""

    rules: HandlingRules
    binding: Binding

    @property
    def administration(self) -> Administration:
        return self.rules.administration


@dataclass(frozen=True)
class SendResult:
    message_id: str
    partner: Administration
    record: UB3Record  # as sent, after the rules' removals
    removed: tuple[str, ...]


class RiskService(SendingService[RiskPartner, RiskStore]):
    """UB3 sending, feedback, outstanding feedback and logged reads on a node's store."""

    def _unknown_partner(self, code: Administration, known: str) -> GatewayError:
        return RiskError(
            f"no UB3 handling rules are configured for {code.value} (UB3 partners: {known}); "
            'link them with handling = "adapters/handling/<partner>.toml" under [[partners]]',
            code=RISK_NO_AGREEMENT,
            location="partners",
        )

    # -- sending ---------------------------------------------------------------------------------
    def send_form(
        self, data: bytes, to: Administration, *, actor: str, source: str = "<form>"
    ) -> SendResult:
        """A CRMS risk information / IPR detention / IPR statistics form to ``to``."""
        try:
            record = parse_form(data, source)
        except GatewayError as error:
            self._log_refusal(error, to, None, actor, source)
            raise
        return self.send(record, to, actor=actor, source=source)

    def send(
        self, record: UB3Record, to: Administration, *, actor: str, source: str = "<record>"
    ) -> SendResult:
        """Check ``record`` against ``to``'s handling rules, then seal and queue it (one unit)."""
        try:
            partner = self.partner(to)
            if not isinstance(record, Feedback) and record.originator is not self.own:
                raise RiskError(
                    f"{record.originator.value}/{record.reference} is {record.originator.value}'s "
                    f"record: {self.own.value} sends only its own risk information",
                    code=RISK_NOT_ORIGINATOR,
                    location="originator",
                )
            if isinstance(record, Feedback) and record.originator is not to:
                raise RiskError(
                    f"feedback on {record.originator.value}/{record.reference} goes to "
                    f"{record.originator.value}, not {to.value}",
                    code=RISK_NOT_ORIGINATOR,
                    location="originator",
                )
            now = self.clock()
            outbound = prepare_outbound(partner.rules, record, now.date())
            correlation = self._correlation(record)
            return self.store.database.write(
                lambda conn: self._queue(conn, partner, outbound.record, outbound.removed, now,
                                         correlation)
            )  # fmt: skip
        except GatewayError as error:
            self._log_refusal(error, to, record, actor, source)
            raise

    def send_feedback(
        self,
        reference: str,
        data: bytes,
        *,
        actor: str,
        originator: Administration | None = None,
        source: str = "<form>",
    ) -> SendResult:
        """Feedback (a CRMS feedback form) on a risk information record this gateway received."""
        try:
            held = self.store.received(
                reference=reference, originator=originator, kind=RiskKind.RISK_INFORMATION
            )
            if not held:
                raise RiskError(
                    f"no risk information {reference!r} was received here"
                    + (f" from {originator.value}" if originator else ""),
                    code=RISK_UNKNOWN_REFERENCE,
                    location="reference",
                )
            if len(held) > 1:
                raise RiskError(
                    f"{reference!r} was received from "
                    f"{', '.join(h.record.originator.value for h in held)}: name the originator",
                    code=RISK_UNKNOWN_REFERENCE,
                    location="--originator",
                )
            origin = held[0].record.originator
            feedback = parse_feedback_form(data, origin, reference, source)
            if feedback.reporter is not self.own:
                raise RiskError(
                    f"the form reports for {feedback.reporter.value}, this gateway is "
                    f"{self.own.value}",
                    code=RISK_NOT_ORIGINATOR,
                    location="reporter",
                )
        except GatewayError as error:
            self._log_refusal(error, originator, None, actor, source, reference=reference)
            raise
        return self.send(feedback, origin, actor=actor, source=source)

    def _correlation(self, record: UB3Record) -> str | None:
        """Feedback carries the message id of the record it answers as correlation id."""
        if not isinstance(record, Feedback):
            return None
        held = self.store.received(
            reference=record.reference, originator=record.originator,
            kind=RiskKind.RISK_INFORMATION,
        )  # fmt: skip
        return held[0].message_id if held else None

    def _queue(
        self,
        conn: sqlite3.Connection,
        partner: RiskPartner,
        record: UB3Record,
        removed: tuple[str, ...],
        now: datetime,
        correlation_id: str | None,
    ) -> SendResult:
        form = form_for(partner.binding)

        def record_sent(message_id: str) -> None:
            self.store.record_sent(conn, message_id, partner.administration, record, removed, now)

        message_id = seal_and_queue(
            conn,
            self.outbox,
            self.identity,
            partner=partner.administration,
            binding=partner.binding,
            utility_block=UtilityBlock.UB3,
            message_type=record.kind.value,
            payload=ub3_exchange.encode(record, form),
            content_type=CONTENT_TYPES[form],
            schema_version=SCHEMA_VERSION,
            ordering_key=ordering_key(partner.administration),
            now=now,
            correlation_id=correlation_id,
            handling_label=record.label,
            before_queue=record_sent,
        )
        return SendResult(message_id, partner.administration, record, removed)

    def _log_refusal(
        self,
        error: GatewayError,
        partner: Administration | None,
        record: UB3Record | None,
        actor: str,
        source: str,
        *,
        reference: str = "",
    ) -> None:
        log.info("UB3 send refused: %s", error)
        try:
            self.store.log_refusal(
                at=self.clock(),
                actor=actor,
                partner=partner.value if partner else "",
                kind=record.kind.value if record else "",
                originator=record.originator.value if record else "",
                reference=record.reference if record else reference,
                code=error.code,
                rule=error.location or "",
                message=error.message,
                source=source,
            )
        except GatewayError as failure:  # the refusal stands even if it cannot be logged
            log.warning("refusal not logged: %s", failure)

    # -- reads -----------------------------------------------------------------------------------
    def outstanding(self, partner: Administration | None = None) -> list[Sent]:
        """Risk information sent to partners that has had no feedback yet."""
        return self.store.outstanding(partner)

    def list_received(self, *, actor: str, kind: RiskKind | None = None) -> list[Received]:
        """Received records (listing is a read: each record listed is access-logged first)."""
        rows = self.store.received(kind=kind)
        self._log_reads(actor, "list", rows)
        return rows

    def show(
        self, reference: str, *, actor: str, originator: Administration | None = None
    ) -> list[Received]:
        """The received records with ``reference``; the read is access-logged first."""
        rows = self.store.received(reference=reference, originator=originator)
        if not rows:
            raise RiskError(
                f"no received UB3 record has reference {reference!r}",
                code=RISK_UNKNOWN_REFERENCE,
                location="reference",
            )
        self._log_reads(actor, "show", rows)
        return rows

    def _log_reads(self, actor: str, action: str, rows: Sequence[Received]) -> None:
        if not rows:
            return
        now = self.clock()
        records = [row.record for row in rows]
        self.store.database.write(
            lambda conn: RiskStore.log_access(conn, actor, action, records, now)
        )

    def purge_expired(self, *, actor: str) -> int:
        return self.store.purge_expired(self.clock(), actor)


# --- the receiving side ----------------------------------------------------------------------
_FORMS = {content_type: form for form, content_type in CONTENT_TYPES.items()}


def _malformed(message: str, location: str) -> RiskError:
    return RiskError(message, code=RISK_PAYLOAD_MALFORMED, location=location)


class Ub3InboundHandler:
    """The node's InboundHandler for UB3: check, then store with the label in the inbox unit."""

    def __init__(
        self,
        store: RiskStore,
        *,
        retention: Mapping[Administration, timedelta] | None = None,
        max_payload_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.own = store.own
        self.retention = dict(retention or {})
        self.max_payload_bytes = max_payload_bytes
        self.clock = clock

    def prepare(self, accepted: Accepted) -> Apply | None:
        header = accepted.envelope.header
        content_type = header.payload_content_type.split(";")[0].strip()
        form = _FORMS.get(content_type)
        if form is None:
            raise _malformed(f"payload content type {content_type!r} is not a UB3 form", "header")
        record = ub3_exchange.decode(
            accepted.envelope.payload, header.message_type, form,
            max_bytes=self.max_payload_bytes,
        )  # fmt: skip
        sender = header.sender
        if header.handling_label.rank < record.label.rank:
            raise _malformed(
                f"the envelope is labelled {header.handling_label.value} but the record "
                f"{record.label.value}: a record travels under at least its own label",
                "header.handling_label",
            )
        now = self.clock()
        if isinstance(record, Feedback):
            if record.reporter is not sender or record.originator is not self.own:
                raise RiskError(
                    f"feedback from {sender.value} must report as {sender.value} on a record of "
                    f"{self.own.value} (it reports as {record.reporter.value} on "
                    f"{record.originator.value}/{record.reference})",
                    code=RISK_NOT_ORIGINATOR,
                    location="reporter",
                )
        elif record.originator is not sender:
            raise RiskError(
                f"{sender.value} sent {record.originator.value}'s record "
                f"{record.reference}: only the originator sends its records",
                code=RISK_NOT_ORIGINATOR,
                location="originator",
            )
        if isinstance(record, RiskInformation):
            record.check_valid_on(now.date())
        keep = self.retention.get(sender)
        retain_until = now + keep if keep is not None else None
        message_id = header.message_id
        store = self.store
        fb = record

        def apply(conn: sqlite3.Connection) -> None:
            if isinstance(fb, Feedback) and not store.was_sent(
                conn, sender, fb.originator, fb.reference
            ):
                raise RiskError(
                    f"feedback on {fb.originator.value}/{fb.reference}: no such risk information "
                    f"was sent to {sender.value}",
                    code=RISK_UNKNOWN_REFERENCE,
                    location="reference",
                )
            store.store_received(conn, fb, sender, message_id, now, retain_until)

        return apply


def ub3_handlers(
    store: RiskStore, config: GatewayConfig | None = None
) -> dict[tuple[UtilityBlock, str], InboundHandler]:
    """The node handlers for every UB3 message; retention from the senders' handling rules."""
    retention = (
        {p.administration: p.handling.retention for p in config.partners if p.handling}
        if config is not None
        else {}
    )
    max_bytes = config.limits.max_envelope_bytes if config is not None else 16 * 1024 * 1024
    handler = Ub3InboundHandler(store, retention=retention, max_payload_bytes=max_bytes)
    return {(UtilityBlock.UB3, kind.value): handler for kind in RiskKind}


# --- wiring from a configuration -------------------------------------------------------------
def risk_partners(config: GatewayConfig) -> list[RiskPartner]:
    """The configured partners with linked handling rules."""
    return [
        RiskPartner(
            p.handling,
            Binding.PROTOBUF if p.binding is PartnerBinding.GRPC else Binding.XML,
        )
        for p in config.partners
        if p.handling is not None
    ]


def service_for(config: GatewayConfig, database: Database) -> RiskService:
    """The UB3 service of a configured gateway on its message store."""
    return RiskService(
        store=RiskStore(database, config.administration),
        outbox=SqliteOutbox(database),
        identity=config.signing_identity,
        partners=risk_partners(config),
    )
