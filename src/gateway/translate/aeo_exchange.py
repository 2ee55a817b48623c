"""UB1 exchange payloads as bytes, in both wire forms. Pure functions, no I/O.

Four messages, one model, two bindings (protobuf: proto/gnc/v1/aeo.proto; XML:
schemas/ub1-aeo.xsd, whose elements carry their WCO IDs):

* ``StatusChanges``: deltas, in order per authorisation (ADDED / CHANGED / REMOVED);
* ``FullList``: every record the receiver should hold, with the reconciliation summary (count
  and SHA-256 per status) — a list whose summary does not match its records is refused
  (AEO_SUMMARY_MISMATCH), so a receiver never replaces its list with a damaged one;
* ``FullListPart`` / ``FullListEnd``: a full list too large for one envelope, in parts of
  records under one sync id, then an end carrying the summary of the whole list; the receiver
  replaces its list only when the summary matches what it staged (``full_list_parts`` cuts a
  list into them);
* ``Query`` / ``QueryAnswer``: is this identifier an AEO of yours right now, and since when;
  ``QueryRefused`` answers a query whose envelope was refused (code and message).

Both encodings are lossless for every valid value (property-tested): decoding what was encoded
gives an equal object. Decoding refuses anything the model refuses, with the model's codes.

Inbound: ``partner_list_to_eu`` turns a partner's full list into the EU's EOS export format
(with each partner programme mapped to the EU type it is recognised as) for EU risk systems.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from lxml import etree

from gateway._proto.gnc.v1 import aeo_pb2
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import (
    AEO_DUPLICATE_AUTHORISATION,
    AEO_PAYLOAD_MALFORMED,
    AEO_UNKNOWN_STATUS,
    AEO_UNKNOWN_TYPE,
    AeoError,
    GatewayError,
)
from gateway.model.aeo import (
    Address,
    AeoRecord,
    AeoRejected,
    AeoStatus,
    AeoType,
    CrossReference,
    Problem,
)
from gateway.model.aeo_list import (
    AeoChange,
    AeoList,
    ChangeKind,
    ReconciliationSummary,
    StatusSummary,
    summarise,
)
from gateway.model.codes import Administration
from gateway.partners.profile import PartnerProfile, from_partner, partner_view
from gateway.translate.eos_aeo import ExportKind, MappingSpec, write_eos_xml

__all__ = [
    "CONTENT_TYPES",
    "NAMESPACE",
    "FullList",
    "FullListEnd",
    "FullListPart",
    "MessageType",
    "Payload",
    "PayloadForm",
    "Query",
    "QueryAnswer",
    "QueryRefused",
    "StatusChanges",
    "decode",
    "encode",
    "full_list_for",
    "full_list_parts",
    "partner_list_to_eu",
]

NAMESPACE = "urn:gnc-gateway:ub1:aeo:1"
_NS = f"{{{NAMESPACE}}}"
MAX_PROBLEMS = 1000


class MessageType(StrEnum):
    """The envelope header's message_type for each UB1 payload."""

    STATUS_CHANGES = "AeoStatusChanges"
    FULL_LIST = "AeoFullList"
    QUERY = "AeoQuery"
    QUERY_ANSWER = "AeoQueryAnswer"
    FULL_LIST_PART = "AeoFullListPart"
    FULL_LIST_END = "AeoFullListEnd"
    QUERY_REFUSED = "AeoQueryRefused"


class PayloadForm(StrEnum):
    PROTOBUF = "protobuf"
    XML = "xml"


CONTENT_TYPES = {
    PayloadForm.PROTOBUF: "application/x-protobuf",
    PayloadForm.XML: "application/xml",
}


def _malformed(message: str, location: str | None = None) -> AeoError:
    return AeoError(message, code=AEO_PAYLOAD_MALFORMED, location=location)


@dataclass(frozen=True)
class StatusChanges:
    list_owner: Administration
    changes: tuple[AeoChange, ...]

    message_type = MessageType.STATUS_CHANGES


