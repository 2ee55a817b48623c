"""A gateway node: the receive pipeline both transports call, and the sealing of outbound mail.

Transports hand over raw bytes and the administration their mutual-TLS peer proved; the node
checks the envelope (envelope.intake), stores it with its signed receipt (store.inbox), and gives
back the signed receipt bytes in the binding the message came in. Bad input is answered with a
signed rejection receipt carrying a stable code; nothing about it is stored.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter
from typing import Protocol

from gateway.envelope import protobuf_binding
from gateway.envelope import receipts as receipts_mod
from gateway.envelope.intake import (
    DEFAULT_LIMITS,
    Accepted,
    IntakeLimits,
    check_envelope,
    header_unverified,
)
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding
from gateway.envelope.receipts import Receipt
from gateway.errors import (
    RECEIPT_MISMATCH,
    TRUST_WRONG_PARTNER,
    DeliveryError,
    GatewayError,
    TrustError,
)
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import EnvelopeHeader, utc_now
from gateway.ops.logs import envelope_fields
from gateway.ops.metrics import (
    GatewayMetrics,
    ReceiveOutcome,
    SigningKind,
    bind_signer,
    envelope_signed,
)
from gateway.store.inbox import InboundRecord, PutOutcome, PutResult, SqliteInbox
from gateway.store.message_log import (
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    logged,
    received_entry,
)
from gateway.trust.store import TrustedSigner, TrustStore

log = logging.getLogger("gateway.node")


def seal_envelope(
    binding: Binding, header: EnvelopeHeader, payload: bytes, identity: SigningIdentity
) -> bytes:
    started = perf_counter()
    if binding is Binding.PROTOBUF:
        sealed = protobuf_binding.seal(header, payload, identity)
    else:
        from gateway.envelope import xml_binding

        sealed = xml_binding.seal(header, payload, identity)
    envelope_signed(identity, binding, started)  # ops.metrics: gnc_signing_seconds
    return sealed


def seal_receipt(binding: Binding, receipt: Receipt, identity: SigningIdentity) -> bytes:
    if binding is Binding.PROTOBUF:
        return receipts_mod.seal_receipt(receipt, identity)
    from gateway.envelope import xml_binding

    return xml_binding.seal_receipt(receipt, identity)


def open_receipt(binding: Binding, raw: bytes) -> receipts_mod.OpenedReceipt:
    if binding is Binding.PROTOBUF:
        return receipts_mod.open_receipt(raw)
    from gateway.envelope import xml_binding

    return xml_binding.open_receipt(raw)


Apply = Callable[[sqlite3.Connection], None]


class InboundHandler(Protocol):
    """What an exchange (UB1, UB2, ...) does with a message it receives.

    `prepare` checks the payload without I/O and raises a GatewayError to refuse it (the sender
    gets a signed rejection, nothing is stored); it returns the step that applies the message to
    the exchange's tables, run in the same transaction that stores the envelope and its receipt
    (it may still refuse, e.g. on the stored state, by raising a GatewayError).
    """

    def prepare(self, accepted: Accepted) -> Apply | None: ...


@dataclass(frozen=True)
class VerifiedReceipt:
    """A partner's receipt whose signature, signer and subject were checked."""

    receipt: Receipt
    signer: TrustedSigner
    raw: bytes

    @property
    def accepted(self) -> bool:
        return self.receipt.accepted


def message_id_of(binding: Binding, raw_envelope: bytes) -> str:
    """The message id of one of our own sealed envelopes: read, not verified (we signed it)."""
    return header_unverified(raw_envelope, binding).message_id


def verify_partner_receipt(
    binding: Binding,
    raw_receipt: bytes,
    *,
    partner: Administration,
    trust: TrustStore,
    message_id: str,
    sent: bytes,
    now: datetime | None = None,
) -> VerifiedReceipt:
    """What a sender checks before treating a message as answered: the receipt's signature,
    that its signer may sign for `partner`, that `partner` issued it, and that it names the
    message and the SHA-256 of exactly the bytes sent (a rejection may leave the id empty when
    the partner could not trust the header)."""
    opened = open_receipt(binding, raw_receipt)
    signer = trust.check_signer(partner, opened.signer_chain, now or utc_now())
    receipt = opened.receipt
    if receipt.issuer != partner:
        raise DeliveryError(
            f"receipt issued by {receipt.issuer.value}, expected {partner.value}",
            code=RECEIPT_MISMATCH,
            location="receipt.issuer",
        )
    expected = "" if not receipt.accepted and not receipt.message_id else message_id
    receipts_mod.check_receipt_matches(receipt, expected, sent)
    return VerifiedReceipt(receipt, signer, raw_receipt)


