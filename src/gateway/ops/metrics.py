"""Prometheus metrics of one gateway node, in a registry of its own.

Each node has its own `CollectorRegistry` (not prometheus_client's global one): tests and tools
run several gateways in one process, and each must count only its own traffic. `gncgw serve`
exposes the registry on `[metrics] listen` (ops.http).

The node and the delivery worker call the hooks below on their hot paths, so each hook is a
dict look-up of a pre-bound label child and one `inc()` or `observe()`; timings use
`time.perf_counter` and are taken by the caller (`started = perf_counter()`, then the hook).

Label values come only from what was verified: a refused envelope whose signature did not check
is counted under its TLS peer (or "unknown") with utility block and message type "unknown", so
an attacker cannot mint label values (series) by sending junk headers.

Queue depth and store health are not counted but read at scrape time (custom collectors): they
are always what the store says, never a counter that drifted.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from time import perf_counter
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding
from gateway.model.codes import Administration
from gateway.model.header import EnvelopeHeader
from gateway.store.outbox import OutboundState

log = logging.getLogger("gateway.ops.metrics")

UNKNOWN = "unknown"  # a label value the envelope could not be trusted to give

# Seconds. ECDSA verify is ~0.1 ms, XML-DSig ~1.5 ms, RSA sign ~1 ms; a slow disk many ms.
SIGNATURE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
COMMIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ReceiveOutcome(StrEnum):
    """What became of a received envelope (label `outcome` of gnc_messages_received_total)."""

    ACCEPTED = "accepted"  # stored, answered with a new signed ACCEPTED receipt
    DUPLICATE = "duplicate"  # already stored: answered with the original receipt
    REFUSED = "refused"  # answered with a signed rejection carrying `error_code`


class SendOutcome(StrEnum):
    """What became of one delivery attempt (label `outcome` of gnc_messages_sent_total)."""

    DELIVERED = "delivered"  # the partner's verified ACCEPTED receipt is stored
    FAILED_ATTEMPT = "failed_attempt"  # failed; another attempt is scheduled
    DEAD_LETTERED = "dead_lettered"  # refused for good, or the last attempt failed


class SigningKind(StrEnum):
    """What was signed (label `what` of gnc_signing_seconds)."""

    ENVELOPE = "envelope"  # an outbound envelope (node.seal_envelope)
    RECEIPT = "receipt"  # one receipt, signed alone
    RECEIPT_BATCH = "receipt_batch"  # a Stream batch's receipts under one Merkle-tree signature


class OutboxCounts(Protocol):
    """What the queue-depth collector reads: the store's outbox (store.outbox)."""

    def counts_by_partner(self) -> Mapping[tuple[str, str], int]: ...


