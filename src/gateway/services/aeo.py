"""The UB1 application: the own AEO list, what partners are sent of it, and what they send.

Sending side (``AeoService``):

* ``import_export`` parses an EOS export (translate.eos_aeo) and, in ONE unit of work, applies
  it to the own list, computes each partner's delta (partners.profile.partner_delta: only
  consenting, eligible operators; a withdrawal of consent is a removal at once), seals the
  StatusChanges envelopes and queues them in the outbox. The list and its notifications commit
  together or not at all; a bad export changes nothing and queues nothing.
* ``full_sync`` queues the partner's view of the own list in parts of ``part_size`` records and
  an end carrying the reconciliation summary.

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
no agreement). Nothing is stored for a query.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from gateway.config import GatewayConfig, PartnerBinding, PartnerConfig
from gateway.envelope.intake import DEFAULT_LIMITS, Accepted, IntakeLimits, check_envelope, open_any
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    AEO_ANSWER_MISMATCH,
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
from gateway.store.aeo_store import AeoStore
from gateway.store.outbox import OutboundMessage, SqliteOutbox
from gateway.store.sqlite import SqliteDatabase
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
    "DEFAULT_PART_SIZE",
    "AeoQueryResponder",
    "AeoService",
    "ImportResult",
    "PartnerChanges",
    "SyncResult",
    "Ub1InboundHandler",
    "Ub1Partner",
    "VerifiedAnswer",
    "ask_partner",
    "binding_of",
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
SCHEMA_VERSION = "1.0"


def form_for(binding: Binding) -> PayloadForm:
    """UB1 payloads travel in the form of their envelope's binding."""
    return PayloadForm.PROTOBUF if binding is Binding.PROTOBUF else PayloadForm.XML


def ordering_key(partner: Administration) -> str:
    """One ordering key per partner for all UB1 traffic: delivered strictly in the order queued."""
    return f"ub1:{partner.value}"


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


# --- helpers -------------------------------------------------------------------------------------
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
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if store.database is not outbox.database:
            raise ValueError("the AEO store and the outbox must share one database")
        if batch_size < 1 or part_size < 1:
            raise ValueError("batch_size and part_size must be positive")
        self.store = store
        self.outbox = outbox
        self.identity = identity
        self.own = identity.administration
        self.partners = {p.administration: p for p in partners}
        self.spec = spec
        self.batch_size = batch_size
        self.part_size = part_size
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
        """Queue the partner's full list in parts and its end (one unit of work).

        Streamed: the own list is read in authorisation-number order inside the unit (the
        writer's view is the snapshot), each part sealed and queued as soon as it is full, the
        summary built as the records go by; memory stays bounded however long the list.
        """
        partner = self.partner(code)
        as_of = as_of or self.clock().date()
        sync_id = sync_id or str(uuid.uuid4())
        key = ordering_key(code)
        profile = partner.profile

        def unit(conn: sqlite3.Connection) -> SyncResult:
            now = self.clock()
            builder = SummaryBuilder()
            message_ids: list[str] = []
            chunk: list[AeoRecord] = []
            count = 0

            def queue(payload: Payload) -> None:
                header, raw = _seal(self.identity, partner.binding, payload, code)
                self.outbox.enqueue(conn, _outbound(partner, header, raw, key), now=now)
                message_ids.append(header.message_id)

            def flush() -> None:
                queue(FullListPart(self.own, sync_id, as_of, len(message_ids) + 1, tuple(chunk)))
                chunk.clear()

            for record in self.store.iter_records(conn, self.own):
                if not eligible_for(profile, record):
                    continue
                translated = to_partner(profile, record)
                builder.add(translated)
                chunk.append(translated)
                count += 1
                if len(chunk) >= self.part_size:
                    flush()
            if chunk:
                flush()
            parts = len(message_ids)
            summary = builder.result()
            queue(FullListEnd(self.own, sync_id, as_of, parts, summary))
            return SyncResult(code, sync_id, count, parts, summary, tuple(message_ids))

        return self.store.database.write(unit)

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

            def replace(conn: sqlite3.Connection) -> None:
                store.replace(conn, sender, records, source)

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
    ) -> None:
        self.identity = identity
        self.trust = trust
        self.store = store
        self.profiles = dict(profiles)
        self.limits = limits
        self.clock = clock

    def respond(self, raw: bytes, binding: Binding, tls_peer: Administration | None) -> bytes:
        request_id: str | None = None
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
        _, sealed = _seal(self.identity, binding, answer, receiver, correlation_id=request_id)
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
        raise AeoError(
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
def binding_of(partner: PartnerConfig) -> Binding:
    return Binding.PROTOBUF if partner.binding is PartnerBinding.GRPC else Binding.XML


def ub1_partners(config: GatewayConfig) -> list[Ub1Partner]:
    """The configured partners whose profile carries UB1 rules (every loaded profile does)."""
    return [
        Ub1Partner(partner.profile, binding_of(partner))
        for partner in config.partners
        if partner.profile is not None
    ]


def service_for(
    config: GatewayConfig,
    database: SqliteDatabase,
    spec: MappingSpec,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    part_size: int = DEFAULT_PART_SIZE,
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
    )


def responder_for(config: GatewayConfig, database: SqliteDatabase) -> AeoQueryResponder:
    """The query responder of a configured gateway (answers from its own list)."""
    return AeoQueryResponder(
        identity=config.signing_identity,
        trust=config.trust,
        store=AeoStore(database, config.administration),
        profiles={p.administration: p.profile for p in config.partners if p.profile is not None},
        limits=config.limits,
    )


def ask_partner(
    config: GatewayConfig, partner: Administration, identifier: str, *, timeout: float = 30.0
) -> VerifiedAnswer:
    """Ask a partner online whether ``identifier`` is one of its AEOs; the verified answer."""
    from gateway.transport.inquiry import open_inquiry_client

    settings = config.partner(partner)
    binding = binding_of(settings)
    header, raw, query = build_query(config.signing_identity, partner, binding, identifier)
    client = open_inquiry_client(binding, settings.endpoint, config.client_tls(partner), timeout)
    try:
        answer = client.ask(raw)
    finally:
        client.close()
    return verify_answer(
        answer, binding, request=header, query=query, trust=config.trust, limits=config.limits
    )
