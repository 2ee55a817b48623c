"""The grouped-commit database: units share a commit, a refused unit leaves no trace."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.errors import DeliveryError, GatewayError
from gateway.store.database import check_writable
from gateway.store.sqlite import SqliteDatabase

DDL = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


def _insert(key: str, value: int):  # type: ignore[no-untyped-def]
    def unit(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (?, ?)", (key, value))
        if value < 0:
            raise GatewayError(f"negative value for {key}", code="GNC_INTERNAL")
        return key

    return unit


def test_a_refused_unit_rolls_back_alone(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite", schemas=[DDL])
    results = db.write_each([_insert("a", 1), _insert("b", -1), _insert("c", 3)])
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], GatewayError)
    rows = db.reader().execute("SELECT k FROM t ORDER BY k").fetchall()
    assert rows == [("a",), ("c",)]
    db.close()


def test_a_store_failure_commits_nothing_of_the_batch(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite", schemas=[DDL])
    db.write(_insert("a", 1))
    with pytest.raises(DeliveryError) as excinfo:
        db.write_each([_insert("b", 2), _insert("a", 5)])  # primary key violation: sqlite3 error
    assert excinfo.value.code == "DLV_STORE_UNAVAILABLE"
    assert db.reader().execute("SELECT k FROM t ORDER BY k").fetchall() == [("a",)]
    db.close()


def test_concurrent_writers_all_commit_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = SqliteDatabase(path, schemas=[DDL])
    threads = [
        threading.Thread(target=lambda n=n: db.write(_insert(f"k{n}", n))) for n in range(50)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.close()
    again = SqliteDatabase(path, schemas=[DDL])
    assert again.reader().execute("SELECT count(*) FROM t").fetchone()[0] == 50
    again.close()
    with pytest.raises(DeliveryError):
        again.write(_insert("late", 1))


def test_schemas_can_be_added_to_an_open_database(tmp_path: Path) -> None:
    """A component joining a running database creates its tables inside a unit of work."""
    db = SqliteDatabase(tmp_path / "db.sqlite", schemas=[DDL])
    db.ensure_schema(
        "CREATE TABLE IF NOT EXISTS u (k TEXT PRIMARY KEY);\n"
        "CREATE TRIGGER IF NOT EXISTS u_no_delete BEFORE DELETE ON u\n"
        "BEGIN SELECT RAISE(ABORT, 'append-only'); END;\n"
    )
    db.write(lambda conn: conn.execute("INSERT INTO u VALUES ('x')") and None)
    assert db.reader().execute("SELECT k FROM u").fetchall() == [("x",)]
    db.close()


def test_an_in_memory_uri_database_is_shared_by_writer_and_readers(tmp_path: Path) -> None:
    name = f"file:units-{id(tmp_path)}?mode=memory&cache=shared"
    db = SqliteDatabase(name, schemas=[DDL], uri=True)
    db.write_each([_insert("a", 1), _insert("b", -1)])
    seen: list[object] = []
    reader = threading.Thread(
        target=lambda: seen.extend(db.reader().execute("SELECT k, v FROM t").fetchall())
    )
    reader.start()
    reader.join()
    assert seen == [("a", 1)]
    assert not any(tmp_path.iterdir()) and not Path(name).exists()  # nothing on disk
    db.close()


def test_a_store_that_cannot_be_written_is_refused_before_serving(tmp_path: Path) -> None:
    """`gncgw serve` checks this first: a read-only store (here opened read-only, as a read-only
    mount would leave it) would otherwise start, answer health checks and refuse every
    envelope. A writable one passes, and the check changes nothing."""
    path = tmp_path / "gateway.db"
    writable = SqliteDatabase(path)
    check_writable(writable)
    writable.close()
    read_only = SqliteDatabase(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(DeliveryError) as excinfo:
            check_writable(read_only)
    finally:
        read_only.close()
    assert excinfo.value.code == "DLV_STORE_UNAVAILABLE"
    assert "cannot be written" in excinfo.value.message and "readonly" in excinfo.value.message
    assert excinfo.value.location == "store.url"
