"""Shared set-up of the UB1 benchmarks: an EU and a US gateway from configuration files.

The US gateway (its node with the UB1 handlers, its gRPC server with mutual TLS, its store) runs
in a child process (this file with --serve), so sender and receiver use separate interpreters;
the EU side (AEO service, outbox, delivery worker, its store) runs in the benchmark process.
Both gateways read config TOML files written here with a test PKI, the EU one linking the US
partner profile adapters/partners/us.toml (only consenting AEOS/AEOF operators with a US MID
are sent).

Stores: "file" is the configured SQLite file (WAL, synchronous=FULL: durable on power loss);
"memory" is an in-memory SQLite database (``file:/NAME?vfs=memdb``: one database the writer
thread and the readers share, without shared-cache mode, which measured ~1.5x slower) on the
same code path, for the durability benchmark. A ``postgresql://`` URL (an empty database) puts
that side on PostgreSQL instead (bench_pg_vs_sqlite).

The EU own list is filled before timing: records from gateway.translate.sample_aeo (generated
in two worker processes, one stream each, duplicates by authorisation number dropped) of which
only those the US profile receives are kept, stored with the AEO store's own row writer in a
child process into an SQLite file cached under $TMPDIR/gnc-bench-ub1/ (keyed by count and
seed: generating ~2.8 million records to keep 1 million costs minutes), then copied into the
EU gateway's store by SQL, so the benchmark process never holds the records.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no C-core GOAWAY notices when servers stop

from gateway import testpki
from gateway.config import GatewayConfig, load_config
from gateway.model.aeo import AeoRecord
from gateway.model.aeo_list import AeoChange, ReconciliationSummary
from gateway.model.codes import Administration
from gateway.node import GatewayNode
from gateway.partners.profile import PartnerProfile, eligible_for, load_profile, to_partner
from gateway.services.aeo import (
    AeoService,
    SyncResult,
    _outbound,
    _seal,
    service_for,
    ub1_handlers,
)
from gateway.services.delivery import DeliveryWorker
from gateway.store.aeo_store import AeoStore, record_from_json
from gateway.store.database import Database
from gateway.store.inbox import SqliteInbox
from gateway.store.message_log import SqliteMessageLog
from gateway.store.outbox import OutboundState, SqliteOutbox, mark_delivered_in
from gateway.store.sqlite import SqliteDatabase
from gateway.translate.aeo_exchange import StatusChanges
from gateway.translate.eos_aeo import load_mapping_spec
from gateway.translate.sample_aeo import generate_records
from gateway.transport.grpc_client import GrpcPartnerClient, PartnerExchange
from gateway.transport.links import open_link

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
SPEC_PATH = ROOT / "adapters" / "mappings" / "eos-aeo.toml"
US_PROFILE = ROOT / "adapters" / "partners" / "us.toml"
EU, US = Administration.EU, Administration.US
SEED = 20260115
CACHE = Path(tempfile.gettempdir()) / "gnc-bench-ub1"
ELIGIBLE_SHARE = 0.355  # of sample_aeo records the US profile receives (measured)


# --- measuring memory ----------------------------------------------------------------------------
def rss_kb(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class PeakRss:
    """Samples the RSS of some processes every `every` seconds while the block runs."""

    def __init__(self, pids: Sequence[int | str], every: float = 0.2) -> None:
        self.pids = list(pids)
        self.peak = {pid: rss_kb(pid) for pid in self.pids}
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_kb(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_kb(pid))


# --- the records ---------------------------------------------------------------------------------
def us_profile() -> PartnerProfile:
    return load_profile(US_PROFILE.read_text(), US_PROFILE.name)


def _generate_share(count: int, seed: int) -> bytes:
    """Worker: the first `count` records of the stream `seed` the US profile receives."""
    profile = us_profile()
    kept: list[AeoRecord] = []
    total = int(count / ELIGIBLE_SHARE * 1.1) + 1000
    for record in generate_records(total, seed):
        if eligible_for(profile, record):
            kept.append(record)
            if len(kept) == count:
                break
    return pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL)


def _eligible_records(count: int, seed: int) -> list[AeoRecord]:
    """`count` distinct EU AEO records the US profile receives (two generator streams)."""
    share = count // 2 + count // 50 + 100  # a little more: duplicates across streams drop
    with futures.ProcessPoolExecutor(2) as pool:
        blobs = list(pool.map(_generate_share, [share, share], [seed, seed + 1]))
    seen: set[str] = set()
    records = []
    for blob in blobs:
        for record in pickle.loads(blob):
            if record.authorisation_number not in seen:
                seen.add(record.authorisation_number)
                records.append(record)
    if len(records) < count:
        raise RuntimeError(f"only {len(records)} distinct records for {count}")
    return records[:count]


def _fill(path: Path, count: int, seed: int) -> None:
    """Child: an SQLite file holding the EU own list of `count` eligible records."""
    records = _eligible_records(count, seed)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    database = SqliteDatabase(partial, synchronous="OFF")
    store = AeoStore(database, EU)
    for start in range(0, len(records), 50_000):
        chunk = records[start : start + 50_000]

        def unit(conn: sqlite3.Connection, chunk: Sequence[AeoRecord] = chunk) -> None:
            for record in chunk:
                store._put(conn, EU, record, fresh=True)

        database.write(unit)
    database.close()
    with contextlib.closing(sqlite3.connect(partial)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    partial.replace(path)


def own_list_file(count: int, seed: int = SEED) -> tuple[Path, float, bool]:
    """An SQLite file with the EU own list of `count` records the US profile receives, built
    (in a child process) the first time and cached; (path, seconds, whether it was cached)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"eu-own-list-{count}-{seed}.sqlite"
    if path.exists():
        return path, 0.0, True
    started = time.perf_counter()
    args = [str(HERE), "--fill", str(path), "--count", str(count), "--seed", str(seed)]
    subprocess.run([sys.executable, *args], check=True)
    return path, time.perf_counter() - started, False


