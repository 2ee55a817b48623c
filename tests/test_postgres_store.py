"""The PostgreSQL store on a real server (`make test` starts one; see tests/store_engines.py):
the migrations make the same tables as on SQLite, two nodes on one database store a message
once and keep one hash chain, `gncgw log verify` names an altered entry, the UB1 staging and
UB3 upserts, a server that is down at start-up or lost mid-run, and `gncgw serve` receipting
over gRPC with its store on PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect
from store_engines import ENGINES, fresh_database, fresh_postgres_database, terminate_backends

from gateway import testpki
from gateway.cli import main
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    AEO_DUPLICATE_AUTHORISATION,
    AEO_FULL_LIST_SEQUENCE,
    AeoError,
    DeliveryError,
)
from gateway.model.aeo_list import summarise
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.risk import Indicators, RecommendedAction, RiskArea, RiskInformation
from gateway.node import seal_envelope
from gateway.store.aeo_store import AeoStore
from gateway.store.database import HEAD, MIGRATIONS, Database, display_url, open_database
from gateway.store.inbox import InboundRecord, PutOutcome, SqliteInbox
from gateway.store.log_chain import verify_log
from gateway.store.message_log import Direction, LogEntry, LogOutcome, SqliteMessageLog
from gateway.store.postgres import pg_sql
from gateway.store.risk_store import RiskStore
from gateway.testpki import init_test_pki
from gateway.translate.sample_aeo import generate_records
from gateway.transport.grpc_client import GrpcPartnerClient
from gateway.transport.tls import ClientTls

EU, US = Administration.EU, Administration.US
GRPC_LINE = re.compile(r"gRPC \S+ listening on (127\.0\.0\.1:\d+)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


def record(message_id: str, digest: bytes = b"\x01" * 32) -> InboundRecord:
    return InboundRecord(
        message_id=message_id,
        payload_sha256=digest,
        received_sha256=hashlib.sha256(message_id.encode()).digest(),
        sender="EU",
        receiver="US",
        utility_block="UB1",
        message_type="PING",
        binding="protobuf",
        created_at="2030-01-01T12:00:00.000000Z",
        envelope=b"envelope " + message_id.encode(),
        receipt=b"receipt " + message_id.encode() + digest[:1],
    )


def sent(n: int) -> LogEntry:
    return LogEntry(
        direction=Direction.SENT,
        message_id=f"sent-{n}",
        partner="US",
        utility_block="UB1",
        message_type="AEO_STATUS_CHANGE",
        binding=Binding.PROTOBUF,
        envelope_sha256=hashlib.sha256(f"envelope {n}".encode()).digest(),
        receipt=f"receipt {n}".encode(),
        outcome=LogOutcome.ACCEPTED,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once closed


# -- the placeholder rewrite -----------------------------------------------------------------------
def test_placeholders_are_rewritten_and_ambiguous_sql_is_refused() -> None:
    assert pg_sql("SELECT a FROM t WHERE b = ? AND c = 'x'") == (
        "SELECT a FROM t WHERE b = %s AND c = 'x'"
    )
    with pytest.raises(ValueError, match="string literal"):
        pg_sql("SELECT 1 WHERE a = 'why?' AND b = ?")
    with pytest.raises(ValueError, match="'%'"):
        pg_sql("SELECT 1 WHERE a LIKE 'x%'")


# -- migrations ----------------------------------------------------------------------------------
def test_head_constant_is_the_migration_scripts_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_migrations_make_the_same_tables_on_both_engines(tmp_path: Path, pg_url: str) -> None:
    open_database(f"sqlite:///{tmp_path / 'a.db'}").close()
    open_database(pg_url).close()

    def tables(url: str) -> dict[str, list[str]]:
        engine = create_engine(url)
        try:
            found = inspect(engine)
            return {
                t: sorted(c["name"] for c in found.get_columns(t)) for t in found.get_table_names()
            }
        finally:
            engine.dispose()

    on_sqlite = tables(f"sqlite:///{tmp_path / 'a.db'}")
    on_pg = tables(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    assert on_sqlite == on_pg
    assert {"inbox", "outbox", "message_log", "aeo_record", "risk_sent"} <= set(on_pg)
    open_database(pg_url).close()  # opening again at head changes nothing


# -- inbox and message log on one database shared by two nodes ----------------------------------
def test_two_nodes_store_one_message_once(pg_url: str) -> None:
    nodes = [SqliteInbox(database=open_database(pg_url)) for _ in range(2)]
    try:

        def put(
            inbox: SqliteInbox, rid: str, barrier: threading.Barrier, out: list[PutOutcome]
        ) -> None:
            barrier.wait()
            out.append(inbox.put(record(rid)).outcome)

        for round_ in range(20):
            results: list[PutOutcome] = []
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(target=put, args=(inbox, f"m-{round_}", barrier, results))
                for inbox in nodes
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(results) == [PutOutcome.DUPLICATE, PutOutcome.STORED]
        assert nodes[0].count() == 20 == nodes[1].count()
        with pytest.raises(DeliveryError, match="another payload digest"):
            nodes[1].put(record("m-0", digest=b"\x02" * 32))
    finally:
        for inbox in nodes:
            inbox.close()


def test_two_nodes_append_to_one_chain_that_verifies(pg_url: str, pki: testpki.TestPki) -> None:
    identity = pki.identity("EU")
    logs = [
        SqliteMessageLog(open_database(pg_url), signer=identity, checkpoint_every=7)
        for _ in range(2)
    ]
    try:

        def append(log: SqliteMessageLog, base: int) -> None:
            for n in range(25):
                log.record([sent(base + 2 * n), sent(base + 2 * n + 1)])

        threads = [
            threading.Thread(target=append, args=(log, i * 1000)) for i, log in enumerate(logs)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert logs[0].count() == 100 and logs[0].sequence_used() == 100
        report = verify_log(logs[1], lambda *_: None)
        assert report.entries == 100 and report.head_seq == 100
        heads = [c.head_seq for c in logs[0].checkpoints()]
        assert report.checkpoints == len(heads) >= 10  # (a batch may cross 7 by more than 1)
        assert all(b - a >= 7 for a, b in zip([0, *heads], heads, strict=False))
    finally:
        for log in logs:
            log.database.close()


def test_log_verify_names_an_altered_entry_on_postgresql(
    tmp_path: Path, pg_url: str, pki: testpki.TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_log_chain import write_config

    config = write_config(tmp_path, pki)
    config.write_text(config.read_text().replace("sqlite:///data/eu.db", pg_url))
    log = SqliteMessageLog(open_database(pg_url), signer=pki.identity("EU"), checkpoint_every=4)
    for n in range(6):
        log.record([sent(n)])
    log.database.close()
    assert main(["log", "verify", "--config", str(config)]) == 0
    assert "OK, 6 entries" in capsys.readouterr().out

    with psycopg.connect(pg_url, autocommit=True) as attacker:
        with pytest.raises(psycopg.Error, match="append-only"):
            attacker.execute("UPDATE message_log SET code = 'x' WHERE seq = 3")
        attacker.execute("ALTER TABLE message_log DISABLE TRIGGER USER")
        attacker.execute("UPDATE message_log SET outcome = 'REJECTED' WHERE seq = 3")
    assert main(["log", "verify", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "DLV_LOG_TAMPERED" in err and "entry seq 3 (message id sent-2) altered" in err


# -- UB1 staging and UB3 upserts -----------------------------------------------------------------
def test_full_list_staging_refuses_repeats_and_swaps_in(database: Database) -> None:
    store = AeoStore(database, EU)
    records = list(generate_records(12, 7))
    first, second = records[:6], records[6:]

    def stage(part: int, rows: list, message_id: str) -> None:  # type: ignore[type-arg]
        database.write(lambda c: store.stage_part(c, US, "sync-1", part, rows, message_id))

    stage(1, first, "m1")
    with pytest.raises(AeoError) as again:
        stage(1, first, "m1-again")
    assert again.value.code == AEO_FULL_LIST_SEQUENCE
    with pytest.raises(AeoError) as overlap:
        stage(2, [*second, first[0]], "m2-bad")
    assert overlap.value.code == AEO_DUPLICATE_AUTHORISATION and first[
        0
    ].authorisation_number in str(overlap.value)
    stage(2, second, "m2")
    count = database.write(
        lambda c: store.finish_sync(c, US, "sync-1", 2, summarise(records), date(2030, 1, 1), "t")
    )
    assert count == len(records) == store.count(US)
    assert store.summary(US) == summarise(records)
    with_ref = next(r for r in records if r.cross_references)
    assert with_ref in store.find(US, with_ref.cross_references[0].value)
    assert store.staged() == []


def test_risk_store_keeps_the_newest_record_and_an_append_only_refusal_log(
    database: Database,
) -> None:
    store = RiskStore(database, US)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    info = RiskInformation(
        originator=EU,
        reference="RI-1",
        area=next(iter(RiskArea)),
        indicators=Indicators(commodity_codes=("847130",)),
        description="laptops under-declared",
        valid_from=date(2030, 1, 1),
        valid_until=date(2030, 6, 1),
        recommended_action=RecommendedAction.DOCUMENTARY_CHECK,
        label=next(iter(HandlingLabel)),
        issued_on=date(2030, 1, 1),
    )
    for message_id in ("m1", "m2"):
        database.write(
            lambda c, m=message_id: store.store_received(c, info, EU, m, now, now + timedelta(1))
        )
    received = store.received()
    assert [r.message_id for r in received] == ["m2"]  # an amendment replaces the held one
    store.log_refusal(
        at=now, actor="t", partner="EU", kind="RISK_INFORMATION", originator="US",
        reference="RI-2", code="X", rule="r", message="refused", source="test",
    )  # fmt: skip
    assert len(store.refusals()) == 1
    with pytest.raises(DeliveryError):
        database.write(lambda c: c.execute("DELETE FROM risk_refusals"))
    assert len(store.refusals()) == 1


def test_config_accepts_a_postgresql_store_url(tmp_path: Path, pki: testpki.TestPki) -> None:
    from test_log_chain import write_config

    from gateway.config import load_config

    config = write_config(tmp_path, pki)
    url = "postgresql://gnc:secret@db.example:5432/gnc"
    config.write_text(config.read_text().replace("sqlite:///data/eu.db", url))
    loaded = load_config(config)
    assert loaded.store_url == url and loaded.store_path is None
    assert display_url(url) == "postgresql://gnc:***@db.example:5432/gnc"


# -- the server down at start-up, or lost mid-run ------------------------------------------------
def test_an_unreachable_server_at_start_up_is_a_clear_error(
    tmp_path: Path, pki: testpki.TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/gnc"
    with pytest.raises(DeliveryError) as refused:
        open_database(url)
    assert refused.value.code == "DLV_STORE_UNAVAILABLE" and "127.0.0.1" in str(refused.value)

    from test_log_chain import write_config

    config = write_config(tmp_path, pki)
    config.write_text(config.read_text().replace("sqlite:///data/eu.db", url))
    assert main(["log", "list", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "DLV_STORE_UNAVAILABLE" in err and "Traceback" not in err


def test_a_lost_server_connection_fails_the_batch_then_recovers(pg_url: str) -> None:
    inbox = SqliteInbox(database=open_database(pg_url))
    try:
        assert inbox.put(record("before")).outcome is PutOutcome.STORED
        assert inbox.receipt_for("before") is not None
        assert terminate_backends(pg_url) >= 2  # the writer and this thread's reader
        with pytest.raises(DeliveryError):
            inbox.put(record("during"))  # no receipt for what was not stored
        with pytest.raises(DeliveryError):
            inbox.receipt_for("before")
        # The next batch and the next read connect again.
        assert inbox.put(record("during")).outcome is PutOutcome.STORED
        assert inbox.receipt_for("during") == record("during").receipt
        assert inbox.count() == 2
    finally:
        inbox.close()


# -- gncgw serve with its store on PostgreSQL ----------------------------------------------------
SERVE_CONFIG = """\
[gateway]
administration = "US"
signing_key = "pki/US/signing.key.pem"
signing_cert = "pki/US/signing.pem"
tls_key = "pki/US/tls.key.pem"
tls_cert = "pki/US/tls.pem"