@dataclass(frozen=True)
class FullList:
    """A full list: refused at construction if its summary does not match its records."""

    list_owner: Administration
    as_of: date
    records: tuple[AeoRecord, ...]
    summary: ReconciliationSummary

    message_type = MessageType.FULL_LIST

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, record in enumerate(self.records):
            if record.authorisation_number in seen:
                raise AeoError(
                    f"{record.authorisation_number} appears more than once in the full list",
                    code=AEO_DUPLICATE_AUTHORISATION,
                    location=f"records[{index}]",
                )
            seen.add(record.authorisation_number)
        self.summary.check_matches(self.records)

    @classmethod
    def build(
        cls, list_owner: Administration, as_of: date, records: Iterable[AeoRecord]
    ) -> FullList:
        """A full list with its summary computed from the records (sorted for stable bytes)."""
        ordered = tuple(sorted(records, key=lambda r: r.authorisation_number))
        return cls(list_owner, as_of, ordered, summarise(ordered))

    def to_list(self) -> AeoList:
        return AeoList.from_records(self.records)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_PARTS = 2**32 - 1


def _check_uuid(value: str, where: str) -> None:
    if not _UUID.fullmatch(value) or str(uuid.UUID(value)) != value:
        raise _malformed(f"{where} {value!r} is not a lower-case UUID", where)


def _check_unique(records: Iterable[AeoRecord], label: str = "records") -> None:
    seen: set[str] = set()
    for index, record in enumerate(records):
        if record.authorisation_number in seen:
            raise AeoError(
                f"{record.authorisation_number} appears more than once in the full list",
                code=AEO_DUPLICATE_AUTHORISATION,
                location=f"{label}[{index}]",
            )
        seen.add(record.authorisation_number)


@dataclass(frozen=True)
class FullListPart:
    """Part ``part`` (from 1) of a full list in parts; the records of one sync never repeat."""

    list_owner: Administration
    sync_id: str
    as_of: date
    part: int
    records: tuple[AeoRecord, ...]

    message_type = MessageType.FULL_LIST_PART

    def __post_init__(self) -> None:
        _check_uuid(self.sync_id, "sync_id")
        if not 1 <= self.part <= MAX_PARTS:
            raise _malformed(f"part {self.part} is not 1 to {MAX_PARTS}", "part")
        _check_unique(self.records)


@dataclass(frozen=True)
class FullListEnd:
    """The end of a full list in parts: how many parts came, and the summary of them all."""

    list_owner: Administration
    sync_id: str
    as_of: date
    parts: int
    summary: ReconciliationSummary

    message_type = MessageType.FULL_LIST_END

    def __post_init__(self) -> None:
        _check_uuid(self.sync_id, "sync_id")
        if not 0 <= self.parts <= MAX_PARTS:
            raise _malformed(f"parts {self.parts} is not 0 to {MAX_PARTS}", "parts")
        if self.parts == 0 and self.summary.total:
            raise _malformed("an end after no parts summarises an empty list", "parts")


@dataclass(frozen=True)
class QueryRefused:
    """The answer to a query whose envelope or payload was refused, or that no agreement covers."""

    code: str
    message: str = ""

    message_type = MessageType.QUERY_REFUSED

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", self.code):
            raise _malformed(f"{self.code!r} is not an error code", "code")
        if len(self.message) > 512 or not self.message.isprintable():
            raise _malformed("the message is at most 512 printable characters", "message")


def _check_query(query_id: str, identifier: str) -> None:
    if not _UUID.fullmatch(query_id) or str(uuid.UUID(query_id)) != query_id:
        raise _malformed(f"query id {query_id!r} is not a lower-case UUID", "query_id")
    if (
        not 1 <= len(identifier) <= 35
        or not identifier.isprintable()
        or identifier.strip() != identifier
    ):
        raise _malformed(
            f"identifier {identifier!r} must be 1 to 35 printable characters", "identifier"
        )


@dataclass(frozen=True)
class Query:
    query_id: str
    identifier: str

    message_type = MessageType.QUERY

    def __post_init__(self) -> None:
        _check_query(self.query_id, self.identifier)


@dataclass(frozen=True)
class QueryAnswer:
    query_id: str
    identifier: str
    record: AeoRecord | None = None
    refusal_code: str = ""
    refusal: str = ""

    message_type = MessageType.QUERY_ANSWER

    def __post_init__(self) -> None:
        _check_query(self.query_id, self.identifier)
        if self.record is not None and self.refusal_code:
            raise _malformed("an answer carries a record or a refusal, not both", "refusal_code")
        if self.refusal and not self.refusal_code:
            raise _malformed("a refusal text needs its refusal code", "refusal_code")
        if self.refusal_code and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", self.refusal_code):
            raise _malformed(f"{self.refusal_code!r} is not an error code", "refusal_code")
        if len(self.refusal) > 512 or not self.refusal.isprintable():
            raise _malformed("the refusal text is at most 512 printable characters", "refusal")

    @property
    def found(self) -> bool:
        return self.record is not None

    @property
    def is_aeo(self) -> bool:
        return self.record is not None and self.record.is_aeo

    @property
    def since(self) -> date | None:
        return self.record.authorised_since if self.record is not None and self.is_aeo else None