def sample_records(path: Path, count: int) -> list[AeoRecord]:
    """The first `count` records of a cached own list, in authorisation-number order."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT record FROM aeo_record ORDER BY authorisation_number LIMIT ?", (count,)
        ).fetchall()
    return [record_from_json(text) for (text,) in rows]


# --- configuration -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config_text(pki: testpki.TestPki, own: str, partner: str, grpc_port: int,
                 partner_port: int, profile: Path | None) -> str:  # fmt: skip
    def pem(admin: str, stem: str) -> str:
        return str(pki.path(admin, stem))

    profile_line = f'profile = "{profile}"\n' if profile else ""
    return f"""{pki.gateway_table(own)}

[store]
url = "sqlite:///{own.lower()}.db"

[listen]
grpc = "127.0.0.1:{grpc_port}"

[[partners]]
administration = "{partner}"
binding = "grpc"
endpoint = "127.0.0.1:{partner_port}"
ca = "{pem(partner, "ca")}"
crl = "{pem(partner, "crl")}"
{profile_line}"""


def write_configs(work: Path) -> tuple[Path, Path]:
    """A test PKI and the EU and US configuration files in `work`; (eu.toml, us.toml)."""
    pki = testpki.init_test_pki(work / "pki", ("EU", "US"))
    eu_port, us_port = free_port(), free_port()
    eu = work / "eu" / "eu.toml"
    us = work / "us" / "us.toml"
    for path in (eu, us):
        path.parent.mkdir()
    eu.write_text(_config_text(pki, "EU", "US", eu_port, us_port, US_PROFILE))
    us.write_text(_config_text(pki, "US", "EU", us_port, eu_port, None))
    return eu, us


# --- a gateway's stores and node -----------------------------------------------------------------
def open_database(config: GatewayConfig, store: str) -> Database:
    """The configured SQLite file (synchronous=FULL), an in-memory database ("memory"), or
    the PostgreSQL database a ``postgresql://`` URL names."""
    if store.startswith("postgresql://"):
        from gateway.store.postgres import PostgresDatabase

        return PostgresDatabase(store)
    if store == "memory":
        name = f"file:/gnc-{config.administration.value}-{uuid.uuid4().hex}?vfs=memdb"
        return SqliteDatabase(name, uri=True)
    if store != "file":
        raise ValueError(f"store must be 'file' or 'memory', not {store!r}")
    if config.store_path is None:
        raise ValueError(f"{config.path}: the 'file' store needs a sqlite:/// store.url")
    return SqliteDatabase(config.store_path, synchronous="FULL")


def node_on(config: GatewayConfig, database: Database) -> GatewayNode:
    """What config.build_node builds, on the given database."""
    return GatewayNode(
        config.signing_identity,
        config.trust,
        SqliteInbox(database=database),
        limits=config.limits,
        message_log=SqliteMessageLog(database),
        handlers=ub1_handlers(
            AeoStore(database, config.administration),
            max_payload_bytes=config.limits.max_envelope_bytes,
        ),
    )


@dataclass
class EuSide:
    config: GatewayConfig
    database: Database
    node: GatewayNode
    service: AeoService
    worker: DeliveryWorker

    def close(self) -> None:
        self.worker.stop()
        self.database.close()


