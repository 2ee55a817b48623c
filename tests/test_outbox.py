"""The outbox on a real SQLite file and a real PostgreSQL database: order per key, dead letters
blocking their key, duplicate enqueue, replay and discard, the transactional enqueue, restart,
and queries that stay cheap with a large queue."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_engines import ENGINES, fresh_database, fresh_database_url

from gateway.envelope.opened import Binding
from gateway.errors import TransportError
from gateway.model.codes import Administration, UtilityBlock
from gateway.store.database import Database, open_database
from gateway.store.outbox import DUE_SQL, OutboundMessage, OutboundState, SqliteOutbox
from gateway.store.sqlite import SqliteDatabase

US, JP = Administration.US, Administration.JP
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def message(
    message_id: str, key: str, partner: Administration = US, body: bytes | None = None
) -> OutboundMessage:
    return OutboundMessage(
        message_id=message_id,
        partner=partner,
        binding=Binding.PROTOBUF,
        ordering_key=key,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        envelope=body if body is not None else f"sealed envelope {message_id}".encode(),
    )


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each test runs on SQLite and on PostgreSQL."""
    with fresh_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def outbox(database: Database) -> SqliteOutbox:
    return SqliteOutbox(database)


@pytest.fixture
def sqlite_outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    db = SqliteDatabase(tmp_path / "gateway.db")
    yield SqliteOutbox(db)
    db.close()


def due_ids(outbox: SqliteOutbox, at: datetime = T0, partner: Administration = US) -> list[str]:
    return [item.message_id for item in outbox.due(partner, at, 100)]


def down(detail: str = "connection refused") -> TransportError:
    return TransportError(f"Submit to 127.0.0.1:9 failed: {detail}", location="127.0.0.1:9")


def test_only_the_head_of_each_ordering_key_is_due_in_enqueue_order(outbox: SqliteOutbox) -> None:
    outbox.enqueue_all(
        [message("a1", "A"), message("b1", "B"), message("a2", "A"), message("a3", "A")]
    )
    outbox.enqueue_all([message("j1", "A", partner=JP)])  # same key, other partner: independent
    assert due_ids(outbox) == ["a1", "b1"]
    assert due_ids(outbox, partner=JP) == ["j1"]
    item = outbox.due(US, T0, 1)[0]
    assert item.envelope == b"sealed envelope a1" and item.attempts == 0
    assert item.state is OutboundState.PENDING and item.next_attempt is None

    # a1 fails: it waits for its retry, and a2 waits behind it (b1 is not held up).
    outbox.mark_failed("a1", down(), T0, T0 + timedelta(seconds=2))
    assert due_ids(outbox) == ["b1"]
    assert due_ids(outbox, T0 + timedelta(seconds=2)) == ["a1", "b1"]
    failed = outbox.get("a1")
    assert (
        failed is not None and failed.attempts == 1 and failed.last_error_code == "TRN_UNAVAILABLE"
    )

    outbox.mark_delivered("a1", b"signed receipt a1", T0 + timedelta(seconds=2))
    assert due_ids(outbox, T0 + timedelta(seconds=2)) == ["b1", "a2"]
    assert outbox.receipt_for("a1") == b"signed receipt a1"
    outbox.mark_delivered("a2", b"r", T0)
    assert due_ids(outbox) == ["b1", "a3"]


def test_a_dead_letter_blocks_its_key_until_replayed_or_discarded(outbox: SqliteOutbox) -> None:
    outbox.enqueue_all([message("a1", "A"), message("a2", "A"), message("b1", "B")])
    outbox.mark_failed("a1", down(), T0, None, receipt=b"signed rejection")
    dead = outbox.get("a1")
    assert dead is not None and dead.state is OutboundState.DEAD
    assert outbox.receipt_for("a1") == b"signed rejection"
    assert due_ids(outbox, T0 + timedelta(days=30)) == ["b1"]  # a2 stays blocked

    assert outbox.replay("a1") == 1
    replayed = outbox.get("a1")
    assert replayed is not None and replayed.state is OutboundState.PENDING
    assert replayed.attempts == 0 and replayed.next_attempt is None
    assert due_ids(outbox) == ["a1", "b1"]

    outbox.mark_failed("a1", down(), T0, None)
    outbox.discard("a1")
    assert due_ids(outbox) == ["a2", "b1"]
    assert outbox.counts() == {"pending": 2, "delivered": 0, "dead": 0, "discarded": 1}


def test_replay_all_dead_letters_of_a_partner(outbox: SqliteOutbox) -> None:
    outbox.enqueue_all(
        [message("u1", "A"), message("u2", "B"), message("j1", "A", JP), message("u3", "C")]
    )
    for message_id in ("u1", "u2", "j1"):
        outbox.mark_failed(message_id, down(), T0, None)
    assert [i.message_id for i in outbox.list(OutboundState.DEAD, US)] == ["u1", "u2"]
    assert outbox.replay(partner=US) == 2
    assert outbox.list("dead") and outbox.list("dead")[0].message_id == "j1"
    assert outbox.replay() == 1
    assert outbox.counts()["dead"] == 0