Payload = StatusChanges | FullList | FullListPart | FullListEnd | Query | QueryAnswer | QueryRefused
_P = TypeVar("_P")


def _parse_date(value: str, where: str) -> date:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise _malformed(f"{value!r} is not a date YYYY-MM-DD", where)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _malformed(f"{value!r} is not a calendar date", where) from None


def _optional_date(value: str, where: str) -> date | None:
    return _parse_date(value, where) if value else None


def _administration(value: str, where: str) -> Administration:
    try:
        return Administration(value)
    except ValueError:
        raise _malformed(f"{value!r} is not a known administration", where) from None


def _in_context(where: str, build: Callable[[], _P]) -> _P:
    """Run a model constructor, prefixing the location of any error with ``where``."""
    try:
        return build()
    except AeoRejected:
        raise
    except AeoError as exc:
        location = f"{where}.{exc.location}" if exc.location else where
        raise AeoError(exc.message, code=exc.code, location=location) from None


# --- protobuf ----------------------------------------------------------------------------------
_PB_TYPE: dict[AeoType, int] = {
    AeoType.AEOC: aeo_pb2.AEO_TYPE_AEOC,
    AeoType.AEOS: aeo_pb2.AEO_TYPE_AEOS,
    AeoType.AEOF: aeo_pb2.AEO_TYPE_AEOF,
}
_TYPE_PB: dict[int, AeoType] = {v: k for k, v in _PB_TYPE.items()}
_PB_STATUS: dict[AeoStatus, int] = {
    AeoStatus.GRANTED: aeo_pb2.AEO_STATUS_GRANTED,
    AeoStatus.SUSPENDED: aeo_pb2.AEO_STATUS_SUSPENDED,
    AeoStatus.REVOKED: aeo_pb2.AEO_STATUS_REVOKED,
    AeoStatus.CONSENT_WITHDRAWN: aeo_pb2.AEO_STATUS_CONSENT_WITHDRAWN,
}
_STATUS_PB: dict[int, AeoStatus] = {v: k for k, v in _PB_STATUS.items()}
_PB_KIND: dict[ChangeKind, int] = {
    ChangeKind.ADDED: aeo_pb2.AEO_CHANGE_KIND_ADDED,
    ChangeKind.CHANGED: aeo_pb2.AEO_CHANGE_KIND_CHANGED,
    ChangeKind.REMOVED: aeo_pb2.AEO_CHANGE_KIND_REMOVED,
}
_KIND_PB: dict[int, ChangeKind] = {v: k for k, v in _PB_KIND.items()}


def _status_from_pb(value: int, where: str) -> AeoStatus:
    status = _STATUS_PB.get(value)
    if status is None:
        raise AeoError(
            f"status {value} is not a known AEO status", code=AEO_UNKNOWN_STATUS, location=where
        )
    return status


def _record_to_pb(record: AeoRecord, out: Any) -> None:
    out.administration = record.administration.value
    out.holder_id = record.holder_id
    out.holder_name = record.holder_name
    out.address.street = record.address.street
    out.address.postcode = record.address.postcode
    out.address.city = record.address.city
    out.address.country = record.address.country
    out.authorisation_number = record.authorisation_number
    out.aeo_type = _PB_TYPE[record.aeo_type] if record.aeo_type else aeo_pb2.AEO_TYPE_UNSPECIFIED
    out.partner_programme = record.partner_programme
    out.issuing_country = record.issuing_country
    out.competent_authority = record.competent_authority
    out.authorised_since = record.authorised_since.isoformat()
    out.status = _PB_STATUS[record.status]
    out.status_effective = record.status_effective.isoformat()
    out.status_reason = record.status_reason
    out.consent = record.consent
    out.consent_date = record.consent_date.isoformat() if record.consent_date else ""
    for ref in record.cross_references:
        out.cross_references.add(scheme=ref.scheme, value=ref.value)
    out.version = record.version


