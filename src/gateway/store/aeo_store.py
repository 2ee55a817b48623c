"""The UB1 tables: this administration's own AEO list and the lists received from partners.

All lists share one table keyed by the administration that owns the programme (``owner``): the
own list is the gateway's own administration (the EU imports its EOS exports into it), a list
received from a partner is that partner's code. Beside the current record of each authorisation
(with its version) the store keeps:

* removal markers (version and date at which an authorisation left a list), so a stale change
  arriving after a removal is refused as out of order instead of resurrecting the record;
* an identifier index (holder id, authorisation number, cross references such as US MIDs) for
  ``show`` and online queries;
* a status history per authorisation (what changed, when, from which import or message);
* staging for a full list arriving in parts: parts are staged under their sync id, and the
  end message swaps the staged records in for the held list in one transaction.

Every write is a function of the writer's connection so callers run it as (part of) a unit of
work of the node's Database (SQLite or PostgreSQL; the tables come from its migrations): an
import together with its outbox entries, an inbound message together with its inbox record. A
unit that raises leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

from gateway.errors import (
    AEO_DUPLICATE_AUTHORISATION,
    AEO_FULL_LIST_SEQUENCE,
    AEO_SUMMARY_MISMATCH,
    AeoError,
)
from gateway.model.aeo import (
    Address,
    AeoRecord,
    AeoStatus,
    AeoType,
    CrossReference,
    canonical_bytes,
)
from gateway.model.aeo_list import (
    AeoChange,
    AeoList,
    ReconciliationSummary,
    SummaryBuilder,
    _Removed,
)
from gateway.model.codes import Administration
from gateway.store.database import (
    Connection,
    Database,
    Dialect,
    dialect_of,
    integrity_errors,
    savepoint,
)


def _refuse_older_list(conn: Connection, owner: Administration, as_of: date, where: str) -> None:
    """A full list older than the last one completed would roll records back to older
    versions: refused (the sender's order normally prevents it; a receiver must not rely on
    that)."""
    latest = conn.execute(
        "SELECT max(as_of) FROM aeo_sync_done WHERE owner = ?", (owner.value,)
    ).fetchone()[0]
    if latest is not None and as_of.isoformat() < str(latest):
        raise AeoError(
            f"{where} is as of {as_of.isoformat()}, older than the list held (as of {latest}): "
            "a full list may not roll the list back",
            code=AEO_FULL_LIST_SEQUENCE,
            location="as_of",
        )


__all__ = [
    "AeoStore",
    "HistoryEntry",
    "StagedSync",
    "record_from_json",
    "record_to_json",
]

# Upserts (portable: SQLite >= 3.24 and PostgreSQL).
_REMOVED_CONFLICT = (
    "ON CONFLICT (owner, authorisation_number) DO UPDATE SET version = excluded.version, "
    "effective_date = excluded.effective_date"
)
_HISTORY_INSERT = (
    "INSERT INTO aeo_history (owner, authorisation_number, kind, version, status, "
    "effective_date, reason, source, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(dialect: Dialect, name: str, *, integer: bool = False) -> str:
    """A top-level field of the JSON text column ``record``, in SQL."""
    if dialect is Dialect.SQLITE:
        return f"record ->> '$.{name}'"
    return f"(record::jsonb ->> '{name}')" + ("::bigint" if integer else "")


def record_to_json(record: AeoRecord) -> str:
    """The stored form of a record: its canonical JSON (the bytes the summary digests)."""
    return canonical_bytes(record).decode("utf-8")


def record_from_json(text: str | bytes) -> AeoRecord:
    """A stored record back (re-validated by the model: a damaged row cannot pass silently)."""
    data: dict[str, Any] = json.loads(text)
    address = data["address"]
    consent_date = data["consent_date"]
    return AeoRecord(
        administration=Administration(data["administration"]),
        holder_id=data["holder_id"],
        holder_name=data["holder_name"],
        address=Address(
            address["street"], address["postcode"], address["city"], address["country"]
        ),
        authorisation_number=data["authorisation_number"],
        aeo_type=AeoType(data["aeo_type"]) if data["aeo_type"] is not None else None,
        issuing_country=data["issuing_country"],
        competent_authority=data["competent_authority"],
        authorised_since=date.fromisoformat(data["authorised_since"]),
        status=AeoStatus(data["status"]),
        status_effective=date.fromisoformat(data["status_effective"]),
        consent=bool(data["consent"]),
        consent_date=date.fromisoformat(consent_date) if consent_date else None,
        version=int(data["version"]),
        status_reason=data["status_reason"],
        partner_programme=data["partner_programme"],
        cross_references=tuple(CrossReference(s, v) for s, v in data["cross_references"]),
    )


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    version: int
    status: AeoStatus
    effective_date: date
    reason: str
    source: str
    recorded_at: str


@dataclass(frozen=True)
class StagedSync:
    """A full list in parts that has not ended (or whose end was refused)."""

    owner: Administration
    sync_id: str
    parts: int
    records: int


def _identifiers(record: AeoRecord) -> set[str]:
    return {
        record.holder_id,
        record.authorisation_number,
        *(ref.value for ref in record.cross_references),
    }


class AeoStore:
    """The UB1 tables in a node's database; reads on the calling thread's reader connection,
    writes as functions of the writer's connection (run them inside a unit of work)."""

    def __init__(self, database: Database, own: Administration) -> None:
        self.database = database
        self.own = own

    # -- loading (any connection) ---------------------------------------------------------------
    @staticmethod
    def load(conn: Connection, owner: Administration, numbers: Iterable[str]) -> AeoList:
        """The held records and removal markers of these authorisations, as an AeoList."""
        records: dict[str, AeoRecord] = {}
        removed: dict[str, _Removed] = {}
        for number in sorted(set(numbers)):
            row = conn.execute(
                "SELECT record FROM aeo_record WHERE owner = ? AND authorisation_number = ?",
                (owner.value, number),
            ).fetchone()
            if row is not None:
                records[number] = record_from_json(row[0])
                continue
            gone = conn.execute(
                "SELECT version, effective_date FROM aeo_removed "
                "WHERE owner = ? AND authorisation_number = ?",
                (owner.value, number),
            ).fetchone()
            if gone is not None:
                removed[number] = _Removed(int(gone[0]), date.fromisoformat(gone[1]))
        return AeoList(MappingProxyType(records), MappingProxyType(removed))

    @staticmethod
    def load_all(conn: Connection, owner: Administration) -> AeoList:
        """A whole list (with its removal markers)."""
        records = {
            number: record_from_json(text)
            for number, text in conn.execute(
                "SELECT authorisation_number, record FROM aeo_record WHERE owner = ?",
                (owner.value,),
            )
        }
        removed = {
            number: _Removed(int(version), date.fromisoformat(effective))
            for number, version, effective in conn.execute(
                "SELECT authorisation_number, version, effective_date FROM aeo_removed "
                "WHERE owner = ?",
                (owner.value,),
            )
        }
        return AeoList(MappingProxyType(records), MappingProxyType(removed))

    @staticmethod
    def iter_records(conn: Connection, owner: Administration) -> Iterator[AeoRecord]:
        """A list's records in authorisation-number order, streamed from this connection."""
        cursor = conn.execute(
            "SELECT record FROM aeo_record WHERE owner = ? ORDER BY authorisation_number",
            (owner.value,),
        )
        for (text,) in cursor:
            yield record_from_json(text)

    # -- writing (inside a unit of work) --------------------------------------------------------
    def apply_changes(
        self,
        conn: Connection,
        owner: Administration,
        changes: Sequence[AeoChange],
        source: str,
        locations: Sequence[str] = (),
    ) -> tuple[AeoList, AeoList]:
        """Apply deltas to a held list, all or nothing; (before, after) of the touched ones.

        The model checks each change against what is held (unknown authorisation, order,
        transitions, previous status); any bad one raises AeoRejected and nothing is written.
        """
        numbers = [change.authorisation_number for change in changes]
        before = self.load(conn, owner, numbers)
        after = before.apply(changes, locations)
        self.write_diff(conn, owner, before, after, changes, source)
        return before, after

    def write_diff(
        self,
        conn: Connection,
        owner: Administration,
        before: AeoList,
        after: AeoList,
        changes: Iterable[AeoChange],
        source: str,
    ) -> None:
        """Store the records that differ between ``before`` and ``after`` (a list already
        checked by the model), their removal markers, identifiers and history."""
        numbers = set(before.records) | set(after.records) | set(after.removed)
        for number in sorted(numbers):
            old = before.records.get(number)
            new = after.records.get(number)
            if new is not None:
                if old is not None and old == new:
                    continue
                self._put(conn, owner, new)
            elif old is not None or number in after.removed:
                self._delete(conn, owner, number)
                gone = after.removed.get(number)
                if gone is not None:
                    conn.execute(
                        "INSERT INTO aeo_removed (owner, authorisation_number, version, "
                        "effective_date) VALUES (?, ?, ?, ?) " + _REMOVED_CONFLICT,
                        (owner.value, number, gone.version, gone.effective_date.isoformat()),
                    )
        now = _now()
        conn.executemany(
            _HISTORY_INSERT,
            [
                (
                    owner.value,
                    change.authorisation_number,
                    change.kind.value,
                    change.version,
                    change.status.value,
                    change.effective_date.isoformat(),
                    change.reason,
                    source,
                    now,
                )
                for change in changes
            ],
        )

    def replace(
        self,
        conn: Connection,
        owner: Administration,
        records: Iterable[AeoRecord],
        source: str,
        as_of: date | None = None,
    ) -> int:
        """Make a held list exactly these records (a full list that was checked); return the
        count. Authorisations that leave the list get a removal marker at their held version.
        With `as_of` (a received full list) a list older than the one held is refused, and
        this one is remembered as held."""
        if as_of is not None:
            _refuse_older_list(conn, owner, as_of, f"{owner.value} full list")
            conn.execute(
                "INSERT INTO aeo_sync_done (owner, sync_id, as_of, records, completed_at) "
                "VALUES (?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
                (owner.value, f"single list as of {as_of.isoformat()}", as_of.isoformat(), _now()),
            )
        held = {
            number: (int(version), effective)
            for number, version, effective in conn.execute(
                "SELECT authorisation_number, version, status_effective FROM aeo_record "
                "WHERE owner = ?",
                (owner.value,),
            )
        }
        conn.execute("DELETE FROM aeo_record WHERE owner = ?", (owner.value,))
        conn.execute("DELETE FROM aeo_identifier WHERE owner = ?", (owner.value,))
        count = 0
        kept: set[str] = set()
        for record in records:
            self._put(conn, owner, record, fresh=True)
            kept.add(record.authorisation_number)
            count += 1
        for number in kept:
            conn.execute(
                "DELETE FROM aeo_removed WHERE owner = ? AND authorisation_number = ?",
                (owner.value, number),
            )
        conn.executemany(
            "INSERT INTO aeo_removed (owner, authorisation_number, version, effective_date) "
            "VALUES (?, ?, ?, ?) " + _REMOVED_CONFLICT,
            [
                (owner.value, number, version, effective)
                for number, (version, effective) in held.items()
                if number not in kept
            ],
        )
        _history_full_list(conn, owner, count, source)
        return count

    def _put(
        self,
        conn: Connection,
        owner: Administration,
        record: AeoRecord,
        fresh: bool = False,
    ) -> None:
        number = record.authorisation_number
        conn.execute(
            "INSERT INTO aeo_record (owner, authorisation_number, holder_id, status, version, "
            "status_effective, record) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, authorisation_number) DO UPDATE SET "
            "holder_id = excluded.holder_id, status = excluded.status, "
            "version = excluded.version, status_effective = excluded.status_effective, "
            "record = excluded.record",
            (
                owner.value,
                number,
                record.holder_id,
                record.status.value,
                record.version,
                record.status_effective.isoformat(),
                record_to_json(record),
            ),
        )
        if not fresh:
            conn.execute(
                "DELETE FROM aeo_identifier WHERE owner = ? AND authorisation_number = ?",
                (owner.value, number),
            )
            conn.execute(
                "DELETE FROM aeo_removed WHERE owner = ? AND authorisation_number = ?",
                (owner.value, number),
            )
        conn.executemany(
            "INSERT INTO aeo_identifier (owner, identifier, authorisation_number) "
            "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(owner.value, key, number) for key in sorted(_identifiers(record))],
        )

    @staticmethod
    def _delete(conn: Connection, owner: Administration, number: str) -> None:
        conn.execute(
            "DELETE FROM aeo_record WHERE owner = ? AND authorisation_number = ?",
            (owner.value, number),
        )
        conn.execute(
            "DELETE FROM aeo_identifier WHERE owner = ? AND authorisation_number = ?",
            (owner.value, number),
        )

    # -- full lists in parts --------------------------------------------------------------------
    @staticmethod
    def stage_part(
        conn: Connection,
        owner: Administration,
        sync_id: str,
        part: int,
        records: Sequence[AeoRecord],
        message_id: str,
    ) -> None:
        """Stage one part; refuse a part already staged or a sync that already ended."""
        where = f"{owner.value} full list {sync_id} part {part}"
        done = conn.execute(
            "SELECT 1 FROM aeo_sync_done WHERE owner = ? AND sync_id = ?", (owner.value, sync_id)
        ).fetchone()
        if done is not None:
            raise AeoError(
                f"{where}: this full list has already ended",
                code=AEO_FULL_LIST_SEQUENCE,
                location="sync_id",
            )
        try:
            with savepoint(conn, "stage_part"):
                conn.execute(
                    "INSERT INTO aeo_staging_part (owner, sync_id, part, message_id, records) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (owner.value, sync_id, part, message_id, len(records)),
                )
        except integrity_errors():
            raise AeoError(
                f"{where}: this part was already received in another message",
                code=AEO_FULL_LIST_SEQUENCE,
                location="part",
            ) from None
        rows = [
            (owner.value, sync_id, record.authorisation_number, part, record_to_json(record))
            for record in records
        ]
        try:
            with savepoint(conn, "stage_records"):
                conn.executemany(
                    "INSERT INTO aeo_staging_record (owner, sync_id, authorisation_number, "
                    "part, record) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        except integrity_errors():
            # (rolled back to the savepoint: the rows inserted before it are gone)
            earlier = next(
                number
                for _, _, number, _, _ in rows
                if conn.execute(
                    "SELECT 1 FROM aeo_staging_record WHERE owner = ? AND sync_id = ? "
                    "AND authorisation_number = ? AND part <> ?",
                    (owner.value, sync_id, number, part),
                ).fetchone()
            )
            raise AeoError(
                f"{where}: {earlier} is also in an earlier part",
                code=AEO_DUPLICATE_AUTHORISATION,
                location="records",
            ) from None

    def finish_sync(
        self,
        conn: Connection,
        owner: Administration,
        sync_id: str,
        parts: int,
        summary: ReconciliationSummary,
        as_of: date,
        source: str,
    ) -> int:
        """Check the staged parts against the end (all parts, the summary) and swap them in.

        Raises AEO_FULL_LIST_SEQUENCE (parts missing, or already ended) or AEO_SUMMARY_MISMATCH;
        then nothing is replaced and the list held stays as it was.
        """
        where = f"{owner.value} full list {sync_id}"
        if conn.execute(
            "SELECT 1 FROM aeo_sync_done WHERE owner = ? AND sync_id = ?", (owner.value, sync_id)
        ).fetchone():
            raise AeoError(
                f"{where} has already ended", code=AEO_FULL_LIST_SEQUENCE, location="sync_id"
            )
        staged = {
            int(part)
            for (part,) in conn.execute(
                "SELECT part FROM aeo_staging_part WHERE owner = ? AND sync_id = ?",
                (owner.value, sync_id),
            )
        }
        expected = set(range(1, parts + 1))
        if staged != expected:
            missing = sorted(expected - staged)
            extra = sorted(staged - expected)
            detail = []
            if missing:
                detail.append(f"part(s) {_ranges(missing)} not received")
            if extra:
                detail.append(f"part(s) {_ranges(extra)} beyond the {parts} announced")
            raise AeoError(
                f"{where} ends after {parts} part(s) but " + "; ".join(detail),
                code=AEO_FULL_LIST_SEQUENCE,
                location="parts",
            )
        # The staged rows are the canonical bytes of records the model checked when their part
        # arrived (stage_part); the summary is computed over exactly those bytes, so a row that
        # changed since cannot match the sender's digest. No need to re-parse a million rows.
        builder = SummaryBuilder()
        statuses = {status.value: status for status in AeoStatus}
        for text, status in conn.execute(
            f"SELECT record, {_field(dialect_of(conn), 'status')} FROM aeo_staging_record "
            "WHERE owner = ? AND sync_id = ? ORDER BY authorisation_number",
            (owner.value, sync_id),
        ):
            builder._feed(statuses[status], text.encode("utf-8"))
        actual = builder.result()
        differences = actual.differences(summary)
        if differences:
            raise AeoError(
                f"{where}: the staged records do not match the end's reconciliation summary "
                "(staged vs announced): " + "; ".join(differences),
                code=AEO_SUMMARY_MISMATCH,
                location="summary",
            )
        _refuse_older_list(conn, owner, as_of, where)
        count = self._replace_from_staging(conn, owner, sync_id, source)
        # The list is replaced: drop this sync's staging and any abandoned earlier one.
        conn.execute("DELETE FROM aeo_staging_part WHERE owner = ?", (owner.value,))
        conn.execute("DELETE FROM aeo_staging_record WHERE owner = ?", (owner.value,))
        conn.execute(
            "INSERT INTO aeo_sync_done (owner, sync_id, as_of, records, completed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (owner.value, sync_id, as_of.isoformat(), count, _now()),
        )
        return count

    @staticmethod
    def _replace_from_staging(
        conn: Connection, owner: Administration, sync_id: str, source: str
    ) -> int:
        """``replace`` with a sync's staged records, in SQL (the rows are canonical JSON): the
        same rows, identifiers, removal markers and history line."""
        key = (owner.value, sync_id)
        dialect = dialect_of(conn)
        staged = (
            "SELECT authorisation_number FROM aeo_staging_record WHERE owner = ? AND sync_id = ?"
        )
        conn.execute(
            "INSERT INTO aeo_removed (owner, authorisation_number, version, effective_date) "
            "SELECT owner, authorisation_number, version, status_effective FROM aeo_record "
            f"WHERE owner = ? AND authorisation_number NOT IN ({staged}) " + _REMOVED_CONFLICT,
            (owner.value, *key),
        )
        conn.execute("DELETE FROM aeo_record WHERE owner = ?", (owner.value,))
        conn.execute("DELETE FROM aeo_identifier WHERE owner = ?", (owner.value,))
        fields = ", ".join(
            _field(dialect, name, integer=name == "version")
            for name in ("holder_id", "status", "version", "status_effective")
        )
        count = conn.execute(
            "INSERT INTO aeo_record (owner, authorisation_number, holder_id, status, version, "
            f"status_effective, record) SELECT owner, authorisation_number, {fields}, "
            "record FROM aeo_staging_record WHERE owner = ? AND sync_id = ? "
            "ORDER BY authorisation_number",
            key,
        ).rowcount
        references = (
            "json_each(s.record, '$.cross_references') AS r"
            if dialect is Dialect.SQLITE
            else "jsonb_array_elements(s.record::jsonb -> 'cross_references') AS r (value)"
        )
        conn.execute(
            "INSERT INTO aeo_identifier (owner, identifier, authorisation_number) "
            "SELECT * FROM ("
            "SELECT owner, holder_id, authorisation_number FROM aeo_record WHERE owner = ? "
            "UNION ALL SELECT owner, authorisation_number, authorisation_number FROM aeo_record "
            "WHERE owner = ? "
            "UNION ALL SELECT s.owner, r.value ->> 1, s.authorisation_number "
            f"FROM aeo_staging_record AS s, {references} "
            "WHERE s.owner = ? AND s.sync_id = ?) AS ids WHERE true ON CONFLICT DO NOTHING",
            (owner.value, owner.value, *key),
        )
        conn.execute(
            f"DELETE FROM aeo_removed WHERE owner = ? AND authorisation_number IN ({staged})",
            (owner.value, *key),
        )
        _history_full_list(conn, owner, count, source)
        return int(count)

    # -- reading (reader connection of the calling thread) --------------------------------------
    def find(self, owner: Administration, identifier: str) -> tuple[AeoRecord, ...]:
        """Records of a list that an identifier names (holder id, number, cross reference)."""
        return self.find_in(self.database.reader(), owner, identifier)

    @staticmethod
    def find_in(conn: Connection, owner: Administration, identifier: str) -> tuple[AeoRecord, ...]:
        rows = conn.execute(
            "SELECT r.record FROM aeo_identifier i JOIN aeo_record r "
            "ON r.owner = i.owner AND r.authorisation_number = i.authorisation_number "
            "WHERE i.owner = ? AND i.identifier = ? ORDER BY r.authorisation_number",
            (owner.value, identifier),
        ).fetchall()
        return tuple(record_from_json(text) for (text,) in rows)

    def owners(self) -> list[Administration]:
        """Administrations whose lists are held (own first if held)."""
        rows = self.database.reader().execute("SELECT DISTINCT owner FROM aeo_record").fetchall()
        found = sorted(Administration(owner) for (owner,) in rows)
        return sorted(found, key=lambda a: a is not self.own)

    def count(self, owner: Administration) -> int:
        row = (
            self.database.reader()
            .execute("SELECT count(*) FROM aeo_record WHERE owner = ?", (owner.value,))
            .fetchone()
        )
        return int(row[0])

    def records(self, owner: Administration) -> Iterator[AeoRecord]:
        """A list's records in authorisation-number order, streamed."""
        cursor = self.database.reader().execute(
            "SELECT record FROM aeo_record WHERE owner = ? ORDER BY authorisation_number",
            (owner.value,),
        )
        for (text,) in cursor:
            yield record_from_json(text)

    def summary(self, owner: Administration) -> ReconciliationSummary:
        """The reconciliation summary of a held list, in constant memory."""
        builder = SummaryBuilder()
        for record in self.records(owner):
            builder.add(record)
        return builder.result()

    def snapshot(self, owner: Administration) -> AeoList:
        """A whole list read in one read transaction (a consistent snapshot under WAL, or in
        REPEATABLE READ on PostgreSQL)."""
        conn = self.database.reader()
        if self.database.dialect is Dialect.SQLITE:
            conn.execute("BEGIN")
        else:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            return self.load_all(conn, owner)
        finally:
            conn.execute("COMMIT")

    def history(self, owner: Administration, number: str) -> list[HistoryEntry]:
        rows = (
            self.database.reader()
            .execute(
                "SELECT kind, version, status, effective_date, reason, source, recorded_at "
                "FROM aeo_history WHERE owner = ? AND authorisation_number = ? ORDER BY id",
                (owner.value, number),
            )
            .fetchall()
        )
        return [
            HistoryEntry(
                kind, int(version), AeoStatus(status), date.fromisoformat(eff), reason, source, at
            )
            for kind, version, status, eff, reason, source, at in rows
        ]

    def staged(self) -> list[StagedSync]:
        """Full lists in parts not (successfully) ended."""
        rows = (
            self.database.reader()
            .execute(
                "SELECT p.owner, p.sync_id, count(*), sum(p.records) FROM aeo_staging_part p "
                "GROUP BY p.owner, p.sync_id ORDER BY p.owner, p.sync_id"
            )
            .fetchall()
        )
        return [StagedSync(Administration(o), s, int(n), int(r or 0)) for o, s, n, r in rows]


def _history_full_list(conn: Any, owner: Administration, count: int, source: str) -> None:
    now = _now()
    conn.execute(
        _HISTORY_INSERT,
        (owner.value, "*", "FULL_LIST", 0, "*", now[:10], f"list replaced: {count} records",
         source, now),
    )  # fmt: skip


def _ranges(numbers: Sequence[int]) -> str:
    """1, 2, 3, 7 -> '1-3, 7' (short messages for long lists of parts)."""
    out: list[str] = []
    start = prev = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == prev + 1:
            prev = number
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if number is not None:
            start = prev = number
    return ", ".join(out)