@dataclass(frozen=True)
class CheckedBatch:
    """Envelopes checked and receipted by `GatewayNode.check_many`, not yet stored."""

    raws: list[bytes]
    binding: Binding
    tls_peer: Administration | None
    answers: list[bytes | None]
    pending: list[tuple[int, Accepted, bytes, Apply | None]]  # to store: index, envelope, receipt
    later: list[LogEntry]


def merge_checked(batches: Sequence[CheckedBatch]) -> CheckedBatch:
    """Checked batches of one binding and TLS peer as one, to be stored in one commit."""
    first = batches[0]
    if len(batches) == 1:
        return first
    if any(b.binding is not first.binding or b.tls_peer != first.tls_peer for b in batches):
        raise ValueError("only batches of one binding and TLS peer can be stored together")
    raws: list[bytes] = []
    answers: list[bytes | None] = []
    pending: list[tuple[int, Accepted, bytes, Apply | None]] = []
    later: list[LogEntry] = []
    for batch in batches:
        offset = len(raws)
        raws.extend(batch.raws)
        answers.extend(batch.answers)
        pending.extend(
            (offset + i, acc, receipt, apply) for i, acc, receipt, apply in batch.pending
        )
        later.extend(batch.later)
    return CheckedBatch(raws, first.binding, first.tls_peer, answers, pending, later)


