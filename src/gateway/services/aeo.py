"""The UB1 application: the own AEO list, what partners are sent of it, and what they send.

Sending side (``AeoService``):

* ``import_export`` parses an EOS export (translate.eos_aeo) and, in ONE unit of work, applies
  it to the own list, computes each partner's delta (partners.profile.partner_delta: only
  consenting, eligible operators; a withdrawal of consent is a removal at once), seals the
  StatusChanges envelopes and queues them in the outbox. The list and its notifications commit
  together or not at all; a bad export changes nothing and queues nothing.
* ``full_sync`` queues the partner's view of the own list (one read snapshot) in parts of
  ``part_size`` records, ``parts_per_unit`` parts per unit of work so delivery overlaps it, and
  an end carrying the reconciliation summary in the last unit.

Everything UB1 sends one partner, deltas and full lists, shares one ordering key
``ub1:<partner>``: the outbox delivers a key strictly in order, so changes of one AEO (and of
all AEOs, across batches) arrive in the order they were made, and a delta queued while a full
list is on its way can neither overtake it nor be overwritten by its older snapshot.

Receiving side (``Ub1InboundHandler``, registered on the node by config.build_node): decodes a
UB1 payload (refusing malformed ones with their code), checks it against the stored list of
the sender and applies it in the inbox transaction: deltas all or nothing, a full list replaced
atomically, parts staged until the end's summary proves the staged list (else
AEO_SUMMARY_MISMATCH, signed rejection, the previous list kept).

Online query (``AeoQueryResponder`` answers, ``ask_partner`` asks): a signed AeoQuery envelope
in, a signed envelope out whose correlation id is the request's message id: ``AeoQueryAnswer``
(found, not found, or refused by the asking partner's agreement rules, with the refusal code)
or ``AeoQueryRefused`` (the request itself was refused: signature, trust, addressing, payload,
no agreement). Nothing of a query is stored but its message-log rows: the responder appends
one RECEIVED row (ACCEPTED, or REJECTED with the refusal's code) before the answer leaves, and
the asker one SENT row (ACCEPTED, REJECTED for a signed refusal, FAILED when no verified answer
came back), each with the request's SHA-256 and the answer bytes as signed.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Any

from gateway.config import GatewayConfig
from gateway.envelope.intake import DEFAULT_LIMITS, Accepted, IntakeLimits, check_envelope, open_any
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    AEO_ANSWER_MISMATCH,
    AEO_DATE_IN_FUTURE,
    AEO_IMPORT_REJECTED,
    AEO_NO_AGREEMENT,
    AEO_PAYLOAD_MALFORMED,
    AEO_QUERY_REFUSED,
    TRUST_WRONG_PARTNER,
    AeoError,
    GatewayError,
    TransportError,
    TrustError,
    registry,
)
from gateway.model.aeo import AeoRecord, AeoRejected, Problem
from gateway.model.aeo_list import (
    AeoChange,
    AeoList,
    ReconciliationSummary,
    SummaryBuilder,
    summarise,
)
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import EnvelopeHeader, utc_now
from gateway.node import Apply, seal_envelope
from gateway.partners.profile import (
    PartnerProfile,
    answer_query,
    eligible_for,
    partner_delta,
    partner_view,
    to_partner,
)
from gateway.store.aeo_store import AeoStore, record_from_json
from gateway.store.database import Database, Dialect, dialect_of
from gateway.store.message_log import (
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    received_entry,
)
from gateway.store.outbox import OutboundMessage, SqliteOutbox
from gateway.translate import aeo_exchange
from gateway.translate.aeo_exchange import (
    CONTENT_TYPES,
    FullList,
    FullListEnd,
    FullListPart,
    MessageType,
    Payload,
    PayloadForm,
    Query,
    QueryAnswer,
    QueryRefused,
    StatusChanges,
    full_list_for,
    partner_list_to_eu,
)
from gateway.translate.eos_aeo import ExportKind, MappingSpec, parse_eos_export
from gateway.trust.store import TrustedSigner, TrustStore

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PARTS_PER_UNIT",
    "DEFAULT_PART_SIZE",
    "AeoQueryResponder",
    "AeoService",
    "ImportResult",
    "PartnerChanges",
    "QueryRefusedError",
    "SyncResult",
    "Ub1InboundHandler",
    "Ub1Partner",
    "VerifiedAnswer",
    "ask_partner",
    "build_query",
    "decode_payload",
    "form_for",
    "ordering_key",
    "responder_for",
    "service_for",
    "ub1_handlers",
    "ub1_partners",
    "verify_answer",
]

log = logging.getLogger("gateway.services.aeo")

DEFAULT_BATCH_SIZE = 500  # status changes per envelope
DEFAULT_PART_SIZE = 1000  # records per full-list part
# Full-list parts queued per unit of work: ~1.6 s of reading, translating and sealing at
# ~100 us a record, so delivery starts early and the writer is never held for long.
DEFAULT_PARTS_PER_UNIT = 16
SCHEMA_VERSION = "1.0"


def form_for(binding: Binding) -> PayloadForm:
    """UB1 payloads travel in the form of their envelope's binding."""
    return PayloadForm.PROTOBUF if binding is Binding.PROTOBUF else PayloadForm.XML


