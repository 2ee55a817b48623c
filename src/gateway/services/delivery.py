"""Reliable delivery: drain the outbox to each partner, retrying with back-off per its profile.

The worker takes what is due for a partner (store.outbox: the head of each ordering key),
sends the sealed bytes over the partner's link (several envelopes over one gRPC stream; XML one
request each), checks every receipt (signature, signer trusted for the partner, names the
message and the digest of exactly what was sent), and settles each message in one grouped
commit together with its message-log row:

* a verified ACCEPTED receipt -> delivered, the receipt stored (never without one);
* a verified REJECTED receipt with a permanent code -> dead letter at once, with that code and
  the signed rejection kept as proof;
* anything else (partner unreachable, a transient rejection such as DLV_STORE_UNAVAILABLE, a
  receipt that does not check) -> retried after the partner's RetryPolicy back-off for that
  attempt number; when the attempts are used up -> dead letter with the last code.

All state is in the store: a worker that stops (or crashes) between sending and settling resends
on restart, and the partner answers the resend as a duplicate with its original receipt, so
nothing is lost and nothing is stored twice on the other side.

Several nodes on one PostgreSQL database each run a worker: each pass *claims* what it sends
(store.outbox.SqliteOutbox.claim: no two nodes hold one message, per-key order across nodes)
and settles fenced by its claim; a node whose lease lapsed (paused past it) finds its outcome
refused and leaves the message to the node that took it over (logged, nothing changed).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from time import perf_counter

from gateway.envelope.receipts import Receipt
from gateway.errors import (
    TRN_PROTOCOL,
    TRUST_CRL,
    DeliveryError,
    GatewayError,
    TransportError,
)
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.node import VerifiedReceipt
from gateway.ops.delivery import item_fields, observe_settled
from gateway.ops.metrics import GatewayMetrics
from gateway.partners.profile import RetryPolicy
from gateway.store.message_log import (
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    append_in,
)
from gateway.store.outbox import OutboundItem, SqliteOutbox, mark_delivered_in, mark_failed_in
from gateway.transport.links import PartnerLink

log = logging.getLogger("gateway.delivery")

# Used for a partner whose configuration names no profile: 10 attempts, 2 s doubling up to
# 10 min between attempts (about 17 minutes from the first failure to the dead letter).
DEFAULT_RETRY_POLICY = RetryPolicy(
    max_attempts=10,
    initial_backoff=timedelta(seconds=2),
    multiplier=2.0,
    max_backoff=timedelta(minutes=10),
)

# Rejection codes that say "not now" rather than "not this": the same bytes may be accepted
# later (the partner's store was down, it failed internally, its copy of our CRL is stale).
TRANSIENT_REJECTIONS = frozenset({DeliveryError.code, GatewayError.code, TRUST_CRL})


class PartnerRejection(DeliveryError):
    """A partner's verified, signed refusal; carries the partner's code as given (a partner
    running a newer release may send a code this gateway does not know yet)."""

    def __init__(self, receipt: Receipt, message_id: str) -> None:
        super().__init__(
            f"{receipt.issuer.value} refused message {message_id}: "
            f"{receipt.error_message or receipt.error_code}",
            location=f"receipt:{receipt.receipt_id}",
        )
        self.code = receipt.error_code or GatewayError.code


@dataclass
class DeliveryReport:
    """What one pass for one partner did, by message id."""

    partner: Administration
    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)  # message id -> code of its failure

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.dead)


LinkFactory = Callable[[Administration], PartnerLink]


class DeliveryWorker:
    """Delivers the outbox of the given partners; `run_once` for one pass, `start` for a thread.

    `links` opens a link to a partner (transport.links.open_link with the gateway config); the
    worker keeps one per partner and reopens it after a transport failure. `retry` holds each
    partner's RetryPolicy (from its profile); others get DEFAULT_RETRY_POLICY. The message log,
    if given, must be on the outbox's database (a message's state and its log row commit
    together).
    """

    def __init__(
        self,
        outbox: SqliteOutbox,
        links: LinkFactory,
        *,
        partners: Sequence[Administration],
        retry: Mapping[Administration, RetryPolicy] | None = None,
        default_retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        clock: Callable[[], datetime] = utc_now,
        message_log: SqliteMessageLog | None = None,
        batch_size: int = 64,
        poll_seconds: float = 1.0,
        metrics: GatewayMetrics | None = None,  # ops.metrics: counts, and the outbox's depth
    ) -> None:
        if message_log is not None and message_log.database is not outbox.database:
            raise ValueError("the message log must live in the outbox's database")
        if batch_size < 1 or poll_seconds <= 0:
            raise ValueError("batch_size and poll_seconds must be positive")
        self.outbox = outbox
        self.partners = tuple(partners)
        self.retry = dict(retry or {})
        self.default_retry = default_retry
        self.clock = clock
        self.message_log = message_log
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.metrics = metrics
        if metrics is not None:
            metrics.track_outbox(outbox, self.partners)
        self._open_link = links
        self._links: dict[Administration, PartnerLink] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def policy(self, partner: Administration) -> RetryPolicy:
        return self.retry.get(partner, self.default_retry)

    # -- one pass ------------------------------------------------------------------------------
    def run_once(self, partner: Administration) -> DeliveryReport:
        """Deliver what is due for `partner` now (up to batch_size messages); settle each.

        Nothing is attempted while another process delivers the same SQLite store (its turn:
        SqliteOutbox.delivery_turn); the next pass tries again."""
        with self.outbox.delivery_turn() as ours:
            if not ours:
                return DeliveryReport(partner)
            return self._pass(partner)

    def _pass(self, partner: Administration) -> DeliveryReport:
        now = self.clock()
        items = self.outbox.claim(partner, now, self.batch_size)
        report = DeliveryReport(partner)
        if not items:
            return report
        results = self._send(partner, items)
        units = [partial(self._settle, item, result, now, report) for item, result in results]
        started = perf_counter()
        outcomes = self.outbox.database.write_each(units)
        observe_settled(self.metrics, report, [item for item, _ in results], outcomes, started)
        for (item, _), outcome in zip(results, outcomes, strict=True):
            if isinstance(outcome, GatewayError):
                # e.g. an operator discarded it meanwhile; its state was left as it was.
                log.warning("could not settle %s: %s", item.message_id, outcome)
        return report

    def run_until_idle(self, partner: Administration, max_passes: int = 1000) -> DeliveryReport:
        """Passes until nothing is due now; the reports merged (for tools and tests)."""
        total = DeliveryReport(partner)
        for _ in range(max_passes):
            report = self.run_once(partner)
            if not report.attempted:
                break
            total.delivered += report.delivered
            total.retrying += report.retrying
            total.dead += report.dead
            total.codes.update(report.codes)
        return total

    def _send(
        self, partner: Administration, items: list[OutboundItem]
    ) -> list[tuple[OutboundItem, VerifiedReceipt | GatewayError]]:
        results: list[tuple[OutboundItem, VerifiedReceipt | GatewayError]] = []
        failure: GatewayError | None = None
        try:
            link = self._link(partner)
            receipts = link.deliver_many([item.envelope or b"" for item in items])
            for item in items:
                verified = next(receipts, None)
                if verified is None:
                    raise TransportError(
                        f"{partner.value} did not answer every envelope",
                        code=TRN_PROTOCOL,
                        location=link.endpoint,
                    )
                results.append((item, verified))
            for _ in receipts:  # drain it, so the stream call ends cleanly
                raise TransportError(
                    f"{partner.value} sent more receipts than envelopes",
                    code=TRN_PROTOCOL,
                    location=link.endpoint,
                )
        except GatewayError as error:
            failure = error
        except Exception as exc:  # a bug below us must not kill the worker; retry later
            log.exception("delivery to %s failed unexpectedly", partner.value)
            failure = GatewayError(f"delivery to {partner.value} failed: {exc!r}")
        if failure is not None:
            if isinstance(failure, TransportError):
                self._drop_link(partner)  # a fresh channel next time (no stale reconnect back-off)
            log.info("delivery to %s: %s", partner.value, failure)
            results += [(item, failure) for item in items[len(results) :]]
        return results

    def _settle(
        self,
        item: OutboundItem,
        result: VerifiedReceipt | GatewayError,
        now: datetime,
        report: DeliveryReport,
        conn: sqlite3.Connection,
    ) -> None:
        """Unit of work: the message's new state and its message-log row, together."""
        receipt: bytes | None = None
        fence = self.outbox.fence
        if isinstance(result, VerifiedReceipt) and result.accepted:
            mark_delivered_in(item.message_id, result.raw, now, conn, claimed_by=fence)
            self._log(conn, item, result.raw, LogOutcome.ACCEPTED, "", now)
            report.delivered.append(item.message_id)
            return
        if isinstance(result, VerifiedReceipt):
            receipt = result.raw
            error: GatewayError = PartnerRejection(result.receipt, item.message_id)
            permanent = error.code not in TRANSIENT_REJECTIONS
        else:
            error = result
            permanent = False
        attempts = item.attempts + 1
        policy = self.policy(item.partner)
        next_attempt = (
            None if permanent or attempts >= policy.max_attempts else now + policy.delay(attempts)
        )
        mark_failed_in(
            item.message_id, error, now, next_attempt, conn, receipt=receipt, claimed_by=fence
        )
        outcome = LogOutcome.REJECTED if receipt is not None else LogOutcome.FAILED
        self._log(conn, item, receipt, outcome, error.code, now)
        report.codes[item.message_id] = error.code
        (report.retrying if next_attempt is not None else report.dead).append(item.message_id)
        if next_attempt is None:
            log.warning(
                "dead letter %s to %s: %s",
                item.message_id,
                item.partner.value,
                error,
                extra=item_fields(item, error.code),
            )

    def _log(
        self,
        conn: sqlite3.Connection,
        item: OutboundItem,
        receipt: bytes | None,
        outcome: LogOutcome,
        code: str,
        at: datetime,
    ) -> None:
        if self.message_log is None:
            return
        append_in(
            LogEntry(
                direction=Direction.SENT,
                message_id=item.message_id,
                partner=item.partner.value,
                utility_block=item.utility_block.value,
                message_type=item.message_type,
                binding=item.binding,
                envelope_sha256=item.envelope_sha256,
                receipt=receipt,
                outcome=outcome,
                code=code,
                at=at,
            ),
            conn,
        )

    # -- links ---------------------------------------------------------------------------------
    def _link(self, partner: Administration) -> PartnerLink:
        with self._lock:
            link = self._links.get(partner)
            if link is None:
                link = self._links[partner] = self._open_link(partner)
            return link

    def _drop_link(self, partner: Administration) -> None:
        with self._lock:
            link = self._links.pop(partner, None)
        if link is not None:
            link.close()

    # -- background thread ---------------------------------------------------------------------
    def start(self) -> None:
        """Deliver in a background thread until stop(): a pass over every partner, then a
        pause of poll_seconds when a pass found nothing to do."""
        if self._thread is not None:
            raise RuntimeError("the delivery worker is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="delivery-worker", daemon=True)
        self._thread.start()
        log.info(
            "delivery worker started (partners %s; poll every %s s) on node %s",
            ", ".join(p.value for p in self.partners) or "none",
            self.poll_seconds,
            self.outbox.node_id,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the pass in flight (up to `timeout` s, then cut the links) and stop."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            partners = list(self._links)
        for partner in partners:
            self._drop_link(partner)  # also cancels a call still in flight
        if thread is not None:
            thread.join(timeout)
            log.info("delivery worker stopped")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            busy = False
            for partner in self.partners:
                if self._stopping.is_set():
                    return
                try:
                    busy = self.run_once(partner).attempted > 0 or busy
                except Exception:  # the store failing, say: keep trying, but not in a hot loop
                    log.exception("delivery pass for %s failed", partner.value)
            if not busy:
                self._stopping.wait(self.poll_seconds)


__all__ = [
    "DEFAULT_RETRY_POLICY",
    "TRANSIENT_REJECTIONS",
    "DeliveryReport",
    "DeliveryWorker",
    "PartnerRejection",
]
