"""Batched store paths, on SQLite and on PostgreSQL, giving the same answers: records stored
together by one unit (PostgreSQL's multi-row inbox INSERT), the message log's one-statement
appends and checkpoint timing, and a refusal after a write that leaves nothing behind."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from store_engines import ENGINES, fresh_database
from test_inbox import _record as inbound_record

from gateway.envelope.opened import Binding
from gateway.errors import (
    AEO_OUT_OF_ORDER,
    DUPLICATE_CONFLICT,
    AeoError,
    DeliveryError,
    GatewayError,
)
from gateway.store.database import Database
from gateway.store.inbox import InboundRecord, PutResult, SqliteInbox, erase_envelope
from gateway.store.log_chain import verify_log
from gateway.store.message_log import (
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    append_in,
    logged,
)
from gateway.testpki import TestPki


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as opened:
        yield opened


def _entry(message_id: str, receipt: bytes | None = b"receipt") -> LogEntry:
    return LogEntry(
        direction=Direction.RECEIVED,
        message_id=message_id,
        partner="EU",
        utility_block="UB1",
        message_type="PING",
        binding=Binding.PROTOBUF,
        envelope_sha256=hashlib.sha256(message_id.encode()).digest(),
        receipt=receipt,
        outcome=LogOutcome.ACCEPTED if receipt is not None else LogOutcome.FAILED,
    )


def _record(
    message_id: str, payload: bytes = b"p", receipt: bytes = b"r", *, log: bool = True
) -> InboundRecord:
    return replace(
        inbound_record(message_id, payload, receipt),
        apply=logged(None, _entry(message_id)) if log else None,
    )


def _outcomes(results: list[PutResult | GatewayError]) -> list[str]:
    return [r.outcome.value if isinstance(r, PutResult) else r.code for r in results]


def test_one_id_twice_in_a_batch_is_stored_once_then_a_duplicate_or_a_conflict(
    database: Database,
) -> None:
    inbox = SqliteInbox(database=database)
    results = inbox.put_each(
        [
            _record("m1", receipt=b"first"),
            _record("m1", receipt=b"second"),
            _record("m2"),
            _record("m1", payload=b"other"),
        ]
    )
    assert _outcomes(results) == ["stored", "duplicate", "stored", DUPLICATE_CONFLICT]
    assert [r.receipt for r in results[:2] if isinstance(r, PutResult)] == [b"first", b"first"]
    assert inbox.count() == 2
    assert inbox.envelope_for("m1") == b"envelope:p"
    assert inbox.receipt_for("m1") == b"first"


def test_only_stored_records_are_logged_in_order_and_the_chain_holds(
    database: Database, pki: TestPki
) -> None:
    inbox = SqliteInbox(database=database)
    log = SqliteMessageLog(database, signer=pki.identity("US"), checkpoint_every=3)
    inbox.put(_record("m0", payload=b"zero", log=False))
    results = inbox.put_each(
        [
            _record("m1"),
            _record("m0", payload=b"zero"),  # duplicate: the node logs it itself
            _record("m2"),
            _record("m0", payload=b"not zero"),  # conflict: refused, nothing of it stored
            _record("m3"),
        ]
    )
    assert _outcomes(results) == ["stored", "duplicate", "stored", DUPLICATE_CONFLICT, "stored"]
    assert [(e.seq, e.message_id) for e in log.entries()] == [(1, "m1"), (2, "m2"), (3, "m3")]
    assert inbox.count() == 4
    report = verify_log(log, lambda *_: None)
    assert (report.entries, report.head_seq, report.checkpoints) == (3, 3, 1)
    assert [c.head_seq for c in log.checkpoints()] == [3]


class WritesThenRefuses:
    """An exchange's apply step that changes another record and logs, then refuses."""

    def __call__(self, conn: object) -> None:
        conn.execute(  # type: ignore[attr-defined]
            "UPDATE inbox SET receipt = ? WHERE message_id = ?", (b"overwritten", "m1")
        )
        append_in(_entry("refused"), conn)  # type: ignore[arg-type]
        raise AeoError("version goes backwards", code=AEO_OUT_OF_ORDER, location="version")