def ordering_key(partner: Administration) -> str:
    """One ordering key per partner for all UB1 traffic: delivered strictly in the order queued."""
    return f"ub1:{partner.value}"


# Nodes sharing one PostgreSQL database: the transaction-level advisory lock every unit takes
# that changes the own list or queues UB1 messages, and the full list's outbox mark. Identity
# keys follow *insert* order, not commit order: without it, node B's delta could take seq 98,
# node A read max(seq) = 99 (another key) as a full list's mark, and B commit 98 afterwards;
# A's check for "queued under the key after the mark" would miss it, and the delta would be
# delivered before a full list that does not contain it. Under the lock, every UB1 message is
# queued after the mark or visible to it. (One lock, not one per partner: an import queues
# deltas for every partner in one unit, and one lock cannot be taken in two orders.)
UB1_QUEUE_LOCK = 0x676E635F75623171  # "gnc_ub1q"


def serialise_ub1_queue(conn: Any) -> None:
    """Take UB1_QUEUE_LOCK on PostgreSQL (held until the batch commits); nothing on SQLite,
    whose single writer already serialises every unit."""
    if dialect_of(conn) is Dialect.POSTGRESQL:
        conn.execute(f"SELECT pg_advisory_xact_lock({UB1_QUEUE_LOCK})")


@dataclass(frozen=True)
class Ub1Partner:
    """A partner this gateway exchanges UB1 with: its agreement rules and envelope binding."""

    profile: PartnerProfile
    binding: Binding

    @property
    def administration(self) -> Administration:
        return self.profile.administration


# --- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartnerChanges:
    partner: Administration
    changes: int  # deltas queued
    envelopes: int  # StatusChanges envelopes queued
    withheld: Mapping[str, int]  # changed records the partner does not see, by reason code


@dataclass(frozen=True)
class ImportResult:
    kind: ExportKind
    records: int  # records in the export
    applied: int  # changes applied to the own list (added, changed, removed)
    unchanged: int  # records equal to what was held (full export)
    partners: tuple[PartnerChanges, ...]

    @property
    def envelopes(self) -> int:
        return sum(p.envelopes for p in self.partners)


@dataclass(frozen=True)
class SyncResult:
    partner: Administration
    sync_id: str
    records: int
    parts: int
    summary: ReconciliationSummary
    message_ids: tuple[str, ...]  # parts then the end, in delivery order


@dataclass
class _SyncState:
    """A full sync being queued: its summary so far, counts and message ids."""

    builder: SummaryBuilder = field(default_factory=SummaryBuilder)
    records: int = 0
    parts: int = 0
    message_ids: list[str] = field(default_factory=list)


class _Overtaken(Exception):
    """Something else was queued under the partner's key in the middle of a pipelined sync."""

    def __init__(self, message: str, parts: int) -> None:
        super().__init__(message)
        self.parts = parts  # parts already queued (abandoned)


# --- helpers -------------------------------------------------------------------------------------
def _refuse_future_dates(
    records: Sequence[AeoRecord], locations: Sequence[str], today: date, source: str
) -> None:
    """An export is taken whole or not at all: every record dated after today is listed."""
    problems = [
        Problem(
            locations[index] if index < len(locations) else f"record {index}",
            name,
            AEO_DATE_IN_FUTURE,
            f"{name} {value.isoformat()} is after today ({today.isoformat()}): import the "
            "record when it takes effect",
        )
        for index, record in enumerate(records)
        for name, value in (
            ("authorised_since", record.authorised_since),
            ("status_effective", record.status_effective),
        )
        if value > today
    ]
    if problems:
        raise AeoRejected(
            f"EOS export {source} refused", problems, code=AEO_IMPORT_REJECTED, location=source
        )


def _seal(
    identity: SigningIdentity,
    binding: Binding,
    payload: Payload,
    receiver: Administration,
    *,
    correlation_id: str | None = None,
) -> tuple[EnvelopeHeader, bytes]:
    form = form_for(binding)
    data = aeo_exchange.encode(payload, form)
    header = new_header(
        payload=data,
        utility_block=UtilityBlock.UB1,
        message_type=payload.message_type.value,
        sender=identity.administration,
        receiver=receiver,
        payload_content_type=CONTENT_TYPES[form],
        schema_version=SCHEMA_VERSION,
        correlation_id=correlation_id,
    )
    return header, seal_envelope(binding, header, data, identity)


def _outbound(partner: Ub1Partner, header: EnvelopeHeader, raw: bytes, key: str) -> OutboundMessage:
    return OutboundMessage(
        message_id=header.message_id,
        partner=partner.administration,
        binding=partner.binding,
        ordering_key=key,
        utility_block=UtilityBlock.UB1,
        message_type=header.message_type,
        envelope=raw,
    )


