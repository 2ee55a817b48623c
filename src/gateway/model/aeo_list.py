"""The AEO list one side holds, the changes that move it, and its reconciliation summary. No I/O.

A list is immutable: applying changes or a full list gives a new list, and a batch with one bad
change gives no new list at all (every bad change is listed in the error). That is what "nothing
partial is stored" needs: the store swaps lists only after a batch applied cleanly.

Changes are explicit about what they do (``ChangeKind``): ADDED for an authorisation the
receiver does not hold yet, CHANGED with the status the sender believes the receiver holds (a
lost change shows up as a mismatch, not as silent drift), REMOVED when the record leaves the
exchange (consent withdrawn, or no longer eligible under the agreement): a removal carries no
operator data, since the operator no longer consents to it travelling.

The reconciliation summary is a count and a SHA-256 per status over the canonical bytes of the
records (``aeo.canonical_bytes``) taken in authorisation-number order: it depends only on the set
of records, not on their order or wire form, so equal summaries prove both sides hold the same
list. ``SummaryBuilder`` computes it in constant memory from a store's ordered rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType

from gateway.errors import (
    AEO_DUPLICATE_AUTHORISATION,
    AEO_PREVIOUS_STATUS_MISMATCH,
    AEO_SUMMARY_MISMATCH,
    AEO_UNKNOWN_AUTHORISATION,
    AeoError,
)
from gateway.model.aeo import (
    MAX_REASON,
    MAX_VERSION,
    AeoRecord,
    AeoRejected,
    AeoStatus,
    Problem,
    canonical_bytes,
    check_change_order,
    check_text,
    check_transition,
)

__all__ = [
    "AeoChange",
    "AeoList",
    "ChangeKind",
    "QueryResult",
    "ReconciliationSummary",
    "StatusSummary",
    "SummaryBuilder",
    "summarise",
]


class ChangeKind(StrEnum):
    ADDED = "ADDED"
    CHANGED = "CHANGED"
    REMOVED = "REMOVED"


@dataclass(frozen=True)
class AeoChange:
    """One delta for one authorisation: the new status (and record) at a new version."""

    kind: ChangeKind
    authorisation_number: str
    holder_id: str
    version: int
    status: AeoStatus
    effective_date: date
    reason: str = ""
    previous_status: AeoStatus | None = None
    record: AeoRecord | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ChangeKind):
            raise AeoError(f"{self.kind!r} is not a ChangeKind", location="kind")
        if not isinstance(self.status, AeoStatus):
            raise AeoError(f"{self.status!r} is not an AeoStatus", location="status")
        if not isinstance(self.version, int) or not 1 <= self.version <= MAX_VERSION:
            raise AeoError(f"version {self.version!r} must be from 1 to 2^63-1", location="version")
        check_text(self.reason, "reason", MAX_REASON, required=False)
        if self.kind is ChangeKind.ADDED:
            if self.previous_status is not None:
                raise AeoError("an ADDED change has no previous status", location="previous_status")
        elif self.previous_status is None:
            raise AeoError(
                f"a {self.kind} change names the status it changes from", location="previous_status"
            )
        if self.kind is ChangeKind.REMOVED:
            if self.record is not None:
                raise AeoError(
                    "a REMOVED change carries no operator data (consent or eligibility ended)",
                    location="record",
                )
            return
        record = self.record
        if record is None:
            raise AeoError(f"a {self.kind} change carries the record", location="record")
        for name, mine, theirs in (
            ("authorisation_number", self.authorisation_number, record.authorisation_number),
            ("holder_id", self.holder_id, record.holder_id),
            ("version", self.version, record.version),
            ("status", self.status, record.status),
            ("effective_date", self.effective_date, record.status_effective),
            ("reason", self.reason, record.status_reason),
        ):
            if mine != theirs:
                raise AeoError(
                    f"the change says {name}={mine!r} but its record says {theirs!r}",
                    location=name,
                )

    @classmethod
    def added(cls, record: AeoRecord) -> AeoChange:
        return cls._with_record(ChangeKind.ADDED, None, record)

    @classmethod
    def changed(cls, previous_status: AeoStatus, record: AeoRecord) -> AeoChange:
        return cls._with_record(ChangeKind.CHANGED, previous_status, record)

    @classmethod
    def removed(
        cls,
        held: AeoRecord,
        *,
        version: int,
        status: AeoStatus,
        effective_date: date,
        reason: str = "",
    ) -> AeoChange:
        return cls(
            ChangeKind.REMOVED,
            held.authorisation_number,
            held.holder_id,
            version,
            status,
            effective_date,
            reason,
            held.status,
            None,
        )

    @classmethod
    def _with_record(
        cls, kind: ChangeKind, previous: AeoStatus | None, record: AeoRecord
    ) -> AeoChange:
        return cls(
            kind,
            record.authorisation_number,
            record.holder_id,
            record.version,
            record.status,
            record.status_effective,
            record.status_reason,
            previous,
            record,
        )


@dataclass(frozen=True)
class StatusSummary:
    status: AeoStatus
    count: int
    sha256: bytes


_EMPTY_DIGEST = hashlib.sha256(b"").digest()


@dataclass(frozen=True)
class ReconciliationSummary:
    """Count and digest per status, one entry for every status, in AeoStatus order."""

    entries: tuple[StatusSummary, ...]

    def __post_init__(self) -> None:
        statuses = tuple(entry.status for entry in self.entries)
        if statuses != tuple(AeoStatus):
            raise AeoError(
                "a reconciliation summary has exactly one entry per status, in the order "
                + ", ".join(AeoStatus),
                code=AEO_SUMMARY_MISMATCH,
                location="summary",
            )
        for entry in self.entries:
            if entry.count < 0 or len(entry.sha256) != 32:
                raise AeoError(
                    f"{entry.status}: count must be >= 0 and the digest 32 bytes",
                    code=AEO_SUMMARY_MISMATCH,
                    location="summary",
                )
            if entry.count == 0 and entry.sha256 != _EMPTY_DIGEST:
                raise AeoError(
                    f"{entry.status}: no records but a digest other than SHA-256 of nothing",
                    code=AEO_SUMMARY_MISMATCH,
                    location="summary",
                )

    @property
    def total(self) -> int:
        return sum(entry.count for entry in self.entries)

    def of(self, status: AeoStatus) -> StatusSummary:
        return self.entries[list(AeoStatus).index(status)]

    def differences(self, other: ReconciliationSummary) -> list[str]:
        """Human-readable per-status differences (empty when the summaries agree)."""
        out = []
        for mine, theirs in zip(self.entries, other.entries, strict=True):
            if mine != theirs:
                out.append(
                    f"{mine.status}: {mine.count} records {mine.sha256.hex()[:16]}... vs "
                    f"{theirs.count} records {theirs.sha256.hex()[:16]}..."
                )
        return out

    def check_matches(self, records: Iterable[AeoRecord], where: str = "summary") -> None:
        """Raise AEO_SUMMARY_MISMATCH unless these records give exactly this summary."""
        actual = summarise(records)
        diffs = actual.differences(self)
        if diffs:
            raise AeoError(
                "the records do not match the reconciliation summary: "
                + "; ".join(f"(records vs summary) {d}" for d in diffs),
                code=AEO_SUMMARY_MISMATCH,
                location=where,
            )


class SummaryBuilder:
    """Streams a reconciliation summary over records in ascending authorisation-number order.

    Memory stays constant however long the list (a store feeds it rows ORDER BY authorisation
    number; SQLite's default BINARY collation on UTF-8 text is the code-point order Python
    compares strings in). Records out of order are refused, since they would give another
    digest than the sender's.
    """

    def __init__(self) -> None:
        self._digests = {status: hashlib.sha256() for status in AeoStatus}
        self._counts = dict.fromkeys(AeoStatus, 0)
        self._last: str | None = None

    def add(self, record: AeoRecord) -> None:
        number = record.authorisation_number
        if self._last is not None and number <= self._last:
            raise AeoError(
                f"{number} after {self._last}: records must come in ascending, distinct "
                "authorisation-number order",
                code=AEO_DUPLICATE_AUTHORISATION if number == self._last else None,
                location="authorisation_number",
            )
        self._last = number
        self._feed(record.status, canonical_bytes(record))

    def _feed(self, status: AeoStatus, line: bytes) -> None:
        digest = self._digests[status]
        digest.update(line)
        digest.update(b"\n")
        self._counts[status] += 1

    def result(self) -> ReconciliationSummary:
        return ReconciliationSummary(
            tuple(
                StatusSummary(status, self._counts[status], self._digests[status].digest())
                for status in AeoStatus
            )
        )


def summarise(records: Iterable[AeoRecord]) -> ReconciliationSummary:
    """The reconciliation summary of any collection of records, whatever its order.

    Per status: SHA-256 over each record's canonical bytes plus a newline, records taken in
    ascending authorisation-number order (ties, possible only in a malformed list with a
    duplicate number, by canonical bytes), so it depends only on the set of records.
    """
    keyed = sorted(
        (record.authorisation_number, canonical_bytes(record), record.status) for record in records
    )
    builder = SummaryBuilder()
    for _, line, status in keyed:
        builder._feed(status, line)
    return builder.result()


@dataclass(frozen=True)
class QueryResult:
    """Answer to "is this identifier an AEO of yours right now, and since when"."""

    identifier: str
    record: AeoRecord | None

    @property
    def found(self) -> bool:
        return self.record is not None

    @property
    def is_aeo(self) -> bool:
        return self.record is not None and self.record.is_aeo

    @property
    def since(self) -> date | None:
        """When the authorisation took effect, if the operator is an AEO now."""
        return self.record.authorised_since if self.record is not None and self.is_aeo else None


@dataclass(frozen=True)
class _Removed:
    version: int
    effective_date: date


@dataclass(frozen=True)
class AeoList:
    """The authorisations one side holds, by authorisation number.

    ``removed`` remembers the version and date at which an authorisation left the list, so a
    stale change arriving after a removal is refused as out of order rather than resurrecting
    it.
    """

    records: Mapping[str, AeoRecord] = field(default_factory=lambda: MappingProxyType({}))
    removed: Mapping[str, _Removed] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_records(cls, records: Iterable[AeoRecord]) -> AeoList:
        """A full list: each authorisation once (duplicates refused, all of them listed)."""
        held: dict[str, AeoRecord] = {}
        problems: list[Problem] = []
        for index, record in enumerate(records):
            if record.authorisation_number in held:
                problems.append(
                    Problem(
                        f"record {index}",
                        "authorisation_number",
                        AEO_DUPLICATE_AUTHORISATION,
                        f"{record.authorisation_number} appears more than once in a full list",
                    )
                )
            held[record.authorisation_number] = record
        if problems:
            raise AeoRejected("full list refused", problems, code=AEO_DUPLICATE_AUTHORISATION)
        return cls(MappingProxyType(held))

    def replace(self, records: Iterable[AeoRecord]) -> AeoList:
        """Apply a full list: the new list is exactly those records."""
        return AeoList.from_records(records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[AeoRecord]:
        """Records in authorisation-number order (deterministic output for files and lists)."""
        for number in sorted(self.records):
            yield self.records[number]

    def get(self, authorisation_number: str) -> AeoRecord | None:
        return self.records.get(authorisation_number)

    def summary(self) -> ReconciliationSummary:
        return summarise(self.records.values())

    def apply(self, changes: Iterable[AeoChange], locations: Sequence[str] = ()) -> AeoList:
        """Apply deltas in order; any bad one refuses the whole batch (all listed)."""
        records = dict(self.records)
        removed = dict(self.removed)
        problems: list[Problem] = []
        for index, change in enumerate(changes):
            try:
                _apply_one(records, removed, change)
            except AeoError as exc:
                where = locations[index] if index < len(locations) else f"change {index}"
                problems.append(Problem.of(f"{where} ({change.authorisation_number})", exc))
        if problems:
            raise AeoRejected("status changes refused", problems, code=problems[0].code)
        return AeoList(MappingProxyType(records), MappingProxyType(removed))

    def apply_records(self, records: Iterable[AeoRecord], locations: Sequence[str] = ()) -> AeoList:
        """Apply a change feed of record states (EU EOS), all or nothing.

        Records of one authorisation follow each other in the feed. A record for an
        authorisation not held is an addition and must be GRANTED: a suspension, revocation or
        withdrawal of an authorisation the list does not hold is refused
        (AEO_UNKNOWN_AUTHORISATION), since it means the list missed the grant. ``locations``
        (e.g. "line 12" per record, from the importer) name the records in errors.
        """
        status: dict[str, AeoStatus] = {}
        changes: list[AeoChange] = []
        problems: list[Problem] = []
        for index, record in enumerate(records):
            number = record.authorisation_number
            current = status.get(number)
            if current is None and number in self.records:
                current = self.records[number].status
            if current is None and record.status is not AeoStatus.GRANTED:
                where = locations[index] if index < len(locations) else f"record {index}"
                problems.append(
                    Problem(
                        f"{where} ({number})",
                        "authorisation_number",
                        AEO_UNKNOWN_AUTHORISATION,
                        f"{record.status} for authorisation {number}, which is not held "
                        "(a first record must be GRANTED)",
                    )
                )
                continue
            changes.append(
                AeoChange.added(record) if current is None else AeoChange.changed(current, record)
            )
            status[number] = record.status
        if problems:
            raise AeoRejected("change feed refused", problems, code=problems[0].code)
        return self.apply(changes, locations)

    # --- queries ----------------------------------------------------------------------------
    @cached_property
    def _by_identifier(self) -> Mapping[str, tuple[str, ...]]:
        index: dict[str, list[str]] = {}
        for number, record in self.records.items():
            keys = {record.holder_id, number, *(ref.value for ref in record.cross_references)}
            for key in keys:
                index.setdefault(key, []).append(number)
        return {key: tuple(sorted(numbers)) for key, numbers in index.items()}

    def find(self, identifier: str) -> tuple[AeoRecord, ...]:
        """Every record the identifier names: holder id (EORI), authorisation number, or a
        partner cross reference (e.g. a US MID)."""
        return tuple(self.records[n] for n in self._by_identifier.get(identifier, ()))

    def query(self, identifier: str) -> QueryResult:
        """Is ``identifier`` an AEO now, and since when.

        Where an operator holds several authorisations, a granted one answers (the earliest
        granted, the longest-standing status); otherwise the most recently changed one.
        """
        matches = self.find(identifier)
        if not matches:
            return QueryResult(identifier, None)
        granted = [r for r in matches if r.is_aeo]
        if granted:
            best = min(granted, key=lambda r: (r.authorised_since, r.authorisation_number))
        else:
            best = max(matches, key=lambda r: (r.status_effective, r.authorisation_number))
        return QueryResult(identifier, best)


def _apply_one(
    records: dict[str, AeoRecord], removed: dict[str, _Removed], change: AeoChange
) -> None:
    number = change.authorisation_number
    held = records.get(number)
    if held is None:
        gone = removed.get(number)
        if change.kind is not ChangeKind.ADDED:
            raise AeoError(
                f"{change.kind} {change.status} for authorisation {number}, which is not held"
                + (" (it was removed)" if gone else ""),
                code=AEO_UNKNOWN_AUTHORISATION,
                location="authorisation_number",
            )
        if gone is not None:
            check_change_order(
                gone.version, gone.effective_date, change.version, change.effective_date
            )
        assert change.record is not None  # ADDED carries its record (checked when built)
        records[number] = change.record
        removed.pop(number, None)
        return
    if change.kind is ChangeKind.ADDED:
        raise AeoError(
            f"authorisation {number} is already held: a further record is a CHANGED change",
            code=AEO_PREVIOUS_STATUS_MISMATCH,
            location="kind",
        )
    if change.previous_status is not held.status:
        raise AeoError(
            f"the change is from {change.previous_status} but {number} is held as {held.status}",
            code=AEO_PREVIOUS_STATUS_MISMATCH,
            location="previous_status",
        )
    check_change_order(held.version, held.status_effective, change.version, change.effective_date)
    check_transition(held.status, change.status)
    if change.kind is ChangeKind.REMOVED:
        del records[number]
        removed[number] = _Removed(change.version, change.effective_date)
        return
    assert change.record is not None
    if change.record.holder_id != held.holder_id:
        raise AeoError(
            f"authorisation {number} belongs to {held.holder_id}, not {change.record.holder_id}",
            location="holder_id",
        )
    records[number] = change.record
