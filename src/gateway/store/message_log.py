"""The message log: one append-only row per envelope sent or received, with its receipt.

It is the record an operator (or an auditor, or the partner in a dispute) reads to see what
left and what arrived, and what each side signed for it: direction, message id, partner,
Utility Block, message type, the SHA-256 of the exact envelope bytes, the receipt bytes as
signed, and the outcome with its code. Each delivery *attempt* is a row (a retry is a second
row), and so is each envelope received, including the ones the node refused and duplicates.

Append-only is enforced by the database (triggers refuse UPDATE and DELETE), and the rows form
a hash chain so that whoever can get past the triggers (anyone with the file) cannot do so
unseen: `gncgw log verify` (gateway.store.log_chain) recomputes it.

Hash chain
----------
Every row carries `prev_sha256` (the `entry_sha256` of the row before it; 32 zero bytes for
seq 1) and `entry_sha256` = SHA-256 of this encoding (encoding version 1)::

    b"gnc-log-entry/1\\n"
    || u64(seq)
    || lp(logged_at) || lp(direction) || lp(message_id) || lp(partner)
    || lp(utility_block) || lp(message_type) || lp(binding)
    || lp(envelope_sha256)
    || (b"\\x00" if receipt is None else b"\\x01" || lp(receipt))
    || lp(outcome) || lp(code)
    || lp(prev_sha256)

where u64(n) is n as 8 bytes big-endian, lp(x) = u64(len(x)) || x, and text fields are UTF-8 of
exactly the stored text (`logged_at` as stored: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, UTC). Every
field is length-prefixed and the receipt's absence has its own marker, so no two different rows
share an encoding. Rows are appended inside the writer's units of work (one writer: the chain
is serial), each chained to the head read in the same transaction; seq continues after the
highest seq ever used (sqlite_sequence; on PostgreSQL the message_log_sequence row written in
the same transaction), so a removed last row leaves a visible gap.

Several nodes on one PostgreSQL database share ONE chain: a node's appends are deferred to the
end of its batch and take a transaction-level advisory lock (`CHAIN_LOCK`) just before COMMIT,
so the chains of two nodes can never interleave and the lock is held only for the inserts and
the commit (docs/message-log.md).

Checkpoints
-----------
At intervals (`checkpoint_every` entries, when the log is given the gateway's signing identity)
and on demand (`SqliteMessageLog.checkpoint`, `gncgw log checkpoint`), the head of the chain is
signed as a detached JWS (gateway.envelope.jws, typ ``gnc-log-checkpoint+jws``) over the
canonical JSON (sorted keys, no spaces, UTF-8)::

    {"administration": "US", "entries": N, "head_seq": S, "head_sha256": "<hex>",
     "signed_at": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "typ": "gnc-log-checkpoint"}

stored with its exact bytes in the append-only table message_log_checkpoint.

Databases made before the chain existed are migrated once when the log is opened: the two
columns are added and filled in seq order (in one transaction).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gateway.envelope.jws import sign_detached
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding
from gateway.model.codes import Administration
from gateway.model.header import EnvelopeHeader, utc_now
from gateway.store.database import Database, Dialect, dialect_of
from gateway.store.sqlite import run_ddl

Apply = Callable[[sqlite3.Connection], None]

GENESIS = bytes(32)  # the prev_sha256 of seq 1
ENTRY_DOMAIN = b"gnc-log-entry/1\n"
CHECKPOINT_TYP = "gnc-log-checkpoint+jws"
DEFAULT_CHECKPOINT_EVERY = 1000
# Rows per SELECT when the whole chain is walked (verify, export): the memory they take.
DEFAULT_PAGE = 1000
# PostgreSQL: the transaction-level advisory lock that serialises appends to the one chain.
CHAIN_LOCK = 0x676E635F6C6F67  # "gnc_log"


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
    prev_sha256: bytes = b""  # set when read back (b"": not chained, a tampered row)
    entry_sha256: bytes = b""  # set when read back


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the chain head: `entries` rows, the last one `head_seq`."""

    id: int
    administration: str
    entries: int
    head_seq: int
    head_sha256: bytes
    signed_at: str
    payload: bytes  # the exact signed bytes (canonical JSON)
    jws: str


