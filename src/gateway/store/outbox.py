"""The outbox: sealed envelopes waiting to be delivered to a partner, with their retry state.

An exchange queues a message in the same unit of work that changes its own tables
(`enqueue(conn, message)`: a transactional outbox), so a message is queued if and only if the
change that caused it committed. The delivery worker (services.delivery) then takes what is
*due*, sends the exact sealed bytes, and records the partner's verified receipt or the failure.
Retries resend the same bytes, so the partner recognises a resend as a duplicate.

Order. Messages with the same (partner, ordering_key) are delivered strictly in enqueue order:
only the oldest undelivered message of a key (its *head*) is ever due. A later message waits
while an earlier one is pending (also while it waits for its next retry) and while it is a
*dead letter*: a dead letter blocks its key until an operator replays it (`replay`, back to
pending with its attempts reset) or discards it (`discard`: the key moves on without it).
Different keys do not wait for each other.

States: pending -> delivered (with the receipt), pending -> dead (permanent refusal, or retries
exhausted), dead -> pending (replay), dead -> discarded. Rows are never deleted here.

Several nodes (PostgreSQL). A worker does not just read what is due, it *claims* it (`claim`):
one statement picks the due heads with ``FOR UPDATE SKIP LOCKED`` and marks them
``claimed_by`` this node until ``claim_expires`` (now + the lease), so two nodes never take the
same message. A head is not claimable while another node holds an unexpired claim on any
pending message of its key, so per-key order holds across nodes. Settling is *fenced*
(``mark_delivered_in`` / ``mark_failed_in`` with ``claimed_by``): it changes the row only while
this node's claim is still the row's claim, so a node that lost its lease (paused, partitioned)
cannot overwrite the outcome of the node that took over; it also ends the claim
(``claim_expires`` NULL), keeping ``claimed_by`` as who settled it last. A crashed node's claims
lapse after the lease and another node re-sends; the partner answers that as a duplicate with
its original receipt.

SQLite. `claim` is `due` (no write, the hot path unchanged) and settling is not fenced: instead
one process at a time delivers a store's outbox. Every delivery pass runs inside
`delivery_turn()`, which holds an exclusive lock on a file beside the database
(``<file>-delivery.lock``) for the pass, so `gncgw serve` and a command that delivers at once
(`gncgw send`, `--deliver`) on the same file take turns instead of sending a message twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from gateway.envelope.opened import Binding
from gateway.errors import (
    DLV_OUTBOX_STATE,
    DLV_OUTBOX_UNKNOWN,
    DUPLICATE_CONFLICT,
    DeliveryError,
    GatewayError,
)
from gateway.model.codes import Administration, UtilityBlock
from gateway.store.database import Database, Dialect

# How long a claim holds when nothing settles it (a crashed or paused node): another node
# re-sends after this. Longer than a delivery pass takes; short enough to take over promptly.
DEFAULT_LEASE = timedelta(seconds=30)


def default_node_id() -> str:
    """`hostname:pid`: unique among live nodes; `[gateway] node_id` names a node for good."""
    return f"{socket.gethostname()}:{os.getpid()}"


class OutboundState(StrEnum):
    PENDING = "pending"  # to be delivered (now, or at its next attempt time)
    DELIVERED = "delivered"  # the partner's verified ACCEPTED receipt is stored
    DEAD = "dead"  # dead letter: refused for good, or retries exhausted; blocks its key
    DISCARDED = "discarded"  # a dead letter an operator gave up on; no longer blocks its key


@dataclass(frozen=True)
class OutboundMessage:
    """What an exchange queues: one sealed envelope for one partner."""

    message_id: str
    partner: Administration
    binding: Binding
    ordering_key: str  # e.g. an authorisation number, or "full-list:<sync id>"
    utility_block: UtilityBlock
    message_type: str
    envelope: bytes  # sealed, exact bytes; retries resend these same bytes


@dataclass(frozen=True)
class OutboundItem:
    """A queued message and its delivery state."""

    seq: int  # enqueue order (global)
    message_id: str
    partner: Administration
    binding: Binding
    ordering_key: str
    utility_block: UtilityBlock
    message_type: str
    envelope_sha256: bytes
    state: OutboundState
    attempts: int  # failed attempts so far
    enqueued_at: datetime
    next_attempt: datetime | None  # None: as soon as possible
    last_attempt: datetime | None
    last_error_code: str
    last_error: str
    delivered_at: datetime | None
    envelope: bytes | None = None  # loaded by due() (to send it); list() leaves it out
    claimed_by: str | None = None  # the node that claims it now, or last settled it (PostgreSQL)
    claim_expires: datetime | None = None  # None: no claim in force


_COLUMNS = (
    "seq, message_id, partner, binding, ordering_key, utility_block, message_type, "
    "envelope_sha256, state, attempts, enqueued_at, next_attempt, last_attempt, "
    "last_error_code, last_error, delivered_at, claimed_by, claim_expires"
)


# The head of each ordering key of a partner, if due: walks the partner's pending rows in
# enqueue order (index outbox_state) and probes for an earlier blocker (index outbox_blocking).
DUE_SQL = (
    f"SELECT {_COLUMNS}, envelope FROM outbox AS o "
    "WHERE o.partner = ? AND o.state = 'pending' "
    "AND (o.next_attempt IS NULL OR o.next_attempt <= ?) "
    "AND NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.partner = o.partner "
    "AND e.ordering_key = o.ordering_key AND e.state IN ('pending', 'dead') "
    "AND e.seq < o.seq) "
    "ORDER BY o.seq LIMIT ?"
)

# PostgreSQL: the due heads of a partner's keys that no other node holds, locked (SKIP LOCKED:
# a row another node is claiming right now is passed over, not waited for) and claimed in the
# same statement. Parameters: node, expires, partner, now, now, node, node, now, limit.
CLAIM_SQL = (
    "UPDATE outbox AS u SET claimed_by = ?, claim_expires = ? FROM ("
    "SELECT o.seq FROM outbox AS o "
    "WHERE o.partner = ? AND o.state = 'pending' "
    "AND (o.next_attempt IS NULL OR o.next_attempt <= ?) "
    "AND (o.claim_expires IS NULL OR o.claim_expires <= ? OR o.claimed_by = ?) "
    "AND NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.partner = o.partner "
    "AND e.ordering_key = o.ordering_key AND e.state IN ('pending', 'dead') "
    "AND e.seq < o.seq) "
    "AND NOT EXISTS (SELECT 1 FROM outbox AS c WHERE c.partner = o.partner "
    "AND c.ordering_key = o.ordering_key AND c.state = 'pending' "
    "AND c.claimed_by <> ? AND c.claim_expires > ?) "
    "ORDER BY o.seq LIMIT ? FOR UPDATE OF o SKIP LOCKED) AS picked "
    f"WHERE u.seq = picked.seq RETURNING {', '.join('u.' + c for c in _COLUMNS.split(', '))}, "
    "u.envelope"
)


def _ts(moment: datetime) -> str:
    """A sortable UTC text timestamp (the same width always, so text order is time order)."""
    if moment.tzinfo is None:
        raise ValueError("outbox times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _item(row: Sequence[Any], envelope: bytes | None = None) -> OutboundItem:
    enqueued = _parse(str(row[10]))
    assert enqueued is not None
    return OutboundItem(
        seq=int(row[0]),
        message_id=str(row[1]),
        partner=Administration(str(row[2])),
        binding=Binding(str(row[3])),
        ordering_key=str(row[4]),
        utility_block=UtilityBlock(str(row[5])),
        message_type=str(row[6]),
        envelope_sha256=bytes(row[7]),
        state=OutboundState(str(row[8])),
        attempts=int(row[9]),
        enqueued_at=enqueued,
        next_attempt=_parse(row[11]),
        last_attempt=_parse(row[12]),
        last_error_code=str(row[13]),
        last_error=str(row[14]),
        delivered_at=_parse(row[15]),
        envelope=envelope,
        claimed_by=None if row[16] is None else str(row[16]),
        claim_expires=_parse(row[17]),
    )


class SqliteOutbox:
    """The outbox table of a node's Database, SQLite or PostgreSQL (shared with the inbox and
    the exchanges' tables; the table comes from the migrations, gateway.store.schema).

    `node_id` names this node in its claims (default `default_node_id()`); `lease` is how long
    a claim holds unless settled."""

    def __init__(
        self, database: Database, *, node_id: str | None = None, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("the claim lease must be positive")
        self.database = database
        self.node_id = node_id or default_node_id()
        self.lease = lease

    @property
    def fence(self) -> str | None:
        """What settling checks the claim against: this node on PostgreSQL, None on SQLite."""
        return self.node_id if self.database.dialect is Dialect.POSTGRESQL else None

    # -- queueing ------------------------------------------------------------------------------
    def enqueue(
        self, conn: sqlite3.Connection, message: OutboundMessage, *, now: datetime | None = None
    ) -> None:
        """Queue a message inside the caller's unit of work (it commits or rolls back with it).

        The same message id with the same envelope bytes is a no-op (a retried unit of work);
        with other bytes it is refused with DLV_DUPLICATE_CONFLICT.
        """
        digest = hashlib.sha256(message.envelope).digest()
        cursor = conn.execute(
            "INSERT INTO outbox (message_id, partner, binding, ordering_key, utility_block, "
            "message_type, envelope, envelope_sha256, enqueued_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
            (
                message.message_id,
                message.partner.value,
                message.binding.value,
                message.ordering_key,
                message.utility_block.value,
                message.message_type,
                message.envelope,
                digest,
                _ts(now or datetime.now(UTC)),
            ),
        )
        if cursor.rowcount == 1:
            return
        row = conn.execute(
            "SELECT envelope_sha256, partner FROM outbox WHERE message_id = ?",
            (message.message_id,),
        ).fetchone()
        if bytes(row[0]) != digest:
            raise DeliveryError(
                f"message {message.message_id} is already in the outbox (for {row[1]}) with "
                "other envelope bytes; a message id names one envelope",
                code=DUPLICATE_CONFLICT,
                location=f"outbox:{message.message_id}",
            )

    def enqueue_all(self, messages: Sequence[OutboundMessage]) -> None:
        """Queue messages in one unit of work of their own: all of them, or none."""

        def unit(conn: sqlite3.Connection) -> None:
            now = datetime.now(UTC)
            for message in messages:
                self.enqueue(conn, message, now=now)

        self.database.write(unit)

    # -- the worker's side ---------------------------------------------------------------------
    @contextlib.contextmanager
    def delivery_turn(self) -> Iterator[bool]:
        """Whether this process may deliver this outbox now, for the length of the block.

        PostgreSQL: always (claims keep the nodes apart). A SQLite file: only while no other
        process is delivering it (a non-blocking exclusive lock on its delivery lock file,
        released at the end of the block); an in-memory database belongs to one process."""
        path: str | None = getattr(self.database, "delivery_lock_path", None)
        if path is None:  # PostgreSQL, or in memory
            yield True
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True  # the lock goes with the descriptor, closed below
        finally:
            os.close(fd)

    def due(self, partner: Administration, now: datetime, limit: int) -> list[OutboundItem]:
        """Up to `limit` messages of `partner` deliverable at `now`, in enqueue order, with
        their envelopes: the head of each ordering key, if its next attempt time has come."""
        rows = self.database.reader().execute(DUE_SQL, (partner.value, _ts(now), limit)).fetchall()
        return [_item(row[:-1], bytes(row[-1])) for row in rows]

    def claim(self, partner: Administration, now: datetime, limit: int) -> list[OutboundItem]:
        """What `due` returns, claimed by this node until now + lease (PostgreSQL), in enqueue
        order: heads no other node holds. On SQLite (one process owns the file) it is `due`."""
        if self.database.dialect is not Dialect.POSTGRESQL:
            return self.due(partner, now, limit)
        node, at = self.node_id, _ts(now)
        params = (node, _ts(now + self.lease), partner.value, at, at, node, node, at, limit)

        def unit(conn: Any) -> list[Any]:
            return list(conn.execute(CLAIM_SQL, params).fetchall())

        rows = sorted(self.database.write(unit), key=lambda row: int(row[0]))
        return [_item(row[:-1], bytes(row[-1])) for row in rows]

    def release(self, message_ids: Sequence[str]) -> int:
        """End this node's claims on these messages without settling them (a worker stopping
        with work in hand: another node may take it at once); how many."""
        if self.database.dialect is not Dialect.POSTGRESQL or not message_ids:
            return 0

        def unit(conn: Any) -> int:
            cursor = conn.executemany(
                "UPDATE outbox SET claim_expires = NULL WHERE message_id = ? AND claimed_by = ? "
                "AND state = 'pending'",
                [(message_id, self.node_id) for message_id in message_ids],
            )
            return int(cursor.rowcount)

        return self.database.write(unit)

    def mark_delivered(
        self, message_id: str, receipt: bytes, at: datetime, *, fenced: bool = False
    ) -> None:
        """Record the partner's verified ACCEPTED receipt (only the worker knows it verified).
        `fenced`: only while this node's claim holds (what a worker that claimed it does)."""
        claimed_by = self.fence if fenced else None
        self.database.write(
            partial(mark_delivered_in, message_id, receipt, at, claimed_by=claimed_by)
        )

    def mark_failed(
        self,
        message_id: str,
        error: GatewayError,
        at: datetime,
        next_attempt: datetime | None,
        *,
        receipt: bytes | None = None,
        fenced: bool = False,
    ) -> None:
        """Count a failed attempt: retry at `next_attempt`, or (None) make it a dead letter.
        A signed rejection receipt, if the partner sent one, is kept as proof of the refusal.
        `fenced`: as for mark_delivered."""
        claimed_by = self.fence if fenced else None
        self.database.write(
            partial(
                mark_failed_in,
                message_id,
                error,
                at,
                next_attempt,
                receipt=receipt,
                claimed_by=claimed_by,
            )
        )

    # -- operators -----------------------------------------------------------------------------
    def list(
        self,
        state: OutboundState | str | None = None,
        partner: Administration | None = None,
        *,
        limit: int | None = None,
    ) -> list[OutboundItem]:
        """Messages (without their envelopes) in enqueue order, optionally filtered."""
        where: list[str] = []
        params: list[object] = []
        if state is not None:
            where.append("state = ?")
            params.append(OutboundState(state).value)
        if partner is not None:
            where.append("partner = ?")
            params.append(partner.value)
        sql = f"SELECT {_COLUMNS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_item(row) for row in self.database.reader().execute(sql, params).fetchall()]

    def get(self, message_id: str) -> OutboundItem | None:
        row = (
            self.database.reader()
            .execute(f"SELECT {_COLUMNS} FROM outbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return _item(row) if row else None

    def receipt_for(self, message_id: str) -> bytes | None:
        """The partner's signed receipt stored with a message (accepted or, if dead, rejected)."""
        row = (
            self.database.reader()
            .execute("SELECT receipt FROM outbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return bytes(row[0]) if row and row[0] is not None else None

    def replay(self, message_id: str | None = None, partner: Administration | None = None) -> int:
        """Dead letters back to pending, attempts reset, due at once; how many.

        With a message id, that message must be a dead letter (DLV_OUTBOX_UNKNOWN_MESSAGE or
        DLV_OUTBOX_STATE otherwise); without, every dead letter (of `partner`, if given).
        """
        return self.database.write(partial(_replay, message_id, partner))

    def discard(self, message_id: str) -> None:
        """Give up on a dead letter: it stays in the outbox as discarded; its key moves on."""
        self.database.write(partial(_discard, message_id))

    def last_enqueued(self, partner: Administration, message_type: str) -> datetime | None:
        """When a message of this type was last queued for the partner (for schedules)."""
        row = (
            self.database.reader()
            .execute(
                "SELECT max(enqueued_at) FROM outbox WHERE partner = ? AND message_type = ?",
                (partner.value, message_type),
            )
            .fetchone()
        )
        return _parse(row[0]) if row and row[0] else None

    def counts(self) -> dict[str, int]:
        """Messages per state (every state named, zero included)."""
        out = {state.value: 0 for state in OutboundState}
        rows = self.database.reader().execute("SELECT state, count(*) FROM outbox GROUP BY state")
        for state, count in rows:
            out[str(state)] = int(count)
        return out

    def counts_by_partner(self) -> dict[tuple[str, str], int]:
        """Messages per (partner, state) present in the outbox (the metrics' queue depth)."""
        rows = self.database.reader().execute(
            "SELECT partner, state, count(*) FROM outbox GROUP BY partner, state"
        )
        return {(str(partner), str(state)): int(count) for partner, state, count in rows}


# -- units of work (public so a caller can settle many messages in one commit) -------------------
def _state_of(conn: sqlite3.Connection, message_id: str) -> OutboundState:
    row = conn.execute("SELECT state FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
    if row is None:
        raise DeliveryError(
            f"the outbox holds no message {message_id}",
            code=DLV_OUTBOX_UNKNOWN,
            location=f"outbox:{message_id}",
        )
    return OutboundState(str(row[0]))


# The fence of a settling UPDATE: in the statement itself, so that the check and the change are
# one (under READ COMMITTED PostgreSQL re-checks it on the newest row version it updates).
_FENCE = " AND claimed_by = ? AND claim_expires IS NOT NULL"


def _settled(
    conn: sqlite3.Connection, sql: str, params: tuple[object, ...], claimed_by: str | None
) -> None:
    """Run a settling UPDATE (``... WHERE message_id = ?``), fenced by `claimed_by` if given:
    a message this node no longer holds (its lease lapsed and another node claimed it) is
    refused with DLV_OUTBOX_STATE and left as it is."""
    if claimed_by is None:
        conn.execute(sql, params)
        return
    sql = sql.replace(" WHERE message_id = ?", ", claim_expires = NULL WHERE message_id = ?")
    if conn.execute(sql + _FENCE, (*params, claimed_by)).rowcount == 1:
        return
    message_id = params[-1]
    row = conn.execute(
        "SELECT claimed_by, claim_expires FROM outbox WHERE message_id = ?", (message_id,)
    ).fetchone()
    if row is not None and row[1] is not None:
        holder = f"claimed by {row[0]}"
    else:
        holder = f"no longer claimed (last by {row[0] if row else None})"
    raise DeliveryError(
        f"message {message_id} is {holder}, not by node {claimed_by}: this node's lease "
        "lapsed, so it leaves the outcome to the node that holds it",
        code=DLV_OUTBOX_STATE,
        location=f"outbox:{message_id}",
    )


def mark_delivered_in(
    message_id: str,
    receipt: bytes,
    at: datetime,
    conn: sqlite3.Connection,
    *,
    claimed_by: str | None = None,
) -> None:
    """Unit of work: the message is delivered (from any state: a verified receipt is the truth).
    With `claimed_by` (PostgreSQL nodes), only while that node's claim is the message's claim."""
    _state_of(conn, message_id)
    _settled(
        conn,
        "UPDATE outbox SET state = 'delivered', receipt = ?, delivered_at = ?, last_attempt = ?, "
        "next_attempt = NULL WHERE message_id = ?",
        (receipt, _ts(at), _ts(at), message_id),
        claimed_by,
    )


def mark_failed_in(
    message_id: str,
    error: GatewayError,
    at: datetime,
    next_attempt: datetime | None,
    conn: sqlite3.Connection,
    *,
    receipt: bytes | None = None,
    claimed_by: str | None = None,
) -> None:
    """Unit of work: one failed attempt of a pending message; dead letter when no next attempt.
    With `claimed_by` (PostgreSQL nodes), only while that node's claim is the message's claim."""
    state = _state_of(conn, message_id)
    if state is not OutboundState.PENDING:
        raise DeliveryError(
            f"message {message_id} is {state.value}, not pending: no attempt can fail",
            code=DLV_OUTBOX_STATE,
            location=f"outbox:{message_id}",
        )
    _settled(
        conn,
        "UPDATE outbox SET attempts = attempts + 1, last_attempt = ?, last_error_code = ?, "
        "last_error = ?, next_attempt = ?, state = ?, receipt = coalesce(?, receipt) "
        "WHERE message_id = ?",
        (
            _ts(at),
            error.code,
            str(error)[:2000],
            _ts(next_attempt) if next_attempt is not None else None,
            OutboundState.PENDING.value if next_attempt is not None else OutboundState.DEAD.value,
            receipt,
            message_id,
        ),
        claimed_by,
    )


def _replay(
    message_id: str | None, partner: Administration | None, conn: sqlite3.Connection
) -> int:
    reset = (
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt = NULL, receipt = NULL "
        "WHERE state = 'dead'"
    )
    if message_id is not None:
        state = _state_of(conn, message_id)
        if state is not OutboundState.DEAD:
            raise DeliveryError(
                f"message {message_id} is {state.value}: only a dead letter can be replayed",
                code=DLV_OUTBOX_STATE,
                location=f"outbox:{message_id}",
            )
        return conn.execute(reset + " AND message_id = ?", (message_id,)).rowcount
    if partner is not None:
        return conn.execute(reset + " AND partner = ?", (partner.value,)).rowcount
    return conn.execute(reset).rowcount


def _discard(message_id: str, conn: sqlite3.Connection) -> None:
    state = _state_of(conn, message_id)
    if state is not OutboundState.DEAD:
        raise DeliveryError(
            f"message {message_id} is {state.value}: only a dead letter can be discarded",
            code=DLV_OUTBOX_STATE,
            location=f"outbox:{message_id}",
        )
    conn.execute("UPDATE outbox SET state = 'discarded' WHERE message_id = ?", (message_id,))


__all__ = [
    "CLAIM_SQL",
    "DEFAULT_LEASE",
    "OutboundItem",
    "OutboundMessage",
    "OutboundState",
    "SqliteOutbox",
    "default_node_id",
    "mark_delivered_in",
    "mark_failed_in",
]