def _record_from_pb(msg: Any, where: str) -> AeoRecord:
    def build() -> AeoRecord:
        if msg.aeo_type == aeo_pb2.AEO_TYPE_UNSPECIFIED:
            aeo_type = None
        elif msg.aeo_type in _TYPE_PB:
            aeo_type = _TYPE_PB[msg.aeo_type]
        else:
            raise AeoError(
                f"AEO type {msg.aeo_type} is unknown", code=AEO_UNKNOWN_TYPE, location="aeo_type"
            )
        if not msg.HasField("address"):
            raise _malformed("the record has no address", "address")
        return AeoRecord(
            administration=_administration(msg.administration, "administration"),
            holder_id=msg.holder_id,
            holder_name=msg.holder_name,
            address=Address(
                msg.address.street, msg.address.postcode, msg.address.city, msg.address.country
            ),
            authorisation_number=msg.authorisation_number,
            aeo_type=aeo_type,
            issuing_country=msg.issuing_country,
            competent_authority=msg.competent_authority,
            authorised_since=_parse_date(msg.authorised_since, "authorised_since"),
            status=_status_from_pb(msg.status, "status"),
            status_effective=_parse_date(msg.status_effective, "status_effective"),
            consent=msg.consent,
            consent_date=_optional_date(msg.consent_date, "consent_date"),
            version=msg.version,
            status_reason=msg.status_reason,
            partner_programme=msg.partner_programme,
            cross_references=tuple(CrossReference(r.scheme, r.value) for r in msg.cross_references),
        )

    return _in_context(where, build)


def _change_to_pb(change: AeoChange, out: Any) -> None:
    out.kind = _PB_KIND[change.kind]
    out.authorisation_number = change.authorisation_number
    out.holder_id = change.holder_id
    out.version = change.version
    out.previous_status = (
        _PB_STATUS[change.previous_status]
        if change.previous_status is not None
        else aeo_pb2.AEO_STATUS_UNSPECIFIED
    )
    out.status = _PB_STATUS[change.status]
    out.effective_date = change.effective_date.isoformat()
    out.reason = change.reason
    if change.record is not None:
        _record_to_pb(change.record, out.record)


def _change_from_pb(msg: Any, where: str) -> AeoChange:
    record = _record_from_pb(msg.record, f"{where}.record") if msg.HasField("record") else None

    def build() -> AeoChange:
        kind = _KIND_PB.get(msg.kind)
        if kind is None:
            raise _malformed(f"change kind {msg.kind} is unknown", "kind")
        previous = (
            None
            if msg.previous_status == aeo_pb2.AEO_STATUS_UNSPECIFIED
            else _status_from_pb(msg.previous_status, "previous_status")
        )
        return AeoChange(
            kind, msg.authorisation_number, msg.holder_id, msg.version,
            _status_from_pb(msg.status, "status"),
            _parse_date(msg.effective_date, "effective_date"), msg.reason, previous, record,
        )  # fmt: skip

    return _in_context(where, build)


def _summary_to_pb(summary: ReconciliationSummary, out: Any) -> None:
    for entry in summary.entries:
        out.statuses.add(status=_PB_STATUS[entry.status], count=entry.count, sha256=entry.sha256)


def _summary_from_pb(msg: Any) -> ReconciliationSummary:
    entries = tuple(
        StatusSummary(_status_from_pb(e.status, "summary.status"), e.count, bytes(e.sha256))
        for e in msg.statuses
    )
    return ReconciliationSummary(entries)


def _collect(items: Iterable[Any], convert: Callable[[Any, str], _P], label: str) -> list[_P]:
    """Convert every item, listing every bad one (not just the first)."""
    out: list[_P] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        try:
            out.append(convert(item, f"{label}[{index}]"))
        except AeoError as exc:
            problems.append(Problem.of(f"{label}[{index}]", exc))
    if problems:
        raise AeoRejected(f"{label} refused", problems[:MAX_PROBLEMS], code=problems[0].code)
    return out


