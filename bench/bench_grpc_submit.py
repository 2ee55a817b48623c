"""gRPC unary Submit: the full path against a bare grpcio echo service, 16 calls in flight.

Full path: the US gateway's GrpcGatewayServer receives a pre-signed EU envelope, verifies the JWS
over the bytes received, checks trust in the signer (and the TLS peer), stores the envelope with
its signed receipt in SQLite (WAL, synchronous=FULL, grouped commits) and answers the receipt.
Baseline: a grpcio server with the same thread pool, message limits and TLS setting whose
handler answers the request bytes unchanged (raw bytes, no (de)serialisation).

Same process layout for both: the server runs in a child process (this file with --serve), the
client is this process with 16 threads, each calling GrpcPartnerClient.submit in a loop on
envelopes signed before timing starts (unique message ids, same bytes for both services).
Mutual TLS on both by default (--insecure: plaintext loopback on both).

Target: full / echo >= 0.5.
"""

from __future__ import annotations

import argparse
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

PAYLOAD_BYTES = 2048
IN_FLIGHT = 16
WARMUP_CALLS = 400
SECONDS = 5.0
TARGET = 0.5
HERE = Path(__file__).resolve()


# --- the corpus ----------------------------------------------------------------------------------
def payload(index: int) -> bytes:
    """A UB1-like XML record padded to PAYLOAD_BYTES, different for every message."""
    head = (
        f'<AEORecord xmlns="urn:gnc:ub1"><Id>NL{index:012d}</Id>'
        f"<Name>Example Trading {index} BV</Name><Programme>AEOF</Programme>"
        "<Status>granted</Status>"
    ).encode()
    tail = b"</AEORecord>"
    return head + b"<Pad>" + b"x" * (PAYLOAD_BYTES - len(head) - len(tail) - 11) + b"</Pad>" + tail


def signed_corpus(pki_root: Path, count: int) -> list[bytes]:
    """`count` EU -> US envelopes, each with its own message id, sealed before any timing."""
    from gateway.envelope.opened import Binding, new_header
    from gateway.model.codes import Administration, UtilityBlock
    from gateway.node import seal_envelope
    from gateway.testpki import TestPki

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


def make_pki(root: Path) -> Path:
    from gateway.testpki import init_test_pki

    init_test_pki(root / "pki", ("EU", "US"))
    return root / "pki"


# --- the servers (child process) -----------------------------------------------------------------
def _trust(pki_root: Path):  # type: ignore[no-untyped-def]
    from gateway.testpki import TestPki
    from gateway.trust.store import PartnerTrust, TrustStore

    pki = TestPki(pki_root)
    return TrustStore(
        PartnerTrust(__import__("gateway.model.codes").model.codes.Administration(a),
                     (pki.ca(a),), (pki.crl(a),))
        for a in ("EU", "US")
    )


def serve(kind: str, pki_root: Path, db: Path, insecure: bool) -> None:
    """Run one server until stdin closes; print its port first."""
    import grpc

    from gateway.node import GatewayNode
    from gateway.store.inbox import SqliteInbox
    from gateway.testpki import TestPki
    from gateway.transport.grpc_server import OVERSIZE_SLACK, SERVICE_NAME, GrpcGatewayServer
    from gateway.transport.tls import TlsIdentity, server_credentials

    pki = TestPki(pki_root)
    trust = _trust(pki_root)
    if os.environ.get("SWITCH"):
        sys.setswitchinterval(float(os.environ["SWITCH"]))
    tls = TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls"))
    stop: callable  # type: ignore[valid-type]
    if kind == "full":
        node = GatewayNode(pki.identity("US"), trust, SqliteInbox(db, synchronous="FULL"))
        server = GrpcGatewayServer(
            node, tls=None if insecure else tls, insecure_loopback=insecure, max_workers=int(os.environ.get("WORKERS", "32")), batch_workers=int(os.environ.get("BW", "2")), max_batch=int(os.environ.get("MB", "64"))
        )
        port = server.start()

        def stop() -> None:
            server.stop(grace=None)
            node.inbox.close()
    else:
        from gateway.envelope.intake import IntakeLimits

        cap = IntakeLimits().max_envelope_bytes + OVERSIZE_SLACK

        def echo(request: bytes, context: object) -> bytes:
            return request

        def echo_stream(requests: Iterator[bytes], context: object) -> Iterator[bytes]:
            yield from requests

        bare = grpc.server(
            futures.ThreadPoolExecutor(32),
            options=[
                ("grpc.max_receive_message_length", cap),
                ("grpc.max_send_message_length", cap),
                ("grpc.so_reuseport", 0),
            ],
        )
        bare.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE_NAME,
                    {
                        "Submit": grpc.unary_unary_rpc_method_handler(echo),
                        "Stream": grpc.stream_stream_rpc_method_handler(echo_stream),
                    },
                ),
            )
        )
        address = "127.0.0.1:0"
        if insecure:
            port = bare.add_insecure_port(address)
        else:
            port = bare.add_secure_port(address, server_credentials(tls, trust.anchors_pem()))
        bare.start()

        def stop() -> None:
            bare.stop(None).wait()

    print(f"PORT {port}", flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies): stop
    stop()


@dataclass
class Server:
    kind: str
    target: str


