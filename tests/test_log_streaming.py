"""`gncgw log verify` and `gncgw log export` on logs larger than one page: the chain is read
`page` rows per SELECT (SqliteMessageLog.iter_chain) and an archive line by line, so a log of
millions of entries is verified and exported in bounded memory, with the same findings."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import testpki
from gateway.envelope.opened import Binding
from gateway.errors import DLV_LOG_TAMPERED, DeliveryError
from gateway.store.log_chain import VerifyReport, export_archive, verify_archive, verify_log
from gateway.store.message_log import (
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    digest_of,
    entry_digest,
)
from gateway.store.sqlite import SqliteDatabase

Pki = testpki.TestPki
PAGE = 7  # 50 entries: pages of seq 1-7, 8-14, 15-21, 22-28 (the 4th), ... 50
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def accept(*_: object) -> None:
    """A signer check that accepts every signer (the signatures are not what is tested)."""


def entry(n: int, receipt: bytes | None = None) -> LogEntry:
    return LogEntry(
        direction=Direction.SENT,
        message_id=f"m-{n}",
        partner="US",
        utility_block="UB1",
        message_type="AEO_STATUS_CHANGE",
        binding=Binding.PROTOBUF,
        envelope_sha256=hashlib.sha256(f"envelope {n}".encode()).digest(),
        receipt=receipt if receipt is not None else f"receipt {n}".encode(),
        outcome=LogOutcome.ACCEPTED,
    )


MakeLog = Callable[..., SqliteMessageLog]


@pytest.fixture
def make_log(tmp_path: Path, pki: Pki) -> Iterator[MakeLog]:
    """Logs of n entries (one commit per `batch`), checkpoints signed every `every` entries."""
    databases: list[SqliteDatabase] = []

    def make(
        n: int, *, every: int = 10, batch: int = 1, receipt: bytes | None = None
    ) -> SqliteMessageLog:
        database = SqliteDatabase(tmp_path / f"log-{len(databases)}.db", synchronous="OFF")
        databases.append(database)
        log = SqliteMessageLog(database, signer=pki.identity("EU"), checkpoint_every=every)
        for start in range(0, n, batch):
            log.record([entry(k, receipt) for k in range(start, min(n, start + batch))])
        return log

    yield make
    for database in databases:
        database.close()


def attacker(log: SqliteMessageLog) -> sqlite3.Connection:
    """Direct access to the log's database file, the append-only triggers dropped."""
    database = log.database
    assert isinstance(database, SqliteDatabase)
    conn = sqlite3.connect(database.path, isolation_level=None)
    conn.execute("DROP TRIGGER message_log_no_update")
    conn.execute("DROP TRIGGER message_log_no_delete")
    return conn


def rewrite_digest(conn: sqlite3.Connection, log: SqliteMessageLog, seq: int) -> None:
    """Give row `seq` the digest of what it now holds (an attacker covering an edit)."""
    (row,) = log.chain(seq, seq)
    conn.execute(
        "UPDATE message_log SET entry_sha256 = ? WHERE seq = ?",
        (digest_of(row, row.prev_sha256), seq),
    )


def verify_file(archive: Path) -> VerifyReport:
    with archive.open("rb") as source:
        return verify_archive(source, accept)


def failure(log: SqliteMessageLog) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        verify_log(log, accept, page=PAGE)
    assert caught.value.code == DLV_LOG_TAMPERED
    return caught.value


def test_a_log_of_many_pages_verifies(make_log: MakeLog) -> None:
    log = make_log(50)
    report = verify_log(log, accept, page=PAGE)
    assert (report.entries, report.checkpoints, report.head_seq) == (50, 5, 50)
    assert report.head_sha256 == log.chain(50, 50)[0].entry_sha256
    assert [e.seq for e in log.iter_chain(page=PAGE)] == list(range(1, 51))
    assert [e.seq for e in log.iter_chain(13, 29, page=PAGE)] == list(range(13, 30))
    assert list(log.iter_chain(51, page=PAGE)) == []


