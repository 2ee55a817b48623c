"""Both store engines for the tests: a fresh SQLite file, or a fresh database on the test
PostgreSQL server that `make test` starts (`make pg-start`) and names in GNC_TEST_POSTGRES_URL.

Without that variable, PostgreSQL tests skip, except in CI (CI=true), where they fail: CI
always runs them through `make test`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from gateway.store.database import Database, open_database

ENV = "GNC_TEST_POSTGRES_URL"
ENGINES = ("sqlite", "postgresql")


def postgres_server() -> str:
    """The test server's URL (an admin database on it), or skip / fail."""
    url = os.environ.get(ENV)
    if not url:
        reason = f"{ENV} is not set: run the tests with `make test` (it starts PostgreSQL)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@contextmanager
def fresh_postgres_database(server: str | None = None) -> Iterator[str]:
    """CREATE DATABASE on `server` (default: the test server); its URL; DROP it afterwards
    (its sessions too)."""
    import psycopg

    server = server or postgres_server()
    name = f"gnc_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database_url(engine: str, directory: Path) -> Iterator[str]:
    """A URL of an empty store of `engine` ("sqlite" or "postgresql")."""
    if engine == "sqlite":
        yield f"sqlite:///{directory / 'gateway.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@contextmanager
def fresh_database(engine: str, directory: Path) -> Iterator[Database]:
    """An empty, migrated store of `engine`, closed afterwards. (Test modules make their own
    fixtures of these, ``@pytest.fixture(params=ENGINES)``.)"""
    with fresh_database_url(engine, directory) as url:
        database = open_database(url, synchronous="NORMAL")
        try:
            yield database
        finally:
            database.close()


def terminate_backends(database_url: str) -> int:
    """Cut every connection to the database (as a server restart would); how many."""
    import psycopg

    name = database_url.rpartition("/")[2]
    with psycopg.connect(postgres_server(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)
