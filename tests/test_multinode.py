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
* UB1 across nodes (the queue lock `serialise_ub1_queue` and the schedule's `FULL_LIST_LOCK`):
  imports on one node and full lists on another, concurrently and in a forced interleaving (an
  import's insert held uncommitted while the other node queues); the ub1:US key, replayed in
  delivery order into a real US receiver, never has a full list that lacks a change queued
  before its end, and leaves US exactly the EU list; two nodes' schedules queue one full list
  per interval. The forced interleavings are also run with each lock disabled, to show they
  reach the window the lock closes. End to end: two `gncgw serve` nodes deliver it all to a
  live US gateway, which ends with the EU list.

PostgreSQL only (the SQLite claim is checked to stay a read); skipped without the test server,
failed in CI without it (crash_harness.require_backend).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

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
from test_crash_safety import (
    _queue_changes,
    _trust,
    _us_eligible_records,
    _versions_in_inbox_order,
)

from gateway import testpki
from gateway.config import load_config
from gateway.envelope.intake import check_envelope
from gateway.envelope.opened import Binding, new_header
from gateway.errors import DLV_OUTBOX_STATE, DeliveryError, GatewayError
from gateway.model.aeo import AeoRecord
from gateway.model.aeo_list import AeoChange, ChangeKind
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import utc_now
from gateway.node import seal_envelope
from gateway.partners.profile import eligible_for, load_profile, partner_view
from gateway.services import aeo as aeo_service
from gateway.services.aeo import (
    AeoService,
    SyncResult,
    Ub1InboundHandler,
    Ub1Partner,
    ask_partner,
    decode_payload,
    ordering_key,
)
from gateway.services.schedule import FullListSchedule
from gateway.store.aeo_store import AeoStore
from gateway.store.database import Database, open_database
from gateway.store.message_log import Direction, LogOutcome
from gateway.store.outbox import OutboundMessage, OutboundState, SqliteOutbox
from gateway.store.postgres import PostgresDatabase
from gateway.translate.aeo_exchange import FullListEnd, FullListPart, MessageType, StatusChanges
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
            verified = ask_partner(
                load_config(asking), EU, record.authorisation_number, message_log=None
            )
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


def _two_eu_nodes_and_us(
    pki: testpki.TestPki, tmp_path: Path, eu_store: str, us_store: str
) -> tuple[list[Path], Path]:
    """Configurations of EU nodes eu-a and eu-b (one store, the US profile) and of US."""
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
    return eu_configs, us_config


def _two_nodes_drain(server: str, pki: testpki.TestPki, tmp_path: Path, *, kill: bool) -> None:
    with (
        fresh_postgres_database(server) as eu_store,
        fresh_postgres_database(server) as us_store,
    ):
        eu_configs, us_config = _two_eu_nodes_and_us(pki, tmp_path, eu_store, us_store)
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
                    # The node may settle its claims between our read and the kill: then it
                    # left nothing to take over, so it is started again and the kill retried.
                    for _attempt in range(5):
                        killed = None
                        # Its own deadline: under load the first third may take most of the
                        # 40 s above, leaving the search for a claim no time at all.
                        deadline = time.monotonic() + 30
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
                        if orphans or delivered() >= queued:
                            break
                        eus[killed].start()
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
        # Which node settles how many depends on the machine's load (on a busy CI machine one
        # node may take everything); that they share without overlap is proven deterministically
        # by test_two_nodes_draining_at_once_share_the_work_without_overlap.
        assert set(by_node) <= {"eu-a", "eu-b"}, by_node
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


# --- 4. UB1 on two nodes: the queue lock and the full-list schedule lock --------------------------
# Two AeoService instances on two PostgresDatabase connections to one database are two nodes for
# this purpose: each has its own writer (its own transactions), PostgreSQL arbitrates. Every UB1
# message for US goes under one ordering key, so the outbox read by key and seq is exactly what
# delivery sends, in that order; it is replayed into a real US receiver (Ub1InboundHandler on an
# AeoStore of its own, each envelope verified first) to see what US would end up holding.
UB1_PART_SIZE = 4  # 12 records -> 3 parts, one part per unit: as many units (and windows) as can be


class _HoldingOutbox(SqliteOutbox):
    """An outbox that holds the first unit of work queueing through it open, after its insert
    and before its commit, until released: forces another node's transaction into that window.
    (The insert has taken its identity value; its commit comes later: the case the lock is for.)
    """

    def __init__(self, database: Database, *, node_id: str) -> None:
        super().__init__(database, node_id=node_id)
        self.inserted = threading.Event()
        self.proceed = threading.Event()
        self._armed = True

    def enqueue(self, conn: Any, message: OutboundMessage, *, now: datetime | None = None) -> None:
        super().enqueue(conn, message, now=now)
        if self._armed:
            self._armed = False
            self.inserted.set()
            if not self.proceed.wait(30):
                raise TimeoutError("the held unit was never released")


class _Clock:
    """The nodes' shared clock: the schedule's intervals pass in a test at will."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _ub1_node(
    url: str, pki: testpki.TestPki, node_id: str, *, outbox: type[SqliteOutbox] = SqliteOutbox,
    clock: Callable[[], datetime] = utc_now,
) -> AeoService:  # fmt: skip
    """An EU node's AEO service on its own connection to the shared database."""
    database = PostgresDatabase(url)
    spec = load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)
    profile = load_profile(US_PROFILE.read_text(), US_PROFILE.name)
    return AeoService(
        store=AeoStore(database, EU),
        outbox=outbox(database, node_id=node_id),
        identity=pki.identity("EU"),
        partners=[Ub1Partner(profile, Binding.PROTOBUF)],
        spec=spec,
        part_size=UB1_PART_SIZE,
        parts_per_unit=1,
        clock=clock,
    )


def _amend_all(service: AeoService, records: list[AeoRecord], round_: int) -> list[AeoRecord]:
    """Import a change feed amending every record one version up; the records as amended."""
    amended = [
        replace(r, version=r.version + 1, address=replace(r.address, street=f"Kade {round_}"))
        for r in records
    ]
    service.import_export(
        write_eos_xml(amended, ExportKind.CHANGES, service.spec), source=f"feed-{round_}"
    )
    return amended


@dataclass
class _Replay:
    """What replaying the ub1:US key in delivery order shows."""

    held: dict[str, AeoRecord]  # what US holds of the EU list at the end
    overwritten: list[str]  # a change a later full list lacks: "<sync>: <number> v<n> < v<m>"
    refused: list[str]  # messages the US receiver refused (a dead letter, in real life)
    ends: int  # full lists completed
    types: list[str]  # message types in delivery order

    def __str__(self) -> str:
        return (
            f"{len(self.types)} messages, {self.ends} full list(s) completed; "
            f"{len(self.overwritten)} change(s) overwritten, e.g. {self.overwritten[:3]}; "
            f"{len(self.refused)} refused, e.g. {self.refused[:2]}"
        )


def _replay_ub1(
    url: str, pki: testpki.TestPki, directory: Path, *, received_by_us: bool = False
) -> _Replay:
    """Deliver the EU outbox's ub1:US key in seq order (the order delivery sends it), or what
    a US store received in the order it stored it (`received_by_us`), to a fresh, real US
    receiver; and check, for every full list that completes, that it holds each record at
    least at the version of the last change before its end (else that change reached US and
    was overwritten)."""
    with StoreView(url) as view:
        if received_by_us:
            sql = (
                "SELECT message_type, envelope FROM inbox WHERE sender = ? AND utility_block = ? "
                f"ORDER BY {view.insertion_order}, message_id"
            )
            rows = view.rows(sql, (EU.value, UtilityBlock.UB1.value))
        else:
            sql = (
                "SELECT message_type, envelope FROM outbox WHERE partner = ? "
                "AND ordering_key = ? ORDER BY seq"
            )
            rows = view.rows(sql, (US.value, ordering_key(US)))
    receiver = open_database(f"sqlite:///{directory / f'us-{uuid.uuid4().hex[:8]}.db'}")
    store = AeoStore(receiver, US)
    handler = Ub1InboundHandler(store)
    trust = _trust(pki, "EU")
    changed: dict[str, AeoChange] = {}  # authorisation number -> its last change so far
    staged: dict[str, dict[str, AeoRecord]] = defaultdict(dict)
    outcome = _Replay({}, [], [], 0, [])
    try:
        for message_type, envelope in rows:
            outcome.types.append(str(message_type))
            accepted = check_envelope(
                bytes(envelope), Binding.PROTOBUF, trust=trust, own=US, now=utc_now()
            )
            header = accepted.envelope.header
            payload = decode_payload(header, accepted.envelope.payload, 1 << 24)
            if isinstance(payload, StatusChanges):
                changed.update((c.authorisation_number, c) for c in payload.changes)
            elif isinstance(payload, FullListPart):
                staged[payload.sync_id].update((r.authorisation_number, r) for r in payload.records)
            elif isinstance(payload, FullListEnd):
                listed = staged[payload.sync_id]
                for number, change in sorted(changed.items()):
                    record = listed.get(number)
                    if record is not None and record.version < change.version:
                        held = f"v{record.version}"
                    elif record is None and change.kind is not ChangeKind.REMOVED:
                        held = "missing"
                    else:
                        continue
                    outcome.overwritten.append(
                        f"{payload.sync_id}: {number} {held} < v{change.version}"
                    )
            apply = handler.prepare(accepted)
            assert apply is not None
            try:
                receiver.write(apply)
            except GatewayError as error:
                outcome.refused.append(f"{message_type} {header.message_id}: {error}")
                continue
            outcome.ends += isinstance(payload, FullListEnd)
        outcome.held = {r.authorisation_number: r for r in store.records(EU)}
    finally:
        receiver.close()
    return outcome


def _expected_at_us(service: AeoService) -> dict[str, AeoRecord]:
    """What US must hold: the EU list as US sees it (eligible records, translated)."""
    profile = service.partner(US).profile
    return {r.authorisation_number: r for r in partner_view(profile, service.store.records(EU))}


def _no_ub1_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UB1 queue lock disabled (what a node without it would do)."""
    monkeypatch.setattr(aeo_service, "serialise_ub1_queue", lambda conn: None)


def _waiting_on_advisory_lock(view: StoreView) -> bool:
    return bool(
        view.scalar(
            "SELECT count(*) FROM pg_locks AS l JOIN pg_database AS d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
        )
    )


def _until_done_or_waiting(view: StoreView, worker: threading.Thread, what: str) -> None:
    """Until `worker` finished, or waits on an advisory lock (a node in turn behind another)."""
    deadline = time.monotonic() + 20
    while worker.is_alive() and not _waiting_on_advisory_lock(view):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} neither finished nor waited on a lock in 20 s")
        time.sleep(0.005)


class _Worker(threading.Thread):
    """A thread that keeps its action's result or error for the test to check."""

    def __init__(self, name: str, action: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.action = action
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.action()
        except BaseException as error:  # reported by outcome()
            self.error = error

    def outcome(self) -> object:
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def _full_list_while_an_import_is_in_flight(url: str, pki: testpki.TestPki) -> tuple[
    AeoService, list[str]
]:  # fmt: skip
    """Node A's import of a change to every record has queued its deltas (identity values
    taken) but not committed; node B queues a full list for US meanwhile; then A commits.
    The message types B's sync queued, by message id order of the SyncResult."""
    a = _ub1_node(url, pki, "eu-a", outbox=_HoldingOutbox)
    b = _ub1_node(url, pki, "eu-b")
    try:
        records = _us_eligible_records()
        b.import_export(write_eos_xml(records, ExportKind.FULL, b.spec), source="initial")
        held = a.outbox
        assert isinstance(held, _HoldingOutbox)
        importing = _Worker("import on A", lambda: _amend_all(a, records, 1))
        importing.start()
        assert held.inserted.wait(20), "node A's import never queued"
        syncing = _Worker("full list on B", lambda: b.full_sync(US))
        syncing.start()
        with StoreView(url) as view:
            _until_done_or_waiting(view, syncing, "node B's full list")
        held.proceed.set()
        importing.outcome()
        result = syncing.outcome()
        assert isinstance(result, SyncResult) and result.records == len(records)
        return a, list(result.message_ids)
    finally:
        b.store.database.close()


def test_a_full_list_queued_while_an_import_commits_on_another_node_keeps_the_change(
    shared_url: str, node_pki: testpki.TestPki, tmp_path: Path
) -> None:
    a, _ = _full_list_while_an_import_is_in_flight(shared_url, node_pki)
    try:
        replay = _replay_ub1(shared_url, node_pki, tmp_path)
        assert replay.overwritten == [] and replay.refused == [], str(replay)
        assert replay.ends == 1
        assert replay.held == _expected_at_us(a), "US would not hold the EU list"
        assert {r.version for r in replay.held.values()} == {2}  # the import's change is there
    finally:
        a.store.database.close()


def test_without_the_ub1_lock_that_interleaving_loses_the_change_at_us(
    shared_url: str, node_pki: testpki.TestPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving above does hit the window the lock closes: without the lock, B's full
    list (read before A's commit) is queued after A's delta and overwrites it at US."""
    _no_ub1_lock(monkeypatch)
    a, _ = _full_list_while_an_import_is_in_flight(shared_url, node_pki)
    try:
        replay = _replay_ub1(shared_url, node_pki, tmp_path)
        assert len(replay.overwritten) == len(_us_eligible_records()), str(replay)
        assert replay.held != _expected_at_us(a)
        assert {r.version for r in replay.held.values()} == {1}
    finally:
        a.store.database.close()


N_UB1_FEEDS = 40  # imports on node A while node B queues full lists


def test_imports_on_one_node_and_full_lists_on_the_other_leave_us_the_eu_list(
    shared_url: str, node_pki: testpki.TestPki, tmp_path: Path
) -> None:
    """Concurrently: many small imports on node A, full lists for US queued again and again on
    node B. In delivery order, no full list lacks a change queued before its end, and US ends
    with exactly the EU list."""
    a = _ub1_node(shared_url, node_pki, "eu-a")
    b = _ub1_node(shared_url, node_pki, "eu-b")
    try:
        records = _us_eligible_records()
        a.import_export(write_eos_xml(records, ExportKind.FULL, a.spec), source="initial")
        importing = threading.Event()
        importing.set()
        syncs: list[SyncResult] = []

        def imports() -> None:
            current = records
            try:
                for round_ in range(1, N_UB1_FEEDS + 1):
                    current = _amend_all(a, current, round_)
            finally:
                importing.clear()

        def full_lists() -> None:
            while importing.is_set():
                syncs.append(b.full_sync(US))
            syncs.append(b.full_sync(US))  # and one after the last import

        workers = [_Worker("imports on A", imports), _Worker("full lists on B", full_lists)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.outcome()

        replay = _replay_ub1(shared_url, node_pki, tmp_path)
        assert replay.overwritten == [], f"changes overwritten by later full lists: {replay}"
        assert replay.refused == [], str(replay)
        assert replay.held == _expected_at_us(a), "US would not hold the EU list"
        assert {r.version for r in replay.held.values()} == {1 + N_UB1_FEEDS}
        assert replay.ends == len(syncs) and len(syncs) >= 2, (len(syncs), replay.ends)
        assert replay.types.count(MessageType.STATUS_CHANGES.value) == 1 + N_UB1_FEEDS
        print(
            f"{N_UB1_FEEDS} imports on A, {len(syncs)} full lists on B, "
            f"{sum(t == MessageType.FULL_LIST_PART.value for t in replay.types)} parts queued "
            f"(of abandoned syncs too)"
        )
    finally:
        a.store.database.close()
        b.store.database.close()


def _ends_queued(url: str) -> int:
    with StoreView(url) as view:
        return int(
            view.scalar(
                "SELECT count(*) FROM outbox WHERE partner = ? AND message_type = ?",
                (US.value, MessageType.FULL_LIST_END.value),
            )
        )


N_INTERVALS = 6


def _at_once(start: threading.Barrier, schedule: FullListSchedule) -> list[SyncResult]:
    start.wait(10)
    return schedule.run_once()


def test_two_nodes_running_the_full_list_schedule_at_once_queue_one_list_per_interval(
    shared_url: str, node_pki: testpki.TestPki, tmp_path: Path
) -> None:
    clock = _Clock()
    nodes = [_ub1_node(shared_url, node_pki, f"eu-{n}", clock=clock) for n in "ab"]
    try:
        nodes[0].import_export(
            write_eos_xml(_us_eligible_records(), ExportKind.FULL, nodes[0].spec), source="initial"
        )
        schedules = [FullListSchedule(n, n.outbox, clock=clock) for n in nodes]
        interval = nodes[0].partner(US).profile.ub1_rules().full_list_interval
        queued_by = []
        for round_ in range(N_INTERVALS):
            start = threading.Barrier(2)  # both nodes check at the same instant
            workers = [
                _Worker(f"schedule {n}", partial(_at_once, start, s))
                for n, s in zip("ab", schedules, strict=True)
            ]
            for worker in workers:
                worker.start()
            results = [worker.outcome() for worker in workers]
            queued_by.append([len(r) for r in results if isinstance(r, list)])
            assert _ends_queued(shared_url) == round_ + 1, f"interval {round_}: {queued_by}"
            assert schedules[0].due(clock()) == [] and schedules[1].due(clock()) == []
            clock.now += interval
        assert sorted(sum(q) for q in queued_by) == [1] * N_INTERVALS, queued_by
        replay = _replay_ub1(shared_url, node_pki, tmp_path)
        assert replay.ends == N_INTERVALS and replay.refused == []
        assert replay.held == _expected_at_us(nodes[0])
    finally:
        for node in nodes:
            node.store.database.close()


def _schedule_while_the_other_node_queues(url: str, pki: testpki.TestPki) -> int:
    """Node A's schedule is queueing its full list (its first unit held open, uncommitted)
    when node B's schedule checks; then A finishes. The full lists B queued."""
    a = _ub1_node(url, pki, "eu-a", outbox=_HoldingOutbox)
    b = _ub1_node(url, pki, "eu-b")
    try:
        b.import_export(
            write_eos_xml(_us_eligible_records(), ExportKind.FULL, b.spec), source="initial"
        )
        held = a.outbox
        assert isinstance(held, _HoldingOutbox)
        on_a = _Worker("schedule on A", FullListSchedule(a, a.outbox).run_once)
        on_a.start()
        assert held.inserted.wait(20), "node A's schedule never queued"
        on_b = _Worker("schedule on B", FullListSchedule(b, b.outbox).run_once)
        on_b.start()
        with StoreView(url) as view:
            _until_done_or_waiting(view, on_b, "node B's schedule")
        held.proceed.set()
        assert len(cast(list[SyncResult], on_a.outcome())) == 1
        return len(cast(list[SyncResult], on_b.outcome()))
    finally:
        a.store.database.close()
        b.store.database.close()


def test_a_node_whose_schedule_checks_while_another_queues_the_full_list_queues_none(
    shared_url: str, node_pki: testpki.TestPki
) -> None:
    assert _schedule_while_the_other_node_queues(shared_url, node_pki) == 0
    assert _ends_queued(shared_url) == 1


def test_without_the_schedule_lock_both_nodes_queue_the_full_list(
    shared_url: str, node_pki: testpki.TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving above does test the schedule's lock: without it, B finds the list due
    (A's end is not committed) and queues a second one for the same interval."""

    @contextlib.contextmanager
    def always(self: FullListSchedule) -> Iterator[bool]:
        yield True

    monkeypatch.setattr(FullListSchedule, "_turn", always)
    assert _schedule_while_the_other_node_queues(shared_url, node_pki) == 1
    assert _ends_queued(shared_url) == 2


N_E2E_FEEDS = 12


def test_two_serve_nodes_deliver_imports_and_full_lists_queued_at_once_us_holds_the_eu_list(
    server: str, node_pki: testpki.TestPki, tmp_path: Path, quiet_cli: None
) -> None:
    """End to end: two `gncgw serve` EU nodes (each running the full-list schedule) deliver to
    a live US gateway while imports and full lists are queued concurrently on two more
    connections to the EU database; once drained, US holds exactly the EU list, and the two
    schedules queued one full list between them."""
    pki = node_pki
    with (
        fresh_postgres_database(server) as eu_store,
        fresh_postgres_database(server) as us_store,
    ):
        eu_configs, us_config = _two_eu_nodes_and_us(pki, tmp_path, eu_store, us_store)
        records = _us_eligible_records()
        export = tmp_path / "eos-full.xml"
        spec = load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)
        export.write_bytes(write_eos_xml(records, ExportKind.FULL, spec))
        assert gncgw("aeo", "import", str(export), "--config", str(eu_configs[0])).returncode == 0

        a = _ub1_node(eu_store, pki, "eu-importer")
        b = _ub1_node(eu_store, pki, "eu-syncer")
        us = ServeProcess(us_config, partner_tls(pki, "EU", "US"))
        eus = [ServeProcess(c, partner_tls(pki, "US", "EU")) for c in eu_configs]
        syncs: list[SyncResult] = []
        try:
            us.start()
            for node in eus:
                node.start()
            importing = threading.Event()
            importing.set()

            def imports() -> None:
                current = records
                try:
                    for round_ in range(1, N_E2E_FEEDS + 1):
                        current = _amend_all(a, current, round_)
                finally:
                    importing.clear()

            def full_lists() -> None:
                while importing.is_set():
                    syncs.append(b.full_sync(US))
                    time.sleep(0.02)
                syncs.append(b.full_sync(US))

            workers = [_Worker("imports", imports), _Worker("full lists", full_lists)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.outcome()
            with StoreView(eu_store) as view:
                deadline = time.monotonic() + 40
                while view.scalar("SELECT count(*) FROM outbox WHERE state <> 'delivered'"):
                    if time.monotonic() > deadline:
                        us.fail("the EU outbox was not drained in 40 s")
                    time.sleep(0.05)
                ends = int(
                    view.scalar(
                        "SELECT count(*) FROM outbox WHERE message_type = ?",
                        (MessageType.FULL_LIST_END.value,),
                    )
                )
                settled_by = {
                    str(n) for (n,) in view.rows("SELECT DISTINCT claimed_by FROM outbox")
                }
            for node in eus:
                node.stop()
            us.stop()
        finally:
            for node in eus:
                node.close()
            us.close()
            b.store.database.close()
        try:
            expected = _expected_at_us(a)
        finally:
            a.store.database.close()
        as_received = _replay_ub1(us_store, pki, tmp_path, received_by_us=True)
        receiver = PostgresDatabase(us_store)
        try:
            held = {r.authorisation_number: r for r in AeoStore(receiver, US).records(EU)}
        finally:
            receiver.close()
        with StoreView(us_store) as us_view:
            outcomes = us_view.rows(
                "SELECT outcome, count(*) FROM message_log WHERE direction = ? GROUP BY outcome",
                (Direction.RECEIVED.value,),
            )

    assert as_received.overwritten == [] and as_received.refused == [], str(as_received)
    assert as_received.held == held == expected, "US does not hold the EU list"
    assert {r.version for r in held.values()} == {1 + N_E2E_FEEDS}
    assert {str(o) for o, _ in outcomes} == {LogOutcome.ACCEPTED.value}, outcomes
    assert ends == len(syncs) + 1, f"{ends} full lists queued: {len(syncs)} syncs + the schedules'"
    assert settled_by <= {"eu-a", "eu-b"}, settled_by