def eu_side(config_path: Path, store: str, part_size: int) -> EuSide:
    config = load_config(config_path)
    database = open_database(config, store)
    node = node_on(config, database)
    spec = load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)
    service = service_for(config, database, spec, part_size=part_size)
    worker = DeliveryWorker(
        SqliteOutbox(database),
        lambda partner: open_link(config, partner),
        partners=[US],
        message_log=node.message_log,
    )
    return EuSide(config, database, node, service, worker)


def load_own_list(side: EuSide, path: Path) -> int:
    """Copy a cached own list into the EU store (rows and identifier index), as SQL."""
    database = side.database
    if not isinstance(database, SqliteDatabase):
        return _load_own_list_pg(database, path)
    uri = database.path.startswith("file:")
    with contextlib.closing(sqlite3.connect(database.path, isolation_level=None, uri=uri)) as conn:
        cached = f"file:{path}?mode=ro&vfs=unix" if uri else str(path)
        conn.execute("ATTACH DATABASE ? AS cached", (cached,))
        conn.execute("BEGIN IMMEDIATE")
        count = conn.execute("INSERT INTO aeo_record SELECT * FROM cached.aeo_record").rowcount
        conn.execute("INSERT INTO aeo_identifier SELECT * FROM cached.aeo_identifier")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE cached")
    return int(count)


def _insert_rows(sql: str, rows: list[tuple[object, ...]], conn: Any) -> None:
    conn.executemany(sql, rows)


def _load_own_list_pg(database: Database, path: Path) -> int:
    """The same copy into a PostgreSQL store, in chunks of units of work."""
    count = 0
    with contextlib.closing(sqlite3.connect(path)) as cached:
        for table in ("aeo_record", "aeo_identifier"):
            cursor = cached.execute(f"SELECT * FROM {table}")
            width = len(cursor.description)
            insert = f"INSERT INTO {table} VALUES ({', '.join('?' * width)})"
            while rows := cursor.fetchmany(20_000):
                database.write(partial(_insert_rows, insert, rows))
                count += len(rows) if table == "aeo_record" else 0
    return count


# --- the timed full sync, as `gncgw serve` runs it --------------------------------------------
@dataclass(frozen=True)
class Delivered:
    """A full sync queued while the delivery worker's thread ran, and the outbox drained."""

    sync: SyncResult
    queued_seconds: float  # full_sync returned (the end queued)
    seconds: float  # the outbox drained: every message delivered, its receipt verified and stored
    delivered: int  # messages delivered
    retried: int  # messages that needed more than one attempt


def sync_while_delivering(side: EuSide, timeout: float = 3600.0) -> Delivered:
    """As in `gncgw serve`: the delivery worker's thread is started first, then
    ``full_sync(US)`` queues parts unit by unit while the worker already sends them; timed until
    nothing is pending in the outbox (a dead letter or the timeout fails the run)."""
    outbox = side.service.outbox
    side.worker.start()
    try:
        started = time.perf_counter()
        sync = side.service.full_sync(US)
        queued = time.perf_counter() - started
        while True:
            states = outbox.counts()
            if states[OutboundState.DEAD]:
                raise SystemExit(f"delivery failed: dead letters {states}")
            if not states[OutboundState.PENDING]:
                break
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"outbox not drained after {timeout:.0f} s: {states}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        side.worker.stop()
    ours = set(sync.message_ids)
    delivered = retried = 0
    for item in outbox.list(partner=US):
        if item.message_id in ours:
            delivered += item.state is OutboundState.DELIVERED
            retried += item.attempts > 0
    if delivered != len(ours):
        raise SystemExit(f"{delivered} of the {len(ours)} messages of the sync were delivered")
    return Delivered(sync, queued, elapsed, delivered, retried)


# --- the US gateway, in a child process ----------------------------------------------------------
@dataclass(frozen=True)
class UsServer:
    pid: int
    process: subprocess.Popen[str]

    def ask(self, command: str) -> dict[str, object]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: dict[str, object] = json.loads(self.process.stdout.readline())
        return answer

    def rss_kb(self) -> int:
        return rss_kb(self.pid)