class GatewayMetrics:
    """The metrics of one node (see docs/operations.md for each name, label and meaning)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "gnc_messages_received",
            "Envelopes received, by sending partner, utility block, message type, outcome "
            "(accepted, duplicate, refused) and error code (refusals)",
            ("partner", "utility_block", "message_type", "outcome", "error_code"),
            registry=r,
        )
        self.sent = Counter(
            "gnc_messages_sent",
            "Delivery attempts of queued envelopes, by partner, utility block and outcome "
            "(delivered, failed_attempt, dead_lettered)",
            ("partner", "utility_block", "outcome"),
            registry=r,
        )
        self.retries = Counter(
            "gnc_delivery_retries",
            "Failed delivery attempts after which another attempt was scheduled",
            ("partner", "error_code"),
            registry=r,
        )
        self.dead_letters = Counter(
            "gnc_dead_letters",
            "Messages that became dead letters (refused for good, or retries exhausted)",
            ("partner", "error_code"),
            registry=r,
        )
        self.receipts = Counter(
            "gnc_receipts_issued",
            "Signed receipts issued for received envelopes (accepted or rejected); a duplicate "
            "is answered with its original receipt and issues none",
            ("partner", "outcome"),
            registry=r,
        )
        self.verify_seconds = Histogram(
            "gnc_signature_verification_seconds",
            "Time to open a received envelope and verify its signature, signer and header",
            ("binding",),
            buckets=SIGNATURE_BUCKETS,
            registry=r,
        )
        self.sign_seconds = Histogram(
            "gnc_signing_seconds",
            "Time to sign an envelope, a receipt, or a batch of receipts",
            ("binding", "what"),
            buckets=SIGNATURE_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "gnc_store_commit_seconds",
            "Time for a grouped store commit to return (inbox: received envelopes with their "
            "receipts; outbox: settled deliveries), queueing in the writer included",
            ("operation",),
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        # Pre-bound children: the hot path does a dict look-up, not labels()' lock and checks.
        self._verify = {b: self.verify_seconds.labels(b.value) for b in Binding}
        self._sign = {
            (b, k): self.sign_seconds.labels(b.value, k.value) for b in Binding for k in SigningKind
        }
        self._commit = {op: self.commit_seconds.labels(op) for op in ("inbox", "outbox")}
        self._received: dict[tuple[str, str, str, str, str], Counter] = {}
        self._issued: dict[tuple[str, str], Counter] = {}
        self._sent: dict[tuple[str, str, str], Counter] = {}
        self._collectors: dict[str, Collector] = {}
        self._lock = threading.Lock()

    # -- intake ------------------------------------------------------------------------------------
    def received_one(self, header: EnvelopeHeader, outcome: ReceiveOutcome) -> None:
        """An accepted or duplicate envelope (its header verified)."""
        key = (
            header.sender.value,
            header.utility_block.value,
            header.message_type,
            outcome.value,
            "",
        )
        child = self._received.get(key) or self._bind_received(key)
        child.inc()
        if outcome is ReceiveOutcome.ACCEPTED:
            self._issued_child(header.sender.value, "accepted").inc()

    def refused_one(
        self, header: EnvelopeHeader | None, tls_peer: Administration | None, error_code: str
    ) -> None:
        """A refused envelope, answered with a signed rejection. `header`: only if verified."""
        if header is not None:
            partner = header.sender.value
            key = (partner, header.utility_block.value, header.message_type, "refused", error_code)
        else:
            partner = tls_peer.value if tls_peer is not None else UNKNOWN
            key = (partner, UNKNOWN, UNKNOWN, "refused", error_code)
        child = self._received.get(key) or self._bind_received(key)
        child.inc()
        self._issued_child(partner, "rejected").inc()

    def verified(self, binding: Binding, started: float) -> None:
        """An envelope opened and verified (or refused by its checks) since `started`."""
        self._verify[binding].observe(perf_counter() - started)

    def signed(self, binding: Binding, what: SigningKind, started: float) -> None:
        self._sign[binding, what].observe(perf_counter() - started)

    def committed(self, operation: str, started: float) -> None:
        """A grouped store commit (operation "inbox" or "outbox") returned."""
        self._commit[operation].observe(perf_counter() - started)

    # -- delivery ----------------------------------------------------------------------------------
    def sent_one(
        self, partner: str, utility_block: str, outcome: SendOutcome, error_code: str = ""
    ) -> None:
        key = (partner, utility_block, outcome.value)
        child = self._sent.get(key)
        if child is None:
            child = self._sent.setdefault(key, self.sent.labels(*key))
        child.inc()
        if outcome is SendOutcome.FAILED_ATTEMPT:
            self.retries.labels(partner, error_code).inc()
        elif outcome is SendOutcome.DEAD_LETTERED:
            self.dead_letters.labels(partner, error_code).inc()

    # -- read at scrape time -----------------------------------------------------------------------
    def track_outbox(self, outbox: OutboxCounts, partners: Iterable[Administration] = ()) -> None:
        """Report the outbox's depth by partner and state (gnc_outbox_messages) at each scrape.
        Configured `partners` are reported in every state even while they have nothing queued,
        so a rate or an alert has a series from the start. Tracking again replaces the last."""
        self._replace("outbox", _OutboxCollector(outbox, tuple(p.value for p in partners)))

    def track_store(self, probe: Callable[[], bool]) -> None:
        """Report gnc_store_up (1 usable, 0 not) from `probe` (database.is_usable) at scrape."""
        self._replace("store", _StoreCollector(probe))

    def _replace(self, name: str, collector: Collector) -> None:
        with self._lock:
            old = self._collectors.pop(name, None)
            if old is not None:
                self.registry.unregister(old)
            self.registry.register(collector)
            self._collectors[name] = collector

    def _bind_received(self, key: tuple[str, str, str, str, str]) -> Counter:
        return self._received.setdefault(key, self.received.labels(*key))

    def _issued_child(self, partner: str, outcome: str) -> Counter:
        key = (partner, outcome)
        child = self._issued.get(key)
        if child is None:
            child = self._issued.setdefault(key, self.receipts.labels(*key))
        return child


class _OutboxCollector(Collector):
    def __init__(self, outbox: OutboxCounts, partners: tuple[str, ...]) -> None:
        self._outbox = outbox
        self._partners = partners

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gnc_outbox_messages",
            "Messages in the outbox by partner and state (pending: queued or waiting for a "
            "retry; dead: dead letters blocking their key), read from the store at scrape time",
            labels=("partner", "state"),
        )
        try:
            counts = dict(self._outbox.counts_by_partner())
        except Exception as exc:  # the store is down: no depth (gnc_store_up says why)
            log.warning("outbox depth not readable: %s", exc)
            return
        for partner in self._partners:
            for known in OutboundState:
                counts.setdefault((partner, known.value), 0)
        for (partner, state), count in sorted(counts.items()):
            family.add_metric((partner, state), count)
        yield family


class _StoreCollector(Collector):
    def __init__(self, probe: Callable[[], bool]) -> None:
        self._probe = probe

    def collect(self) -> Iterator[Metric]:
        try:
            usable = self._probe()
        except Exception:
            usable = False
        yield GaugeMetricFamily(
            "gnc_store_up",
            "1 while the message store is usable (checked at scrape time), else 0",
            value=1.0 if usable else 0.0,
        )


# -- envelopes sealed outside a node ----------------------------------------------------------
# node.seal_envelope is a plain function the services call with their signing identity; its
# timing goes to the metrics of the node that signs with that identity (last one bound wins).
_BY_SIGNER: weakref.WeakValueDictionary[tuple[str, int], GatewayMetrics] = (
    weakref.WeakValueDictionary()
)


def bind_signer(identity: SigningIdentity, metrics: GatewayMetrics) -> None:
    """Count envelopes sealed with `identity` in `metrics` (a node does it for its identity)."""
    _BY_SIGNER[identity.administration.value, identity.certificate.serial_number] = metrics


def envelope_signed(identity: SigningIdentity, binding: Binding, started: float) -> None:
    """Hook of node.seal_envelope: observe the signing time in the signer's node, if any."""
    metrics = _BY_SIGNER.get((identity.administration.value, identity.certificate.serial_number))
    if metrics is not None:
        metrics.signed(binding, SigningKind.ENVELOPE, started)


__all__ = [
    "GatewayMetrics",
    "OutboxCounts",
    "ReceiveOutcome",
    "SendOutcome",
    "SigningKind",
    "bind_signer",
    "envelope_signed",
]