def _chunks(items: Sequence[AeoChange], size: int) -> Iterable[Sequence[AeoChange]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- the sending side ----------------------------------------------------------------------------
class AeoService:
    """The own list and what each UB1 partner is sent of it."""

    def __init__(
        self,
        *,
        store: AeoStore,
        outbox: SqliteOutbox,
        identity: SigningIdentity,
        partners: Sequence[Ub1Partner],
        spec: MappingSpec,
        batch_size: int = DEFAULT_BATCH_SIZE,
        part_size: int = DEFAULT_PART_SIZE,
        parts_per_unit: int = DEFAULT_PARTS_PER_UNIT,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if store.database is not outbox.database:
            raise ValueError("the AEO store and the outbox must share one database")
        if batch_size < 1 or part_size < 1 or parts_per_unit < 1:
            raise ValueError("batch_size, part_size and parts_per_unit must be positive")
        self.store = store
        self.outbox = outbox
        self.identity = identity
        self.own = identity.administration
        self.partners = {p.administration: p for p in partners}
        self.spec = spec
        self.batch_size = batch_size
        self.part_size = part_size
        self.parts_per_unit = parts_per_unit
        self.clock = clock

    def partner(self, code: Administration) -> Ub1Partner:
        """The partner's UB1 set-up, or AEO_NO_AGREEMENT."""
        found = self.partners.get(code)
        if found is None:
            known = ", ".join(sorted(p.value for p in self.partners)) or "none"
            raise AeoError(
                f"no UB1 agreement (partner profile) is configured for {code.value} "
                f"(UB1 partners: {known})",
                code=AEO_NO_AGREEMENT,
                location="partners",
            )
        return found

    # -- import -------------------------------------------------------------------------------
    def import_export(
        self, data: bytes, *, csv_kind: ExportKind | None = None, source: str = "<input>"
    ) -> ImportResult:
        """Apply an EOS export to the own list and queue each partner's deltas, atomically."""
        export = parse_eos_export(data, self.spec, csv_kind=csv_kind, source=source)
        _refuse_future_dates(export.records, export.locations, self.clock().date(), source)
        return self.store.database.write(
            lambda conn: self._import_unit(conn, export.kind, export.records, export.locations,
                                           source)
        )  # fmt: skip

    def _import_unit(
        self,
        conn: sqlite3.Connection,
        kind: ExportKind,
        records: Sequence[AeoRecord],
        locations: Sequence[str],
        source: str,
    ) -> ImportResult:
        serialise_ub1_queue(conn)  # before reading the own list: imports on two nodes queue in turn
        own = self.own
        steps: list[tuple[AeoRecord | None, AeoRecord | None]] = []  # (before, after) in order
        changes: list[AeoChange] = []
        where: list[str] = []
        unchanged = 0
        if kind is ExportKind.FULL:
            before = self.store.load_all(conn, own)
            listed: set[str] = set()
            for index, record in enumerate(records):
                number = record.authorisation_number
                listed.add(number)
                held = before.get(number)
                if held == record:
                    unchanged += 1
                    continue
                changes.append(
                    AeoChange.added(record)
                    if held is None
                    else AeoChange.changed(held.status, record)
                )
                where.append(locations[index] if index < len(locations) else f"record {index}")
                steps.append((held, record))
            for number in sorted(set(before.records) - listed):
                held = before.records[number]
                changes.append(
                    AeoChange.removed(
                        held,
                        version=held.version + 1,
                        status=held.status,
                        effective_date=held.status_effective,
                        reason=f"no longer in the EU list ({source})"[:512],
                    )
                )
                where.append(f"held {number}")
                steps.append((held, None))
            after = before.apply(changes, where)
        else:
            before = self.store.load(conn, own, (r.authorisation_number for r in records))
            after = before.apply_records(records, locations)
            current: dict[str, AeoRecord] = dict(before.records)
            for record in records:
                held = current.get(record.authorisation_number)
                changes.append(
                    AeoChange.added(record)
                    if held is None
                    else AeoChange.changed(held.status, record)
                )
                steps.append((held, record))
                current[record.authorisation_number] = record
        self.store.write_diff(conn, own, before, after, changes, f"import {source}")
        now = self.clock()
        summaries = []
        for partner in self.partners.values():
            deltas: list[AeoChange] = []
            withheld: Counter[str] = Counter()
            for old, new in steps:
                delta = self._delta(partner.profile, old, new, source)
                if delta is not None:
                    deltas.append(delta)
                elif new is not None:
                    reasons = eligible_for(partner.profile, new).reasons
                    withheld[reasons[0][0] if reasons else "UNCHANGED_FOR_PARTNER"] += 1
            envelopes = 0
            for chunk in _chunks(deltas, self.batch_size):
                header, raw = _seal(
                    self.identity, partner.binding, StatusChanges(own, tuple(chunk)),
                    partner.administration,
                )  # fmt: skip
                self.outbox.enqueue(
                    conn, _outbound(partner, header, raw, ordering_key(partner.administration)),
                    now=now,
                )  # fmt: skip
                envelopes += 1
            summaries.append(
                PartnerChanges(partner.administration, len(deltas), envelopes, dict(withheld))
            )
        return ImportResult(kind, len(records), len(changes), unchanged, tuple(summaries))

    @staticmethod
    def _delta(
        profile: PartnerProfile, old: AeoRecord | None, new: AeoRecord | None, source: str
    ) -> AeoChange | None:
        if new is not None:
            return partner_delta(profile, old, new)
        if old is None or not eligible_for(profile, old):
            return None
        return AeoChange.removed(
            to_partner(profile, old),
            version=old.version + 1,
            status=old.status,
            effective_date=old.status_effective,
            reason=f"no longer in the EU list ({source})"[:512],
        )

    # -- full list ----------------------------------------------------------------------------
    def partner_full_list(self, code: Administration, as_of: date | None = None) -> FullList:
        """What the partner should hold now: the eligible, consenting records, translated."""
        partner = self.partner(code)
        snapshot = self.store.snapshot(self.own)
        return full_list_for(
            partner.profile, snapshot, as_of or self.clock().date(), owner=self.own
        )

    def full_sync(
        self, code: Administration, *, as_of: date | None = None, sync_id: str | None = None
    ) -> SyncResult:
        """Queue the partner's full list in parts and its end, pipelined with delivery.

        The own list is read in authorisation-number order from ONE read snapshot (a read
        transaction on this thread's reader connection: under WAL it sees one committed state
        however long it is iterated), translated, summarised and sealed on the calling thread,
        and queued ``parts_per_unit`` parts per unit of work, the end (with the reconciliation
        summary over exactly the records of the parts) in the last unit, all under the partner's
        one ordering key. Delivery (the worker's thread in ``gncgw serve``) sends the first
        parts while later ones are being sealed; the receiver stages parts until the end proves
        them. Memory stays bounded however long the list.

        Order with deltas: each unit first checks that nothing else was queued under the key
        since the snapshot (or since this sync's previous unit). A delta queued in between
        (an import committed during the sync) would reach the partner before the end and be
        overwritten by this older snapshot, so the sync is then abandoned and queued again in
        ONE unit (parts and end together, read on the writer's connection): the partner gets
        the delta, then a full list that includes it.

        Abandoned syncs (that one, or a sender that crashes or fails between units): the parts
        already queued are delivered and staged by the receiver, no end follows, so the receiver
        keeps its previous list; their staging is cleared when a later full list of this sender
        completes there. The schedule keys on the last end queued, so the next sync is due at
        once.
        """
        partner = self.partner(code)
        as_of = as_of or self.clock().date()
        sync_id = sync_id or str(uuid.uuid4())
        try:
            return self._pipelined_sync(partner, as_of, sync_id)
        except _Overtaken as overtaken:
            again = str(uuid.uuid4())
            log.warning(
                "full list %s for %s abandoned after %d part(s): %s; queued again as %s in one "
                "unit of work",
                sync_id, code.value, overtaken.parts, overtaken, again,
            )  # fmt: skip
            return self.store.database.write(
                lambda conn: self._one_unit_sync(conn, partner, as_of, again)
            )

    def _sealed_parts(
        self,
        partner: Ub1Partner,
        sync_id: str,
        as_of: date,
        records: Iterable[AeoRecord],
        state: _SyncState,
    ) -> Iterator[OutboundMessage]:
        """The partner's view of ``records`` as sealed parts (summary and counts in ``state``)."""
        profile = partner.profile
        chunk: list[AeoRecord] = []

        def part() -> OutboundMessage:
            state.parts += 1
            payload = FullListPart(self.own, sync_id, as_of, state.parts, tuple(chunk))
            return self._sealed(partner, payload, state)

        for record in records:
            if not eligible_for(profile, record):
                continue
            translated = to_partner(profile, record)
            state.builder.add(translated)
            chunk.append(translated)
            state.records += 1
            if len(chunk) >= self.part_size:
                yield part()
                chunk = []
        if chunk:
            yield part()

    def _sealed(self, partner: Ub1Partner, payload: Payload, state: _SyncState) -> OutboundMessage:
        header, raw = _seal(self.identity, partner.binding, payload, partner.administration)
        state.message_ids.append(header.message_id)
        return _outbound(partner, header, raw, ordering_key(partner.administration))

    def _end(
        self, partner: Ub1Partner, sync_id: str, as_of: date, state: _SyncState
    ) -> tuple[OutboundMessage, SyncResult]:
        summary = state.builder.result()
        end = self._sealed(partner, FullListEnd(self.own, sync_id, as_of, state.parts, summary),
                           state)  # fmt: skip
        result = SyncResult(
            partner.administration, sync_id, state.records, state.parts, summary,
            tuple(state.message_ids),
        )  # fmt: skip
        return end, result

    def _one_unit_sync(
        self, conn: sqlite3.Connection, partner: Ub1Partner, as_of: date, sync_id: str
    ) -> SyncResult:
        """Unit of work: the whole full list, parts and end, read on the writer's connection."""
        serialise_ub1_queue(conn)
        state = _SyncState()
        now = self.clock()
        records = self.store.iter_records(conn, self.own)
        for message in self._sealed_parts(partner, sync_id, as_of, records, state):
            self.outbox.enqueue(conn, message, now=now)
        end, result = self._end(partner, sync_id, as_of, state)
        self.outbox.enqueue(conn, end, now=now)
        return result

    def _pipelined_sync(self, partner: Ub1Partner, as_of: date, sync_id: str) -> SyncResult:
        state = _SyncState()
        with self._own_snapshot() as (mark, records):
            last = mark
            pending: list[OutboundMessage] = []
            for message in self._sealed_parts(partner, sync_id, as_of, records, state):
                pending.append(message)
                if len(pending) >= self.parts_per_unit:
                    last = self._queue(partner, pending, last, state)
                    pending = []
            end, result = self._end(partner, sync_id, as_of, state)
            self._queue(partner, [*pending, end], last, state)
        return result

    def _queue(
        self, partner: Ub1Partner, messages: Sequence[OutboundMessage], after: int,
        state: _SyncState,
    ) -> int:  # fmt: skip
        """One unit: queue ``messages`` unless something else was queued under the key after
        outbox position ``after`` (then _Overtaken); the outbox position after them."""
        code = partner.administration
        key = ordering_key(code)

        def unit(conn: sqlite3.Connection) -> tuple[int, str] | tuple[None, str]:
            serialise_ub1_queue(conn)
            other = conn.execute(
                "SELECT message_id, message_type FROM outbox WHERE seq > ? AND partner = ? "
                "AND ordering_key = ? ORDER BY seq LIMIT 1",
                (after, code.value, key),
            ).fetchone()
            if other is not None:
                return None, f"{other[1]} {other[0]} was queued under {key} meanwhile"
            now = self.clock()
            for message in messages:
                self.outbox.enqueue(conn, message, now=now)
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]), ""

        position, why = self.store.database.write(unit)
        if position is None:
            unqueued = sum(m.message_type == MessageType.FULL_LIST_PART for m in messages)
            raise _Overtaken(why, state.parts - unqueued)
        return position

    @contextmanager
    def _own_snapshot(self) -> Iterator[tuple[int, Iterator[AeoRecord]]]:
        """(outbox position, own records in authorisation-number order) of one consistent state.

        Under WAL: one read transaction on this thread's reader connection (the outbox position
        and the records are of the same commit). Without WAL (an in-memory database: tests and
        benchmarks only; config refuses one for a gateway), a long read would block the writer,
        so pages are read by units of work instead; a change of what the partner sees queues a
        delta under its key, which ``_queue`` detects, so the parts are still one state.
        """
        database = self.store.database
        conn = database.reader()
        owner = self.own.value
        # (PostgreSQL reads by pages too: its readers are autocommit, one statement each.)
        sqlite = database.dialect is Dialect.SQLITE
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() if sqlite else ""
        if mode == "wal":
            conn.execute("BEGIN")
            cursor = conn.cursor()
            try:
                mark = int(cursor.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])
                cursor.execute(
                    "SELECT record FROM aeo_record WHERE owner = ? ORDER BY authorisation_number",
                    (owner,),
                )
                yield mark, (record_from_json(text) for (text,) in cursor)
            finally:
                cursor.close()
                conn.execute("ROLLBACK")
            return
        page = self.part_size * self.parts_per_unit

        def first(conn: sqlite3.Connection) -> int:
            serialise_ub1_queue(conn)  # no UB1 message queued by another node is in flight
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])

        def paged() -> Iterator[AeoRecord]:
            def read(after: str, conn: sqlite3.Connection) -> list[tuple[str, str]]:
                return conn.execute(
                    "SELECT authorisation_number, record FROM aeo_record WHERE owner = ? "
                    "AND authorisation_number > ? ORDER BY authorisation_number LIMIT ?",
                    (owner, after, page),
                ).fetchall()

            after = ""
            while True:
                rows = database.write(partial(read, after))
                for _, text in rows:
                    yield record_from_json(text)
                if len(rows) < page:
                    return
                after = rows[-1][0]

        yield database.write(first), paged()

    # -- reads ----------------------------------------------------------------------------------
    def own_view_summary(self, code: Administration) -> ReconciliationSummary:
        """The summary of what the partner should hold (the own list as the partner sees it)."""
        partner = self.partner(code)
        return summarise(partner_view(partner.profile, self.store.records(self.own)))

    def received_summary(self, code: Administration) -> ReconciliationSummary:
        """The summary of the list received from a partner."""
        return self.store.summary(code)

    def export_partner_list(self, code: Administration) -> bytes:
        """A partner's list as an EOS-format full export for EU risk systems."""
        partner = self.partner(code)
        records = tuple(self.store.records(code))
        full = FullList(code, self.clock().date(), records, summarise(records))
        return partner_list_to_eu(full, partner.profile, self.spec)