@contextmanager
def us_server(config_path: Path, store: str) -> Iterator[UsServer]:
    args = [sys.executable, str(HERE), "--serve", str(config_path), "--store", store]
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"the US gateway did not start: {line!r}")
        yield UsServer(child.pid, child)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(config_path: Path, store: str) -> None:
    """Child: the US gateway's gRPC server until stdin closes; answers commands on stdin."""
    from gateway.transport.grpc_server import GrpcGatewayServer

    config = load_config(config_path)
    database = open_database(config, store)
    node = node_on(config, database)
    assert config.listen.grpc is not None
    server = GrpcGatewayServer(
        node, address=f"127.0.0.1:{config.listen.grpc[1]}", tls=config.tls_identity
    )
    server.start()
    aeo = AeoStore(database, config.administration)
    print("READY", flush=True)
    for line in sys.stdin:
        command = line.strip()
        answer: dict[str, object] = {"rss_kb": rss_kb()}
        if command == "summary":
            gc.collect()
            answer["count"] = aeo.count(EU)
            answer["summary"] = summary_json(aeo.summary(EU))
            answer["accepted"] = node.stats.accepted
            answer["rejected"] = node.stats.rejected
        print(json.dumps(answer), flush=True)
    server.stop(grace=None)
    database.close()


def summary_json(summary: ReconciliationSummary) -> list[list[object]]:
    return [[e.status.value, e.count, e.sha256.hex()] for e in summary.entries]


def full_sync_rate(
    work: Path,
    own_list: Path,
    count: int,
    part_size: int,
    *,
    eu_store: str,
    us_store: str,
    label: str,
) -> float:
    """Fresh gateways in `work` on the given stores; the own list filled untimed; records/s of
    the full sync, once the US list is checked equal to the EU's (count and summary)."""
    eu_config, us_config = write_configs(work)
    side = eu_side(eu_config, eu_store, part_size)
    try:
        load_own_list(side, own_list)
        with us_server(us_config, us_store) as server:
            done = sync_while_delivering(side)
            answer = server.ask("summary")
    finally:
        side.close()
    sync, elapsed = done.sync, float(done.seconds)
    if sync.records != count or answer["count"] != count:
        raise SystemExit(f"{label}: sent {sync.records}, US holds {answer['count']}")
    if answer["summary"] != summary_json(sync.summary):
        raise SystemExit(f"{label}: the US list's summary differs from EU's")
    rate = count / elapsed
    print(
        f"{label}: {count} records in {sync.parts} parts + end, {elapsed:6.1f} s: "
        f"{rate:8.0f} records/s (US list equal to EU's)",
        flush=True,
    )
    return rate


# --- the unary baseline --------------------------------------------------------------------------
def unary_baseline(
    side: EuSide, records: Sequence[AeoRecord], in_flight: int = 16
) -> tuple[float, int]:
    """The same exchange one record per envelope, one unary Submit each, `in_flight` at once.

    Timed: each record translated for the partner and sealed in its own StatusChanges envelope
    (an ADDED change), all queued in the outbox in one unit; then `in_flight` threads each send
    one envelope per unary Submit, verify the signed receipt (signature, signer trusted for US,
    message id, digest) and mark the message delivered with its receipt (grouped commits), as
    the US gateway verifies, stores and applies each before answering. (records/s, accepted)
    """
    service = side.service
    partner = service.partner(US)
    outbox = service.outbox
    started = time.perf_counter()
    messages = []
    for record in records:
        payload = StatusChanges(EU, (AeoChange.added(to_partner(partner.profile, record)),))
        header, raw = _seal(service.identity, partner.binding, payload, US)
        messages.append(_outbound(partner, header, raw, f"baseline:{record.authorisation_number}"))
    outbox.enqueue_all(messages)
    settings = side.config.partner(US)
    client = GrpcPartnerClient(settings.endpoint, tls=side.config.client_tls(US))
    exchange = PartnerExchange(client, partner=US, trust=side.config.trust)
    accepted = 0

    def send(raw: bytes) -> bool:
        verified = exchange.deliver(raw)
        if verified.accepted:
            now = dt.datetime.now(dt.UTC)
            side.database.write(
                lambda conn: mark_delivered_in(verified.receipt.message_id, verified.raw, now, conn)
            )
        return verified.accepted

    with futures.ThreadPoolExecutor(in_flight) as pool:
        accepted = sum(pool.map(send, [m.envelope for m in messages]))
    elapsed = time.perf_counter() - started
    client.close()
    return len(records) / elapsed, accepted


def main_child(argv: Sequence[str]) -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--serve", type=Path)
    cli.add_argument("--store", default="file", help="file, memory or a postgresql:// URL")
    cli.add_argument("--fill", type=Path)
    cli.add_argument("--count", type=int, default=0)
    cli.add_argument("--seed", type=int, default=SEED)
    args = cli.parse_args(list(argv))
    if args.fill is not None:
        _fill(args.fill, args.count, args.seed)
    else:
        _serve(args.serve, args.store)


if __name__ == "__main__":
    main_child(sys.argv[1:])
