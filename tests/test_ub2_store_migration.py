"""The UB2 tables join the migrations (revision 0003) on both engines.

A SQLite file whose UB2 tables the store made itself before 0003 (same columns, CREATE TABLE IF
NOT EXISTS) is adopted with its rows; on both engines the refusal log refuses UPDATE and DELETE.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_engines import ENGINES, fresh_database

from gateway.model.codes import Administration
from gateway.store.database import HEAD, Database, open_database
from gateway.store.transaction_store import TransactionStore

# The DDL the UB2 store ran itself before revision 0003 (kept here as the vector it was).
PRE_0003_DDL = """
CREATE TABLE ub2_sent (message_id TEXT PRIMARY KEY, partner TEXT NOT NULL,
    reference TEXT NOT NULL, source TEXT NOT NULL, lane TEXT NOT NULL, sent_at TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE TABLE ub2_refusals (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
    partner TEXT NOT NULL, kind TEXT NOT NULL, reference TEXT NOT NULL, code TEXT NOT NULL,
    location TEXT NOT NULL, rule TEXT NOT NULL, message TEXT NOT NULL);
INSERT INTO ub2_refusals (at, actor, partner, kind, reference, code, location, rule, message)
    VALUES ('2026-11-01T00:00:00.000000Z', 'op', 'CN', 'TransactionData', 'R1', 'UB2_NO_LANE',
            'place_of_loading', 'lane', 'no lane');
"""


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


def test_a_store_made_before_0003_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(PRE_0003_DDL)
    database = open_database(f"sqlite:///{path}")
    try:
        store = TransactionStore(database, Administration.EU)
        [refusal] = store.refusals()
        assert (refusal.code, refusal.reference) == ("UB2_NO_LANE", "R1")
    finally:
        database.close()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert {"ub2_sent", "ub2_received", "ub2_control_results", "ub2_refusals"} <= tables
    assert version == HEAD


def test_the_ub2_refusal_log_is_append_only(database: Database) -> None:
    def add(conn: object) -> None:
        conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO ub2_refusals (at, actor, partner, kind, reference, code, location, "
            "rule, message) VALUES ('t', 'op', 'CN', 'k', 'R', 'C', 'l', 'r', 'm')"
        )

    database.write(add)
    for statement in ("UPDATE ub2_refusals SET code = 'X'", "DELETE FROM ub2_refusals"):

        def tamper(conn: object, sql: str = statement) -> None:
            conn.execute(sql)  # type: ignore[attr-defined]

        with pytest.raises(Exception, match="append-only"):
            database.write(tamper)
    rows = database.reader().execute("SELECT code FROM ub2_refusals").fetchall()
    assert [tuple(r) for r in rows] == [("C",)]