[store]
url = "{url}"

[listen]
grpc = "127.0.0.1:0"

[[partners]]
administration = "EU"
binding = "grpc"
endpoint = "127.0.0.1:9"
ca = ["pki/EU/ca.pem"]
crl = ["pki/EU/crl.pem"]
"""


def test_serve_on_postgresql_receipts_an_envelope_and_a_resend_alike(
    tmp_path: Path, pg_url: str
) -> None:
    pki = init_test_pki(tmp_path / "pki", ("EU", "US"))
    config = tmp_path / "us.toml"
    config.write_text(SERVE_CONFIG.format(url=pg_url))
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := GRPC_LINE.search(log.read_text(errors="replace"))):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        payload = b"<Ping/>"
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock.UB1,
            message_type="PING",
            sender=EU,
            receiver=US,
            payload_content_type="application/xml",
        )
        raw = seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("EU"))
        tls = ClientTls.from_files(
            pki.key_path("EU", "tls"), pki.path("EU", "tls"), pki.path("US", "ca")
        )
        with GrpcPartnerClient(found.group(1), tls=tls) as client:
            first = client.submit(raw)
            again = client.submit(raw)
        assert first == again  # the stored receipt, answered again
        with psycopg.connect(pg_url) as db:
            rows = db.execute("SELECT message_id, receipt FROM inbox").fetchall()
            logged = db.execute("SELECT outcome FROM message_log ORDER BY seq").fetchall()
        assert rows == [(header.message_id, first)]
        assert logged == [("ACCEPTED",), ("DUPLICATE",)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_envelope_sized_rows_stay_inline_on_postgresql(pg_url: str) -> None:
    """Revision 0004: the inbox and message log keep ~2.6 KB rows in the table (no TOAST)."""
    import psycopg

    open_database(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('inbox', 'message_log')"
        ).fetchall()
    assert {name: options for name, options in rows} == {
        "inbox": ["toast_tuple_target=4080"],
        "message_log": ["toast_tuple_target=4080"],
    }
