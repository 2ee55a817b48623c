"""The UB2 application: transaction data to a partner on an agreed lane, and control results.

Sending side (``TransactionService``). A consignment goes through one gate, in this order:

1. the partner's profile must agree ``TransactionData`` in its ``[ub2]`` (UB2_NOT_AGREED);
2. every coded value of the record must be on its code list (model.codelists): each bad value is
   logged as a refusal, the first is raised (a bad country or container number is never sent);
3. the consignment must be on an agreed lane of the partner (partners.lanes, UB2_NO_LANE);
4. only then is it encoded in the partner's binding, sealed (node.seal_envelope) and queued in
   the outbox, in ONE unit of work with its ``ub2_sent`` row, under the ordering key
   ``ub2:<partner>:<reference>`` so an amendment never overtakes its original.

A control result goes back only for a transaction received from that partner
(UB2_UNKNOWN_TRANSACTION otherwise), reports a control of this gateway's own administration, and
is agreed by the partner's profile where one is linked (a partner gateway, e.g. CN, holds no
profile of the EU: profiles describe the EU's partners, and the EU's profile of CN agrees the
control results CN sends). A refusal at any step appends the code, its location and the rule to
``ub2_refusals`` and raises: nothing was signed, nothing queued.

Receiving side (``Ub2InboundHandler``, registered on the node by config.build_node): decodes the
payload (UB2_PAYLOAD_MALFORMED), refuses a message the sender's profile does not agree
(UB2_NOT_AGREED, only where a profile of the sender is linked), a control result reporting
another administration's control, and a control result for a transaction this gateway never
sent that partner (UB2_UNKNOWN_TRANSACTION); otherwise stores it in the inbox transaction. A
received control result is kept with the transaction it concerns (``control_results_for``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.config import GatewayConfig, PartnerBinding, PartnerConfig
from gateway.envelope.intake import Accepted
from gateway.envelope.opened import Binding
from gateway.errors import (
    UB2_CONTROL_RESULT_INVALID,
    UB2_NO_LANE,
    UB2_NOT_AGREED,
    UB2_PAYLOAD_MALFORMED,
    UB2_UNKNOWN_TRANSACTION,
    GatewayError,
    TransactionError,
)
from gateway.model.codelists import consignment_findings
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.consignment import Consignment
from gateway.model.control_result import ControlResult
from gateway.model.header import utc_now
from gateway.node import Apply, InboundHandler
from gateway.partners.lanes import Ub2Rules, lane_for
from gateway.services.sending import SendingService, form_for, seal_and_queue
from gateway.store.database import Database
from gateway.store.outbox import SqliteOutbox
from gateway.store.transaction_store import (
    ControlResultEntry,
    Direction,
    Transaction,
    TransactionStore,
)
from gateway.translate import ub2_exchange
from gateway.translate.ub2_exchange import Ub2Kind, Ub2Record
from gateway.translate.ub3_exchange import CONTENT_TYPES

__all__ = [
    "SendResult",
    "TransactionService",
    "Ub2InboundHandler",
    "Ub2Partner",
    "ordering_key",
    "service_for",
    "ub2_handlers",
    "ub2_partners",
]

log = logging.getLogger("gateway.services.transactions")
SCHEMA_VERSION = "1.0"


def ordering_key(partner: Administration, reference: str) -> str:
    """One key per partner and transaction: an amendment (and a control result) is delivered
    after what it follows, while other transactions are not held up behind it."""
    return f"ub2:{partner.value}:{reference}"


@dataclass(frozen=True)
class Ub2Partner:
    """A partner this gateway exchanges UB2 with: its envelope binding and its profile's [ub2].

    ``profile`` is the profile file name when one is linked (its ``rules`` may then be None: a
    profile without [ub2] agrees no UB2); None when none is linked."""

    administration: Administration
    binding: Binding
    rules: Ub2Rules | None
    profile: str | None

    def agrees(self, kind: Ub2Kind) -> bool:
        return self.rules is not None and self.rules.agrees(kind.value)


@dataclass(frozen=True)
class SendResult:
    message_id: str
    partner: Administration
    kind: Ub2Kind
    reference: str  # the transaction's reference (for a control result: the one it concerns)
    lane: str = ""  # the lane a transaction was sent on


class TransactionService(SendingService[Ub2Partner, TransactionStore]):
    """UB2 sending (transactions, control results) and reads on a node's store."""

    def _unknown_partner(self, code: Administration, known: str) -> GatewayError:
        return TransactionError(
            f"{code.value} is not a configured partner (partners: {known})",
            code=UB2_NOT_AGREED,
            location="partners",
        )

    # -- sending ---------------------------------------------------------------------------------
    def send_consignment(
        self, consignment: Consignment, partner: Administration, *, actor: str = "gateway"
    ) -> SendResult:
        """Check ``consignment`` against ``partner``'s agreement, code lists and lanes; then
        seal and queue it with its ub2_sent row in one unit of work."""
        kind = Ub2Kind.TRANSACTION
        findings: list[TransactionError] = []
        try:
            settings = self.partner(partner)
            if not settings.agrees(kind):
                raise self._not_agreed(settings, kind)
            findings = consignment_findings(consignment)
            for finding in findings:  # every bad value is logged; the first is raised
                self._log_refusal(finding, partner, kind, consignment.reference, actor)
            if findings:
                raise findings[0]
            assert settings.rules is not None
            lane = lane_for(consignment, settings.rules)
            now = self.clock()
            return self.store.database.write(
                lambda conn: self._queue_transaction(conn, settings, consignment, lane.name, now)
            )
        except GatewayError as error:
            if not findings:
                self._log_refusal(error, partner, kind, consignment.reference, actor)
            raise

    def send_control_result(
        self, result: ControlResult, partner: Administration, *, actor: str = "gateway"
    ) -> SendResult:
        """A control result on a transaction received from ``partner``, back to it."""
        kind = Ub2Kind.CONTROL_RESULT
        try:
            settings = self.partner(partner)
            if settings.profile is not None and not settings.agrees(kind):
                raise self._not_agreed(settings, kind)
            if result.controlling_administration is not self.own:
                raise TransactionError(
                    f"control result {result.reference} reports a control of "
                    f"{result.controlling_administration.value}: {self.own.value} sends only "
                    "its own",
                    code=UB2_CONTROL_RESULT_INVALID,
                    location="controlling_administration",
                )
            now = self.clock()
            return self.store.database.write(
                lambda conn: self._queue_control_result(conn, settings, result, now)
            )
        except GatewayError as error:
            self._log_refusal(error, partner, kind, result.transaction_reference, actor)
            raise

    def _not_agreed(self, settings: Ub2Partner, kind: Ub2Kind) -> TransactionError:
        if settings.profile is None:
            return TransactionError(
                f"no partner profile with a [ub2] table is linked for "
                f"{settings.administration.value}: no UB2 agreement",
                code=UB2_NOT_AGREED,
                location="partners.profile",
            )
        if settings.rules is None:
            return TransactionError(
                f"the profile of {settings.administration.value} has no [ub2]: no UB2 agreement",
                code=UB2_NOT_AGREED,
                location=f"{settings.profile}:ub2",
            )
        agreed = ", ".join(sorted(settings.rules.messages))
        return TransactionError(
            f"{kind.value} is not agreed with {settings.administration.value} (agreed: {agreed})",
            code=UB2_NOT_AGREED,
            location=f"{settings.profile}:ub2.messages",
        )

    def _queue_transaction(
        self,
        conn: sqlite3.Connection,
        partner: Ub2Partner,
        consignment: Consignment,
        lane: str,
        now: datetime,
    ) -> SendResult:
        # An amendment carries the message id of the last transaction of its reference.
        previous = self.store.find_transaction(
            conn, Direction.SENT, partner.administration, consignment.reference
        )
        message_id = self._seal_and_queue(
            conn, partner, consignment, Ub2Kind.TRANSACTION, consignment.reference, previous, now,
            lambda mid: self.store.record_sent(
                conn, mid, partner.administration, consignment, lane, now
            ),
        )  # fmt: skip
        return SendResult(
            message_id, partner.administration, Ub2Kind.TRANSACTION, consignment.reference, lane
        )

    def _queue_control_result(
        self, conn: sqlite3.Connection, partner: Ub2Partner, result: ControlResult, now: datetime
    ) -> SendResult:
        reference = result.transaction_reference
        transaction = self.store.find_transaction(
            conn, Direction.RECEIVED, partner.administration, reference,
            result.transaction_message_id,
        )  # fmt: skip
        if transaction is None:
            named = (
                f" in message {result.transaction_message_id}"
                if result.transaction_message_id
                else ""
            )
            raise TransactionError(
                f"control result {result.reference}: no transaction {reference!r}{named} was "
                f"received from {partner.administration.value}",
                code=UB2_UNKNOWN_TRANSACTION,
                location="transaction_message_id"
                if result.transaction_message_id
                else "transaction_reference",
            )
        message_id = self._seal_and_queue(
            conn, partner, result, Ub2Kind.CONTROL_RESULT, reference, transaction, now,
            lambda mid: self.store.record_control_result(
                conn, Direction.SENT, mid, partner.administration, result, transaction, now
            ),
        )  # fmt: skip
        return SendResult(message_id, partner.administration, Ub2Kind.CONTROL_RESULT, reference)

    def _seal_and_queue(
        self,
        conn: sqlite3.Connection,
        partner: Ub2Partner,
        record: Ub2Record,
        kind: Ub2Kind,
        reference: str,
        correlation_id: str | None,
        now: datetime,
        record_row: Callable[[str], None],
    ) -> str:
        form = form_for(partner.binding)
        return seal_and_queue(
            conn,
            self.outbox,
            self.identity,
            partner=partner.administration,
            binding=partner.binding,
            utility_block=UtilityBlock.UB2,
            message_type=kind.value,
            payload=ub2_exchange.encode(record, form),
            content_type=CONTENT_TYPES[form],
            schema_version=SCHEMA_VERSION,
            ordering_key=ordering_key(partner.administration, reference),
            now=now,
            correlation_id=correlation_id,
            before_queue=record_row,
        )

    def _log_refusal(
        self,
        error: GatewayError,
        partner: Administration,
        kind: Ub2Kind,
        reference: str,
        actor: str,
    ) -> None:
        log.info("UB2 send refused: %s", error)
        try:
            self.store.log_refusal(
                at=self.clock(),
                actor=actor,
                partner=partner.value,
                kind=kind.value,
                reference=reference,
                code=error.code,
                location=error.location or "",
                rule=self._rule(error, partner),
                message=error.message,
            )
        except GatewayError as failure:  # the refusal stands even if it cannot be logged
            log.warning("refusal not logged: %s", failure)

    def _rule(self, error: GatewayError, partner: Administration) -> str:
        """The rule that refused: the profile key, or the check, for the refusal log."""
        settings = self.partners.get(partner)
        source = settings.profile if settings and settings.profile else "partners"
        return {
            UB2_NOT_AGREED: f"{source}:ub2.messages",
            UB2_NO_LANE: f"{source}:ub2.lanes",
            UB2_UNKNOWN_TRANSACTION: "a control result answers a transaction received",
            UB2_CONTROL_RESULT_INVALID: "control result rules (model.control_result)",
        }.get(error.code, "code lists (model.codelists)")

    # -- reads -----------------------------------------------------------------------------------
    def sent(self, partner: Administration | None = None) -> list[Transaction]:
        return self.store.sent(partner)

    def received(self, sender: Administration | None = None) -> list[Transaction]:
        return self.store.received(sender)

    def control_results_for(self, reference: str) -> list[ControlResultEntry]:
        """Control results (sent and received) on the transaction ``reference``."""
        return self.store.control_results_for(reference)