def _encode_pb(payload: Payload) -> bytes:
    if isinstance(payload, StatusChanges):
        msg: Any = aeo_pb2.AeoStatusChanges(list_owner=payload.list_owner.value)
        for change in payload.changes:
            _change_to_pb(change, msg.changes.add())
    elif isinstance(payload, FullList):
        msg = aeo_pb2.AeoFullList(
            list_owner=payload.list_owner.value, as_of=payload.as_of.isoformat()
        )
        for record in payload.records:
            _record_to_pb(record, msg.records.add())
        _summary_to_pb(payload.summary, msg.summary)
    elif isinstance(payload, FullListPart):
        msg = aeo_pb2.AeoFullListPart(
            list_owner=payload.list_owner.value,
            sync_id=payload.sync_id,
            as_of=payload.as_of.isoformat(),
            part=payload.part,
        )
        for record in payload.records:
            _record_to_pb(record, msg.records.add())
    elif isinstance(payload, FullListEnd):
        msg = aeo_pb2.AeoFullListEnd(
            list_owner=payload.list_owner.value,
            sync_id=payload.sync_id,
            as_of=payload.as_of.isoformat(),
            parts=payload.parts,
        )
        _summary_to_pb(payload.summary, msg.summary)
    elif isinstance(payload, Query):
        msg = aeo_pb2.AeoQuery(query_id=payload.query_id, identifier=payload.identifier)
    elif isinstance(payload, QueryRefused):
        msg = aeo_pb2.AeoQueryRefused(code=payload.code, message=payload.message)
    else:
        msg = aeo_pb2.AeoQueryAnswer(
            query_id=payload.query_id,
            identifier=payload.identifier,
            refusal_code=payload.refusal_code,
            refusal=payload.refusal,
        )
        if payload.record is not None:
            _record_to_pb(payload.record, msg.record)
    return bytes(msg.SerializeToString(deterministic=True))


_PB_CLASSES: dict[MessageType, Any] = {
    MessageType.STATUS_CHANGES: aeo_pb2.AeoStatusChanges,
    MessageType.FULL_LIST: aeo_pb2.AeoFullList,
    MessageType.QUERY: aeo_pb2.AeoQuery,
    MessageType.QUERY_ANSWER: aeo_pb2.AeoQueryAnswer,
    MessageType.FULL_LIST_PART: aeo_pb2.AeoFullListPart,
    MessageType.FULL_LIST_END: aeo_pb2.AeoFullListEnd,
    MessageType.QUERY_REFUSED: aeo_pb2.AeoQueryRefused,
}


def _decode_pb(data: bytes, message_type: MessageType) -> Payload:
    msg = _PB_CLASSES[message_type]()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise _malformed(f"not a {message_type} protobuf message: {exc}") from None
    if message_type is MessageType.STATUS_CHANGES:
        owner = _administration(msg.list_owner, "list_owner")
        return StatusChanges(owner, tuple(_collect(msg.changes, _change_from_pb, "changes")))
    if message_type is MessageType.FULL_LIST:
        owner = _administration(msg.list_owner, "list_owner")
        records = _collect(msg.records, _record_from_pb, "records")
        if not msg.HasField("summary"):
            raise _malformed("a full list carries its reconciliation summary", "summary")
        return FullList(
            owner, _parse_date(msg.as_of, "as_of"), tuple(records), _summary_from_pb(msg.summary)
        )
    if message_type is MessageType.FULL_LIST_PART:
        owner = _administration(msg.list_owner, "list_owner")
        records = _collect(msg.records, _record_from_pb, "records")
        return FullListPart(
            owner, msg.sync_id, _parse_date(msg.as_of, "as_of"), msg.part, tuple(records)
        )
    if message_type is MessageType.FULL_LIST_END:
        owner = _administration(msg.list_owner, "list_owner")
        if not msg.HasField("summary"):
            raise _malformed("the end of a full list carries its reconciliation summary", "summary")
        return FullListEnd(
            owner,
            msg.sync_id,
            _parse_date(msg.as_of, "as_of"),
            msg.parts,
            _summary_from_pb(msg.summary),
        )
    if message_type is MessageType.QUERY:
        return Query(msg.query_id, msg.identifier)
    if message_type is MessageType.QUERY_REFUSED:
        return QueryRefused(msg.code, msg.message)
    record = _record_from_pb(msg.record, "record") if msg.HasField("record") else None
    return QueryAnswer(msg.query_id, msg.identifier, record, msg.refusal_code, msg.refusal)


# --- XML ---------------------------------------------------------------------------------------
@cache
def _schema() -> etree.XMLSchema:
    data = (resources.files("gateway.translate") / "schemas" / "ub1-aeo.xsd").read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.fromstring(data, parser))


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _NS + name)
    if text is not None:
        element.text = text
    return element


def _opt(parent: etree._Element, name: str, text: str) -> None:
    if text:
        _sub(parent, name, text)


