"""The tamper-evident message log on a real SQLite store: the hash chain, signed checkpoints,
`gncgw log verify` naming the first entry altered, removed or inserted, and signed archives an
auditor verifies on their own (`gncgw log export` / `gncgw log verify --archive`)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import testpki
from gateway.cli import main
from gateway.envelope.jws import sign_detached
from gateway.envelope.opened import Binding, new_header
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import GatewayNode, seal_envelope
from gateway.store import log_chain
from gateway.store.inbox import SqliteInbox
from gateway.store.log_chain import ARCHIVE_TYP, export_archive
from gateway.store.message_log import (
    CHECKPOINT_TYP,
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
    checkpoint_payload,
    entry_digest,
)
from gateway.store.sqlite import SqliteDatabase
from gateway.trust.store import PartnerTrust, TrustStore

EU, US = Administration.EU, Administration.US
Pki = testpki.TestPki
PROFILE = Path(__file__).resolve().parent.parent / "adapters" / "partners" / "us.toml"
WIDE = ("--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z")


def write_config(tmp_path: Path, pki: Pki) -> Path:
    root = pki.root
    (tmp_path / "data").mkdir(exist_ok=True)
    config = tmp_path / "eu.toml"
    config.write_text(
        f"""\
[gateway]
administration = "EU"
signing_key = "{root}/EU/signing.key.pem"
signing_cert = "{root}/EU/signing.pem"
tls_key = "{root}/EU/tls.key.pem"
tls_cert = "{root}/EU/tls.pem"

[store]
url = "sqlite:///data/eu.db"