@dataclass
class NodeStats:
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class GatewayNode:
    """One administration's receiving side."""

    def __init__(
        self,
        identity: SigningIdentity,
        trust: TrustStore,
        inbox: SqliteInbox,
        *,
        limits: IntakeLimits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = utc_now,
        handlers: Mapping[tuple[UtilityBlock, str], InboundHandler] | None = None,
        message_log: SqliteMessageLog | None = None,  # every envelope received, with its receipt
        metrics: GatewayMetrics | None = None,  # ops.metrics: this node's Prometheus registry
    ) -> None:
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.metrics.track_store(inbox.is_usable)
        bind_signer(identity, self.metrics)
        self.message_log = message_log
        self.identity = identity
        self.handlers = dict(handlers or {})
        self.trust = trust
        self.inbox = inbox
        self.limits = limits
        self.clock = clock
        self.stats = NodeStats()

    @property
    def administration(self) -> Administration:
        return self.identity.administration

    def receive(
        self, raw: bytes, binding: Binding, tls_peer: Administration | None = None
    ) -> bytes:
        """Check, store, and answer one envelope with a signed receipt (accepted or rejected)."""
        return self.receive_many([raw], binding, tls_peer)[0]

    def receive_many(
        self,
        raws: Sequence[bytes],
        binding: Binding,
        tls_peer: Administration | None = None,
        *,
        batch_receipts: bool = False,
    ) -> list[bytes]:
        """The same for a batch: checks each, stores all that pass in one grouped commit.

        `batch_receipts` (protobuf binding only; a Stream's batch): the receipts issued for the
        batch are signed with one signature over their Merkle tree, each with its own inclusion
        proof (receipts.seal_receipts); otherwise each receipt is signed alone.
        """
        return self.finish_receive(
            self.check_many(raws, binding, tls_peer, batch_receipts=batch_receipts)
        )

    def check_many(
        self,
        raws: Sequence[bytes],
        binding: Binding,
        tls_peer: Administration | None = None,
        *,
        batch_receipts: bool = False,
    ) -> CheckedBatch:
        """The first half of `receive_many`: check and receipt each envelope, store nothing.

        Its answers may not leave the node before `finish_receive` (which stores the accepted
        ones) returns them: a transport can check the next batch while this one commits.
        """
        now = self.clock()
        answers: list[bytes | None] = [None] * len(raws)
        # Receipts issued in this pass, in batch order: (index, receipt, accepted, apply, error).
        issued: list[tuple[int, Receipt, Accepted | None, Apply | None, GatewayError | None]] = []
        receipt_ids = receipts_mod.receipt_ids(len(raws))
        for index, raw in enumerate(raws):
            try:
                accepted = self._check(raw, binding, tls_peer, now)
            except GatewayError as error:
                receipt = self._rejection(raw, error, tls_peer)
                issued.append((index, receipt, None, None, error))
                continue
            try:
                apply = self._prepare(accepted)
            except GatewayError as error:
                receipt = self._rejection(raw, error, tls_peer, accepted.envelope.header)
                issued.append((index, receipt, accepted, None, error))
                continue
            receipt = receipts_mod.accepted_receipt(
                accepted.envelope, self.administration, receipt_id=receipt_ids[index]
            )
            issued.append((index, receipt, accepted, apply, None))
        sealed = self._seal_all(binding, [entry[1] for entry in issued], batch_receipts)
        pending: list[tuple[int, Accepted, bytes, Apply | None]] = []
        later: list[LogEntry] = []  # duplicates and refusals; stored ones log in their own unit
        for (index, _, accepted_or_none, apply, refusal), answer in zip(
            issued, sealed, strict=True
        ):
            answers[index] = answer
            if refusal is not None:
                known = accepted_or_none.envelope.header if accepted_or_none else None
                self._log_rejection(later, raws[index], binding, answer, refusal, tls_peer, known)
            else:
                assert accepted_or_none is not None
                pending.append((index, accepted_or_none, answer, apply))
        return CheckedBatch(list(raws), binding, tls_peer, answers, pending, later)

    def finish_receive(self, checked: CheckedBatch) -> list[bytes]:
        """Store what `check_many` accepted (one grouped commit); the answers, in batch order."""
        raws, binding, tls_peer = checked.raws, checked.binding, checked.tls_peer
        answers, pending, later = checked.answers, checked.pending, checked.later
        if pending:
            records = [
                self._record(raws[i], acc, receipt, apply) for i, acc, receipt, apply in pending
            ]
            try:
                started = perf_counter()
                results = self.inbox.put_each(records)
                self.metrics.committed("inbox", started)
            except DeliveryError as error:
                # Nothing was stored: no acceptance may leave this node.
                for index, accepted, _, _ in pending:
                    answers[index] = self._reject(
                        raws[index],
                        binding,
                        error,
                        tls_peer,
                        accepted.envelope.header,
                        log_to=later,
                    )
                results = []
            for (index, accepted, _, _), result in zip(pending, results, strict=False):
                if isinstance(result, PutResult):
                    answer = result.receipt
                    if result.outcome is PutOutcome.RESENT:  # other bytes: answer these bytes
                        answer = self._seal_one(
                            binding,
                            receipts_mod.accepted_receipt(
                                accepted.envelope, self.administration, duplicate=True
                            ),
                        )
                    if result.outcome is not PutOutcome.STORED:
                        self.stats.duplicates += 1
                        self._received(accepted.envelope.header, ReceiveOutcome.DUPLICATE)
                        later.append(
                            received_entry(
                                binding,
                                raws[index],
                                answer,
                                LogOutcome.DUPLICATE,
                                header=accepted.envelope.header,
                            )
                        )
                    else:
                        self.stats.accepted += 1
                        self._received(accepted.envelope.header, ReceiveOutcome.ACCEPTED)
                    answers[index] = answer
                else:
                    answers[index] = self._reject(
                        raws[index],
                        binding,
                        result,
                        tls_peer,
                        accepted.envelope.header,
                        log_to=later,
                    )
        if later and self.message_log is not None:
            try:
                self.message_log.record(later)
            except DeliveryError as error:  # the store is failing: the answers stand regardless
                log.warning("message log not written for %d envelope(s): %s", len(later), error)
        return [answer for answer in answers if answer is not None]

    # -- internals -----------------------------------------------------------------------------
    def _received(self, header: EnvelopeHeader, outcome: ReceiveOutcome) -> None:
        """Count (ops.metrics) and log an envelope stored or found stored."""
        self.metrics.received_one(header, outcome)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %s %s from %s (correlation %s)",
                outcome.value,
                header.utility_block.value,
                header.message_type,
                header.message_id,
                header.sender.value,
                header.correlation_id,
                extra=envelope_fields(header),
            )

    def _check(
        self, raw: bytes, binding: Binding, tls_peer: Administration | None, now: datetime
    ) -> Accepted:
        started = perf_counter()
        try:
            accepted = check_envelope(
                raw, binding, trust=self.trust, own=self.administration, now=now, limits=self.limits
            )
        finally:
            self.metrics.verified(binding, started)
        sender = accepted.envelope.header.sender
        if tls_peer is not None and tls_peer != sender:
            raise TrustError(
                f"the TLS peer is {tls_peer.value} but the envelope claims sender {sender.value}",
                code=TRUST_WRONG_PARTNER,
                location="header.sender",
            )
        return accepted

    def _prepare(self, accepted: Accepted) -> Apply | None:
        """The exchange's own check of the payload, and the step that applies it when stored."""
        header = accepted.envelope.header
        handler = self.handlers.get((header.utility_block, header.message_type))
        return handler.prepare(accepted) if handler is not None else None

    def _record(
        self, raw: bytes, accepted: Accepted, receipt: bytes, apply: Apply | None = None
    ) -> InboundRecord:
        opened = accepted.envelope
        header = opened.header
        return InboundRecord(
            message_id=header.message_id,
            payload_sha256=header.payload_sha256,
            received_sha256=opened.received_sha256,
            sender=header.sender.value,
            receiver=header.receiver.value,
            utility_block=header.utility_block.value,
            message_type=header.message_type,
            binding=opened.binding.value,
            created_at=header.created_at.isoformat(),
            envelope=raw,
            receipt=receipt,
            apply=apply
            if self.message_log is None
            else logged(
                apply,
                received_entry(opened.binding, raw, receipt, LogOutcome.ACCEPTED, header=header),
            ),
        )

    def _rejection(
        self,
        raw: bytes,
        error: GatewayError,
        tls_peer: Administration | None,
        header: EnvelopeHeader | None = None,
    ) -> Receipt:
        """The (unsigned) rejection receipt for `error`, counted and logged."""
        self.stats.rejected[error.code] = self.stats.rejected.get(error.code, 0) + 1
        self.metrics.refused_one(header, tls_peer, error.code)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rejected envelope %s: %s",
                header.message_id if header else "(header not trusted)",
                error,
                extra=envelope_fields(header, partner=tls_peer, error_code=error.code),
            )
        return receipts_mod.rejection_receipt(
            raw,
            error,
            self.administration,
            message_id=header.message_id if header else "",
            recipient=header.sender if header else tls_peer,
        )

    def _seal_all(self, binding: Binding, receipts: list[Receipt], batch: bool) -> list[bytes]:
        if batch and binding is Binding.PROTOBUF:
            started = perf_counter()
            sealed = receipts_mod.seal_receipts(receipts, self.identity)
            self.metrics.signed(binding, SigningKind.RECEIPT_BATCH, started)
            return sealed
        return [self._seal_one(binding, receipt) for receipt in receipts]

    def _seal_one(self, binding: Binding, receipt: Receipt) -> bytes:
        started = perf_counter()
        sealed = seal_receipt(binding, receipt, self.identity)
        self.metrics.signed(binding, SigningKind.RECEIPT, started)
        return sealed

    @staticmethod
    def _log_rejection(
        log_to: list[LogEntry],
        raw: bytes,
        binding: Binding,
        sealed: bytes,
        error: GatewayError,
        tls_peer: Administration | None,
        header: EnvelopeHeader | None,
    ) -> None:
        log_to.append(
            received_entry(
                binding,
                raw,
                sealed,
                LogOutcome.REJECTED,
                header=header,
                peer=tls_peer,
                code=error.code,
            )
        )

    def _reject(
        self,
        raw: bytes,
        binding: Binding,
        error: GatewayError,
        tls_peer: Administration | None,
        header: EnvelopeHeader | None = None,
        *,
        log_to: list[LogEntry] | None = None,
    ) -> bytes:
        receipt = self._rejection(raw, error, tls_peer, header)
        sealed = self._seal_one(binding, receipt)
        if log_to is not None:
            self._log_rejection(log_to, raw, binding, sealed, error, tls_peer, header)
        return sealed