# --- the receiving side ----------------------------------------------------------------------
_FORMS = {content_type: form for form, content_type in CONTENT_TYPES.items()}


def _malformed(message: str, location: str) -> TransactionError:
    return TransactionError(message, code=UB2_PAYLOAD_MALFORMED, location=location)


class Ub2InboundHandler:
    """The node's InboundHandler for UB2: check, then store in the inbox unit of work.

    ``agreements``: the senders whose profile is linked here, with its [ub2] (None: no UB2
    agreed); a sender without a linked profile is not held to one (a partner gateway holds no
    profile of the EU)."""

    def __init__(
        self,
        store: TransactionStore,
        *,
        agreements: Mapping[Administration, Ub2Rules | None] | None = None,
        max_payload_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.agreements = dict(agreements or {})
        self.max_payload_bytes = max_payload_bytes
        self.clock = clock

    def prepare(self, accepted: Accepted) -> Apply | None:
        header = accepted.envelope.header
        content_type = header.payload_content_type.split(";")[0].strip()
        form = _FORMS.get(content_type)
        if form is None:
            raise _malformed(f"payload content type {content_type!r} is not a UB2 form", "header")
        try:
            kind = Ub2Kind(header.message_type)
        except ValueError:
            raise _malformed(
                f"{header.message_type!r} is not a UB2 message", "header.message_type"
            ) from None
        sender = header.sender
        if sender in self.agreements:
            rules = self.agreements[sender]
            if rules is None or not rules.agrees(kind.value):
                raise TransactionError(
                    f"{kind.value} from {sender.value} is not agreed in its profile",
                    code=UB2_NOT_AGREED,
                    location="header.message_type",
                )
        record = ub2_exchange.decode(
            accepted.envelope.payload, kind, form, max_bytes=self.max_payload_bytes
        )
        message_id = header.message_id
        now = self.clock()
        store = self.store
        if isinstance(record, Consignment) and kind is Ub2Kind.TRANSACTION:
            consignment = record

            def apply_transaction(conn: sqlite3.Connection) -> None:
                store.store_received(conn, message_id, sender, consignment, now)

            return apply_transaction
        if not isinstance(record, ControlResult) or kind is not Ub2Kind.CONTROL_RESULT:
            raise _malformed(f"the payload is not a {kind.value}", "payload")
        result = record
        if result.controlling_administration is not sender:
            raise TransactionError(
                f"{sender.value} sent a control result of "
                f"{result.controlling_administration.value}: each side reports its own controls",
                code=UB2_CONTROL_RESULT_INVALID,
                location="controlling_administration",
            )

        def apply_control_result(conn: sqlite3.Connection) -> None:
            transaction = store.find_transaction(
                conn, Direction.SENT, sender, result.transaction_reference,
                result.transaction_message_id,
            )  # fmt: skip
            if transaction is None:
                raise TransactionError(
                    f"control result {result.reference}: no transaction "
                    f"{result.transaction_reference!r} was sent to {sender.value}"
                    + (
                        f" in message {result.transaction_message_id}"
                        if result.transaction_message_id
                        else ""
                    ),
                    code=UB2_UNKNOWN_TRANSACTION,
                    location="transaction_reference",
                )
            store.record_control_result(
                conn, Direction.RECEIVED, message_id, sender, result, transaction, now
            )

        return apply_control_result


def ub2_handlers(
    store: TransactionStore, config: GatewayConfig | None = None
) -> dict[tuple[UtilityBlock, str], InboundHandler]:
    """The node handlers for both UB2 messages; agreements from the linked partner profiles."""
    agreements = (
        {p.administration: p.profile.ub2 for p in config.partners if p.profile is not None}
        if config is not None
        else {}
    )
    max_bytes = config.limits.max_envelope_bytes if config is not None else 16 * 1024 * 1024
    handler = Ub2InboundHandler(store, agreements=agreements, max_payload_bytes=max_bytes)
    return {(UtilityBlock.UB2, kind.value): handler for kind in Ub2Kind}


# --- wiring from a configuration -------------------------------------------------------------
def _binding(partner: PartnerConfig) -> Binding:
    return Binding.PROTOBUF if partner.binding is PartnerBinding.GRPC else Binding.XML


def ub2_partners(config: GatewayConfig) -> list[Ub2Partner]:
    """Every configured partner, with its profile's [ub2] where one is linked."""
    return [
        Ub2Partner(
            p.administration,
            _binding(p),
            p.profile.ub2 if p.profile is not None else None,
            Path(p.profile.source).name if p.profile is not None else None,
        )
        for p in config.partners
    ]


def service_for(config: GatewayConfig, database: Database) -> TransactionService:
    """The UB2 service of a configured gateway on its message store."""
    return TransactionService(
        store=TransactionStore(database, config.administration),
        outbox=SqliteOutbox(database),
        identity=config.signing_identity,
        partners=ub2_partners(config),
    )
