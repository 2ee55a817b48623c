"""Two gateway nodes on one PostgreSQL database against one node on it (issue 7).

Workload: what "e-commerce volumes" load on a gateway, inbound envelopes to receive and receipt.
US gateway nodes are real `gncgw serve` processes (mutual TLS gRPC, the node's full intake: open,
check header and limits, verify the ES256 JWS and the signer's chain for EU, store envelope and
signed receipt in the inbox, append to the shared hash-chained message log, answer a receipt
signed per batch) on one fresh PostgreSQL database per run (GNC_BENCH_POSTGRES_URL's server, or a
private cluster started and stopped in a temporary directory: _pg_server). Load: 2 client
processes, each with 2 gRPC Streams (EnvelopeBatch of 32), sending distinct EU envelopes sealed
before timing; with one node all streams go to it, with two nodes each client process streams to
its own node. Timed: from "go" until every client has a receipt for each of its envelopes;
afterwards every receipt is checked to be ACCEPTED for its message and the database to hold each
envelope once. Each run starts fresh nodes and warms them up (untimed). The order of the one- and
two-node runs alternates between rounds (--rounds, default 3); the best rate of each is kept.

What limits it is reported per run: CPU seconds of the node processes, the client processes and
the PostgreSQL backends of the run's database over the timed window (against 2 cores x wall
time; other work on the machine shows as the gap), and how often a node waited for the message
log's chain lock (pg_stat_activity sampled every 20 ms: share of samples with a backend waiting
on an advisory lock).

Target: two nodes / one node >= 1.6.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no C-core GOAWAY notices when servers stop

from _siblings import sibling

from gateway.testpki import TestPki
from gateway.transport.tls import ClientTls

HERE = Path(__file__).resolve().parent
TARGET = 1.6
# Enough that the timed window is seconds long (the stream ramp-up and the tail, when one node
# has finished its share and the other has not, would weigh on a one-second window).
ENVELOPES = 24_000
WARM_UP = 200  # per node, untimed
CLIENTS = 2
STREAMS_PER_CLIENT = 2
STREAM_BATCH = 32
TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU accounting ----------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def backends_of(database: str) -> list[int]:
    """PostgreSQL backend processes serving `database` (their title names it)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.startswith("postgres: ") and f" {database} " in title:
            out.append(int(entry.name))
    return out


def machine_busy() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS


class LockWaits:
    """Samples pg_stat_activity: the share of samples in which a backend of the database waited
    on an advisory lock (the message log's chain lock) or on any lock."""

    def __init__(self, server: str, database: str, every: float = 0.02) -> None:
        self.server, self.database, self.every = server, database, every
        self.samples = self.advisory = self.locks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.server, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                rows = conn.execute(
                    "SELECT wait_event FROM pg_stat_activity WHERE datname = %s "
                    "AND wait_event_type = 'Lock'",
                    (self.database,),
                ).fetchall()
                self.samples += 1
                self.locks += bool(rows)
                self.advisory += any(event == "advisory" for (event,) in rows)

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- nodes ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(pki: TestPki, path: Path, store: str, port: int, node_id: str) -> Path:
    p = pki
    path.write_text(
        f"""{p.gateway_table("US")}
node_id = "{node_id}"

[store]
url = "{store}"

[listen]
grpc = "127.0.0.1:{port}"

[[partners]]
administration = "EU"
binding = "grpc"
endpoint = "127.0.0.1:{_free_port()}"
ca = "{p.path("EU", "ca")}"
crl = "{p.path("EU", "crl")}"
"""
    )
    return path


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    target: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_serving(node: Node, tls: ClientTls, timeout: float = 60.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from gateway.transport.tls import channel_credentials

    deadline = time.monotonic() + timeout
    with grpc.secure_channel(node.target, channel_credentials(tls)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise SystemExit(f"gncgw serve exited:\n{node.log.read_text()}")
            with contextlib.suppress(grpc.RpcError):
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.05)
    raise SystemExit(f"gncgw serve not serving within {timeout} s:\n{node.log.read_text()}")


@contextlib.contextmanager
def nodes(work: Path, pki: TestPki, store: str, count: int, tls: ClientTls) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for index in range(count):
            port = _free_port()
            config = _config(pki, work / f"us-{index}.toml", store, port, f"us-{index}")
            log = work / f"us-{index}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                    stdout=sink, stderr=subprocess.STDOUT, cwd=work,
                )  # fmt: skip
            started.append(Node(process, f"127.0.0.1:{port}", log))
        for node in started:
            _wait_serving(node, tls)
        yield started
    finally:
        for node in started:
            node.stop()


