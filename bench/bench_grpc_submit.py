"""gRPC unary Submit: the full path against a bare grpcio echo service, 16 calls in flight.

Full path: the US gateway's GrpcGatewayServer receives a pre-signed EU envelope, verifies the JWS
over the bytes received, checks trust in the signer (and in the TLS peer), stores the envelope
with its signed receipt in SQLite (WAL, synchronous=FULL, grouped commits) and answers the
signed receipt. Baseline: a grpcio server with the same thread pool, message limits and TLS
setting whose handler answers the request bytes unchanged (raw bytes, no (de)serialisation).

Same process layout for both: the server runs in a child process (this file with --serve), the
client is this process with 16 threads, each calling GrpcPartnerClient.submit in a loop, on
envelopes signed before timing starts (unique message ids; the same bytes for both services).
Mutual TLS on both sides by default (--insecure: plaintext loopback on both).

Target: full / echo >= 0.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no C-core GOAWAY notices when servers stop

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope.opened import Binding, new_header
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import seal_envelope
from gateway.testpki import TestPki, init_test_pki
from gateway.transport.grpc_client import GrpcPartnerClient, message_id_of, verify_receipt
from gateway.transport.tls import ClientTls, TlsIdentity
from gateway.trust.store import PartnerTrust, TrustStore

PAYLOAD_BYTES = 2048
IN_FLIGHT = 16
WARMUP_CALLS = 400
SECONDS = 5.0
TARGET = 0.5
HERE = Path(__file__).resolve()
ADMINS = ("EU", "US")


# --- material ------------------------------------------------------------------------------------
def payload(index: int) -> bytes:
    """A UB1-like XML record padded to PAYLOAD_BYTES, different for every message."""
    head = (
        f'<AEORecord xmlns="urn:gnc:ub1"><Id>NL{index:012d}</Id>'
        f"<Name>Example Trading {index} BV</Name><Programme>AEOF</Programme>"
        "<Status>granted</Status><Pad>"
    ).encode()
    tail = b"</Pad></AEORecord>"
    return head + b"x" * (PAYLOAD_BYTES - len(head) - len(tail)) + tail


def make_pki(work: Path) -> Path:
    root = work / "pki"
    init_test_pki(root, ADMINS)
    return root


def trust_store(pki_root: Path) -> TrustStore:
    pki = TestPki(pki_root)
    return TrustStore(PartnerTrust(Administration(a), (pki.ca(a),), (pki.crl(a),)) for a in ADMINS)


def signed_corpus(pki_root: Path, count: int) -> list[bytes]:
    """`count` EU -> US envelopes, each with its own message id, sealed before any timing."""
    identity = TestPki(pki_root).identity("EU")
    out = []
    for index in range(count):
        body = payload(index)
        header = new_header(
            payload=body,
            utility_block=UtilityBlock.UB1,
            message_type="AEOMutualRecognition",
            sender=Administration.EU,
            receiver=Administration.US,
            payload_content_type="application/xml",
        )
        out.append(seal_envelope(Binding.PROTOBUF, header, body, identity))
    return out


# --- the servers (child process) -----------------------------------------------------------------
def serve(kind: str, pki_root: Path, db: Path, insecure: bool, tuning: dict[str, int]) -> None:
    """Run one server until our stdin closes; print its port first."""
    import grpc

    from gateway.envelope.intake import IntakeLimits
    from gateway.node import GatewayNode
    from gateway.store.inbox import SqliteInbox
    from gateway.transport.grpc_server import OVERSIZE_SLACK, SERVICE_NAME, GrpcGatewayServer
    from gateway.transport.tls import server_credentials

    pki = TestPki(pki_root)
    trust = trust_store(pki_root)
    tls = TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls"))
    if kind == "full":
        node = GatewayNode(pki.identity("US"), trust, SqliteInbox(db, synchronous="FULL"))
        server = GrpcGatewayServer(
            node,
            tls=None if insecure else tls,
            insecure_loopback=insecure,
            max_workers=tuning.get("max_workers", 32),
            batch_workers=tuning.get("batch_workers", 1),
            max_batch=tuning.get("max_batch", 64),
        )
        port = server.start()
        print(f"PORT {port}", flush=True)
        sys.stdin.read()  # the parent closes our stdin (or dies): stop
        server.stop(grace=None)
        node.inbox.close()
        return

    def echo(request: bytes, context: Any) -> bytes:
        return request

    def echo_stream(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        yield from requests

    cap = IntakeLimits().max_envelope_bytes + OVERSIZE_SLACK
    bare = grpc.server(
        futures.ThreadPoolExecutor(tuning.get("max_workers", 32)),
        options=[
            ("grpc.max_receive_message_length", cap),
            ("grpc.max_send_message_length", cap),
            ("grpc.so_reuseport", 0),
        ],
    )
    handlers = {
        "Submit": grpc.unary_unary_rpc_method_handler(echo),
        "Stream": grpc.stream_stream_rpc_method_handler(echo_stream),
    }
    bare.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    if insecure:
        port = bare.add_insecure_port("127.0.0.1:0")
    else:
        creds = server_credentials(tls, trust.anchors_pem())
        port = bare.add_secure_port("127.0.0.1:0", creds)
    bare.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    bare.stop(None).wait()


@dataclass(frozen=True)
class Server:
    kind: str
    target: str
    pid: int


@contextmanager
def child_server(args: Sequence[str], what: str) -> Iterator[tuple[str, int]]:
    """Run `args` (a server that prints "PORT n", then serves until its stdin closes) in a
    child process; yield its loopback target and pid, and stop it when the block ends."""
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the {what} server did not start: {line!r}")
        yield f"127.0.0.1:{int(line.split()[1])}", child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def server_process(
    kind: str, pki_root: Path, db: Path, insecure: bool, tuning: Sequence[str] = ()
) -> Iterator[Server]:
    """A child process serving `kind` ('full' or 'echo'), stopped when the block ends."""
    args = [sys.executable, str(HERE), "--serve", kind, "--pki", str(pki_root), "--db", str(db)]
    args += ["--insecure"] if insecure else []
    args += list(tuning)
    with child_server(args, kind) as (target, pid):
        yield Server(kind, target, pid)


def partner_client(
    target: str, pki_root: Path, insecure: bool, partner: str = "US"
) -> GrpcPartnerClient:
    """The EU gateway's client to `partner`: EU TLS certificate, the partner's CA (or plaintext
    loopback); ready when returned."""
    if insecure:
        client = GrpcPartnerClient(target, insecure=True)
    else:
        pki = TestPki(pki_root)
        tls = ClientTls(
            TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls")),
            pki.path(partner, "ca").read_bytes(),
        )
        client = GrpcPartnerClient(target, tls=tls)
    client.wait_ready()
    return client


def client_for(server: Server, pki_root: Path, insecure: bool) -> GrpcPartnerClient:
    """The EU gateway's client to the US server."""
    return partner_client(server.target, pki_root, insecure)


