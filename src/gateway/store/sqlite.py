"""One SQLite file (WAL) with one writer thread that groups units of work into shared commits.

Every write is a *unit of work*: a function run on the writer's connection inside a transaction.
The writer runs whatever units have queued up in one transaction, each under its own SAVEPOINT,
commits once, and only then answers each caller. A unit that raises a GatewayError is rolled
back alone (its savepoint) and its caller gets the error; the others still commit. So N
concurrent callers share one fsync, and a caller never hears "done" before its data is durable.

Inbox, outbox, message log and the Utility Block tables all live in one database, so one unit
can store an envelope, apply it and queue its consequences atomically.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import DeliveryError, GatewayError
from gateway.store.database import STOP, Dialect, migrate_sqlite, sqlite_at_head, take_batch

T = TypeVar("T")
Unit = Callable[[sqlite3.Connection], Any]


def run_ddl(ddl: str, conn: sqlite3.Connection) -> None:
    """Run DDL statement by statement. (Not executescript: it COMMITs first, which would end
    the writer's transaction under the unit's SAVEPOINT.)"""
    statement = ""
    for line in ddl.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip() and not statement.strip().startswith("--"):
        raise ValueError(f"incomplete SQL statement: {statement.strip()[:80]}")


class SqliteDatabase:
    """The embedded store: WAL journal, `synchronous=FULL` by default (durable on power loss).

    Opening it brings the file to the head migration (gateway.store.migrations; skipped,
    without loading Alembic, when it is there already); `migrate=False` opens it as it is.
    """

    dialect = Dialect.SQLITE

    def __init__(
        self,
        path: Path | str,
        *,
        schemas: Sequence[str] = (),
        synchronous: str = "FULL",
        max_batch: int = 512,
        uri: bool = False,
        migrate: bool = True,
    ) -> None:
        """`uri`: `path` is an SQLite URI, e.g. ``file:/NAME?vfs=memdb`` (or
        ``file:NAME?mode=memory&cache=shared``) for an in-memory database the writer and every
        reader of this process share (not durable: tests, benchmarks)."""
        if synchronous not in {"FULL", "NORMAL", "OFF", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous}")
        self.path = str(path)
        self._uri = uri
        self._schemas = list(schemas)
        self._migrate = migrate
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._local = threading.local()
        self._writer = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._writer.start()
        self._ready.wait()
        if self._failure is not None:
            raise DeliveryError(f"cannot open the message store {self.path}: {self._failure}")

    # -- writing ---------------------------------------------------------------------------------
    @property
    def delivery_lock_path(self) -> str | None:
        """The file whose lock a process holds while it delivers this store's outbox
        (store.outbox.delivery_turn); None for an in-memory database (one process)."""
        return None if self._uri else f"{self.path}-delivery.lock"

    def write(self, unit: Callable[[sqlite3.Connection], T]) -> T:
        """Run one unit of work; return its result once committed, or raise its error."""
        result = self.write_each([unit])[0]
        if isinstance(result, GatewayError):
            raise result
        return result

    def write_each(
        self, units: Sequence[Callable[[sqlite3.Connection], T]]
    ) -> list[T | GatewayError]:
        """Run units in one shared commit; per unit, its result or the GatewayError it raised.

        A store failure (disk, lock, corruption) raises DeliveryError for all: nothing committed.
        """
        if self._failure is not None:
            raise DeliveryError(f"the message store failed: {self._failure}")
        if not self._writer.is_alive():
            raise DeliveryError("the message store is closed")
        future: Future[list[Any]] = Future()
        self._queue.put((list(units), future))
        return future.result()

    def ensure_schema(self, ddl: str) -> None:
        """Create the tables a component needs (idempotent DDL), as a unit of work."""
        self.write(partial(run_ddl, ddl))

    # -- reading ---------------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """A read-only connection of the calling thread (readers never block the writer in WAL)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, uri=self._uri)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            self._local.conn = conn
        return conn

    def is_usable(self) -> bool:
        """For health checks: the writer is running and the file answers a read."""
        if self._failure is not None or not self._writer.is_alive():
            return False
        try:
            self.reader().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(STOP)
            self._writer.join(timeout=10)

    # -- the writer thread -----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, uri=self._uri
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        if self._migrate and not sqlite_at_head(conn):
            migrate_sqlite(self.path, uri=self._uri)
        for ddl in self._schemas:
            run_ddl(ddl, conn)
        return conn

    def _run(self) -> None:
        try:
            conn = self._open()
        except Exception as exc:  # sqlite3.Error, or a migration that failed
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            item = self._queue.get()
            if item is STOP:
                conn.close()
                return
            batch, stop = take_batch(self._queue, item, self._max_batch)
            self._commit(conn, batch)
            if stop:
                conn.close()
                return

    def _commit(
        self, conn: sqlite3.Connection, batch: list[tuple[list[Unit], Future[list[Any]]]]
    ) -> None:
        answers: list[list[Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for units, _ in batch:
                answers.append([self._run_unit(conn, unit) for unit in units])
            conn.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error, or a unit's bug: nothing of the batch commits
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = DeliveryError(f"the message store failed: {exc}")
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)

    @staticmethod
    def _run_unit(conn: sqlite3.Connection, unit: Unit) -> Any:
        conn.execute("SAVEPOINT unit")
        try:
            result = unit(conn)
        except GatewayError as error:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            return error
        conn.execute("RELEASE unit")
        return result