def _record_to_xml(record: AeoRecord, parent: etree._Element, name: str = "Record") -> None:
    el = _sub(parent, name)
    _sub(el, "Administration", record.administration.value)
    _sub(el, "HolderID", record.holder_id)
    _sub(el, "HolderName", record.holder_name)
    address = _sub(el, "Address")
    _sub(address, "Street", record.address.street)
    _opt(address, "Postcode", record.address.postcode)
    _sub(address, "City", record.address.city)
    _sub(address, "Country", record.address.country)
    _sub(el, "AuthorisationNumber", record.authorisation_number)
    _opt(el, "AeoType", record.aeo_type.value if record.aeo_type else "")
    _opt(el, "PartnerProgramme", record.partner_programme)
    _sub(el, "IssuingCountry", record.issuing_country)
    _sub(el, "CompetentAuthority", record.competent_authority)
    _sub(el, "AuthorisedSince", record.authorised_since.isoformat())
    _sub(el, "Status", record.status.value)
    _sub(el, "StatusEffective", record.status_effective.isoformat())
    _opt(el, "StatusReason", record.status_reason)
    _sub(el, "Consent", "true" if record.consent else "false")
    _opt(el, "ConsentDate", record.consent_date.isoformat() if record.consent_date else "")
    for ref in record.cross_references:
        _sub(el, "CrossReference", ref.value).set("scheme", ref.scheme)
    _sub(el, "Version", str(record.version))


def _text(el: etree._Element, name: str) -> str:
    child = el.find(_NS + name)
    return (child.text or "") if child is not None else ""


def _status(value: str, where: str) -> AeoStatus:
    try:
        return AeoStatus(value)
    except ValueError:
        raise AeoError(
            f"{value!r} is not a known AEO status", code=AEO_UNKNOWN_STATUS, location=where
        ) from None


def _record_from_xml(el: etree._Element, where: str) -> AeoRecord:
    def build() -> AeoRecord:
        type_text = _text(el, "AeoType")
        aeo_type: AeoType | None = None
        if type_text:
            try:
                aeo_type = AeoType(type_text)
            except ValueError:
                raise AeoError(
                    f"{type_text!r} is not an AEO type (AEOC, AEOS, AEOF)",
                    code=AEO_UNKNOWN_TYPE,
                    location="aeo_type",
                ) from None
        address = el.find(_NS + "Address")
        assert address is not None  # required by the XSD
        return AeoRecord(
            administration=_administration(_text(el, "Administration"), "administration"),
            holder_id=_text(el, "HolderID"),
            holder_name=_text(el, "HolderName"),
            address=Address(
                _text(address, "Street"),
                _text(address, "Postcode"),
                _text(address, "City"),
                _text(address, "Country"),
            ),
            authorisation_number=_text(el, "AuthorisationNumber"),
            aeo_type=aeo_type,
            issuing_country=_text(el, "IssuingCountry"),
            competent_authority=_text(el, "CompetentAuthority"),
            authorised_since=_parse_date(_text(el, "AuthorisedSince"), "authorised_since"),
            status=_status(_text(el, "Status"), "status"),
            status_effective=_parse_date(_text(el, "StatusEffective"), "status_effective"),
            consent=_text(el, "Consent").strip() in ("true", "1"),
            consent_date=_optional_date(_text(el, "ConsentDate"), "consent_date"),
            version=int(_text(el, "Version")),
            status_reason=_text(el, "StatusReason"),
            partner_programme=_text(el, "PartnerProgramme"),
            cross_references=tuple(
                CrossReference(ref.get("scheme") or "", ref.text or "")
                for ref in el.iterchildren(_NS + "CrossReference")
            ),
        )

    return _in_context(f"{where} (line {el.sourceline})", build)


def _change_to_xml(change: AeoChange, parent: etree._Element) -> None:
    el = _sub(parent, "Change")
    _sub(el, "Kind", change.kind.value)
    _sub(el, "AuthorisationNumber", change.authorisation_number)
    _sub(el, "HolderID", change.holder_id)
    _sub(el, "Version", str(change.version))
    if change.previous_status is not None:
        _sub(el, "PreviousStatus", change.previous_status.value)
    _sub(el, "Status", change.status.value)
    _sub(el, "EffectiveDate", change.effective_date.isoformat())
    _opt(el, "Reason", change.reason)
    if change.record is not None:
        _record_to_xml(change.record, el)