# --- the receiving side --------------------------------------------------------------------------
_FORMS = {content_type: form for form, content_type in CONTENT_TYPES.items()}
_LIST_MESSAGES = (
    MessageType.STATUS_CHANGES,
    MessageType.FULL_LIST,
    MessageType.FULL_LIST_PART,
    MessageType.FULL_LIST_END,
)


def _malformed(message: str, location: str | None = None) -> AeoError:
    return AeoError(message, code=AEO_PAYLOAD_MALFORMED, location=location)


def decode_payload(header: EnvelopeHeader, payload: bytes, max_bytes: int) -> Payload:
    """The UB1 payload of an envelope, in the form its content type names."""
    content_type = header.payload_content_type.split(";")[0].strip()
    form = _FORMS.get(content_type)
    if form is None:
        raise _malformed(
            f"payload content type {content_type!r} is not a UB1 form "
            f"({', '.join(sorted(_FORMS))})",
            "header.payload_content_type",
        )
    return aeo_exchange.decode(payload, header.message_type, form, max_bytes=max_bytes)


def _check_owner(owner: Administration, sender: Administration, records: Iterable[Any]) -> None:
    if owner is not sender:
        raise _malformed(
            f"the list is {owner.value}'s but the envelope comes from {sender.value}: a partner "
            "sends its own AEOs only",
            "list_owner",
        )
    problems = [
        Problem(f"records[{i}]", "administration", AEO_PAYLOAD_MALFORMED,
                f"{r.authorisation_number} is a {r.administration.value} record")
        for i, r in enumerate(records)
        if r is not None and r.administration is not owner
    ]  # fmt: skip
    if problems:
        raise AeoRejected(
            f"records of another administration than {owner.value}", problems,
            code=AEO_PAYLOAD_MALFORMED,
        )  # fmt: skip