def test_operations_on_the_wrong_message_are_refused_and_change_nothing(
    outbox: SqliteOutbox,
) -> None:
    outbox.enqueue_all([message("a1", "A")])
    with pytest.raises(Exception) as unknown:
        outbox.replay("nope")
    assert getattr(unknown.value, "code", "") == "DLV_OUTBOX_UNKNOWN_MESSAGE"
    for action in (lambda: outbox.replay("a1"), lambda: outbox.discard("a1")):
        with pytest.raises(Exception) as not_dead:
            action()
        assert getattr(not_dead.value, "code", "") == "DLV_OUTBOX_STATE"
        assert "only a dead letter" in str(not_dead.value)
    outbox.mark_delivered("a1", b"r", T0)
    with pytest.raises(Exception) as delivered:
        outbox.mark_failed("a1", down(), T0, None)
    assert getattr(delivered.value, "code", "") == "DLV_OUTBOX_STATE"
    item = outbox.get("a1")
    assert item is not None and item.state is OutboundState.DELIVERED and item.attempts == 0


def test_duplicate_enqueue_same_bytes_is_a_no_op_other_bytes_a_conflict(
    outbox: SqliteOutbox,
) -> None:
    outbox.enqueue_all([message("m1", "A")])
    outbox.enqueue_all([message("m1", "A")])  # the same envelope again: nothing changes
    assert len(outbox.list()) == 1
    with pytest.raises(Exception) as conflict:
        outbox.enqueue_all([message("m2", "A"), message("m1", "A", body=b"another envelope")])
    assert getattr(conflict.value, "code", "") == "DLV_DUPLICATE_CONFLICT"
    assert "other envelope bytes" in str(conflict.value)
    # All or nothing: m2, queued in the same unit, was rolled back too.
    assert [i.message_id for i in outbox.list()] == ["m1"]


def test_enqueue_commits_or_rolls_back_with_the_callers_unit_of_work(
    database: Database, outbox: SqliteOutbox
) -> None:
    database.write(lambda conn: conn.execute("CREATE TABLE aeo_change (id TEXT PRIMARY KEY)"))

    def change_and_queue(change_id: str, conflicting: bool) -> None:
        def unit(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO aeo_change (id) VALUES (?)", (change_id,))
            body = b"different" if conflicting else None
            outbox.enqueue(conn, message("m-" + change_id.split("-")[0], "K", body=body))

        database.write(unit)

    change_and_queue("1-first", conflicting=False)
    with pytest.raises(Exception, match="DLV_DUPLICATE_CONFLICT"):
        change_and_queue("1-second", conflicting=True)  # same message id, other bytes
    rows = database.reader().execute("SELECT id FROM aeo_change").fetchall()
    assert rows == [("1-first",)]  # the change that failed to queue was not kept either
    assert [i.message_id for i in outbox.list()] == ["m-1"]


def test_state_survives_a_restart(database_url: str) -> None:
    first = open_database(database_url)
    outbox = SqliteOutbox(first)
    outbox.enqueue_all([message("a1", "A"), message("a2", "A"), message("b1", "B")])
    outbox.mark_failed("a1", down(), T0, T0 + timedelta(minutes=1))
    outbox.mark_delivered("b1", b"receipt", T0)
    first.close()

    again = SqliteOutbox(open_database(database_url))
    try:
        assert again.counts() == {"pending": 2, "delivered": 1, "dead": 0, "discarded": 0}
        item = again.get("a1")
        assert item is not None and item.attempts == 1
        assert item.next_attempt == T0 + timedelta(minutes=1)
        assert due_ids(again) == []
        assert due_ids(again, T0 + timedelta(minutes=1)) == ["a1"]
    finally:
        again.database.close()


def test_a_large_queue_stays_cheap_to_poll(sqlite_outbox: SqliteOutbox) -> None:
    """A full list of 1,000,000 records travels as ~1,000 envelopes of one key; with 20,000
    deltas queued besides, a poll still answers at once and uses its indexes (SQLite's plan)."""
    outbox = sqlite_outbox
    chunk = b"x" * 64
    full_list = [message(f"full-{i:04d}", "full-list:sync-1", body=chunk + bytes(str(i), "ascii"))
                 for i in range(1000)]  # fmt: skip
    deltas = [message(f"delta-{i:05d}", f"NLAEOS{i:08d}", body=chunk + bytes(str(i), "ascii"))
              for i in range(20_000)]  # fmt: skip
    started = time.perf_counter()
    outbox.enqueue_all(full_list)
    outbox.enqueue_all(deltas)
    enqueue_seconds = time.perf_counter() - started
    started = time.perf_counter()
    heads = outbox.due(US, T0, 64)
    poll_seconds = time.perf_counter() - started
    assert heads[0].message_id == "full-0000"
    assert all(h.message_id.startswith("delta-") for h in heads[1:])  # one per key
    assert len(heads) == 64
    plan = " ".join(
        str(row[-1])
        for row in outbox.database.reader().execute(
            "EXPLAIN QUERY PLAN " + DUE_SQL, ("US", "2030-01-01T12:00:00.000000Z", 64)
        )
    )
    assert "SEARCH o USING INDEX outbox_state" in plan, plan  # walks pending rows in order
    assert "SEARCH e USING INDEX outbox_blocking" in plan, plan  # one probe per candidate
    assert "TEMP B-TREE" not in plan, plan  # no sort of the whole queue
    assert enqueue_seconds < 20 and poll_seconds < 1.0, (enqueue_seconds, poll_seconds)
