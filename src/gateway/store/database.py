"""The store interface both engines satisfy, and `open_database` that picks one by URL.

* ``sqlite:///PATH`` (gateway.store.sqlite): one embedded file, the default, and the hot path.
* ``postgresql://USER@HOST:PORT/DB`` (gateway.store.postgres): several nodes on one server.

Either way a write is a *unit of work*: a function of a DB-API-like connection (``execute`` /
``executemany`` with ``?`` placeholders, returning a cursor with ``fetchone``, ``fetchall``,
``rowcount``) that the engine's single writer runs under its own SAVEPOINT, many units per
commit. The stores' SQL is written once for both engines (``INSERT ... ON CONFLICT``, no SQL
date functions, ``RETURNING`` instead of ``lastrowid``); where a statement must differ the
store asks `dialect_of(conn)`.

The schema is created and upgraded by the Alembic migrations in gateway.store.migrations when
a database is opened (`migrate`).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from gateway.errors import DeliveryError, GatewayError

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Cursor(Protocol):
    """What a unit of work reads from: sqlite3.Cursor, or the PostgreSQL adapter's cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What a unit of work (and a reader) gets: sqlite3.Connection or the PostgreSQL adapter."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


@runtime_checkable
class Database(Protocol):
    """One node's store: a single writer grouping units of work into commits, and readers.

    Units are typed ``Callable[[Any], T]``: on SQLite they get the raw ``sqlite3.Connection``
    (the services annotate it so), on PostgreSQL the adapter; both behave as `Connection`.
    """

    @property
    def dialect(self) -> Dialect: ...

    def write(self, unit: Callable[[Any], T]) -> T: ...

    def write_each(self, units: Sequence[Callable[[Any], T]]) -> list[T | GatewayError]: ...

    def ensure_schema(self, ddl: str) -> None: ...

    def reader(self) -> Any: ...

    def is_usable(self) -> bool: ...

    def close(self) -> None: ...


def dialect_of(conn: object) -> Dialect:
    """The engine behind a unit's connection (for the few statements that must differ)."""
    if isinstance(conn, sqlite3.Connection):
        return Dialect.SQLITE
    return Dialect(getattr(conn, "dialect", Dialect.SQLITE))


def integrity_errors() -> tuple[type[Exception], ...]:
    """What a refused constraint raises on either engine: ``except integrity_errors():``. Catch
    it under a nested `savepoint`: on PostgreSQL an error aborts the transaction until it is
    rolled back to a savepoint. (psycopg is only looked at once loaded: importing it costs a
    SQLite-only process 0.15 s.)"""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.IntegrityError,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError)


@contextlib.contextmanager
def savepoint(conn: Connection, name: str) -> Iterator[None]:
    """A nested savepoint inside a unit: an error rolls back to it (and propagates), so the
    unit can catch the error and go on (PostgreSQL refuses any statement after an error
    until the transaction is rolled back to a savepoint)."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def check_writable(database: Database) -> None:
    """Refuse a store this process cannot write (a read-only file or mount, a read-only
    PostgreSQL replica) before a gateway serves on it: otherwise it would start, answer health
    checks, and refuse every envelope. A no-op update: nothing changes."""

    def probe(conn: Any) -> None:
        conn.execute("UPDATE outbox SET state = state WHERE 1 = 0")

    try:
        database.write(probe)
    except GatewayError as error:
        raise DeliveryError(
            f"the message store cannot be written: {error.message}", location="store.url"
        ) from None


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL (SQLAlchemy style)."""
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep or not rest.startswith("/") or len(rest) < 2:
        raise ValueError(f"{url!r} is not a sqlite:///PATH URL")
    return rest[1:]


def display_url(url: str) -> str:
    """A store URL fit for logs and messages (any password replaced by ***)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def open_database(url: str, *, synchronous: str = "FULL", max_batch: int = 512) -> Database:
    """Open (and migrate) the store a URL names: ``sqlite:///PATH`` or
    ``postgresql://USER@HOST:PORT/DB`` (also ``postgresql+psycopg://``).

    Raises DeliveryError (DLV_STORE_UNAVAILABLE) when it cannot be opened.
    """
    scheme = url.partition("://")[0]
    if scheme == "sqlite":
        from gateway.store.sqlite import SqliteDatabase

        return SqliteDatabase(sqlite_path(url), synchronous=synchronous, max_batch=max_batch)
    if scheme in {"postgresql", "postgresql+psycopg"}:
        from gateway.store.postgres import PostgresDatabase

        return PostgresDatabase(url, max_batch=max_batch)
    raise ValueError(f"store URL scheme {scheme!r} is not supported (sqlite, postgresql)")


# The newest migration (tests check it is the scripts' head): a database already there is
# opened without loading Alembic at all.
HEAD = "0005"


def upgrade(connection: Any) -> None:
    """Run the Alembic migrations up to head on a SQLAlchemy connection (committed on return)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def migrate_sqlite(path: str, *, uri: bool = False) -> None:
    """Bring a SQLite file to the head migration, in one transaction on a connection of its
    own (the writer's stays open, so an in-memory URI database lives on)."""
    from sqlalchemy import create_engine, event

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, uri=uri, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    engine = create_engine("sqlite://", creator=connect)

    # pysqlite would open no transaction before DDL: one explicit transaction, one fsync.
    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.connect() as connection:
            upgrade(connection)
            connection.commit()
    finally:
        engine.dispose()


def sqlite_at_head(conn: sqlite3.Connection) -> bool:
    """Is this SQLite database already migrated to HEAD?"""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: never migrated
        return False
    return row is not None and row[0] == HEAD


# -- the writers' shared batching ---------------------------------------------------------------
STOP = object()
"""Put on a writer's queue to end it (after the batch it is in)."""


def take_batch(
    pending: queue.SimpleQueue[object], first: object, limit: int
) -> tuple[list[Any], bool]:
    """`first` and whatever else is queued, up to `limit` items: one shared commit's worth of
    units of work. The flag says STOP was met (the writer ends after committing the batch)."""
    batch = [first]
    while len(batch) < limit:
        try:
            more = pending.get_nowait()
        except queue.Empty:
            return batch, False
        if more is STOP:
            return batch, True
        batch.append(more)
    return batch, False


__all__ = [
    "HEAD",
    "STOP",
    "Connection",
    "Cursor",
    "Database",
    "Dialect",
    "dialect_of",
    "display_url",
    "integrity_errors",
    "migrate_sqlite",
    "open_database",
    "savepoint",
    "sqlite_at_head",
    "sqlite_path",
    "take_batch",
    "upgrade",
]