class Ub1InboundHandler:
    """The node's InboundHandler for UB1 list messages (deltas, full lists, parts, ends)."""

    def __init__(self, store: AeoStore, *, max_payload_bytes: int = 256 * 1024 * 1024) -> None:
        self.store = store
        self.max_payload_bytes = max_payload_bytes

    def prepare(self, accepted: Accepted) -> Apply | None:
        envelope = accepted.envelope
        header = envelope.header
        if header.message_type not in _LIST_MESSAGES:
            raise _malformed(
                f"{header.message_type} is not delivered as a notification: queries go to the "
                "inquiry endpoint (gnc.v1.Inquiry/Ask or POST /gnc/v1/inquiries)",
                "header.message_type",
            )
        payload = decode_payload(header, envelope.payload, self.max_payload_bytes)
        sender = header.sender
        source = f"message {header.message_id}"
        store = self.store
        if isinstance(payload, StatusChanges):
            _check_owner(payload.list_owner, sender, (c.record for c in payload.changes))
            changes = payload.changes
            where = [f"changes[{i}]" for i in range(len(changes))]

            def apply_changes(conn: sqlite3.Connection) -> None:
                store.apply_changes(conn, sender, changes, source, where)

            return apply_changes
        if isinstance(payload, FullList):
            _check_owner(payload.list_owner, sender, payload.records)
            records = payload.records

            as_of = payload.as_of

            def replace(conn: sqlite3.Connection) -> None:
                store.replace(conn, sender, records, source, as_of)

            return replace
        if isinstance(payload, FullListPart):
            _check_owner(payload.list_owner, sender, payload.records)
            part = payload

            def stage(conn: sqlite3.Connection) -> None:
                store.stage_part(
                    conn, sender, part.sync_id, part.part, part.records, header.message_id
                )

            return stage
        if isinstance(payload, FullListEnd):
            _check_owner(payload.list_owner, sender, ())
            end = payload

            def finish(conn: sqlite3.Connection) -> None:
                store.finish_sync(
                    conn, sender, end.sync_id, end.parts, end.summary, end.as_of, source
                )

            return finish
        raise _malformed(f"{header.message_type} is not a list message")  # pragma: no cover


