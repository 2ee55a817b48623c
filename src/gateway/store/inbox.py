"""The inbox: every accepted envelope, stored with its signed receipt before the receipt leaves.

Duplicates are found by message id inside the same transaction that stores, so two concurrent
deliveries of one message cannot both be stored. Same id and same payload digest is a duplicate
(the original receipt is answered again); same id with another digest is a conflict.

Commits are grouped: callers hand records to one writer thread, which commits whatever has
queued up in one transaction and then wakes every caller. Each caller still gets its answer only
after its own record is durable, but N concurrent callers share one fsync.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gateway.errors import DUPLICATE_CONFLICT, DeliveryError


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


class PutOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class PutResult:
    outcome: PutOutcome
    receipt: bytes  # the receipt to answer: the new one, or the one stored with the original


_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    message_id      TEXT PRIMARY KEY,
    payload_sha256  BLOB NOT NULL,
    received_sha256 BLOB NOT NULL,
    sender          TEXT NOT NULL,
    receiver        TEXT NOT NULL,
    utility_block   TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    binding         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    stored_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    envelope        BLOB NOT NULL,
    receipt         BLOB NOT NULL
);
"""

_STOP = object()


class SqliteInbox:
    """SQLite (WAL) inbox with a single writer thread that groups commits."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL", max_batch: int = 512):
        self._path = str(path)
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._synchronous = synchronous
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._writer = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
        self._writer.start()
        self._ready.wait()
        if self._failure is not None:
            raise DeliveryError(f"cannot open the message store {self._path}: {self._failure}")
        self._local = threading.local()

    # -- public API ----------------------------------------------------------------------------
    def put(self, record: InboundRecord) -> PutResult:
        return self.put_many([record])[0]

    def put_many(self, records: Sequence[InboundRecord]) -> list[PutResult]:
        """Store records durably (or find them as duplicates); raise on a conflict or failure.

        Results are per record, in order; a conflicting record raises DeliveryError for the
        whole call only when it is alone, otherwise its slot holds the error (see put_each).
        """
        results = self.put_each(records)
        out: list[PutResult] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    def put_each(self, records: Sequence[InboundRecord]) -> list[PutResult | DeliveryError]:
        if self._failure is not None:
            raise DeliveryError(f"the message store failed: {self._failure}")
        future: Future[list[PutResult | DeliveryError]] = Future()
        self._queue.put((list(records), future))
        return future.result()

    def receipt_for(self, message_id: str) -> bytes | None:
        row = (
            self._reader()
            .execute("SELECT receipt FROM inbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return bytes(row[0]) if row else None

    def envelope_for(self, message_id: str) -> bytes | None:
        row = (
            self._reader()
            .execute("SELECT envelope FROM inbox WHERE message_id = ?", (message_id,))
            .fetchone()
        )
        return bytes(row[0]) if row else None

    def count(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM inbox").fetchone()[0])

    def is_usable(self) -> bool:
        """For health checks: the writer is running and the database file answers a read."""
        if self._failure is not None or not self._writer.is_alive():
            return False
        try:
            self._reader().execute("SELECT 1 FROM inbox LIMIT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=10)

    # -- internals -----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.executescript(_SCHEMA)
        return conn

    def _run(self) -> None:
        try:
            conn = self._open()
        except sqlite3.Error as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            item = self._queue.get()
            if item is _STOP:
                conn.close()
                return
            batch = [item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit(conn, batch)  # type: ignore[arg-type]
            if stop:
                conn.close()
                return

    def _commit(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[list[InboundRecord], Future[list[PutResult | DeliveryError]]]],
    ) -> None:
        answers: list[list[PutResult | DeliveryError]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for records, _ in batch:
                answers.append([self._put_one(conn, record) for record in records])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = DeliveryError(f"the message store failed: {exc}")
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)

    @staticmethod
    def _put_one(conn: sqlite3.Connection, record: InboundRecord) -> PutResult | DeliveryError:
        row = conn.execute(
            "SELECT payload_sha256, receipt FROM inbox WHERE message_id = ?", (record.message_id,)
        ).fetchone()
        if row is not None:
            if bytes(row[0]) == record.payload_sha256:
                return PutResult(PutOutcome.DUPLICATE, bytes(row[1]))
            return DeliveryError(
                f"message {record.message_id} was already received with another payload digest",
                code=DUPLICATE_CONFLICT,
                location="header.message_id",
            )
        conn.execute(
            "INSERT INTO inbox (message_id, payload_sha256, received_sha256, sender, receiver, "
            "utility_block, message_type, binding, created_at, envelope, receipt) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                record.envelope,
                record.receipt,
            ),
        )
        return PutResult(PutOutcome.STORED, record.receipt)