# --- clients -------------------------------------------------------------------------------------
def _client(corpus: Path, target: str, streams: int) -> None:
    """Child: stream its envelopes on `streams` streams after 'go'; print seconds, then check."""
    from gateway.envelope.opened import Binding
    from gateway.node import open_receipt
    from gateway.transport.grpc_client import GrpcPartnerClient, message_id_of

    tls, envelopes = pickle.loads(corpus.read_bytes())
    shares = [envelopes[i::streams] for i in range(streams)]
    client = GrpcPartnerClient(target, tls=tls, stream_batch=STREAM_BATCH)
    client.wait_ready()
    answers: list[list[bytes]] = [[] for _ in shares]

    def run(index: int) -> None:
        answers[index] = list(client.stream(shares[index]))

    print("READY", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{time.perf_counter() - started:.6f}", flush=True)
    bad = 0
    for share, got in zip(shares, answers, strict=True):
        if len(got) != len(share):
            bad += len(share) - len(got)
        for raw, receipt in zip(share, got, strict=False):
            opened = open_receipt(Binding.PROTOBUF, receipt).receipt
            bad += not (opened.accepted and opened.message_id == message_id_of(raw))
    print(bad, flush=True)
    client.close()


@dataclass
class Clients:
    processes: list[subprocess.Popen[str]]

    def go(self) -> list[float]:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        out = []
        for process in self.processes:
            assert process.stdout is not None
            out.append(float(process.stdout.readline()))
        return out

    def bad(self) -> int:
        total = 0
        for process in self.processes:
            assert process.stdout is not None
            total += int(process.stdout.readline())
            process.wait(timeout=60)
        return total


@contextlib.contextmanager
def clients(work: Path, shares: list[tuple[str, list[bytes]]], tls: ClientTls) -> Iterator[Clients]:
    processes = []
    try:
        for index, (target, envelopes) in enumerate(shares):
            corpus = work / f"client-{index}.pickle"
            corpus.write_bytes(pickle.dumps((tls, envelopes)))
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--client",
                        str(corpus),
                        "--target",
                        target,
                        "--streams",
                        str(STREAMS_PER_CLIENT),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith("READY"):
                raise SystemExit(f"a client did not start: {line!r}")
        yield Clients(processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


# --- one run -------------------------------------------------------------------------------------
def _seal(pki: TestPki, count: int, tag: str) -> list[bytes]:
    from gateway.envelope.opened import Binding, new_header
    from gateway.model.codes import Administration, UtilityBlock
    from gateway.node import seal_envelope

    identity = pki.identity("EU")
    out = []
    for index in range(count):
        payload = (
            f"<Consignment><Ref>{tag}-{index:08d}</Ref><Hs>850440</Hs>"
            f"<Value currency='EUR'>{index % 150}.00</Value></Consignment>"
        ).encode()
        header = new_header(
            payload=payload, utility_block=UtilityBlock.UB1, message_type="AEOMutualRecognition",
            sender=Administration.EU, receiver=Administration.US,
            payload_content_type="application/xml",
        )  # fmt: skip
        out.append(seal_envelope(Binding.PROTOBUF, header, payload, identity))
    return out


@dataclass(frozen=True)
class RunResult:
    rate: float
    wall: float
    node_cpu: list[float]
    client_cpu: float
    pg_cpu: float
    machine_cpu: float
    advisory_share: float
    lock_share: float


def one_run(
    pg: ModuleType, server: str, pki: TestPki, node_count: int, envelopes: int
) -> RunResult:
    tls = ClientTls.from_files(
        pki.key_path("EU", "tls"), pki.path("EU", "tls"), pki.path("US", "ca")
    )
    corpus = _seal(pki, envelopes, f"run{time.monotonic_ns()}")
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-pg-nodes-{node_count}-") as tmp,
        pg.fresh_database(server, "gnc_bench_nodes") as store,
        nodes(Path(tmp), pki, store, node_count, tls) as running,
    ):
        database = store.rpartition("/")[2]
        warm = _seal(pki, WARM_UP * node_count, "warm")
        for index, node in enumerate(running):
            with clients(Path(tmp), [(node.target, warm[index::node_count])], tls) as c:
                c.go()
                if c.bad():
                    raise SystemExit("warm-up envelopes were not all accepted")
        shares = [
            (running[index % node_count].target, corpus[index::CLIENTS]) for index in range(CLIENTS)
        ]
        with clients(Path(tmp), shares, tls) as c:
            backends = backends_of(database)
            watched = [n.process.pid for n in running]
            before = [cpu_seconds(pid) for pid in watched]
            client_before = sum(cpu_seconds(p.pid) for p in c.processes)
            pg_before = sum(cpu_seconds(pid) for pid in backends)
            busy_before = machine_busy()
            with LockWaits(server, database) as waits:
                started = time.perf_counter()
                c.go()
                wall = time.perf_counter() - started
            node_cpu = [cpu_seconds(pid) - b for pid, b in zip(watched, before, strict=True)]
            client_cpu = sum(cpu_seconds(p.pid) for p in c.processes) - client_before
            pg_cpu = sum(cpu_seconds(pid) for pid in backends) - pg_before
            machine = machine_busy() - busy_before
            if c.bad():
                raise SystemExit("an envelope got no ACCEPTED receipt for itself")
        import psycopg

        with psycopg.connect(store, autocommit=True) as conn:
            stored = conn.execute("SELECT count(*) FROM inbox").fetchone()
        if stored is None or int(stored[0]) != envelopes + WARM_UP * node_count:
            raise SystemExit(f"the inbox holds {stored}, not {envelopes} + warm-up")
    samples = max(waits.samples, 1)
    result = RunResult(
        envelopes / wall, wall, node_cpu, client_cpu, pg_cpu, machine,
        waits.advisory / samples, waits.locks / samples,
    )  # fmt: skip
    print(
        f"{node_count} node(s): {envelopes} envelopes in {wall:5.2f} s: {result.rate:7.0f}/s; "
        f"CPU s: nodes {' + '.join(f'{c:.1f}' for c in node_cpu)}, clients {client_cpu:.1f}, "
        f"PostgreSQL {pg_cpu:.1f} (per envelope: nodes {1e6 * sum(node_cpu) / envelopes:.0f} us, "
        f"PostgreSQL {1e6 * pg_cpu / envelopes:.0f} us); machine {machine:.1f} of {2 * wall:.1f} "
        f"({100 * machine / (2 * wall):.0f}% of 2 cores); waiting on the chain lock in "
        f"{100 * result.advisory_share:.0f}% of samples (any lock {100 * result.lock_share:.0f}%)",
        flush=True,
    )
    return result


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    pg = sibling("_pg_server")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--envelopes", type=int, default=ENVELOPES)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(list(argv))
    from gateway import testpki

    results: dict[int, list[RunResult]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench-pg-nodes-pki-") as tmp:
        pki = testpki.init_test_pki(Path(tmp), ("EU", "US"))
        with pg.postgres_server() as server:
            for round_ in range(args.rounds):
                for count in (1, 2) if round_ % 2 == 0 else (2, 1):
                    results[count].append(one_run(pg, server, pki, count, args.envelopes))
    one = max(results[1], key=lambda r: r.rate)
    two = max(results[2], key=lambda r: r.rate)
    ratio = two.rate / one.rate
    verdict = "MEETS" if ratio >= TARGET else "MISSES"
    print(
        f"best of {args.rounds}: one node {one.rate:.0f}, two nodes {two.rate:.0f} envelopes/s; "
        f"ratio two/one {ratio:.2f}   ({verdict} the target >= {TARGET})",
        flush=True,
    )
    return {
        "one_node_envelopes_per_s": one.rate,
        "two_nodes_envelopes_per_s": two.rate,
        "ratio_two_over_one": ratio,
        "two_nodes_machine_cpu_share": two.machine_cpu / (2 * two.wall),
        "two_nodes_chain_lock_wait_share": two.advisory_share,
    }


if __name__ == "__main__":
    if "--client" in sys.argv:
        cli = argparse.ArgumentParser()
        cli.add_argument("--client", type=Path, required=True)
        cli.add_argument("--target", required=True)
        cli.add_argument("--streams", type=int, default=STREAMS_PER_CLIENT)
        child = cli.parse_args()
        _client(child.client, child.target, child.streams)
    else:
        main(sys.argv[1:])
