"""The inbox: every accepted envelope, stored with its signed receipt before the receipt leaves.

Duplicates are found by message id inside the same transaction that stores, so two concurrent
deliveries of one message cannot both be stored. The same sender, id and payload digest is a
duplicate: in the same envelope bytes it is answered with the original receipt; in other bytes
(sent again over the other binding, or signed again) with a new receipt for the bytes received,
so the sender can check it against what it sent. The same id with another payload digest, or
from another administration, is a conflict (nothing of the other message is disclosed).

Commits are grouped by the database's writer (store.sqlite, store.postgres): each caller gets
its answer only after its own record is durable, but concurrent callers share one fsync. A
record may carry an `apply` step that updates the exchange's own tables in the same
transaction, so a receipt is never issued for a message that was stored but not applied, or
applied but not stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from gateway.errors import DUPLICATE_CONFLICT, DeliveryError, GatewayError
from gateway.store.database import Database, Dialect
from gateway.store.message_log import LogEntry, LoggedStep, append_many_in
from gateway.store.sqlite import SqliteDatabase


@dataclass(frozen=True)
class InboundRecord:
    message_id: str
    payload_sha256: bytes
    received_sha256: bytes
    sender: str
    receiver: str
    utility_block: str
    message_type: str
    binding: str
    created_at: str
    envelope: bytes
    receipt: bytes
    # Applies the message to the exchange's tables in the same transaction (None: store only).
    apply: Callable[[sqlite3.Connection], None] | None = field(default=None, compare=False)


class PutOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # the same envelope bytes again: the receipt stored with them
    RESENT = "resent"  # the same message in other envelope bytes: answer these bytes


@dataclass(frozen=True)
class PutResult:
    outcome: PutOutcome
    receipt: bytes  # the receipt to answer: the new one, or the one stored with the original


class SqliteInbox:
    """The inbox table of a node's Database, SQLite or PostgreSQL (a SQLite file is opened for
    it when given a path). The table itself comes from the migrations (store.schema)."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        database: Database | None = None,
        synchronous: str = "FULL",
        max_batch: int = 512,
    ) -> None:
        if database is None:
            if path is None:
                raise ValueError("give a path or a database")
            database = SqliteDatabase(path, synchronous=synchronous, max_batch=max_batch)
        self.database: Database = database

    # -- public API ----------------------------------------------------------------------------
    def put(self, record: InboundRecord) -> PutResult:
        return self.put_many([record])[0]

    def put_many(self, records: Sequence[InboundRecord]) -> list[PutResult]:
        """Store records durably (or find them as duplicates); raise on the first refusal."""
        out: list[PutResult] = []
        for result in self.put_each(records):
            if isinstance(result, GatewayError):
                raise result
            out.append(result)
        return out

    def put_each(self, records: Sequence[InboundRecord]) -> list[PutResult | GatewayError]:
        """Per record, in order: stored, duplicate, or the refusal (conflict, or what its
        `apply` step raised). All share one commit; a refused record leaves no trace.

        On PostgreSQL, records whose only step is a message-log append (or none) are stored
        by one unit with one multi-row INSERT (`_put_plain`): nothing can refuse them after
        their row is written, so they need no savepoint each, and one statement replaces a
        round trip per record. Records with an exchange's `apply` step keep a unit each."""
        if records and self.database.dialect is Dialect.POSTGRESQL and all(map(_plain, records)):
            return self.database.write(_PutPlain(tuple(records)))
        return self.database.write_each([partial(_put_one, record) for record in records])

    def receipt_for(self, message_id: str) -> bytes | None:
        row = (
            self.database.reader()
            .execute("SELECT receipt FROM inbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return bytes(row[0]) if row else None

    def envelope_for(self, message_id: str) -> bytes | None:
        row = (
            self.database.reader()
            .execute("SELECT envelope FROM inbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return bytes(row[0]) if row else None

    def count(self) -> int:
        return int(self.database.reader().execute("SELECT count(*) FROM inbox").fetchone()[0])

    def is_usable(self) -> bool:
        return self.database.is_usable()

    def close(self) -> None:
        self.database.close()


def erase_envelope(conn: sqlite3.Connection, message_id: str) -> None:
    """Retention (a unit step): drop a stored envelope's bytes. Its digests and the signed
    receipt stay, as proof of what was received, and a resend is still known as a duplicate."""
    conn.execute("UPDATE inbox SET envelope = ? WHERE message_id = ?", (b"", message_id))


_INSERT = (
    "INSERT INTO inbox (message_id, payload_sha256, received_sha256, sender, receiver, "
    "utility_block, message_type, binding, created_at, stored_at, envelope, receipt) "
)


def _stored_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _conflict(message_id: str, why: str = "with another payload digest") -> DeliveryError:
    return DeliveryError(
        f"message {message_id} was already received {why}",
        code=DUPLICATE_CONFLICT,
        location="header.message_id",
    )


_STORED = "SELECT message_id, sender, payload_sha256, received_sha256, receipt FROM inbox "


def _seen_before(record: InboundRecord, row: Sequence[Any]) -> PutResult | DeliveryError:
    """A record whose id is already stored, against the stored (id, sender, payload digest,
    received digest, receipt) row: a duplicate, the same message resent, or a conflict."""
    sender, payload_sha256, received_sha256, receipt = row[1:5]
    if sender != record.sender:
        return _conflict(record.message_id, "from another administration")
    if bytes(payload_sha256) != record.payload_sha256:
        return _conflict(record.message_id)
    if bytes(received_sha256) == record.received_sha256:
        return PutResult(PutOutcome.DUPLICATE, bytes(receipt))
    return PutResult(PutOutcome.RESENT, record.receipt)


def _plain(record: InboundRecord) -> bool:
    """Nothing but (at most) a message-log append to do once stored: it cannot refuse."""
    step = record.apply
    return step is None or (isinstance(step, LoggedStep) and step.apply is None)


@dataclass(frozen=True)
class _PutPlain:
    """PostgreSQL unit: store plain records (`_plain`) with one INSERT, in order.

    The same decisions as `_put_one` per record: the first record of each id is inserted
    with ``ON CONFLICT DO NOTHING`` (a concurrent insert of that id by another node is waited
    for, then skipped); any record not inserted is compared, in this transaction, with the row
    stored under its id (a duplicate answers that row's receipt, another digest is a conflict:
    nothing of it was written). The message-log rows of the stored records are appended in
    record order.

    It refuses nothing by raising (a conflict is a value it returns, decided before anything
    of that record is written), so it runs without a savepoint (store.postgres)."""

    records: tuple[InboundRecord, ...]
    refuses_nothing = True

    def __call__(self, conn: sqlite3.Connection) -> list[PutResult | GatewayError]:
        return _put_plain(self.records, conn)


def _put_plain(
    records: Sequence[InboundRecord], conn: sqlite3.Connection
) -> list[PutResult | GatewayError]:
    first: dict[str, int] = {}
    for index, record in enumerate(records):
        first.setdefault(record.message_id, index)
    fresh = [records[index] for index in first.values()]
    stored_at = _stored_at()
    inserted = {
        str(row[0])
        for row in conn.execute_binary(  # type: ignore[attr-defined]
            _INSERT + "SELECT * FROM unnest(?::text[], ?::bytea[], ?::bytea[], ?::text[], "
            "?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bytea[], "
            "?::bytea[]) ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            (
                [r.message_id for r in fresh],
                [r.payload_sha256 for r in fresh],
                [r.received_sha256 for r in fresh],
                [r.sender for r in fresh],
                [r.receiver for r in fresh],
                [r.utility_block for r in fresh],
                [r.message_type for r in fresh],
                [r.binding for r in fresh],
                [r.created_at for r in fresh],
                [stored_at] * len(fresh),
                [r.envelope for r in fresh],
                [r.receipt for r in fresh],
            ),
        ).fetchall()
    }
    stored = {first[message_id] for message_id in inserted}
    known: dict[str, Sequence[Any]] = {}
    others = sorted({r.message_id for i, r in enumerate(records) if i not in stored})
    if others:
        for row in conn.execute(_STORED + "WHERE message_id = ANY(?)", (others,)).fetchall():
            known[str(row[0])] = row
    results: list[PutResult | GatewayError] = []
    entries: list[LogEntry] = []
    for index, record in enumerate(records):
        if index in stored:
            if record.apply is not None:
                assert isinstance(record.apply, LoggedStep)
                entries.append(record.apply.entry)
            results.append(PutResult(PutOutcome.STORED, record.receipt))
            continue
        results.append(_seen_before(record, known[record.message_id]))
    append_many_in(entries, conn)
    return results


def _put_one(record: InboundRecord, conn: sqlite3.Connection) -> PutResult:
    # Insert first: on PostgreSQL a concurrent insert of the same id by another node waits for
    # that node's commit and then does nothing (no unique violation aborting our batch).
    cursor = conn.execute(
        _INSERT + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
        (
            record.message_id,
            record.payload_sha256,
            record.received_sha256,
            record.sender,
            record.receiver,
            record.utility_block,
            record.message_type,
            record.binding,
            record.created_at,
            _stored_at(),
            record.envelope,
            record.receipt,
        ),
    )
    if cursor.rowcount == 0:
        row = conn.execute(_STORED + "WHERE message_id = ?", (record.message_id,)).fetchone()
        seen = _seen_before(record, row)
        if isinstance(seen, DeliveryError):
            raise seen
        return seen
    if record.apply is not None:
        record.apply(conn)  # a GatewayError here rolls back the insert too (unit savepoint)
    return PutResult(PutOutcome.STORED, record.receipt)
