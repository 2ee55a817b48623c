"""The PostgreSQL store: the same single-writer, grouped-commit design as the SQLite one.

One writer connection (taken from a SQLAlchemy Core engine, driver psycopg 3) runs whatever
units of work have queued up in one transaction, each under its own SAVEPOINT, and commits once;
only then does each caller hear back. Readers get a pooled connection per thread in autocommit
(READ COMMITTED: every statement sees what was committed when it started).

Units get a `PgConnection`: the stores' SQL is written with ``?`` placeholders (as sqlite3 wants)
and rewritten once per distinct statement into psycopg's ``%s``. Work a unit hands to
`PgConnection.defer` runs at the end of the batch, just before COMMIT (the message log takes its
chain lock there, so it is held as briefly as possible).

A unit whose class sets ``refuses_nothing = True`` runs without a savepoint: it promises never
to raise a GatewayError (its refusals are values it returns; the inbox's multi-row put). Each
savepoint costs two statements and a subtransaction on the server. Should such a unit raise one
all the same, the whole batch fails (nothing commits, every caller gets DeliveryError): its
writes could not be undone alone.

Losing the server: the batch in flight fails (every caller gets DeliveryError, nothing was
receipted), the connection is dropped, and the next batch connects again, so the node recovers
by itself when the server is back. Readers do the same per thread.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import psycopg
from sqlalchemy import create_engine, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from gateway.errors import DeliveryError, GatewayError
from gateway.store.database import STOP, Dialect, take_batch, upgrade

T = TypeVar("T")
Unit = Callable[[Any], Any]
Deferred = Callable[[Any, list[Any]], None]

_CONNECT_TIMEOUT = 5  # seconds: a server that does not answer is a clear error, not a hang
_SCHEMA_LOCK = 0x676E635F6D6967  # the migrations' lock (gateway.store.migrations.env)


@functools.lru_cache(maxsize=4096)
def pg_sql(sql: str) -> str:
    """Our ``?`` placeholders as psycopg's ``%s``. (Our SQL has no ``?`` or ``%`` inside a
    string literal or anywhere else; refuse any that has, rather than guess.)"""
    if "%" in sql:
        raise ValueError(f"'%' in store SQL is not supported: {sql[:80]}")
    quoted = False
    for char in sql if "?" in sql else "":
        if char == "'":
            quoted = not quoted
        elif char == "?" and quoted:
            raise ValueError(f"'?' inside a string literal in store SQL: {sql[:80]}")
    return sql.replace("?", "%s")


def _url(url: str) -> str:
    """postgresql://... with the psycopg 3 driver named (SQLAlchemy's default is psycopg2)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"{url!r} is not a postgresql:// URL")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class PgConnection:
    """What a unit of work (or a reader) gets: ``execute`` / ``executemany`` with ``?``
    placeholders, returning a psycopg cursor (``fetchone``, ``fetchall``, ``rowcount``)."""

    dialect = Dialect.POSTGRESQL

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._deferred: list[tuple[Deferred, Any]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any]:
        return self.raw.execute(pg_sql(sql), parameters or None)

    def executemany(self, sql: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        cursor.executemany(pg_sql(sql), parameters)
        return cursor

    def execute_binary(self, sql: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        """`execute` with every parameter sent in binary: for the array parameters of the
        stores' multi-row statements (a text array is escaped element by element in Python;
        a binary one is copied). Give each ``?`` a cast (``?::text[]``)."""
        return self.raw.execute(pg_sql(sql).replace("%s", "%b"), parameters)

    def execute_after(self, first: str, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any]:
        """Run `first` (its result dropped), then `sql`, in one round trip (pipeline mode).
        The server starts `sql` only once `first` is done, with a snapshot of its own (READ
        COMMITTED), so a lock that `first` takes covers everything `sql` reads."""
        with self.raw.pipeline():
            self.raw.execute(pg_sql(first))
            cursor = self.raw.execute(pg_sql(sql), parameters or None)
        return cursor

    def defer(self, flush: Deferred, item: Any) -> None:
        """Run ``flush(conn, [items...])`` once per batch, just before COMMIT (items of units
        that were rolled back are dropped). Writer connection only."""
        self._deferred.append((flush, item))


class _Reader(PgConnection):
    """A thread's reader: a lost connection is dropped (and DeliveryError raised) so the next
    read connects again."""

    def __init__(self, proxied: PoolProxiedConnection, owner: PostgresDatabase) -> None:
        raw = proxied.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.autocommit = True
        super().__init__(raw)
        self._proxied = proxied
        self._owner = owner

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any]:
        try:
            return super().execute(sql, parameters)
        except psycopg.OperationalError as error:
            self._owner._drop_reader(self)
            raise DeliveryError(f"the message store is unreachable: {error}") from None

    def executemany(self, sql: str, parameters: Any, /) -> psycopg.Cursor[Any]:
        try:
            return super().executemany(sql, parameters)
        except psycopg.OperationalError as error:
            self._owner._drop_reader(self)
            raise DeliveryError(f"the message store is unreachable: {error}") from None

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._proxied.invalidate()


class PostgresDatabase:
    """A node's store on a PostgreSQL server (shared with other nodes)."""

    dialect = Dialect.POSTGRESQL

    def __init__(self, url: str, *, max_batch: int = 512, migrate: bool = True) -> None:
        self.url = _redacted(url)
        self._proxied: PoolProxiedConnection | None = None
        self._max_batch = max_batch
        self._engine: Engine = create_engine(
            _url(url),
            pool_size=4,
            max_overflow=-1,  # one reader per thread: never make a thread wait for another's
            pool_pre_ping=True,
            pool_reset_on_return=None,  # readers autocommit; the writer ends its transactions
            connect_args={"connect_timeout": _CONNECT_TIMEOUT},
        )
        try:
            if migrate:
                with self._engine.connect() as connection:
                    upgrade(connection)
                    connection.commit()
            self._writer_conn = self._connect()
        except Exception as error:
            self._engine.dispose()
            raise DeliveryError(
                f"cannot open the message store {self.url}: {_reason(error)}"
            ) from None
        self._broken = False
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers: set[_Reader] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="store-writer-pg", daemon=True)
        self._writer.start()

    # -- writing ---------------------------------------------------------------------------------
    def write(self, unit: Callable[[Any], T]) -> T:
        """Run one unit of work; return its result once committed, or raise its error."""
        result = self.write_each([unit])[0]
        if isinstance(result, GatewayError):
            raise result
        return result

    def write_each(self, units: Sequence[Callable[[Any], T]]) -> list[T | GatewayError]:
        """Run units in one shared commit; per unit, its result or the GatewayError it raised.
        A store failure raises DeliveryError for all: nothing committed."""
        if self._closed or not self._writer.is_alive():
            raise DeliveryError("the message store is closed")
        future: Future[list[Any]] = Future()
        self._queue.put((list(units), future))
        return future.result()

    def ensure_schema(self, ddl: str) -> None:
        """Run idempotent DDL (``CREATE ... IF NOT EXISTS``) as a unit of work, under the
        migrations' lock (two nodes creating one table at once would collide). For modules not
        yet in the migrations; SQLite's ``BLOB`` and ``INTEGER PRIMARY KEY [AUTOINCREMENT]`` are
        read as ``BYTEA`` and a BIGINT identity key."""
        statements = _statements(_portable_ddl(ddl))

        def unit(conn: PgConnection) -> None:
            conn.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            for statement in statements:
                conn.execute(statement)

        self.write(unit)

    # -- reading ---------------------------------------------------------------------------------
    def reader(self) -> PgConnection:
        """The calling thread's connection (autocommit, READ COMMITTED)."""
        conn: _Reader | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = _Reader(self._engine.raw_connection(), self)
            except Exception as error:
                raise DeliveryError(
                    f"the message store {self.url} is unreachable: {_reason(error)}"
                ) from None
            self._local.conn = conn
            with self._lock:
                self._readers.add(conn)
        return conn

    def _drop_reader(self, conn: _Reader) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._readers.discard(conn)
        conn.discard()

    def is_usable(self) -> bool:
        """For health checks: the writer runs and the server answers a read."""
        if self._closed or not self._writer.is_alive():
            return False
        try:
            self.reader().execute("SELECT 1").fetchone()
        except Exception:
            return False
        return True

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(STOP)
            self._writer.join(timeout=10)
        self._closed = True
        with self._lock:
            readers = list(self._readers)
            self._readers.clear()
        for reader in readers:
            with contextlib.suppress(Exception):
                reader.raw.close()
        self._engine.dispose()

    # -- the writer thread -----------------------------------------------------------------------
    def _connect(self) -> PgConnection:
        proxied = self._engine.raw_connection()
        raw = proxied.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.autocommit = True  # transactions are explicit: BEGIN ... COMMIT per batch
        self._proxied = proxied
        return PgConnection(raw)

    def _writer_connection(self) -> PgConnection:
        """The writer's adapter: always the same object (units and the message log's policies
        know it by identity), its server connection made again after a loss."""
        if self._broken:
            self._writer_conn.raw = self._connect().raw
            self._broken = False
        return self._writer_conn

    def _drop_writer(self) -> None:
        if self._proxied is not None:
            with contextlib.suppress(Exception):
                self._proxied.invalidate()
        self._proxied = None
        self._broken = True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is STOP:
                break
            batch, stop = take_batch(self._queue, item, self._max_batch)
            self._commit(batch)
            if stop:
                break
        if self._proxied is not None:
            with contextlib.suppress(Exception):
                self._proxied.close()

    def _commit(self, batch: list[tuple[list[Unit], Future[list[Any]]]]) -> None:
        answers: list[list[Any]] = []
        conn: PgConnection | None = None
        try:
            conn = self._writer_connection()
            conn._deferred.clear()
            conn.execute("BEGIN")
            for units, _ in batch:
                answers.append([self._run_unit(conn, unit) for unit in units])
            deferred = conn._deferred
            conn._deferred = []
            _flush(conn, deferred)
            status = conn.execute("COMMIT").statusmessage
            if status != "COMMIT":  # the server rolled back instead: nothing may be answered
                raise psycopg.DatabaseError(f"the transaction was not committed ({status})")
        except Exception as exc:  # psycopg.Error, or a unit's bug: nothing of the batch commits
            broken = conn is None or conn.raw.closed or isinstance(exc, psycopg.OperationalError)
            if not broken and conn is not None:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    broken = True
            if broken:
                self._drop_writer()
            error = DeliveryError(f"the message store failed: {_reason(exc)}")
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)

    @staticmethod
    def _run_unit(conn: PgConnection, unit: Unit) -> Any:
        if getattr(unit, "refuses_nothing", False) is True:
            try:
                return unit(conn)
            except GatewayError as error:  # a broken promise: fail the batch, nothing commits
                raise RuntimeError(f"a unit without a savepoint refused: {error}") from error
        conn.execute("SAVEPOINT unit")
        mark = len(conn._deferred)
        try:
            result = unit(conn)
        except GatewayError as error:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            del conn._deferred[mark:]
            return error
        conn.execute("RELEASE unit")
        return result


def _flush(conn: PgConnection, deferred: list[tuple[Deferred, Any]]) -> None:
    """Run the batch's deferred work: each flush once, with its items in unit order."""
    grouped: dict[Deferred, list[Any]] = {}
    for flush, item in deferred:
        grouped.setdefault(flush, []).append(item)
    for flush, items in grouped.items():
        flush(conn, items)


def _reason(error: BaseException) -> str:
    """The server's or driver's message, first line (no SQL, no traceback)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _portable_ddl(ddl: str) -> str:
    import re

    ddl = re.sub(
        r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        ddl,
        flags=re.IGNORECASE,
    )
    return re.sub(r"\bBLOB\b", "BYTEA", ddl, flags=re.IGNORECASE)


def _statements(ddl: str) -> list[str]:
    out: list[str] = []
    statement = ""
    for line in ddl.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            out.append(statement.strip().rstrip(";"))
            statement = ""
    if statement.strip() and not statement.strip().startswith("--"):
        raise ValueError(f"incomplete SQL statement: {statement.strip()[:80]}")
    return out


__all__ = ["PgConnection", "PostgresDatabase", "pg_sql"]