[[partners]]
administration = "US"
binding = "grpc"
endpoint = "127.0.0.1:9"
ca = ["{root}/US/ca.pem"]
crl = ["{root}/US/crl.pem"]
profile = "{PROFILE}"
"""
    )
    return config


def inbound(pki: Pki, n: int) -> bytes:
    payload = f"<Ping><N>{n}</N></Ping>".encode()
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="PING",
        sender=US,
        receiver=EU,
        payload_content_type="application/xml",
    )
    return seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("US"))


def sent(n: int) -> LogEntry:
    return LogEntry(
        direction=Direction.SENT,
        message_id=f"sent-{n}",
        partner="US",
        utility_block="UB1",
        message_type="AEO_STATUS_CHANGE",
        binding=Binding.PROTOBUF,
        envelope_sha256=hashlib.sha256(f"envelope {n}".encode()).digest(),
        receipt=None if n % 3 == 0 else f"receipt {n}".encode(),
        outcome=LogOutcome.FAILED if n % 3 == 0 else LogOutcome.ACCEPTED,
        code="DLV_TRANSPORT" if n % 3 == 0 else "",
    )


@pytest.fixture
def config(tmp_path: Path, pki: Pki) -> Path:
    """A gateway config whose store holds 10 log entries (4 received through the node, 6 sent
    through the message-log API) with checkpoints signed every 4 entries."""
    path = write_config(tmp_path, pki)
    inbox = SqliteInbox(tmp_path / "data" / "eu.db")
    log = SqliteMessageLog(inbox.database, signer=pki.identity("EU"), checkpoint_every=4)
    trust = TrustStore([PartnerTrust(US, (pki.ca("US"),), (pki.crl("US"),))])
    node = GatewayNode(pki.identity("EU"), trust, inbox, message_log=log)
    node.receive_many([inbound(pki, 1), inbound(pki, 2), b"garbage"], Binding.PROTOBUF, US)
    node.receive(inbound(pki, 3), Binding.PROTOBUF, US)
    for n in range(6):
        log.record([sent(n)])
    assert log.count() == 10
    assert [c.head_seq for c in log.checkpoints()] == [4, 8]
    inbox.close()
    return path


@pytest.fixture
def attacker(tmp_path: Path, config: Path) -> Iterator[sqlite3.Connection]:
    """Direct access to the database file, the append-only triggers dropped."""
    conn = sqlite3.connect(tmp_path / "data" / "eu.db", isolation_level=None)
    for name in (
        "message_log_no_update",
        "message_log_no_delete",
        "message_log_checkpoint_no_update",
        "message_log_checkpoint_no_delete",
    ):
        conn.execute(f"DROP TRIGGER {name}")
    yield conn
    conn.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verify(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str, str]:
    return run(capsys, "log", "verify", "--config", str(config))


def exported(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> tuple[Path, list[bytes]]:
    """`log export` of the whole log: the archive and its lines."""
    archive = tmp_path / "eu-log.jsonl"
    assert run(capsys, "log", "export", "--config", str(config), *WIDE, "-o", str(archive))[0] == 0
    return archive, archive.read_bytes().splitlines(keepends=True)


def verify_archive(
    capsys: pytest.CaptureFixture[str], archive: Path, pki: Pki
) -> tuple[int, str, str]:
    return run(capsys, "log", "verify", "--archive", str(archive), "--trust-dir", str(pki.root))


def row_digest(conn: sqlite3.Connection, seq: int, prev: bytes) -> bytes:
    row = conn.execute(
        "SELECT logged_at, direction, message_id, partner, utility_block, message_type, "
        "binding, envelope_sha256, receipt, outcome, code FROM message_log WHERE seq = ?",
        (seq,),
    ).fetchone()
    at, direction, message_id, partner, ub, kind, binding = (str(v) for v in row[:7])
    receipt = bytes(row[8]) if row[8] is not None else None
    return entry_digest(
        seq, at, direction, message_id, partner, ub, kind, binding,
        bytes(row[7]), receipt, str(row[9]), str(row[10]), prev,
    )  # fmt: skip


def _rechain_from(attacker: sqlite3.Connection, first: int) -> dict[int, bytes]:
    """Recompute every entry digest from seq `first` on (after an edit); the new digests."""
    prev = attacker.execute("SELECT prev_sha256 FROM message_log WHERE seq = ?", (first,))
    chained = bytes(prev.fetchone()[0])
    digests: dict[int, bytes] = {}
    last = attacker.execute("SELECT max(seq) FROM message_log").fetchone()[0]
    for seq in range(first, last + 1):
        digest = row_digest(attacker, seq, chained)
        attacker.execute(
            "UPDATE message_log SET prev_sha256 = ?, entry_sha256 = ? WHERE seq = ?",
            (chained, digest, seq),
        )
        digests[seq], chained = digest, digest
    return digests


def test_an_untouched_log_verifies(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = verify(capsys, config)
    assert code == 0, err
    assert "OK, 10 entries, 2 checkpoint(s), head seq 10" in out
    code, out, _ = run(capsys, "log", "list", "--config", str(config))
    assert code == 0 and len(out.splitlines()) == 10


def test_on_demand_checkpoint(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, "log", "checkpoint", "--config", str(config))
    assert code == 0 and "10 entries, head seq 10" in out
    code, out, _ = verify(capsys, config)
    assert code == 0 and "3 checkpoint(s)" in out


def test_an_altered_entry_is_named(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    attacker.execute("UPDATE message_log SET outcome = 'ACCEPTED', code = '' WHERE seq = 8")
    code, _, err = verify(capsys, config)
    assert code == 1
    assert "DLV_LOG_TAMPERED" in err and "entry seq 8 (message id sent-3) altered" in err


def test_an_altered_entry_with_its_digest_rewritten_is_named(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    prev = attacker.execute("SELECT prev_sha256 FROM message_log WHERE seq = 6").fetchone()[0]
    attacker.execute("UPDATE message_log SET message_id = 'forged' WHERE seq = 6")
    attacker.execute(
        "UPDATE message_log SET entry_sha256 = ? WHERE seq = 6", (row_digest(attacker, 6, prev),)
    )
    code, _, err = verify(capsys, config)
    assert code == 1 and "entry seq 6 (message id forged) altered" in err


def test_a_rechained_log_fails_its_checkpoint(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    attacker.execute("UPDATE message_log SET receipt = x'00' WHERE seq = 2")
    _rechain_from(attacker, 2)  # the attacker rewrites the whole chain after the edit
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_TAMPERED" in err
    assert "entries seq 1..4 were altered, removed or inserted" in err


def test_a_removed_entry_is_named(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    attacker.execute("DELETE FROM message_log WHERE seq = 6")
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_TAMPERED" in err and "entry seq 6 removed" in err


def test_a_removed_last_entry_is_named(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    attacker.execute("DELETE FROM message_log WHERE seq = 10")
    code, _, err = verify(capsys, config)
    assert code == 1 and "entry seq 10 removed" in err


def test_an_inserted_entry_is_named(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    for seq in range(10, 5, -1):  # make room after seq 5
        attacker.execute("UPDATE message_log SET seq = seq + 1 WHERE seq = ?", (seq,))
    prev = attacker.execute("SELECT entry_sha256 FROM message_log WHERE seq = 5").fetchone()[0]
    attacker.execute(
        "INSERT INTO message_log (seq, logged_at, direction, message_id, partner, "
        "utility_block, message_type, binding, envelope_sha256, receipt, outcome, code, "
        "prev_sha256) SELECT 6, logged_at, direction, 'forged-in', partner, utility_block, "
        "message_type, binding, envelope_sha256, receipt, outcome, code, ? "
        "FROM message_log WHERE seq = 5",
        (prev,),
    )
    attacker.execute(
        "UPDATE message_log SET entry_sha256 = ? WHERE seq = 6", (row_digest(attacker, 6, prev),)
    )
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_TAMPERED" in err
    assert "entry seq 6 (message id forged-in) inserted" in err


def test_an_altered_checkpoint_fails_its_signature(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    payload = attacker.execute("SELECT payload FROM message_log_checkpoint WHERE id = 2").fetchone()
    forged = bytes(payload[0]).replace(b'"entries":8', b'"entries":7')
    attacker.execute("UPDATE message_log_checkpoint SET payload = ? WHERE id = 2", (forged,))
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_SIGNATURE" in err and "checkpoint 2" in err


def test_a_checkpoint_column_changed_without_its_payload_fails(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    attacker.execute("UPDATE message_log_checkpoint SET head_sha256 = zeroblob(32) WHERE id = 1")
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_SIGNATURE" in err and "not the ones it signed" in err


def test_export_and_verify_an_archive_on_its_own(
    capsys: pytest.CaptureFixture[str], config: Path, pki: Pki, tmp_path: Path
) -> None:
    archive = tmp_path / "eu-log.jsonl"
    code, out, err = run(
        capsys, "log", "export", "--config", str(config), *WIDE, "-o", str(archive)
    )
    assert code == 0 and "exported 10 entries" in out, err
    code, out, err = verify_archive(capsys, archive, pki)
    assert code == 0, err
    assert "OK, 10 entries, 2 checkpoint(s), head seq 10" in out
    code, out, err = run(
        capsys, "log", "verify", "--archive", str(archive), "--config", str(config)
    )
    assert code == 0, err


def test_an_archive_of_a_later_range_carries_the_head_before_it(
    capsys: pytest.CaptureFixture[str], config: Path, pki: Pki, tmp_path: Path
) -> None:
    database = SqliteDatabase(tmp_path / "data" / "eu.db")
    log = SqliteMessageLog(database)
    start = log.chain(5, 5)[0].at
    assert start is not None
    archive = tmp_path / "part.jsonl"
    count = export_archive(
        log, pki.identity("EU"), start, datetime(2100, 1, 1, tzinfo=UTC), archive
    )
    database.close()
    assert count == 6
    code, out, err = verify_archive(capsys, archive, pki)
    assert code == 0, err
    assert "6 entries, 1 checkpoint(s), head seq 10" in out


def test_a_tampered_archive_fails(
    capsys: pytest.CaptureFixture[str], config: Path, pki: Pki, tmp_path: Path
) -> None:
    _, lines = exported(capsys, config, tmp_path)
    altered = [json.loads(line) for line in lines]
    altered[7]["message_id"] = "changed"  # the entry of seq 7
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in altered[:-1]) + lines[-1])
    code, _, err = verify_archive(capsys, tampered, pki)
    assert code == 1 and "DLV_LOG_TAMPERED" in err and "entry seq 7 (message id changed)" in err
    # A change outside the entries (here: the range in the header) breaks the signed digest.
    header = json.loads(lines[0])
    header["to"] = "2200-01-01T00:00:00+00:00"
    tampered.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    code, _, err = verify_archive(capsys, tampered, pki)
    assert code == 1 and "not the ones the exporter signed" in err
    # Dropping an entry from the middle is named.
    tampered.write_bytes(b"".join(lines[:3] + lines[4:]))
    code, _, err = verify_archive(capsys, tampered, pki)
    assert code == 1 and "entry seq 3 removed" in err


def test_an_archive_signed_by_an_untrusted_key_fails(
    capsys: pytest.CaptureFixture[str], config: Path, pki: Pki, tmp_path: Path
) -> None:
    database = SqliteDatabase(tmp_path / "data" / "eu.db")
    impostor = pki.identity(testpki.FOREIGN, "EU-impostor")
    archive = tmp_path / "impostor.jsonl"
    export_archive(
        SqliteMessageLog(database),
        impostor,
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2100, 1, 1, tzinfo=UTC),
        archive,
    )
    database.close()
    code, _, err = verify_archive(capsys, archive, pki)
    assert code == 1 and "DLV_LOG_SIGNATURE" in err and "exporter's signature is refused" in err


def test_a_log_made_before_the_chain_is_migrated(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        """
        CREATE TABLE message_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, logged_at TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
            message_id TEXT NOT NULL, partner TEXT NOT NULL, utility_block TEXT NOT NULL,
            message_type TEXT NOT NULL, binding TEXT NOT NULL, envelope_sha256 BLOB NOT NULL,
            receipt BLOB, outcome TEXT NOT NULL, code TEXT NOT NULL DEFAULT '');
        CREATE TRIGGER message_log_no_update BEFORE UPDATE ON message_log
        BEGIN SELECT RAISE(ABORT, 'the message log is append-only'); END;
        """
    )
    for n in range(3):
        old.execute(
            "INSERT INTO message_log (logged_at, direction, message_id, partner, utility_block, "
            "message_type, binding, envelope_sha256, receipt, outcome) VALUES "
            "('2026-01-01T00:00:00.000000Z', 'sent', ?, 'US', 'UB1', 'X', 'protobuf', ?, NULL, "
            "'FAILED')",
            (f"old-{n}", bytes(32)),
        )
    old.close()
    database = SqliteDatabase(path)
    try:
        log = SqliteMessageLog(database)
        log.record([sent(1)])
        entries = log.entries()
        assert [e.message_id for e in entries] == ["old-0", "old-1", "old-2", "sent-1"]
        assert entries[1].prev_sha256 == entries[0].entry_sha256 != b""
        assert entries[3].prev_sha256 == entries[2].entry_sha256
        checkpoint = log.checkpoint(pki.identity("EU"))
        assert checkpoint is not None and checkpoint.head_seq == 4
        from gateway.store.log_chain import verify_log

        report = verify_log(log, lambda admin, chain, at: None)
        assert report.entries == 4 and report.checkpoints == 1
        with pytest.raises(sqlite3.IntegrityError):  # still append-only
            sqlite3.connect(path).execute("UPDATE message_log SET code = 'x'")
    finally:
        database.close()


def test_checkpoints_re_signed_by_a_partner_do_not_vouch_for_our_log(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection, pki: Pki
) -> None:
    """US's key is trusted (for US): a rewritten EU log with its checkpoints re-signed by US
    must not verify as EU's."""
    attacker.execute("UPDATE message_log SET outcome = 'REJECTED' WHERE seq = 2")
    digests = _rechain_from(attacker, 2)
    us = pki.identity("US")
    for cid, entries, head_seq, signed_at in attacker.execute(
        "SELECT id, entries, head_seq, signed_at FROM message_log_checkpoint"
    ).fetchall():
        payload = checkpoint_payload("US", entries, head_seq, digests[head_seq], signed_at)
        attacker.execute(
            "UPDATE message_log_checkpoint SET administration = 'US', head_sha256 = ?, "
            "payload = ?, jws = ? WHERE id = ?",
            (digests[head_seq], payload, sign_detached(payload, us, CHECKPOINT_TYP), cid),
        )
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_SIGNATURE" in err
    assert "is signed for US: this is EU's log" in err


