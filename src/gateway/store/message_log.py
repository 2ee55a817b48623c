"""The message log: one append-only row per envelope sent or received, with its receipt.

It is the record an operator (or an auditor, or the partner in a dispute) reads to see what
left and what arrived, and what each side signed for it: direction, message id, partner,
Utility Block, message type, the SHA-256 of the exact envelope bytes, the receipt bytes as
signed, and the outcome with its code. Each delivery *attempt* is a row (a retry is a second
row), and so is each envelope received, including the ones the node refused and duplicates.

Append-only is enforced by the database (triggers refuse UPDATE and DELETE). A later issue
turns the rows into a hash chain; the table is kept simple for that.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gateway.envelope.opened import Binding
from gateway.model.codes import Administration
from gateway.model.header import EnvelopeHeader, utc_now
from gateway.store.sqlite import SqliteDatabase

Apply = Callable[[sqlite3.Connection], None]


class Direction(StrEnum):
    SENT = "sent"
    RECEIVED = "received"


class LogOutcome(StrEnum):
    ACCEPTED = "ACCEPTED"  # an accepted receipt was issued (received) or verified (sent)
    DUPLICATE = "DUPLICATE"  # received again: answered with the original receipt
    REJECTED = "REJECTED"  # a signed rejection with its code
    FAILED = "FAILED"  # sent, but no verified receipt came back (code: why)


@dataclass(frozen=True)
class LogEntry:
    direction: Direction
    message_id: str  # "" when a refused envelope could not be read that far
    partner: str  # the other administration ("" when unknown)
    utility_block: str
    message_type: str
    binding: Binding
    envelope_sha256: bytes
    receipt: bytes | None  # as signed; None when none came back
    outcome: LogOutcome
    code: str = ""
    at: datetime | None = None  # None: when it is appended
    seq: int = 0  # set when read back


SCHEMA = """
CREATE TABLE IF NOT EXISTS message_log (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at       TEXT NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
    message_id      TEXT NOT NULL,
    partner         TEXT NOT NULL,
    utility_block   TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    binding         TEXT NOT NULL,
    envelope_sha256 BLOB NOT NULL,
    receipt         BLOB,
    outcome         TEXT NOT NULL,
    code            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS message_log_partner ON message_log (partner, seq);
CREATE INDEX IF NOT EXISTS message_log_message ON message_log (message_id);
CREATE TRIGGER IF NOT EXISTS message_log_no_update BEFORE UPDATE ON message_log
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS message_log_no_delete BEFORE DELETE ON message_log
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
"""

_COLUMNS = (
    "seq, logged_at, direction, message_id, partner, utility_block, message_type, binding, "
    "envelope_sha256, receipt, outcome, code"
)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append_in(entry: LogEntry, conn: sqlite3.Connection) -> None:
    """Unit of work (or a step of one): append one row."""
    append_many_in([entry], conn)


def append_many_in(entries: Sequence[LogEntry], conn: sqlite3.Connection) -> None:
    now = utc_now()
    conn.executemany(
        f"INSERT INTO message_log ({_COLUMNS.removeprefix('seq, ')}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                _ts(e.at or now),
                e.direction.value,
                e.message_id,
                e.partner,
                e.utility_block,
                e.message_type,
                e.binding.value,
                e.envelope_sha256,
                e.receipt,
                e.outcome.value,
                e.code,
            )
            for e in entries
        ],
    )


def _entry(row: Sequence[Any]) -> LogEntry:
    return LogEntry(
        seq=int(row[0]),
        at=datetime.strptime(str(row[1]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        direction=Direction(str(row[2])),
        message_id=str(row[3]),
        partner=str(row[4]),
        utility_block=str(row[5]),
        message_type=str(row[6]),
        binding=Binding(str(row[7])),
        envelope_sha256=bytes(row[8]),
        receipt=bytes(row[9]) if row[9] is not None else None,
        outcome=LogOutcome(str(row[10])),
        code=str(row[11]),
    )


class SqliteMessageLog:
    """The message_log table of a SqliteDatabase."""

    def __init__(self, database: SqliteDatabase) -> None:
        database.ensure_schema(SCHEMA)
        self.database = database

    def record(self, entries: Sequence[LogEntry]) -> None:
        """Append rows in a unit of work of their own (one commit)."""
        if entries:
            self.database.write(lambda conn: append_many_in(entries, conn))

    def entries(
        self,
        *,
        partner: str | None = None,
        message_id: str | None = None,
        direction: Direction | None = None,
        limit: int | None = None,
    ) -> list[LogEntry]:
        """Rows, newest last; with `limit`, the newest `limit` rows."""
        where: list[str] = []
        params: list[object] = []
        if partner is not None:
            where.append("partner = ?")
            params.append(partner)
        if message_id is not None:
            where.append("message_id = ?")
            params.append(message_id)
        if direction is not None:
            where.append("direction = ?")
            params.append(direction.value)
        sql = f"SELECT {_COLUMNS} FROM message_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.database.reader().execute(sql, params).fetchall()
        return [_entry(row) for row in reversed(rows)]

    def count(self) -> int:
        return int(self.database.reader().execute("SELECT count(*) FROM message_log").fetchone()[0])


def received_entry(
    binding: Binding,
    raw: bytes,
    receipt: bytes,
    outcome: LogOutcome,
    *,
    header: EnvelopeHeader | None,
    peer: Administration | None = None,
    code: str = "",
) -> LogEntry:
    """The row for an envelope this node received and answered (`header` None: unreadable)."""
    sender = header.sender if header is not None else peer
    return LogEntry(
        direction=Direction.RECEIVED,
        message_id=header.message_id if header is not None else "",
        partner=sender.value if sender is not None else "",
        utility_block=header.utility_block.value if header is not None else "",
        message_type=header.message_type if header is not None else "",
        binding=binding,
        envelope_sha256=hashlib.sha256(raw).digest(),
        receipt=receipt,
        outcome=outcome,
        code=code,
    )


def logged(apply: Apply | None, entry: LogEntry) -> Apply:
    """An inbox `apply` step that also appends `entry`, in the same transaction."""

    def step(conn: sqlite3.Connection) -> None:
        if apply is not None:
            apply(conn)
        append_in(entry, conn)

    return step


__all__ = [
    "SCHEMA",
    "Direction",
    "LogEntry",
    "LogOutcome",
    "SqliteMessageLog",
    "append_in",
    "append_many_in",
    "logged",
    "received_entry",
]
