"""The inbox, on SQLite and on PostgreSQL: durable before answering; duplicates decided in one
transaction."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_engines import ENGINES, fresh_database_url

from gateway.errors import DeliveryError
from gateway.store.database import open_database
from gateway.store.inbox import InboundRecord, PutOutcome, SqliteInbox


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as fresh:
        yield fresh


def _open(url: str) -> SqliteInbox:
    return SqliteInbox(database=open_database(url))


def _record(message_id: str, payload: bytes = b"p", receipt: bytes = b"r") -> InboundRecord:
    return InboundRecord(
        message_id=message_id,
        payload_sha256=hashlib.sha256(payload).digest(),
        received_sha256=hashlib.sha256(payload + b"env").digest(),
        sender="EU",
        receiver="US",
        utility_block="UB1",
        message_type="PING",
        binding="protobuf",
        created_at="2026-11-28T12:00:00+00:00",
        envelope=b"envelope:" + payload,
        receipt=receipt,
    )


def test_stored_record_survives_reopening(url: str) -> None:
    inbox = _open(url)
    assert inbox.put(_record("m1", receipt=b"receipt-1")).outcome is PutOutcome.STORED
    inbox.close()
    reopened = _open(url)
    assert reopened.receipt_for("m1") == b"receipt-1"
    assert reopened.envelope_for("m1") == b"envelope:p"
    assert reopened.count() == 1
    reopened.close()


def test_same_id_same_digest_answers_the_original_receipt(url: str) -> None:
    inbox = _open(url)
    inbox.put(_record("m1", receipt=b"first"))
    again = inbox.put(_record("m1", receipt=b"second"))
    assert again.outcome is PutOutcome.DUPLICATE
    assert again.receipt == b"first"
    assert inbox.count() == 1
    inbox.close()


def test_same_id_other_digest_is_a_conflict_and_changes_nothing(url: str) -> None:
    inbox = _open(url)
    inbox.put(_record("m1", payload=b"a", receipt=b"first"))
    with pytest.raises(DeliveryError) as excinfo:
        inbox.put(_record("m1", payload=b"b"))
    assert excinfo.value.code == "DLV_DUPLICATE_CONFLICT"
    assert inbox.envelope_for("m1") == b"envelope:a"
    inbox.close()


def test_batch_results_are_per_record(url: str) -> None:
    inbox = _open(url)
    inbox.put(_record("m1", payload=b"a"))
    results = inbox.put_each([_record("m2"), _record("m1", payload=b"b"), _record("m3")])
    assert [getattr(r, "outcome", None) for r in results] == [
        PutOutcome.STORED,
        None,
        PutOutcome.STORED,
    ]
    assert isinstance(results[1], DeliveryError)
    assert inbox.count() == 3
    inbox.close()


def test_concurrent_deliveries_of_one_message_store_it_once(url: str) -> None:
    inbox = _open(url)
    outcomes: list[PutOutcome] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        result = inbox.put(_record("same", receipt=f"r{n}".encode()))
        with lock:
            outcomes.append(result.outcome)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(PutOutcome.STORED) == 1
    assert outcomes.count(PutOutcome.DUPLICATE) == 15
    assert inbox.count() == 1
    inbox.close()


def test_unopenable_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError) as excinfo:
        SqliteInbox(tmp_path / "missing-dir" / "inbox.db")
    assert excinfo.value.code == "DLV_STORE_UNAVAILABLE"