def test_a_row_outside_the_chain_is_found(
    capsys: pytest.CaptureFixture[str], config: Path, attacker: sqlite3.Connection
) -> None:
    """A row with seq 0 or below is not in the walk from seq 1, but `log list` would show it."""
    columns = (
        "logged_at, direction, message_id, partner, utility_block, message_type, binding, "
        "envelope_sha256, receipt, outcome, code, prev_sha256, entry_sha256"
    )
    attacker.execute(
        f"INSERT INTO message_log (seq, {columns}) SELECT -5, {columns} FROM message_log "
        "WHERE seq = 3"
    )
    code, _, err = verify(capsys, config)
    assert code == 1 and "DLV_LOG_TAMPERED" in err and "seq -5 was inserted outside" in err


def test_an_archive_says_whose_log_and_which_range_and_holds_to_it(
    capsys: pytest.CaptureFixture[str], config: Path, pki: Pki, tmp_path: Path
) -> None:
    archive, _ = exported(capsys, config, tmp_path)
    code, out, _ = verify_archive(capsys, archive, pki)
    assert code == 0 and "(EU's log, logged 2000-01-01T00:00:00+00:00 .. " in out
    # The exporter (its own key) claims a range that ends before its entries were logged.
    lines = archive.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["to"] = "2001-01-01T00:00:00+00:00"
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    body += b"".join(lines[1:-1])
    statement = json.loads(base64.b64decode(json.loads(lines[-1])["payload"]))
    statement["archive_sha256"] = hashlib.sha256(body).hexdigest()
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    jws = sign_detached(payload, pki.identity("EU"), ARCHIVE_TYP)
    signed = {"type": "statement", "payload": base64.b64encode(payload).decode(), "jws": jws}
    lying = tmp_path / "lying.jsonl"
    lying.write_bytes(body + json.dumps(signed).encode() + b"\n")
    code, _, err = verify_archive(capsys, lying, pki)
    assert code == 1 and "outside the range the archive claims" in err


