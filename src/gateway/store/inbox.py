"""The inbox: every accepted envelope, stored with its signed receipt before the receipt leaves.

Duplicates are found by message id inside the same transaction that stores, so two concurrent
deliveries of one message cannot both be stored. Same id and same payload digest is a duplicate
(the original receipt is answered again); same id with another digest is a conflict.

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

from gateway.errors import DUPLICATE_CONFLICT, DeliveryError, GatewayError
from gateway.store.database import Database
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
    DUPLICATE = "duplicate"


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
        `apply` step raised). All share one commit; a refused record leaves no trace."""
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


def _put_one(record: InboundRecord, conn: sqlite3.Connection) -> PutResult:
    # Insert first: on PostgreSQL a concurrent insert of the same id by another node waits for
    # that node's commit and then does nothing (no unique violation aborting our batch).
    cursor = conn.execute(
        "INSERT INTO inbox (message_id, payload_sha256, received_sha256, sender, receiver, "
        "utility_block, message_type, binding, created_at, stored_at, envelope, receipt) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
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
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            record.envelope,
            record.receipt,
        ),
    )
    if cursor.rowcount == 0:
        row = conn.execute(
            "SELECT payload_sha256, receipt FROM inbox WHERE message_id = ?", (record.message_id,)
        ).fetchone()
        if bytes(row[0]) == record.payload_sha256:
            return PutResult(PutOutcome.DUPLICATE, bytes(row[1]))
        raise DeliveryError(
            f"message {record.message_id} was already received with another payload digest",
            code=DUPLICATE_CONFLICT,
            location="header.message_id",
        )
    if record.apply is not None:
        record.apply(conn)  # a GatewayError here rolls back the insert too (unit savepoint)
    return PutResult(PutOutcome.STORED, record.receipt)