def ub1_handlers(
    store: AeoStore, *, max_payload_bytes: int = 256 * 1024 * 1024
) -> dict[tuple[UtilityBlock, str], Ub1InboundHandler]:
    """The node handlers for UB1: list messages applied, query messages refused (wrong door)."""
    handler = Ub1InboundHandler(store, max_payload_bytes=max_payload_bytes)
    return {(UtilityBlock.UB1, kind.value): handler for kind in MessageType}


# --- online query: the answering side -----------------------------------------------------------
class AeoQueryResponder:
    """Answers AeoQuery envelopes from the OWN list under the asking partner's agreement.

    Call ``respond(raw, binding, tls_peer)`` from a transport; it returns the signed answer
    envelope (never raises for bad input: refusals are signed AeoQueryRefused answers). Only
    when no receiver can be named at all (no TLS peer and no readable sender) does it raise.

    With a ``message_log`` (``gncgw serve`` passes the node's), every answer is appended to it
    before it is returned, and a failure to append raises instead of answering: an answer given
    is always in the audit log. Without one (unit tests, conformance fixtures) nothing is logged.
    """

    def __init__(
        self,
        *,
        identity: SigningIdentity,
        trust: TrustStore,
        store: AeoStore,
        profiles: Mapping[Administration, PartnerProfile],
        limits: IntakeLimits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = utc_now,
        message_log: SqliteMessageLog | None = None,
    ) -> None:
        self.identity = identity
        self.trust = trust
        self.store = store
        self.profiles = dict(profiles)
        self.limits = limits
        self.clock = clock
        self.message_log = message_log

    def respond(self, raw: bytes, binding: Binding, tls_peer: Administration | None) -> bytes:
        request_id: str | None = None
        header: EnvelopeHeader | None = None  # set once the envelope verified
        refusal: GatewayError | None = None
        receiver = tls_peer
        answer: QueryAnswer | QueryRefused
        try:
            accepted = check_envelope(
                raw,
                binding,
                trust=self.trust,
                own=self.identity.administration,
                now=self.clock(),
                limits=self.limits,
            )
            header = accepted.envelope.header
            request_id = header.message_id
            if tls_peer is not None and tls_peer is not header.sender:
                raise TrustError(
                    f"the TLS peer is {tls_peer.value} but the query claims sender "
                    f"{header.sender.value}",
                    code=TRUST_WRONG_PARTNER,
                    location="header.sender",
                )
            receiver = header.sender
            answer = self._answer(accepted)
        except GatewayError as error:
            log.info("refused an AEO query: %s", error)
            if receiver is None:
                raise
            message = f"{error.message} (at {error.location})" if error.location else error.message
            answer = QueryRefused(error.code, _printable(message)[:512])
            refusal = error
        _, sealed = _seal(self.identity, binding, answer, receiver, correlation_id=request_id)
        if self.message_log is not None:
            # Before the answer leaves: if the row cannot be written (store down), the store's
            # error propagates and the transport answers an error, never an unlogged answer.
            self.message_log.record(
                [
                    received_entry(
                        binding,
                        raw,
                        sealed,
                        LogOutcome.ACCEPTED if refusal is None else LogOutcome.REJECTED,
                        header=header,
                        peer=tls_peer,
                        code=refusal.code if refusal is not None else "",
                    )
                ]
            )
        return sealed

    def _answer(self, accepted: Accepted) -> QueryAnswer:
        header = accepted.envelope.header
        if header.utility_block is not UtilityBlock.UB1 or header.message_type != MessageType.QUERY:
            raise _malformed(
                f"{header.utility_block.value} {header.message_type} is not a UB1 AeoQuery",
                "header.message_type",
            )
        payload = decode_payload(header, accepted.envelope.payload, 64 * 1024)
        assert isinstance(payload, Query)
        profile = self.profiles.get(header.sender)
        if profile is None:
            raise AeoError(
                f"no UB1 agreement with {header.sender.value} is configured here",
                code=AEO_NO_AGREEMENT,
                location="header.sender",
            )
        matches = self.store.find(self.identity.administration, payload.identifier)
        result = answer_query(profile, AeoList.from_records(matches), payload.identifier)
        return QueryAnswer(
            payload.query_id,
            payload.identifier,
            result.record,
            result.refusal_code,
            _printable(result.refusal)[:512],
        )


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