@pytest.mark.parametrize(
    "header",
    [b"[]\n", b"[" * 100_000 + b"]" * 100_000 + b"\n", b'{"type": "header", "format": 7}\n'],
    ids=["a-list", "deeply-nested", "wrong-format"],
)
def test_an_archive_of_odd_json_is_refused_not_a_crash(
    capsys: pytest.CaptureFixture[str], config: Path, pki: Pki, tmp_path: Path, header: bytes
) -> None:
    _, lines = exported(capsys, config, tmp_path)
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(header + b"".join(lines[1:]))
    code, _, err = verify_archive(capsys, odd, pki)
    assert code == 1 and err.startswith("error: DLV_LOG_TAMPERED") and "cannot be read" in err


def test_an_archive_line_too_long_is_refused_before_it_is_read_whole(
    capsys: pytest.CaptureFixture[str],
    config: Path,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive, lines = exported(capsys, config, tmp_path)
    monkeypatch.setattr(log_chain, "MAX_ARCHIVE_LINE", 64 * 1024)
    huge = tmp_path / "huge.jsonl"
    huge.write_bytes(lines[0] + b'{"pad": "' + b"x" * 100_000 + b'"}\n' + b"".join(lines[1:]))
    code, _, err = verify_archive(capsys, huge, pki)
    assert code == 1 and "a line is longer than 65536 bytes" in err
    code, _, err = verify_archive(capsys, archive, pki)
    assert code == 0, err  # the genuine archive's lines are far below the limit


def test_an_archive_of_bytes_not_signed_spends_no_checkpoint_verification(
    capsys: pytest.CaptureFixture[str],
    config: Path,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forged checkpoint lines (a bad JWS) in bytes the exporter did not sign: refused for its
    digest, without one signature check per checkpoint (many would cost seconds each 10,000)."""
    _, lines = exported(capsys, config, tmp_path)
    forged = [json.loads(line) for line in lines]
    checkpoints = [d for d in forged if d.get("type") == "checkpoint"]
    assert checkpoints
    for document in checkpoints:
        document["jws"] = document["jws"][:-8] + "AAAAAAAA"
    odd = tmp_path / "forged.jsonl"
    odd.write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in forged[:-1]) + lines[-1])
    checked: list[object] = []
    monkeypatch.setattr(log_chain, "check_checkpoint", lambda *a: checked.append(a))
    code, _, err = verify_archive(capsys, odd, pki)
    assert code == 1 and "not the ones the exporter signed" in err
    assert checked == []