def test_a_refusal_after_a_write_leaves_nothing_and_spares_the_rest(database: Database) -> None:
    inbox = SqliteInbox(database=database)
    log = SqliteMessageLog(database)
    refusing = InboundRecord(
        **{**_record("m2").__dict__, "apply": logged(WritesThenRefuses(), _entry("m2"))}
    )
    results = inbox.put_each([_record("m1", receipt=b"kept"), refusing, _record("m3")])
    assert _outcomes(results) == ["stored", AEO_OUT_OF_ORDER, "stored"]
    assert inbox.receipt_for("m1") == b"kept"
    assert inbox.receipt_for("m2") is None
    assert inbox.count() == 2
    assert [e.message_id for e in log.entries()] == ["m1", "m3"]


def test_log_rows_with_and_without_a_receipt_read_back_as_appended(database: Database) -> None:
    log = SqliteMessageLog(database)
    appended = [_entry("a"), _entry("b", receipt=None), _entry("c", receipt=b"\x00\xff" * 600)]
    log.record(appended)
    log.record([_entry("d", receipt=None)])
    back = log.entries()
    assert [(e.seq, e.message_id, e.receipt) for e in back] == [
        (n, e.message_id, e.receipt) for n, e in enumerate([*appended, back[3]], start=1)
    ]
    assert back[3].receipt is None and back[3].outcome is LogOutcome.FAILED
    assert log.sequence_used() == 4
    assert verify_log(log, lambda *_: None).head_seq == 4


def test_checkpoints_fall_at_the_same_seqs_on_both_engines(
    database: Database, pki: TestPki
) -> None:
    log = SqliteMessageLog(database, signer=pki.identity("US"), checkpoint_every=4)
    count = 0
    for size in (1, 2, 3, 1, 5, 2, 1):
        log.record([_entry(f"m{count + n}") for n in range(size)])
        count += size
    # A checkpoint when an append takes the chain 4 past the last one: at 6, then 12.
    assert [c.head_seq for c in log.checkpoints()] == [6, 12]
    assert [c.entries for c in log.checkpoints()] == [6, 12]
    assert verify_log(log, lambda *_: None).entries == count == 15


class BrokenPromise:
    """A unit that claims to refuse nothing (so runs without a savepoint), then refuses."""

    refuses_nothing = True

    def __call__(self, conn: Any) -> None:
        conn.execute("UPDATE inbox SET receipt = ? WHERE message_id = ?", (b"overwritten", "m1"))
        raise AeoError("version goes backwards", code=AEO_OUT_OF_ORDER, location="version")


def test_a_unit_without_a_savepoint_that_refuses_fails_its_whole_batch(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as database:
        inbox = SqliteInbox(database=database)
        inbox.put(_record("m1", receipt=b"kept", log=False))
        units: list[Callable[[Any], None]] = [
            partial(erase_envelope, message_id="m1"),
            BrokenPromise(),
        ]
        with pytest.raises(DeliveryError) as excinfo:
            database.write_each(units)
        assert excinfo.value.code == DeliveryError.code
        assert inbox.receipt_for("m1") == b"kept"
        assert inbox.envelope_for("m1") == b"envelope:p"  # the other unit's write is gone too
        assert _outcomes(inbox.put_each([_record("m2")])) == ["stored"]  # and the store goes on


class SwallowsAnError:
    """A unit without a savepoint that hides a failed statement (the transaction is aborted)."""

    refuses_nothing = True

    def __call__(self, conn: Any) -> str:
        with contextlib.suppress(Exception):  # the server has aborted the transaction
            conn.execute("SELECT 1 / 0")
        return "done"


def test_a_batch_the_server_rolled_back_is_never_answered_as_committed(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as database:
        inbox = SqliteInbox(database=database)
        inbox.put(_record("m1", log=False))
        units: list[Callable[[Any], object]] = [
            partial(erase_envelope, message_id="m1"),
            SwallowsAnError(),
        ]
        with pytest.raises(DeliveryError):
            database.write_each(units)
        assert inbox.envelope_for("m1") == b"envelope:p"