# --- online query: the asking side ---------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedAnswer:
    """A partner's answer whose signature, signer, addressing and correlation were checked."""

    answer: QueryAnswer
    signer: TrustedSigner
    header: EnvelopeHeader
    raw: bytes = field(repr=False)


class QueryRefusedError(AeoError):
    """The partner answered with a signed, verified AeoQueryRefused: an answer (logged
    REJECTED), unlike an answer that does not verify (logged FAILED)."""


def build_query(
    identity: SigningIdentity, partner: Administration, binding: Binding, identifier: str
) -> tuple[EnvelopeHeader, bytes, Query]:
    """A sealed AeoQuery envelope for ``partner`` (refuses a malformed identifier)."""
    query = Query(str(uuid.uuid4()), identifier)
    header, raw = _seal(identity, binding, query, partner)
    return header, raw, query


def verify_answer(
    raw: bytes,
    binding: Binding,
    *,
    request: EnvelopeHeader,
    query: Query,
    trust: TrustStore,
    limits: IntakeLimits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> VerifiedAnswer:
    """Check an answer envelope: signature, signer trusted for the partner asked, sender and
    receiver, correlation id = the request's message id, query id and identifier echoed.

    A signed AeoQueryRefused raises an AeoError with the partner's code (AEO_QUERY_REFUSED if
    this gateway does not know it)."""
    partner = request.receiver
    try:
        opened = open_any(raw, binding, limits)
    except GatewayError as error:
        raise TransportError(
            f"{partner.value} answered the query with something that is not a signed "
            f"envelope: {error}",
            code=error.code,
            location="answer",
        ) from None
    signer = trust.check_signer(partner, opened.signer_chain, now or utc_now())
    header = opened.header

    def mismatch(what: str) -> AeoError:
        return AeoError(what, code=AEO_ANSWER_MISMATCH, location="answer.header")

    if header.sender is not partner:
        raise mismatch(f"the answer comes from {header.sender.value}, not {partner.value}")
    if header.receiver is not request.sender:
        raise mismatch(f"the answer is addressed to {header.receiver.value}")
    if header.correlation_id != request.message_id:
        raise mismatch(
            f"the answer's correlation id {header.correlation_id} is not the query's message "
            f"id {request.message_id}"
        )
    if header.utility_block is not UtilityBlock.UB1:
        raise mismatch(f"the answer is {header.utility_block.value}, not UB1")
    payload = decode_payload(header, opened.payload, 1024 * 1024)
    if isinstance(payload, QueryRefused):
        code = payload.code if payload.code in registry() else AEO_QUERY_REFUSED
        raise QueryRefusedError(
            f"{partner.value} refused the query: {payload.code}: {payload.message}",
            code=code,
            location=f"{partner.value}:query",
        )
    if not isinstance(payload, QueryAnswer):
        raise mismatch(f"the answer is {header.message_type}, not an AeoQueryAnswer")
    if payload.query_id != query.query_id or payload.identifier != query.identifier:
        raise mismatch(
            f"the answer is about query {payload.query_id} ({payload.identifier!r}), not "
            f"{query.query_id} ({query.identifier!r})"
        )
    return VerifiedAnswer(payload, signer, header, raw)


# --- wiring from a configuration -----------------------------------------------------------------


def ub1_partners(config: GatewayConfig) -> list[Ub1Partner]:
    """The configured partners whose profile carries UB1 rules (a profile with only [ub2],
    e.g. MD or UA, gives the partner no UB1)."""
    return [
        Ub1Partner(partner.profile, partner.envelope_binding)
        for partner in config.partners
        if partner.profile is not None and partner.profile.ub1 is not None
    ]


def service_for(
    config: GatewayConfig,
    database: Database,
    spec: MappingSpec,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    part_size: int = DEFAULT_PART_SIZE,
    parts_per_unit: int = DEFAULT_PARTS_PER_UNIT,
) -> AeoService:
    """The AEO service of a configured gateway on its message store."""
    return AeoService(
        store=AeoStore(database, config.administration),
        outbox=SqliteOutbox(database),
        identity=config.signing_identity,
        partners=ub1_partners(config),
        spec=spec,
        batch_size=batch_size,
        part_size=part_size,
        parts_per_unit=parts_per_unit,
    )


def responder_for(
    config: GatewayConfig, database: Database, *, message_log: SqliteMessageLog | None
) -> AeoQueryResponder:
    """The query responder of a configured gateway (answers from its own list).

    ``message_log`` is required so no wiring forgets it: a node passes its own (every answer
    logged before it leaves); None only where nothing is to be logged (tests)."""
    return AeoQueryResponder(
        identity=config.signing_identity,
        trust=config.trust,
        store=AeoStore(database, config.administration),
        profiles={
            p.administration: p.profile
            for p in config.partners
            if p.profile is not None and p.profile.ub1 is not None
        },
        limits=config.limits,
        message_log=message_log,
    )


def ask_partner(
    config: GatewayConfig,
    partner: Administration,
    identifier: str,
    *,
    message_log: SqliteMessageLog | None,
    timeout: float = 30.0,
) -> VerifiedAnswer:
    """Ask a partner online whether ``identifier`` is one of its AEOs; the verified answer.

    The query sent is one SENT row of ``message_log`` (required, so a caller decides; None:
    not logged): ACCEPTED with the verified answer, REJECTED with the code of a signed refusal,
    FAILED with the error's code when no verified answer came back; errors are re-raised."""
    from gateway.transport.inquiry import open_inquiry_client

    settings = config.partner(partner)
    binding = settings.envelope_binding
    header, raw, query = build_query(config.signing_identity, partner, binding, identifier)
    client = open_inquiry_client(binding, settings.endpoint, config.client_tls(partner), timeout)
    answer: bytes | None = None

    def record(outcome: LogOutcome, receipt: bytes | None, code: str = "") -> None:
        if message_log is not None:
            message_log.record([_sent_query_entry(header, binding, raw, receipt, outcome, code)])

    try:
        try:
            answer = client.ask(raw)
        finally:
            client.close()
        verified = verify_answer(
            answer, binding, request=header, query=query, trust=config.trust, limits=config.limits
        )
    except QueryRefusedError as error:
        record(LogOutcome.REJECTED, answer, error.code)
        raise
    except GatewayError as error:
        record(LogOutcome.FAILED, None, error.code)
        raise
    except Exception:  # a failure below us that names no code: still an attempt to account for
        record(LogOutcome.FAILED, None, GatewayError.code)
        raise
    record(LogOutcome.ACCEPTED, answer)
    return verified


def _sent_query_entry(
    header: EnvelopeHeader,
    binding: Binding,
    raw: bytes,
    receipt: bytes | None,
    outcome: LogOutcome,
    code: str,
) -> LogEntry:
    """The asker's row for a query sent: like a delivery attempt's (services.delivery)."""
    return LogEntry(
        direction=Direction.SENT,
        message_id=header.message_id,
        partner=header.receiver.value,
        utility_block=header.utility_block.value,
        message_type=header.message_type,
        binding=binding,
        envelope_sha256=hashlib.sha256(raw).digest(),
        receipt=receipt,
        outcome=outcome,
        code=code,
    )
