"""gRPC bidirectional Stream: envelopes per second, each verified, trusted, stored and receipted,
against the unary Submit rate of the same full path measured in the same run.

One US gateway server (GrpcGatewayServer, SQLite WAL synchronous=FULL) in a child process; this
process is the EU client (GrpcPartnerClient). Unary: 16 calls in flight, as bench_grpc_submit.
Stream: one Stream call carrying the whole corpus in EnvelopeBatch messages of
GrpcPartnerClient.STREAM_BATCH envelopes (each element the exact bytes of one sealed envelope,
verified, trust-checked, stored and receipted on its own); one receipt per envelope back, in
order. The receipts of a checked batch are signed with one ES256 signature over their RFC 9162
Merkle tree, each receipt carrying its inclusion proof, so each verifies on its own (the sample
below is verified that way: signature, proof, signer, id and digest). All
envelopes are signed before timing starts, with unique message ids; after timing every receipt is
checked to be ACCEPTED for its envelope, in order, and a sample is fully verified. The bare
grpcio echo stream rate (same layout, same TLS, the same batches echoed) is printed as the ceiling
of the transport.

Target: stream / unary >= 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no C-core GOAWAY notices when servers stop

from _siblings import sibling

from gateway.transport.grpc_client import STREAM_BATCH

TARGET = 3.0
UNARY_SECONDS = 4.0
STREAM_ENVELOPES = 10_000
HERE = Path(__file__).resolve().parent


def stream_rate(client: object, corpus: Sequence[bytes]) -> tuple[float, list[bytes]]:
    """Envelopes per second through one Stream call, first envelope sent to last receipt."""
    started = time.perf_counter()
    answers = list(client.stream(corpus))  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    return len(answers) / elapsed, answers


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    submit = sibling("bench_grpc_submit")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--insecure", action="store_true", help="plaintext loopback, both sides")
    parser.add_argument("--envelopes", type=int, default=STREAM_ENVELOPES)
    parser.add_argument("--unary-seconds", type=float, default=UNARY_SECONDS)
    args = parser.parse_args(list(argv))
    security = "plaintext loopback" if args.insecure else "mutual TLS"
    warm = 200
    with tempfile.TemporaryDirectory(prefix="bench-grpc-stream-") as tmp:
        work = Path(tmp)
        pki_root = submit.make_pki(work)
        unary_count = submit.WARMUP_CALLS + int(args.unary_seconds * 2500)
        started = time.perf_counter()
        corpus = submit.signed_corpus(pki_root, unary_count + warm + args.envelopes)
        unary_corpus = corpus[:unary_count]
        warm_corpus = corpus[unary_count : unary_count + warm]
        stream_corpus = corpus[unary_count + warm :]
        print(
            f"{len(corpus)} EU->US envelopes of {len(corpus[0])} bytes signed in "
            f"{time.perf_counter() - started:.1f} s before timing; {security}; server in a child "
            "process, the client here; store SQLite WAL synchronous=FULL; stream batches of "
            f"{STREAM_BATCH} envelopes; stream receipts signed per batch (Merkle proof each), "
            "unary receipts signed one by one",
            flush=True,
        )
        with submit.server_process("echo", pki_root, work / "unused.db", args.insecure) as server:
            client = submit.client_for(server, pki_root, args.insecure)
            list(client.stream(warm_corpus))
            echo_stream, echoed = stream_rate(client, stream_corpus)
            client.close()
        if echoed != list(stream_corpus):
            raise SystemExit("the echo stream answered other bytes than it was sent")
        print(f"bare grpcio echo stream:    {echo_stream:8.0f} messages/s (ceiling)", flush=True)
        with submit.server_process("full", pki_root, work / "inbox.db", args.insecure) as server:
            client = submit.client_for(server, pki_root, args.insecure)
            unary, answered = submit.unary_rate(client, unary_corpus, args.unary_seconds)
            print(
                f"full path, unary Submit:    {unary:8.0f} envelopes/s (16 in flight)", flush=True
            )
            list(client.stream(warm_corpus))
            streamed, answers = stream_rate(client, stream_corpus)
            client.close()
        submit.check_receipts(answered, pki_root)
        submit.check_receipts(list(zip(stream_corpus, answers, strict=True)), pki_root)
        print(
            f"full path, one Stream:      {streamed:8.0f} envelopes/s "
            f"(all {len(answers)} ACCEPTED, in order)"
        )
    ratio = streamed / unary
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio stream/unary:         {ratio:8.2f}   ({verdict} the target >= {TARGET})")
    print(f"stream / bare echo stream:  {streamed / echo_stream:8.2f}", flush=True)
    return {
        "echo_stream_msgs_per_s": echo_stream,
        "unary_envelopes_per_s": unary,
        "stream_envelopes_per_s": streamed,
        "ratio_stream_over_unary": ratio,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