# --- measuring -----------------------------------------------------------------------------------
def unary_rate(
    client: GrpcPartnerClient,
    corpus: Sequence[bytes],
    seconds: float,
    *,
    cycle: bool = False,
    in_flight: int = IN_FLIGHT,
) -> tuple[float, list[tuple[bytes, bytes]]]:
    """Calls per second with `in_flight` threads calling submit until the deadline.

    The first WARMUP_CALLS envelopes warm the connection and caches, untimed. A thread stops at
    the deadline or at the end of its share of the corpus (`cycle`: reuse it, for the echo).
    Returns the rate and every (sent, answer) pair, for checks after timing.
    """
    warm, timed = corpus[:WARMUP_CALLS], corpus[WARMUP_CALLS:]
    with futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(client.submit, warm))
    pairs: list[list[tuple[bytes, bytes]]] = [[] for _ in range(in_flight)]
    barrier = threading.Barrier(in_flight + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        mine = pairs[index]
        share = timed[index::in_flight]
        barrier.wait()
        for raw in itertools.cycle(share) if cycle else share:
            mine.append((raw, client.submit(raw, timeout=30)))
            if time.perf_counter() >= deadline:
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(in_flight)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = [pair for mine in pairs for pair in mine]
    return len(flat) / elapsed, flat


def outcomes(answers: Sequence[bytes]) -> list[tuple[str, str]]:
    """(message id, error code or 'ACCEPTED') per receipt: decoded, not verified (that is below)."""
    out = []
    for raw in answers:
        receipt = pb.Receipt.FromString(pb.SignedReceipt.FromString(raw).receipt)
        out.append((receipt.message_id, receipt.error_code or pb.Outcome.Name(receipt.outcome)))
    return out


def check_receipts(pairs: Sequence[tuple[bytes, bytes]], pki_root: Path) -> None:
    """After timing: every answer an ACCEPTED receipt for its envelope; a sample fully verified
    as the sender would (signature, signer trusted for US, message id and digest)."""
    for (sent, _), (message_id, outcome) in zip(
        pairs, outcomes([answer for _, answer in pairs]), strict=True
    ):
        if outcome != "ACCEPTED" or message_id != message_id_of(sent):
            raise SystemExit(f"bad receipt for {message_id_of(sent)}: {message_id} {outcome}")
    trust = trust_store(pki_root)
    now = dt.datetime.now(dt.UTC)
    for sent, answer in pairs[:: max(1, len(pairs) // 25)]:
        verify_receipt(
            answer,
            partner=Administration.US,
            trust=trust,
            message_id=message_id_of(sent),
            sent=sent,
            now=now,
        )


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--insecure", action="store_true", help="plaintext loopback, both sides")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="timed seconds per side")
    args = parser.parse_args(list(argv))
    security = "plaintext loopback" if args.insecure else "mutual TLS"
    with tempfile.TemporaryDirectory(prefix="bench-grpc-submit-") as tmp:
        work = Path(tmp)
        pki_root = make_pki(work)
        started = time.perf_counter()
        corpus = signed_corpus(pki_root, WARMUP_CALLS + int(args.seconds * 2500))
        print(
            f"{len(corpus)} EU->US envelopes of {len(corpus[0])} bytes (payload {PAYLOAD_BYTES}) "
            f"signed in {time.perf_counter() - started:.1f} s before timing; {IN_FLIGHT} calls "
            f"in flight; {security}; each server in a child process, the client here; store "
            f"SQLite WAL synchronous=FULL",
            flush=True,
        )
        with server_process("echo", pki_root, work / "unused.db", args.insecure) as server:
            client = client_for(server, pki_root, args.insecure)
            echo, echoed = unary_rate(client, corpus, args.seconds, cycle=True)
            client.close()
        if any(sent != answer for sent, answer in echoed):
            raise SystemExit("the echo service answered other bytes than it was sent")
        print(f"bare grpcio echo:   {echo:8.0f} calls/s", flush=True)
        with server_process("full", pki_root, work / "inbox.db", args.insecure) as server:
            client = client_for(server, pki_root, args.insecure)
            full, answered = unary_rate(client, corpus, args.seconds)
            client.close()
        check_receipts(answered, pki_root)
        print(f"full submit path:   {full:8.0f} calls/s (all {len(answered)} ACCEPTED)")
    ratio = full / echo
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio full/echo:    {ratio:8.2f}   ({verdict} the target >= {TARGET})", flush=True)
    return {"echo_calls_per_s": echo, "full_calls_per_s": full, "ratio_full_over_echo": ratio}


def _serve_main(argv: Sequence[str]) -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--serve", choices=("full", "echo"), required=True)
    cli.add_argument("--pki", type=Path, required=True)
    cli.add_argument("--db", type=Path, required=True)
    cli.add_argument("--insecure", action="store_true")
    for knob in ("max_workers", "batch_workers", "max_batch"):
        cli.add_argument(f"--{knob.replace('_', '-')}", type=int, dest=knob)
    args = cli.parse_args(list(argv))
    tuning = {
        knob: value
        for knob in ("max_workers", "batch_workers", "max_batch")
        if (value := getattr(args, knob)) is not None
    }
    serve(args.serve, args.pki, args.db, args.insecure, tuning)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve_main(sys.argv[1:])
    else:
        main(sys.argv[1:])