def test_an_entry_altered_in_the_middle_of_the_4th_page_is_named(make_log: MakeLog) -> None:
    log = make_log(50)
    conn = attacker(log)
    conn.execute("UPDATE message_log SET message_id = 'forged' WHERE seq = 25")
    error = failure(log)
    assert error.location == "message_log seq 25"
    assert "entry seq 25 (message id forged) altered (its digest does not match it)" in str(error)


def test_an_edit_covered_at_the_end_of_a_page_is_seen_from_the_next_page(
    make_log: MakeLog,
) -> None:
    log = make_log(50)
    conn = attacker(log)
    conn.execute("UPDATE message_log SET message_id = 'forged' WHERE seq = 28")  # 4th page's last
    rewrite_digest(conn, log, 28)
    error = failure(log)
    assert error.location == "message_log seq 28"
    assert "entry seq 28 (message id forged) altered (its digest was rewritten: seq 29" in str(
        error
    )


def test_an_entry_inserted_in_the_4th_page_is_named(make_log: MakeLog) -> None:
    """Naming an insertion walks the pages again (the verifying walk keeps no digests)."""
    log = make_log(50)
    conn = attacker(log)
    for seq in range(50, 24, -1):  # make room after seq 24
        conn.execute("UPDATE message_log SET seq = seq + 1 WHERE seq = ?", (seq,))
    (before,) = log.chain(24, 24)
    assert before.at is not None
    forged = LogEntry(
        direction=before.direction,
        message_id="forged-in",
        partner=before.partner,
        utility_block=before.utility_block,
        message_type=before.message_type,
        binding=before.binding,
        envelope_sha256=before.envelope_sha256,
        receipt=before.receipt,
        outcome=before.outcome,
        at=before.at,
        seq=25,
    )
    conn.execute(
        "INSERT INTO message_log (seq, logged_at, direction, message_id, partner, utility_block, "
        "message_type, binding, envelope_sha256, receipt, outcome, code, prev_sha256, "
        "entry_sha256) SELECT 25, logged_at, direction, 'forged-in', partner, utility_block, "
        "message_type, binding, envelope_sha256, receipt, outcome, code, ?, ? "
        "FROM message_log WHERE seq = 24",
        (before.entry_sha256, digest_of(forged, before.entry_sha256)),
    )
    error = failure(log)
    assert error.location == "message_log seq 25"
    assert "entry seq 25 (message id forged-in) inserted (seq 26 chains to seq 24)" in str(error)


def test_a_row_removed_at_a_page_boundary_is_named(make_log: MakeLog) -> None:
    log = make_log(50)
    attacker(log).execute("DELETE FROM message_log WHERE seq IN (28, 29)")
    error = failure(log)
    assert error.location == "message_log seq 28"
    assert "entries seq 28..29 removed (the chain jumps to seq 30)" in str(error)


def test_export_and_verify_round_trip_over_many_pages(
    make_log: MakeLog, pki: Pki, tmp_path: Path
) -> None:
    log = make_log(50, batch=3)
    archive = tmp_path / "log.jsonl"
    assert export_archive(log, pki.identity("EU"), *WIDE, archive, page=PAGE) == 50
    report = verify_file(archive)  # checkpoints at seq 12, 24, 36, 48 (commits of 3)
    assert (report.entries, report.checkpoints, report.head_seq) == (50, 4, 50)
    # The same archive written to a file object; read from a stream that cannot seek (a pipe).
    written = io.BytesIO()
    assert export_archive(log, pki.identity("EU"), *WIDE, written, page=50) == 50
    raw = archive.read_bytes()
    assert written.getvalue().splitlines()[:-1] == raw.splitlines()[:-1]

    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    assert verify_archive(Pipe(raw), accept) == report
    # A range starting and ending inside pages (at commits: rows of a commit share a time)
    # carries the head before it.
    start, end = log.chain(13, 13)[0].at, log.chain(40, 40)[0].at
    assert start is not None and end is not None
    part = tmp_path / "part.jsonl"
    assert export_archive(log, pki.identity("EU"), start, end, part, page=PAGE) == 27
    header = json.loads(part.read_bytes().splitlines()[0])
    assert header["first_seq"] == 13
    assert header["prev_sha256"] == log.chain(12, 12)[0].entry_sha256.hex()
    report = verify_file(part)
    assert (report.entries, report.checkpoints, report.head_seq) == (27, 2, 39)