def _change_from_xml(el: etree._Element, where: str) -> AeoChange:
    record_el = el.find(_NS + "Record")
    record = _record_from_xml(record_el, f"{where}.record") if record_el is not None else None

    def build() -> AeoChange:
        previous = _text(el, "PreviousStatus")
        return AeoChange(
            ChangeKind(_text(el, "Kind")),
            _text(el, "AuthorisationNumber"),
            _text(el, "HolderID"),
            int(_text(el, "Version")),
            _status(_text(el, "Status"), "status"),
            _parse_date(_text(el, "EffectiveDate"), "effective_date"),
            _text(el, "Reason"),
            _status(previous, "previous_status") if previous else None,
            record,
        )

    return _in_context(f"{where} (line {el.sourceline})", build)


def _summary_to_xml(summary: ReconciliationSummary, parent: etree._Element) -> None:
    element = _sub(parent, "ReconciliationSummary")
    for entry in summary.entries:
        item = _sub(element, "StatusSummary")
        item.set("status", entry.status.value)
        item.set("count", str(entry.count))
        item.set("sha256", entry.sha256.hex())


def _summary_from_xml(root: etree._Element) -> ReconciliationSummary:
    entries = []
    for item in root.iterfind(f"{_NS}ReconciliationSummary/{_NS}StatusSummary"):
        entries.append(
            StatusSummary(
                _status(item.get("status") or "", "summary.status"),
                int(item.get("count") or "0"),
                bytes.fromhex(item.get("sha256") or ""),
            )
        )
    return ReconciliationSummary(tuple(entries))


def _int_attribute(root: etree._Element, name: str) -> int:
    value = root.get(name) or ""
    if not value.isdigit() or int(value) > MAX_PARTS:
        raise _malformed(f"{name} {value!r} is not an integer from 0 to {MAX_PARTS}", name)
    return int(value)


def _encode_xml(payload: Payload) -> bytes:
    root = etree.Element(_NS + payload.message_type.value, nsmap={"ub1": NAMESPACE})
    if isinstance(payload, StatusChanges):
        root.set("listOwner", payload.list_owner.value)
        for change in payload.changes:
            _change_to_xml(change, root)
    elif isinstance(payload, FullList):
        root.set("listOwner", payload.list_owner.value)
        root.set("asOf", payload.as_of.isoformat())
        for record in payload.records:
            _record_to_xml(record, root)
        _summary_to_xml(payload.summary, root)
    elif isinstance(payload, FullListPart):
        root.set("listOwner", payload.list_owner.value)
        root.set("syncId", payload.sync_id)
        root.set("asOf", payload.as_of.isoformat())
        root.set("part", str(payload.part))
        for record in payload.records:
            _record_to_xml(record, root)
    elif isinstance(payload, FullListEnd):
        root.set("listOwner", payload.list_owner.value)
        root.set("syncId", payload.sync_id)
        root.set("asOf", payload.as_of.isoformat())
        root.set("parts", str(payload.parts))
        _summary_to_xml(payload.summary, root)
    elif isinstance(payload, QueryRefused):
        _sub(root, "Code", payload.code)
        _opt(root, "Message", payload.message)
    elif isinstance(payload, Query):
        root.set("queryId", payload.query_id)
        _sub(root, "Identifier", payload.identifier)
    else:
        root.set("queryId", payload.query_id)
        _sub(root, "Identifier", payload.identifier)
        if payload.record is not None:
            _record_to_xml(payload.record, root)
        _opt(root, "RefusalCode", payload.refusal_code)
        _opt(root, "Refusal", payload.refusal)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _decode_xml(data: bytes, message_type: MessageType, max_bytes: int) -> Payload:
    try:
        root = parse_xml(data, max_bytes=max_bytes, max_elements=50_000_000, remove_comments=True)
    except GatewayError as exc:
        raise _malformed(f"not a safe, well-formed XML document: {exc}", exc.location) from None
    expected = _NS + message_type.value
    if root.tag != expected:
        raise _malformed(f"root element is {root.tag!r}, expected {expected}")
    schema = _schema()
    if not schema.validate(root):
        log = list(schema.error_log)[:20]
        raise _malformed(
            "not valid against ub1-aeo.xsd: "
            + "; ".join(f"line {e.line}: {e.message}" for e in log)
        )
    if message_type is MessageType.STATUS_CHANGES:
        changes = _collect(root.iterchildren(_NS + "Change"), _change_from_xml, "changes")
        return StatusChanges(
            _administration(root.get("listOwner") or "", "listOwner"), tuple(changes)
        )
    if message_type is MessageType.FULL_LIST:
        records = _collect(root.iterchildren(_NS + "Record"), _record_from_xml, "records")
        return FullList(
            _administration(root.get("listOwner") or "", "listOwner"),
            _parse_date(root.get("asOf") or "", "asOf"),
            tuple(records),
            _summary_from_xml(root),
        )
    if message_type is MessageType.FULL_LIST_PART:
        records = _collect(root.iterchildren(_NS + "Record"), _record_from_xml, "records")
        return FullListPart(
            _administration(root.get("listOwner") or "", "listOwner"),
            root.get("syncId") or "",
            _parse_date(root.get("asOf") or "", "asOf"),
            _int_attribute(root, "part"),
            tuple(records),
        )
    if message_type is MessageType.FULL_LIST_END:
        return FullListEnd(
            _administration(root.get("listOwner") or "", "listOwner"),
            root.get("syncId") or "",
            _parse_date(root.get("asOf") or "", "asOf"),
            _int_attribute(root, "parts"),
            _summary_from_xml(root),
        )
    if message_type is MessageType.QUERY_REFUSED:
        return QueryRefused(_text(root, "Code"), _text(root, "Message"))
    query_id = root.get("queryId") or ""
    identifier = _text(root, "Identifier")
    if message_type is MessageType.QUERY:
        return Query(query_id, identifier)
    record_el = root.find(_NS + "Record")
    record = _record_from_xml(record_el, "record") if record_el is not None else None
    return QueryAnswer(
        query_id, identifier, record, _text(root, "RefusalCode"), _text(root, "Refusal")
    )