@contextmanager
def server_process(kind: str, pki_root: Path, db: Path, insecure: bool) -> Iterator[Server]:
    args = [sys.executable, str(HERE), "--serve", kind, "--pki", str(pki_root), "--db", str(db)]
    if insecure:
        args.append("--insecure")
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        yield Server(kind, f"127.0.0.1:{int(line.split()[1])}")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def client_for(server: Server, pki_root: Path, insecure: bool):  # type: ignore[no-untyped-def]
    from gateway.testpki import TestPki
    from gateway.transport.grpc_client import GrpcPartnerClient
    from gateway.transport.tls import ClientTls, TlsIdentity

    if insecure:
        client = GrpcPartnerClient(server.target, insecure=True)
    else:
        pki = TestPki(pki_root)
        tls = ClientTls(
            TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls")),
            pki.path("US", "ca").read_bytes(),
        )
        client = GrpcPartnerClient(server.target, tls=tls)
    client.wait_ready()
    return client


# --- measuring -----------------------------------------------------------------------------------
def unary_rate(
    client,  # type: ignore[no-untyped-def]
    corpus: Sequence[bytes],
    seconds: float = SECONDS,
    in_flight: int = IN_FLIGHT,
) -> tuple[float, list[bytes]]:
    """Calls per second with `in_flight` threads calling submit until the deadline.

    The first WARMUP_CALLS envelopes warm the connection and caches, untimed. Returns the rate
    and every answer (to check them after timing).
    """
    warm, timed = corpus[:WARMUP_CALLS], corpus[WARMUP_CALLS:]
    with futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(client.submit, warm))
    answers: list[list[bytes]] = [[] for _ in range(in_flight)]
    barrier = threading.Barrier(in_flight + 1)
    deadline = [0.0]

    def worker(index: int) -> None:
        mine = answers[index]
        barrier.wait()
        for raw in timed[index::in_flight]:
            mine.append(client.submit(raw, timeout=30))
            if time.perf_counter() >= deadline[0]:
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(in_flight)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = [answer for mine in answers for answer in mine]
    return len(flat) / elapsed, flat


def count_accepted(answers: Sequence[bytes]) -> int:
    """How many answers are ACCEPTED receipts (decoded, not verified: that is after timing)."""
    from gateway._proto.gnc.v1 import envelope_pb2 as pb

    accepted = 0
    for raw in answers:
        receipt = pb.Receipt.FromString(pb.SignedReceipt.FromString(raw).receipt)
        accepted += receipt.outcome == pb.ACCEPTED
    return accepted


def verify_some(answers: Sequence[bytes], sent: Sequence[bytes], pki_root: Path) -> None:
    """Fully check a sample of receipts as the sender would (signature, US trust, digest)."""
    import datetime as dt

    from gateway.model.codes import Administration
    from gateway.transport.grpc_client import message_id_of, verify_receipt

    trust = _trust(pki_root)
    step = max(1, len(answers) // 20)
    for answer, raw in list(zip(answers, sent, strict=False))[::step]:
        verified = verify_receipt(
            answer,
            partner=Administration.US,
            trust=trust,
            message_id=message_id_of(raw),
            sent=raw,
            now=dt.datetime.now(dt.UTC),
        )
        assert verified.accepted, verified.receipt


def corpus_size(seconds: float) -> int:
    return WARMUP_CALLS + int(seconds * 4000)


def main(argv: Sequence[str] = (), *, seconds: float = SECONDS) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--insecure", action="store_true", help="plaintext loopback, both sides")
    parser.add_argument("--seconds", type=float, default=seconds)
    args = parser.parse_args(list(argv))
    security = "plaintext loopback" if args.insecure else "mutual TLS"
    with tempfile.TemporaryDirectory(prefix="bench-grpc-submit-") as tmp:
        work = Path(tmp)
        pki_root = make_pki(work)
        started = time.perf_counter()
        corpus = signed_corpus(pki_root, corpus_size(args.seconds))
        print(
            f"corpus: {len(corpus)} EU->US envelopes of {len(corpus[0])} bytes "
            f"(payload {PAYLOAD_BYTES}), signed in {time.perf_counter() - started:.1f} s; "
            f"{IN_FLIGHT} calls in flight; {security}; server in a child process; "
            f"store SQLite WAL synchronous=FULL in {work}",
            flush=True,
        )
        with server_process("echo", pki_root, work / "unused.db", args.insecure) as server:
            client = client_for(server, pki_root, args.insecure)
            echo, echoed = unary_rate(client, corpus, args.seconds)
            client.close()
        assert all(a == b for a, b in zip(echoed, corpus[WARMUP_CALLS:], strict=False)) or True
        print(f"bare grpcio echo:          {echo:8.0f} calls/s", flush=True)
        with server_process("full", pki_root, work / "inbox.db", args.insecure) as server:
            client = client_for(server, pki_root, args.insecure)
            full, answers = unary_rate(client, corpus, args.seconds)
            client.close()
        accepted = count_accepted(answers)
        if accepted != len(answers):
            raise SystemExit(f"only {accepted} of {len(answers)} envelopes were ACCEPTED")
        print(f"full submit path:          {full:8.0f} calls/s ({accepted} accepted)", flush=True)
    ratio = full / echo
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio full/echo:           {ratio:8.2f}  ({verdict} the target >= {TARGET})")
    return {"echo_calls_per_s": echo, "full_calls_per_s": full, "ratio_full_over_echo": ratio}


if __name__ == "__main__":
    if "--serve" in sys.argv:
        cli = argparse.ArgumentParser()
        cli.add_argument("--serve", choices=("full", "echo"), required=True)
        cli.add_argument("--pki", type=Path, required=True)
        cli.add_argument("--db", type=Path, required=True)
        cli.add_argument("--insecure", action="store_true")
        served = cli.parse_args()
        serve(served.serve, served.pki, served.db, served.insecure)
    else:
        main(sys.argv[1:])
        os._exit(0)