_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS message_log_no_update BEFORE UPDATE ON message_log
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS message_log_no_delete BEFORE DELETE ON message_log
BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
"""

_FIELDS = (
    "logged_at, direction, message_id, partner, utility_block, message_type, binding, "
    "envelope_sha256, receipt, outcome, code"
)
_COLUMNS = f"seq, {_FIELDS}, prev_sha256, entry_sha256"
_CHECKPOINT_COLUMNS = "id, administration, entries, head_seq, head_sha256, signed_at, payload, jws"


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _lp(data: bytes) -> bytes:
    return _u64(len(data)) + data


def entry_digest(
    seq: int,
    logged_at: str,
    direction: str,
    message_id: str,
    partner: str,
    utility_block: str,
    message_type: str,
    binding: str,
    envelope_sha256: bytes,
    receipt: bytes | None,
    outcome: str,
    code: str,
    prev_sha256: bytes,
) -> bytes:
    """entry_sha256 of one row: SHA-256 of the encoding in the module docstring."""
    parts = [ENTRY_DOMAIN, _u64(seq)]
    for text in (logged_at, direction, message_id, partner, utility_block, message_type, binding):
        parts.append(_lp(text.encode("utf-8")))
    parts.append(_lp(envelope_sha256))
    parts.append(b"\x00" if receipt is None else b"\x01" + _lp(receipt))
    for text in (outcome, code):
        parts.append(_lp(text.encode("utf-8")))
    parts.append(_lp(prev_sha256))
    return hashlib.sha256(b"".join(parts)).digest()


def digest_of(entry: LogEntry, prev_sha256: bytes) -> bytes:
    """The entry_sha256 a row read back (seq and at set) must carry after `prev_sha256`."""
    assert entry.at is not None
    return entry_digest(
        entry.seq,
        _ts(entry.at),
        entry.direction.value,
        entry.message_id,
        entry.partner,
        entry.utility_block,
        entry.message_type,
        entry.binding.value,
        entry.envelope_sha256,
        entry.receipt,
        entry.outcome.value,
        entry.code,
        prev_sha256,
    )


def _row_digest(seq: int, row: Sequence[Any], prev: bytes) -> bytes:
    """The digest of a raw row of the _FIELDS columns (as stored)."""
    return entry_digest(
        seq,
        str(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        str(row[4]),
        str(row[5]),
        str(row[6]),
        bytes(row[7]),
        bytes(row[8]) if row[8] is not None else None,
        str(row[9]),
        str(row[10]),
        prev,
    )


def _sequence_sql(dialect: Dialect) -> str:
    if dialect is Dialect.SQLITE:
        return "SELECT seq FROM sqlite_sequence WHERE name = 'message_log'"
    return "SELECT seq FROM message_log_sequence WHERE name = 'message_log'"


def head_in(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """(highest seq ever used, entry_sha256 of the last row) of the log, in this transaction."""
    row = conn.execute(
        "SELECT seq, entry_sha256 FROM message_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    used = conn.execute(_sequence_sql(dialect_of(conn))).fetchone()
    last = int(row[0]) if row is not None else 0
    prev = bytes(row[1]) if row is not None and row[1] is not None else GENESIS
    return max(last, int(used[0]) if used is not None else 0), prev


def append_in(entry: LogEntry, conn: sqlite3.Connection) -> None:
    """Unit of work (or a step of one): append one row."""
    append_many_in([entry], conn)


def append_many_in(entries: Sequence[LogEntry], conn: sqlite3.Connection) -> None:
    """Append rows, each chained to the one before (the head is read in this transaction).

    On PostgreSQL the rows are written at the end of the writer's batch (`_append_deferred`),
    under the chain lock; their time is taken now."""
    if not entries:
        return
    if dialect_of(conn) is Dialect.POSTGRESQL:
        conn.defer(_append_deferred, (utc_now(), tuple(entries)))  # type: ignore[attr-defined]
        return
    _append_now(entries, conn)


# PostgreSQL: the head, the highest seq ever used and the last checkpoint's head, one statement.
_PG_HEAD = (
    "SELECT used.seq, last.seq, last.entry_sha256, "
    "(SELECT head_seq FROM message_log_checkpoint ORDER BY id DESC LIMIT 1) "
    "FROM (SELECT 1) AS one "
    "LEFT JOIN message_log_sequence AS used ON used.name = 'message_log' "
    "LEFT JOIN (SELECT seq, entry_sha256 FROM message_log ORDER BY seq DESC LIMIT 1) AS last "
    "ON true"
)
# PostgreSQL: a batch's rows (one array per column) and the highest seq used, one statement.
_PG_APPEND = (
    f"WITH appended AS (INSERT INTO message_log ({_COLUMNS}) SELECT * FROM unnest("
    "?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], "
    "?::bytea[], ?::bytea[], ?::text[], ?::text[], ?::bytea[], ?::bytea[])) "
    "INSERT INTO message_log_sequence (name, seq) VALUES ('message_log', ?::bigint) "
    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
)


def _append_deferred(
    conn: sqlite3.Connection, batches: list[tuple[datetime, tuple[LogEntry, ...]]]
) -> None:
    """PostgreSQL, just before COMMIT: take the chain lock, then append the batch's rows.

    Three round trips whatever the number of rows: the lock and the head read go together
    (the read starts after the lock is granted, so it sees every append committed before),
    then one INSERT of all rows that also records the highest seq used."""
    head = conn.execute_after(  # type: ignore[attr-defined]
        f"SELECT pg_advisory_xact_lock({CHAIN_LOCK})", _PG_HEAD
    ).fetchone()
    used, last, last_sha256, checkpointed = head
    seq = max(int(last) if last is not None else 0, int(used) if used is not None else 0)
    prev = bytes(last_sha256) if last_sha256 is not None else GENESIS
    rows: list[tuple[object, ...]] = []
    for at, entries in batches:
        seq, prev = _chain(entries, at, seq, prev, rows)
    columns = (list(column) for column in zip(*rows, strict=True))
    conn.execute_binary(_PG_APPEND, (*columns, seq))  # type: ignore[attr-defined]
    policy = _POLICIES.get(id(conn))
    if policy is not None and policy[0] is conn and seq - int(checkpointed or 0) >= policy[2]:
        checkpoint_in(conn, policy[1])


def _chain(
    entries: Sequence[LogEntry],
    now: datetime,
    seq: int,
    prev: bytes,
    rows: list[tuple[object, ...]],
) -> tuple[int, bytes]:
    """Add the rows of `entries` to `rows`, chained after (seq, prev); the new head."""
    for e in entries:
        seq += 1
        fields = (
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
        digest = _row_digest(seq, fields, prev)
        rows.append((seq, *fields, prev, digest))
        prev = digest
    return seq, prev


def _append_now(entries: Sequence[LogEntry], conn: sqlite3.Connection) -> None:
    """SQLite: append at once (the writer is the only one; the file is the chain)."""
    seq, prev = head_in(conn)
    rows: list[tuple[object, ...]] = []
    seq, prev = _chain(entries, utc_now(), seq, prev, rows)
    conn.executemany(
        f"INSERT INTO message_log ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
        rows,
    )
    policy = _POLICIES.get(id(conn))
    if policy is not None and policy[0] is conn:
        identity, every = policy[1], policy[2]
        last = _last_checkpoint_head(conn)
        if seq - int(last or 0) >= every:
            checkpoint_in(conn, identity)


# The writer connections whose appends checkpoint automatically: id -> (conn, identity, every).
# (sqlite3.Connection takes no weak references; the entry holds the connection, so its id
# cannot be reused while the entry lives.)
_POLICIES: dict[int, tuple[sqlite3.Connection, SigningIdentity, int]] = {}


def checkpoint_payload(
    administration: str, entries: int, head_seq: int, head_sha256: bytes, signed_at: str
) -> bytes:
    """The canonical JSON a checkpoint signs."""
    document = {
        "administration": administration,
        "entries": entries,
        "head_seq": head_seq,
        "head_sha256": head_sha256.hex(),
        "signed_at": signed_at,
        "typ": "gnc-log-checkpoint",
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


# Checkpoints are stored in head order (one writer, or under the chain lock), so the newest id is
# the last checkpoint: found by primary key, not by scanning every checkpoint.
_LAST_CHECKPOINT = "SELECT head_seq, entries FROM message_log_checkpoint ORDER BY id DESC LIMIT 1"


def _last_checkpoint_head(conn: sqlite3.Connection) -> int:
    row = conn.execute(_LAST_CHECKPOINT).fetchone()
    return int(row[0]) if row else 0


def _entries_up_to_head(conn: sqlite3.Connection) -> int:
    """The rows of the log now: the last checkpoint's count plus the rows stored after its head,
    counted by primary key (a count of the whole table grows with the log, every checkpoint).
    A row removed before the last checkpoint is still counted here, so verification reports it
    against this checkpoint too, as it does against the earlier one."""
    row = conn.execute(_LAST_CHECKPOINT).fetchone()
    if row is None:
        return int(conn.execute("SELECT count(*) FROM message_log").fetchone()[0])
    since = conn.execute("SELECT count(*) FROM message_log WHERE seq > ?", (int(row[0]),))
    return int(row[1]) + int(since.fetchone()[0])


def checkpoint_in(
    conn: sqlite3.Connection, identity: SigningIdentity, at: datetime | None = None
) -> Checkpoint | None:
    """Unit of work: sign and store a checkpoint of the current head (None: the log is empty)."""
    if dialect_of(conn) is Dialect.POSTGRESQL:
        conn.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK})")  # a head no one moves
    row = conn.execute(
        "SELECT seq, entry_sha256 FROM message_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    head_seq, head = int(row[0]), bytes(row[1] or b"")
    entries = _entries_up_to_head(conn)
    administration = identity.administration.value
    signed_at = _ts(at or utc_now())
    payload = checkpoint_payload(administration, entries, head_seq, head, signed_at)
    jws = sign_detached(payload, identity, CHECKPOINT_TYP)
    checkpoint_id = conn.execute(
        "INSERT INTO message_log_checkpoint "
        "(administration, entries, head_seq, head_sha256, signed_at, payload, jws) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (administration, entries, head_seq, head, signed_at, payload, jws),
    ).fetchone()[0]
    return Checkpoint(
        int(checkpoint_id), administration, entries, head_seq, head, signed_at, payload, jws
    )


def _migrate(conn: sqlite3.Connection) -> None:
    """Unit of work (SQLite): chain a log made before the chain existed (idempotent). (On
    PostgreSQL every log was made chained, its triggers by the migrations.)"""
    if dialect_of(conn) is not Dialect.SQLITE:
        return
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(message_log)")}
    if "entry_sha256" not in columns:
        conn.execute("ALTER TABLE message_log ADD COLUMN prev_sha256 BLOB")
        conn.execute("ALTER TABLE message_log ADD COLUMN entry_sha256 BLOB")
    unchained = conn.execute(
        "SELECT count(*) FROM message_log WHERE entry_sha256 IS NULL"
    ).fetchone()[0]
    if unchained:
        # One-time backfill in seq order, the triggers lifted inside this transaction only.
        conn.execute("DROP TRIGGER IF EXISTS message_log_no_update")
        prev = GENESIS
        rows = conn.execute(f"SELECT seq, {_FIELDS}, entry_sha256 FROM message_log ORDER BY seq")
        for row in rows.fetchall():
            seq = int(row[0])
            if row[12] is not None:  # already chained: keep it
                prev = bytes(row[12])
                continue
            digest = _row_digest(seq, row[1:12], prev)
            conn.execute(
                "UPDATE message_log SET prev_sha256 = ?, entry_sha256 = ? WHERE seq = ?",
                (prev, digest, seq),
            )
            prev = digest
    run_ddl(_TRIGGERS, conn)


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
        prev_sha256=bytes(row[12]) if row[12] is not None else b"",
        entry_sha256=bytes(row[13]) if row[13] is not None else b"",
    )


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    return Checkpoint(
        id=int(row[0]),
        administration=str(row[1]),
        entries=int(row[2]),
        head_seq=int(row[3]),
        head_sha256=bytes(row[4]),
        signed_at=str(row[5]),
        payload=bytes(row[6]),
        jws=str(row[7]),
    )


class SqliteMessageLog:
    """The message_log table of a node's Database (SQLite or PostgreSQL).

    With `signer`, every append that takes the chain `checkpoint_every` entries past the last
    checkpoint also signs a new one (in the same transaction).
    """

    def __init__(
        self,
        database: Database,
        *,
        signer: SigningIdentity | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be positive")
        if database.dialect is Dialect.SQLITE:
            database.write(_migrate)
        self.database = database
        self.signer = signer
        if signer is not None:

            def register(conn: sqlite3.Connection) -> None:
                _POLICIES[id(conn)] = (conn, signer, checkpoint_every)

            database.write(register)

    def record(self, entries: Sequence[LogEntry]) -> None:
        """Append rows in a unit of work of their own (one commit)."""
        if entries:
            self.database.write(lambda conn: append_many_in(entries, conn))

    def checkpoint(self, identity: SigningIdentity | None = None) -> Checkpoint | None:
        """Sign a checkpoint of the head now (None: the log is empty)."""
        signer = identity or self.signer
        if signer is None:
            raise ValueError("a checkpoint needs a signing identity")
        return self.database.write(lambda conn: checkpoint_in(conn, signer))

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

    def chain(self, first_seq: int = 1, last_seq: int | None = None) -> list[LogEntry]:
        """Rows with first_seq <= seq (<= last_seq), in seq order."""
        sql = f"SELECT {_COLUMNS} FROM message_log WHERE seq >= ?"
        params: list[object] = [first_seq]
        if last_seq is not None:
            sql += " AND seq <= ?"
            params.append(last_seq)
        rows = self.database.reader().execute(sql + " ORDER BY seq", params).fetchall()
        return [_entry(row) for row in rows]

    def iter_chain(
        self, first_seq: int = 1, last_seq: int | None = None, page: int = DEFAULT_PAGE
    ) -> Iterator[LogEntry]:
        """Rows with first_seq <= seq (<= last_seq), in seq order, `page` rows per SELECT.

        So verifying or exporting a log of millions of rows holds one page, not the log. Each
        page is a statement of its own, keyed on seq (the primary key) rather than OFFSET, so a
        page deep in the log costs what the first one does, and no cursor or read transaction
        stays open between pages (a reader must not hold back SQLite's WAL checkpoints)."""
        if page < 1:
            raise ValueError("page must be positive")
        sql = f"SELECT {_COLUMNS} FROM message_log WHERE seq > ?"
        if last_seq is not None:
            sql += " AND seq <= ?"
        sql += " ORDER BY seq LIMIT ?"
        after = first_seq - 1
        while True:
            params: list[object] = [after] if last_seq is None else [after, last_seq]
            rows = self.database.reader().execute(sql, [*params, page]).fetchall()
            for row in rows:
                yield _entry(row)
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def checkpoints(self) -> list[Checkpoint]:
        rows = self.database.reader().execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM message_log_checkpoint ORDER BY id"
        )
        return [_checkpoint(row) for row in rows.fetchall()]

    def sequence_used(self) -> int:
        """The highest seq ever assigned (sqlite_sequence, message_log_sequence): a removed
        last row shows here."""
        row = self.database.reader().execute(_sequence_sql(self.database.dialect)).fetchone()
        return int(row[0]) if row is not None else 0

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


@dataclass(frozen=True)
class LoggedStep:
    """An inbox `apply` step that also appends `entry`, in the same transaction (`logged`).

    A class rather than a closure so the inbox can see a step that only logs (`apply` None):
    it cannot refuse once the envelope is stored, so such records need no savepoint each
    (store.inbox stores them together on PostgreSQL)."""

    apply: Apply | None
    entry: LogEntry

    def __call__(self, conn: sqlite3.Connection) -> None:
        if self.apply is not None:
            self.apply(conn)
        append_in(self.entry, conn)


def logged(apply: Apply | None, entry: LogEntry) -> LoggedStep:
    """An inbox `apply` step that also appends `entry`, in the same transaction."""
    return LoggedStep(apply, entry)


__all__ = [
    "CHECKPOINT_TYP",
    "DEFAULT_PAGE",
    "GENESIS",
    "Checkpoint",
    "Direction",
    "LogEntry",
    "LogOutcome",
    "LoggedStep",
    "SqliteMessageLog",
    "append_in",
    "append_many_in",
    "checkpoint_in",
    "checkpoint_payload",
    "digest_of",
    "entry_digest",
    "logged",
    "received_entry",
]
