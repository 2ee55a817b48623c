"""Several gateway nodes on one PostgreSQL database (issue 7, item 2), tested for real.

* Claims in the store: two nodes' outboxes on one database never hold the same message, only
  the head of a key is claimable and not while another node holds the key, a lapsed claim is
  taken over, and a node that lost its lease cannot settle (fencing). SQLite keeps its plain
  read (no claims, nothing written).
* Any node answers: a message received by US node A, re-sent to US node B, gets A's receipt
  byte for byte; an online UB1 query to EU node B answers from the list stored through node A.
* Two `gncgw serve` EU nodes drain one shared outbox (UB1 changes under the US key, and
  envelopes under several other keys) to a live US gateway: every message stored once by US,
  none sent twice while both live (no duplicate at US), each key in queue order; then the same
  with one node SIGKILLed mid-run: the survivor takes its claims over after the lease, US
  still stores each once and in order, and `gncgw log verify` passes on both sides.

PostgreSQL only (the SQLite claim is checked to stay a read); skipped without the test server,
failed in CI without it (crash_harness.require_backend).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from crash_harness import (
    POSTGRES_ENV,
    US_PROFILE,
    Backend,
    ServeProcess,
    StoreView,
    free_port,
    fresh_postgres_database,
    gncgw,
    partner_tls,
    require_backend,
    write_gateway_config,
)
from test_crash_safety import _queue_changes, _trust, _versions_in_inbox_order

from gateway import testpki
from gateway.config import load_config
from gateway.envelope.opened import Binding, new_header
from gateway.errors import DLV_OUTBOX_STATE, DeliveryError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import seal_envelope
from gateway.partners.profile import eligible_for
from gateway.services.aeo import ask_partner
from gateway.store.database import Database, open_database
from gateway.store.message_log import Direction, LogOutcome
from gateway.store.outbox import OutboundMessage, OutboundState, SqliteOutbox
from gateway.store.postgres import PostgresDatabase
from gateway.translate.eos_aeo import ExportKind, load_mapping_spec, write_eos_xml
from gateway.translate.sample_aeo import generate_records
from gateway.transport.grpc_client import GrpcPartnerClient, PartnerExchange

pytestmark = [pytest.mark.crash, pytest.mark.timeout(120)]

EU, US = Administration.EU, Administration.US
SPEC_PATH = Path(__file__).resolve().parent.parent / "adapters" / "mappings" / "eos-aeo.toml"
LEASE = 2.0  # seconds: the nodes' [delivery] lease_seconds in these tests


@pytest.fixture(scope="module")
def node_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("multinode-pki"), ("EU", "US"))


@pytest.fixture
def server() -> str:
    """The test PostgreSQL server (skip, or fail in CI, without one)."""
    require_backend(Backend.POSTGRESQL)
    return os.environ[POSTGRES_ENV]


@pytest.fixture
def shared_url(server: str) -> Iterator[str]:
    """A fresh database on the test server, for every node of one test."""
    with fresh_postgres_database(server) as url:
        yield url


def _sealed(pki: testpki.TestPki, key: str, n: int) -> OutboundMessage:
    payload = f"<AEO><Key>{key}</Key><N>{n}</N></AEO>".encode()
    header = new_header(
        payload=payload, utility_block=UtilityBlock.UB1, message_type="AEOMutualRecognition",
        sender=EU, receiver=US, payload_content_type="application/xml",
    )  # fmt: skip
    raw = seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("EU"))
    return OutboundMessage(
        header.message_id, US, Binding.PROTOBUF, key, UtilityBlock.UB1,
        "AEOMutualRecognition", raw,
    )  # fmt: skip


# --- 1. claims in the store -----------------------------------------------------------------------
def _outboxes(url: str, lease: timedelta) -> tuple[Database, Database, SqliteOutbox, SqliteOutbox]:
    first, second = PostgresDatabase(url), PostgresDatabase(url)
    return (
        first,
        second,
        SqliteOutbox(first, node_id="node-a", lease=lease),
        SqliteOutbox(second, node_id="node-b", lease=lease),
    )


def test_claims_hold_keys_per_node_lapse_and_fence_a_node_that_lost_its_lease(
    shared_url: str, node_pki: testpki.TestPki
) -> None:
    lease = timedelta(seconds=30)
    first, second, a, b = _outboxes(shared_url, lease)
    try:
        k1 = [_sealed(node_pki, "k1", n) for n in range(3)]
        k2 = [_sealed(node_pki, "k2", 0)]
        a.enqueue_all([k1[0], k2[0], k1[1], k1[2]])
        t0 = datetime.now(UTC)

        got_a = a.claim(US, t0, 10)
        assert [i.message_id for i in got_a] == [k1[0].message_id, k2[0].message_id]
        assert {i.claimed_by for i in got_a} == {"node-a"} and got_a[0].envelope == k1[0].envelope
        assert b.claim(US, t0, 10) == [], "node b took a head node a holds"
        again = a.claim(US, t0 + timedelta(seconds=1), 10)  # its own claims: renewed
        assert [i.message_id for i in again] == [k1[0].message_id, k2[0].message_id]

        # Node a pauses past its lease; b takes both keys over.
        later = t0 + lease + timedelta(seconds=2)
        got_b = b.claim(US, later, 10)
        assert [i.message_id for i in got_b] == [k1[0].message_id, k2[0].message_id]
        assert a.claim(US, later, 10) == []

        # a wakes up with a receipt: its settle is refused and changes nothing.
        with pytest.raises(DeliveryError) as refused:
            a.mark_delivered(k1[0].message_id, b"receipt-a", later, fenced=True)
        assert refused.value.code == DLV_OUTBOX_STATE and "node-b" in str(refused.value)
        with pytest.raises(DeliveryError):
            a.mark_failed(k2[0].message_id, DeliveryError("late"), later, later, fenced=True)
        held = a.get(k1[0].message_id)
        assert held is not None and held.state is OutboundState.PENDING
        assert held.claimed_by == "node-b" and held.attempts == 0

        b.mark_delivered(k1[0].message_id, b"receipt-b", later, fenced=True)
        done = b.get(k1[0].message_id)
        assert done is not None and done.state is OutboundState.DELIVERED
        assert done.claim_expires is None and done.claimed_by == "node-b"
        assert b.receipt_for(k1[0].message_id) == b"receipt-b"
        with pytest.raises(DeliveryError):  # settled once per claim
            b.mark_delivered(k1[0].message_id, b"receipt-b", later, fenced=True)

        # The key moves on: its next head is free for whichever node asks first; k2's head
        # is still b's, so a gets only k1's.
        nxt = a.claim(US, later, 10)
        assert [i.message_id for i in nxt] == [k1[1].message_id]
        print({m.message_id: m.ordering_key for m in k1 + k2}, a.list())
        assert [i.message_id for i in b.claim(US, later, 10)] == [k2[0].message_id]
        a.mark_failed(k1[1].message_id, DeliveryError("down"), later, later, fenced=True)
        failed = a.get(k1[1].message_id)
        assert failed is not None and failed.attempts == 1 and failed.claim_expires is None
        # A failed attempt ends the claim: b may retry it at once (due now).
        assert [i.message_id for i in b.claim(US, later, 10)] == [  # in queue order
            k2[0].message_id, k1[1].message_id,
        ]  # fmt: skip
        assert a.release([k1[2].message_id]) == 0  # not a's
        assert b.release([k1[1].message_id]) == 1
        assert [i.message_id for i in a.claim(US, later, 10)] == [k1[1].message_id]
    finally:
        first.close()
        second.close()


def test_two_nodes_claiming_at_once_share_the_work_without_overlap_in_key_order(
    shared_url: str, node_pki: testpki.TestPki
) -> None:
    first, second, a, b = _outboxes(shared_url, timedelta(seconds=30))
    keys = [f"key-{k}" for k in range(12)]
    messages = [_sealed(node_pki, key, n) for n in range(8) for key in keys]
    a.enqueue_all(messages)
    seq = {item.message_id: item.seq for item in a.list()}
    settled: list[tuple[str, str]] = []  # (node, message id) in settling order
    lock = threading.Lock()
    claims: dict[str, list[str]] = defaultdict(list)

    def drain(outbox: SqliteOutbox) -> None:
        idle = 0
        while idle < 20:
            items = outbox.claim(US, datetime.now(UTC), 5)
            if not items:
                idle += 1
                time.sleep(0.005)
                continue
            idle = 0
            for item in items:
                claims[outbox.node_id].append(item.message_id)
                time.sleep(0.001)  # "sending"
                outbox.mark_delivered(item.message_id, b"r", datetime.now(UTC), fenced=True)
                with lock:
                    settled.append((outbox.node_id, item.message_id))

    try:
        threads = [threading.Thread(target=drain, args=(o,)) for o in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        everything = [m.message_id for m in messages]
        assert sorted(m for _, m in settled) == sorted(everything), "lost or settled twice"
        assert set(claims["node-a"]).isdisjoint(claims["node-b"]), "a message claimed twice"
        assert claims["node-a"] and claims["node-b"], f"one node did all: {dict(claims)}"
        order: dict[str, list[int]] = defaultdict(list)
        by_id = {m.message_id: m for m in messages}
        for _, message_id in settled:
            order[by_id[message_id].ordering_key].append(seq[message_id])
        for key, seqs in order.items():
            assert seqs == sorted(seqs), f"{key} settled out of order"
    finally:
        first.close()
        second.close()


def test_on_sqlite_a_claim_is_the_plain_read(tmp_path: Path, node_pki: testpki.TestPki) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        outbox = SqliteOutbox(database, node_id="solo")
        messages = [_sealed(node_pki, "k", n) for n in range(2)]
        outbox.enqueue_all(messages)
        now = datetime.now(UTC)
        claimed = outbox.claim(US, now, 10)
        assert claimed == outbox.due(US, now, 10)
        assert [i.message_id for i in claimed] == [messages[0].message_id]
        assert outbox.get(messages[0].message_id).claimed_by is None  # type: ignore[union-attr]
        assert outbox.fence is None
        outbox.mark_delivered(messages[0].message_id, b"r", now, fenced=True)  # not fenced
    finally:
        database.close()


def test_a_database_at_revision_0001_gains_the_claim_columns(tmp_path: Path) -> None:
    import sqlite3

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from gateway.store.database import HEAD, MIGRATIONS

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.commit()
    engine.dispose()
    # 0001 creates the outbox from today's schema: drop the columns as an older 0001 made it.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE outbox DROP COLUMN claimed_by")
        conn.execute("ALTER TABLE outbox DROP COLUMN claim_expires")
    database = open_database(f"sqlite:///{path}")
    database.close()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert {"claimed_by", "claim_expires"} <= columns and version == HEAD


# --- 2. any node answers ------------------------------------------------------------------
def _node_config(
    path: Path, pki: testpki.TestPki, own: str, partner: str, *, store: str, port: int,
    endpoint: str, node_id: str, profile: Path | None = None,
) -> Path:  # fmt: skip
    write_gateway_config(
        path, pki, own, partner, store_url=store, grpc_port=port, partner_endpoint=endpoint,
        profile=profile,
    )  # fmt: skip
    text = path.read_text()
    text = text.replace("[gateway]\n", f'[gateway]\nnode_id = "{node_id}"\n', 1)
    text = text.replace("[delivery]\n", f"[delivery]\nlease_seconds = {LEASE}\n", 1)
    path.write_text(text)
    return path


def test_any_node_answers_receipt_lookups_and_queries(
    shared_url: str, node_pki: testpki.TestPki, tmp_path: Path
) -> None:
    pki = node_pki
    with fresh_postgres_database(os.environ[POSTGRES_ENV]) as eu_url:
        us_ports, eu_ports = (free_port(), free_port()), (free_port(), free_port())
        nowhere = f"127.0.0.1:{free_port()}"
        us_configs = [
            _node_config(tmp_path / f"us-{n}.toml", pki, "US", "EU", store=shared_url,
                         port=port, endpoint=nowhere, node_id=f"us-{n}")
            for n, port in zip("ab", us_ports, strict=True)
        ]  # fmt: skip
        eu_configs = [
            _node_config(tmp_path / f"eu-{n}.toml", pki, "EU", "US", store=eu_url, port=port,
                         endpoint=nowhere, node_id=f"eu-{n}", profile=US_PROFILE)
            for n, port in zip("ab", eu_ports, strict=True)
        ]  # fmt: skip
        spec = load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)
        export = tmp_path / "eos.xml"
        export.write_bytes(write_eos_xml(generate_records(40, 5), ExportKind.FULL, spec))
        assert gncgw("aeo", "import", str(export), "--config", str(eu_configs[0])).returncode == 0

        nodes = [ServeProcess(c, partner_tls(pki, "EU", "US")) for c in us_configs]
        nodes += [ServeProcess(c, partner_tls(pki, "US", "EU")) for c in eu_configs]
        try:
            for node in nodes:
                node.start()
            message = _sealed(pki, "receipts", 1)
            receipts = []
            for node in nodes[:2]:  # US node a, then US node b
                with GrpcPartnerClient(node.target, tls=partner_tls(pki, "EU", "US")) as client:
                    exchange = PartnerExchange(client, partner=US, trust=_trust(pki, "US"))
                    receipts.append(exchange.deliver(message.envelope))
            assert receipts[0].accepted and receipts[1].raw == receipts[0].raw

            # US asks EU node b about an AEO that was imported through node a's configuration.
            asking = tmp_path / "us-asks-b.toml"
            _node_config(asking, pki, "US", "EU", store=shared_url, port=free_port(),
                         endpoint=nodes[3].target, node_id="asker")  # fmt: skip
            profile = load_config(eu_configs[0]).partners[0].profile
            assert profile is not None
            record = next(
                r for r in generate_records(40, 5) if eligible_for(profile, r) and r.is_aeo
            )
            verified = ask_partner(load_config(asking), EU, record.authorisation_number)
            assert verified.answer.is_aeo and verified.answer.since == record.authorised_since
            assert verified.header.sender is EU
            for node in nodes:
                node.stop()
        finally:
            for node in nodes:
                node.close()
    with StoreView(shared_url) as view:
        stored = view.rows(
            "SELECT message_id, received_sha256 FROM inbox WHERE message_id = ?",
            (message.message_id,),
        )
        outcomes = view.rows(
            "SELECT outcome FROM message_log WHERE message_id = ? ORDER BY seq",
            (message.message_id,),
        )
    assert stored == [(message.message_id, hashlib.sha256(message.envelope).digest())]
    assert [o for (o,) in outcomes] == [LogOutcome.ACCEPTED.value, LogOutcome.DUPLICATE.value]


# --- 3. two EU nodes, one outbox ----------------------------------------------------------
CHANGES_PER_ENVELOPE = 6  # UB1: 150 change feeds of 12 records -> 300 envelopes under ub1:US
OTHER_KEYS, PER_KEY = 8, 12  # and 96 envelopes under 8 keys of their own


def _fill_outbox(config: Path, directory: Path, pki: testpki.TestPki) -> int:
    _queue_changes(config, directory, CHANGES_PER_ENVELOPE)
    database = open_database(load_config(config).store_url)
    try:
        SqliteOutbox(database).enqueue_all(
            [_sealed(pki, f"other-{k}", n) for n in range(PER_KEY) for k in range(OTHER_KEYS)]
        )
    finally:
        database.close()
    with StoreView(load_config(config).store_url) as view:
        return int(view.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'"))


def _two_nodes_drain(server: str, pki: testpki.TestPki, tmp_path: Path, *, kill: bool) -> None:
    with (
        fresh_postgres_database(server) as eu_store,
        fresh_postgres_database(server) as us_store,
    ):
        eu_ports, us_port = (free_port(), free_port()), free_port()
        eu_configs = [
            _node_config(tmp_path / f"eu-{n}.toml", pki, "EU", "US", store=eu_store, port=port,
                         endpoint=f"127.0.0.1:{us_port}", node_id=f"eu-{n}", profile=US_PROFILE)
            for n, port in zip("ab", eu_ports, strict=True)
        ]  # fmt: skip
        us_config = _node_config(
            tmp_path / "us.toml", pki, "US", "EU", store=us_store, port=us_port,
            endpoint=f"127.0.0.1:{eu_ports[0]}", node_id="us",
        )  # fmt: skip
        queued = _fill_outbox(eu_configs[0], tmp_path, pki)
        assert queued >= 300, queued

        us = ServeProcess(us_config, partner_tls(pki, "EU", "US"))
        eus = {f"eu-{n}": ServeProcess(c, partner_tls(pki, "US", "EU"))
               for n, c in zip("ab", eu_configs, strict=True)}  # fmt: skip
        killed: str | None = None
        orphans: list[str] = []
        started = time.monotonic()
        try:
            with StoreView(eu_store) as view:
                us.start()
                for node in eus.values():
                    node.start()

                def delivered() -> int:
                    return int(view.scalar("SELECT count(*) FROM outbox WHERE state = 'delivered'"))

                deadline = time.monotonic() + 40
                while delivered() < queued // 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                if delivered() < queued // 3:
                    eus["eu-a"].fail(f"only {delivered()} of {queued} delivered in 40 s")
                if kill:
                    # Kill a node while it holds claims, so the survivor must wait for the lease.
                    while killed is None and time.monotonic() < deadline:
                        holders = view.rows(
                            "SELECT claimed_by FROM outbox WHERE state = 'pending' "
                            "AND claim_expires IS NOT NULL"
                        )
                        if holders:
                            killed = str(holders[0][0])
                            eus[killed].kill()
                    assert killed is not None, "no node ever held a claim"
                    orphans = [
                        str(m)
                        for (m,) in view.rows(
                            "SELECT message_id FROM outbox WHERE state = 'pending' "
                            "AND claim_expires IS NOT NULL AND claimed_by = ?",
                            (killed,),
                        )
                    ]
                    if delivered() >= queued:
                        eus[killed].fail("the outbox was drained before the kill")
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    left = int(
                        view.scalar("SELECT count(*) FROM outbox WHERE state <> 'delivered'")
                    )
                    if not left:
                        break
                    time.sleep(0.05)
                else:
                    us.fail(f"{left} message(s) still not delivered")
                for name, node in eus.items():
                    if name != killed:
                        node.stop()
                us.stop()
        finally:
            us.close()
            for node in eus.values():
                node.close()
        elapsed = time.monotonic() - started

        with StoreView(eu_store) as eu_view, StoreView(us_store) as us_view:
            outbox = eu_view.rows(
                "SELECT message_id, ordering_key, state, envelope, claimed_by FROM outbox "
                "ORDER BY seq"
            )
            sent_log = eu_view.rows(
                "SELECT message_id, outcome FROM message_log WHERE direction = ?",
                (Direction.SENT.value,),
            )
            inbox = us_view.rows(
                "SELECT message_id, received_sha256 FROM inbox WHERE sender = 'EU' "
                f"ORDER BY {us_view.insertion_order}, message_id"
            )
            received = us_view.rows(
                "SELECT message_id, outcome FROM message_log WHERE direction = ?",
                (Direction.RECEIVED.value,),
            )
            changes_seen = _versions_in_inbox_order(us_view)
        checks = [gncgw("log", "verify", "--config", str(c)) for c in (eu_configs[0], us_config)]
        verified = [check.returncode for check in checks]
        logs = [check.stdout + check.stderr for check in checks]

    # Every message delivered; US stored each exactly once, with exactly its bytes.
    assert {row[2] for row in outbox} == {"delivered"}
    queued_ids = [str(row[0]) for row in outbox]
    assert sorted(str(m) for m, _ in inbox) == sorted(queued_ids)
    digests = {str(m): bytes(d) for m, d in inbox}
    for message_id, _, _, envelope, _ in outbox:
        assert digests[str(message_id)] == hashlib.sha256(bytes(envelope)).digest()
    accepted: dict[str, int] = defaultdict(int)
    duplicates = 0
    for message_id, outcome in received:
        accepted[str(message_id)] += outcome == LogOutcome.ACCEPTED
        duplicates += outcome == LogOutcome.DUPLICATE
    assert accepted == dict.fromkeys(queued_ids, 1)
    # Settled once each by EU (a fenced-out settle leaves no log row).
    settled: dict[str, int] = defaultdict(int)
    for message_id, outcome in sent_log:
        assert outcome == LogOutcome.ACCEPTED, (message_id, outcome)
        settled[str(message_id)] += 1
    assert settled == dict.fromkeys(queued_ids, 1)
    by_node: dict[str, int] = defaultdict(int)
    for *_, node in outbox:
        by_node[str(node)] += 1
    print(
        f"two nodes{' (one killed: ' + str(killed) + ')' if kill else ''}: {len(outbox)} "
        f"messages in {elapsed:.1f} s, settled per node {dict(by_node)}, {duplicates} "
        f"duplicate(s) at US, {len(orphans)} claim(s) orphaned by the kill"
    )
    if not kill:
        assert duplicates == 0, "a message was sent by both nodes"
        assert set(by_node) == {"eu-a", "eu-b"}, f"one node delivered everything: {by_node}"
    else:
        assert orphans, "the kill left no claim to take over"
        assert duplicates <= len(orphans), "more resends than claims the kill left"
        survivor = next(name for name in eus if name != killed)
        owners = {str(m): str(n) for m, _, _, _, n in outbox}
        assert {owners[m] for m in orphans} == {survivor}

    # Per key, US stored the messages in queue order; UB1 versions applied one by one.
    position = {m: i for i, m in enumerate(str(m) for m, _ in inbox)}
    per_key: dict[str, list[int]] = defaultdict(list)
    for message_id, key, *_ in outbox:
        per_key[str(key)].append(position[str(message_id)])
    assert len(per_key) == OTHER_KEYS + 1
    for key, positions in per_key.items():
        assert positions == sorted(positions), f"{key}: stored out of queue order"
    per_record: dict[str, list[int]] = defaultdict(list)
    for number, version in changes_seen:
        per_record[number].append(int(version))
    for number, versions in per_record.items():
        assert versions == list(range(versions[0], versions[0] + len(versions))), number

    assert verified == [0, 0], logs
    assert re.search(r"serving \(node eu-[ab];", eus["eu-a"].output() + eus["eu-b"].output())


@pytest.fixture
def quiet_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    capsys.readouterr()


def test_two_nodes_deliver_one_outbox_once_each_in_order(
    server: str, node_pki: testpki.TestPki, tmp_path: Path, quiet_cli: None
) -> None:
    _two_nodes_drain(server, node_pki, tmp_path, kill=False)


def test_a_node_killed_mid_run_is_taken_over_after_its_lease(
    server: str, node_pki: testpki.TestPki, tmp_path: Path, quiet_cli: None
) -> None:
    _two_nodes_drain(server, node_pki, tmp_path, kill=True)