# --- entry points ------------------------------------------------------------------------------
def encode(payload: Payload, form: PayloadForm) -> bytes:
    """The payload bytes in the given form (envelope message_type: ``payload.message_type``)."""
    return _encode_pb(payload) if form is PayloadForm.PROTOBUF else _encode_xml(payload)


def decode(
    data: bytes,
    message_type: MessageType | str,
    form: PayloadForm,
    *,
    max_bytes: int = 512 * 1024 * 1024,
) -> Payload:
    """Decode and check a payload; raise an AeoError (stable code) on anything invalid.

    A full list whose summary does not match its records raises AEO_SUMMARY_MISMATCH.
    """
    try:
        kind = MessageType(message_type)
    except ValueError:
        raise _malformed(f"{message_type!r} is not a UB1 message type") from None
    if len(data) > max_bytes:
        raise _malformed(f"payload of {len(data)} bytes exceeds {max_bytes}")
    if form is PayloadForm.PROTOBUF:
        return _decode_pb(data, kind)
    return _decode_xml(data, kind, max_bytes)


def full_list_for(
    profile: PartnerProfile,
    aeo_list: AeoList,
    as_of: date,
    owner: Administration = Administration.EU,
) -> FullList:
    """The full list a partner receives: only eligible, consenting records, translated."""
    return FullList.build(owner, as_of, partner_view(profile, aeo_list))


def full_list_parts(
    full_list: FullList, sync_id: str, part_size: int
) -> tuple[list[FullListPart], FullListEnd]:
    """Cut a full list into parts of at most ``part_size`` records, and the end that closes it."""
    if part_size < 1:
        raise ValueError("part_size must be at least 1")
    parts = [
        FullListPart(
            full_list.list_owner,
            sync_id,
            full_list.as_of,
            index // part_size + 1,
            full_list.records[index : index + part_size],
        )
        for index in range(0, len(full_list.records), part_size)
    ]
    end = FullListEnd(full_list.list_owner, sync_id, full_list.as_of, len(parts), full_list.summary)
    return parts, end


def partner_list_to_eu(full_list: FullList, profile: PartnerProfile, spec: MappingSpec) -> bytes:
    """A partner's full list as an EOS-format XML full export for EU risk systems.

    Each partner programme becomes the EU type the agreement recognises it as; a record whose
    programme the profile does not know refuses the whole list (every such record listed).
    """
    if full_list.list_owner is not profile.administration:
        raise _malformed(
            f"the list is {full_list.list_owner}'s, the profile is {profile.administration}'s",
            "list_owner",
        )
    records = _collect(full_list.records, lambda r, _where: from_partner(profile, r), "records")
    return write_eos_xml(records, ExportKind.FULL, spec)