def test_an_archive_with_an_entry_inserted_deep_in_it_is_named(
    make_log: MakeLog, pki: Pki, tmp_path: Path
) -> None:
    log = make_log(50)
    archive = tmp_path / "log.jsonl"
    export_archive(log, pki.identity("EU"), *WIDE, archive, page=PAGE)
    lines = archive.read_bytes().splitlines(keepends=True)
    documents = [json.loads(line) for line in lines[:-1]]
    entries = {d["seq"]: i for i, d in enumerate(documents) if d.get("type") == "entry"}
    forged = dict(documents[entries[24]], message_id="forged-in", seq=25)
    forged["prev_sha256"] = documents[entries[24]]["entry_sha256"]
    text = {k: str(v) for k, v in forged.items()}
    forged["entry_sha256"] = entry_digest(  # chained properly: only the next row tells
        25,
        text["logged_at"],
        text["direction"],
        text["message_id"],
        text["partner"],
        text["utility_block"],
        text["message_type"],
        text["binding"],
        bytes.fromhex(text["envelope_sha256"]),
        base64.b64decode(text["receipt"]),
        text["outcome"],
        text["code"],
        bytes.fromhex(text["prev_sha256"]),
    ).hex()
    for d in documents[entries[25] :]:
        if d.get("type") == "entry":
            d["seq"] += 1
    documents.insert(entries[25], forged)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in documents) + lines[-1])
    with tampered.open("rb") as source, pytest.raises(DeliveryError) as caught:
        verify_archive(source, accept)
    assert caught.value.code == DLV_LOG_TAMPERED
    assert "entry seq 25 (message id forged-in) inserted (seq 26 chains to seq 24)" in str(
        caught.value
    )


def test_iter_chain_reads_one_page_per_select(make_log: MakeLog) -> None:
    """Bounded memory by construction: n rows take n // page + 1 SELECTs of at most `page`
    rows each (the last one short, or empty), never one SELECT of the whole log."""
    for n in (49, 50):
        log = make_log(n, batch=10)
        reader = log.database.reader()
        statements: list[str] = []
        reader.set_trace_callback(statements.append)
        try:
            assert [e.seq for e in log.iter_chain(page=PAGE)] == list(range(1, n + 1))
        finally:
            reader.set_trace_callback(None)
        selects = [s for s in statements if "FROM message_log" in s]
        assert len(selects) == n // PAGE + 1
        assert all(s.rstrip().endswith(f"LIMIT {PAGE}") for s in selects)


def test_verify_and_export_memory_does_not_grow_with_the_log(
    make_log: MakeLog, pki: Pki, tmp_path: Path
) -> None:
    """Peak Python memory of verify, export and archive verify over 2,000 entries is within a
    small constant of that over 200 (holding the rows would add 2.5 MB, the archive 10 MB)."""

    def peaks(n: int) -> list[int]:
        log = make_log(n, every=500, batch=500, receipt=bytes(300))
        archive = tmp_path / f"{n}.jsonl"
        found: list[int] = []
        for step in (
            lambda: verify_log(log, accept, page=20),
            lambda: export_archive(log, pki.identity("EU"), *WIDE, archive, page=20),
            lambda: verify_file(archive),
        ):
            tracemalloc.start()
            try:
                step()
                found.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        return found

    small, large = peaks(200), peaks(2000)
    for what, a, b in zip(("verify", "export", "verify archive"), small, large, strict=True):
        assert b - a < 512 * 1024, f"{what}: peak {a} B over 200 entries, {b} B over 2,000"
