"""UB2 end to end over the gRPC stream: EU messages translated, sealed, streamed to the partner
gateway, verified, persisted and receipted; against the foundation stream (bench_grpc_stream: the
same stream path with envelopes signed before timing) with the same message count, same run.

UB2 side, timed from the first message to the last receipt: N CC315A messages as EU systems send
them (the ICS2 schemaValidSample, each with its own LRN and commercial references so every
message is distinct), held as bytes before timing. Per message, in this process (the EU
gateway): ``read_eu_message`` (hardened parse, libxml2 validation against the official schema),
``to_consignment`` (CC315A mapping spec), ``encode`` in the gRPC partner's binding (protobuf
payload, as TransactionService does for a gRPC partner), a UB2 ``TransactionData`` header and
``seal_envelope`` (ES256 JWS). The messages are produced lazily while the stream runs
(GrpcPartnerClient.stream consumes the iterable on a gRPC thread), so translation overlaps the
transfer. Lanes and the code-list gate of TransactionService are bypassed: the translation and
seal path is called directly (the schema sample carries placeholder codes, e.g. country 'EN',
that the gate refuses by design); the code-list check's cost per message is printed apart.

Receiver: the real GrpcGatewayServer of a CN gateway in a child process (this file with
--serve), its GatewayNode with the UB2 inbound handlers (services.transactions.ub2_handlers):
each envelope verified, trust-checked, its payload decoded (UB2_PAYLOAD_MALFORMED otherwise) and
stored as a received transaction with its receipt in SQLite (WAL, synchronous=FULL); receipts
signed per batch over a Merkle tree. Mutual TLS (--insecure: plaintext loopback, both sides).
After timing: every receipt ACCEPTED for its envelope, in order; a sample fully verified; the
receiver's database holds N + warm-up received transactions.

Baseline: bench_grpc_stream's stream path (bench_grpc_submit's 'full' server: EU->US envelopes
of a 2 KB UB1-like payload, signed before timing), the same N, in the same run.

Target: UB2 stream / foundation stream >= 0.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no C-core GOAWAY notices when servers stop

from _siblings import sibling
from lxml import etree

from gateway.envelope.opened import Binding, new_header
from gateway.model.codelists import consignment_findings
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.consignment import SourceMessage
from gateway.node import seal_envelope
from gateway.services.sending import form_for
from gateway.services.transactions import SCHEMA_VERSION
from gateway.testpki import TestPki, init_test_pki
from gateway.translate.eu_messages import SchemaPacks, load_schema_packs, read_eu_message
from gateway.translate.mapping import MappingSpec
from gateway.translate.ub2_exchange import CONTENT_TYPES, Ub2Kind, encode
from gateway.translate.ub2_translate import load_mapping_specs, to_consignment
from gateway.transport.grpc_client import GrpcPartnerClient, message_id_of, verify_receipt
from gateway.transport.tls import TlsIdentity
from gateway.trust.store import PartnerTrust, TrustStore

TARGET = 0.5
MESSAGES = 5_000
WARM = 200
HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared" / "data" / "ics-ens"
SAMPLE = SHARED / "examples" / "CC315A-schemaValidSample-v11-2.xml"
ADMINS = ("EU", "US", "CN")  # EU -> US for the foundation baseline, EU -> CN for UB2
BINDING = Binding.PROTOBUF  # a gRPC partner's binding


def trust_store(pki_root: Path, admins: Sequence[str]) -> TrustStore:
    pki = TestPki(pki_root)
    return TrustStore(PartnerTrust(Administration(a), (pki.ca(a),), (pki.crl(a),)) for a in admins)


# --- material ------------------------------------------------------------------------------------
def source_messages(count: int, offset: int = 0) -> list[bytes]:
    """``count`` distinct CC315A messages: the sample with its own LRN and references each."""
    template = etree.fromstring(SAMPLE.read_bytes())
    lrn = template.find("HEAHEA/RefNumHEA4")  # the message's own elements are unqualified
    references = [
        e for tag in ("ComRefNumHEA", "ConRefNumHEA") for e in template.iterfind(f"HEAHEA/{tag}")
    ]
    if lrn is None:
        raise SystemExit(f"{SAMPLE.name} has no HEAHEA/RefNumHEA4 (LRN)")
    out = []
    for index in range(offset, offset + count):
        lrn.text = f"GNCB{index:010d}"
        for element in references:
            element.text = f"CR{index:010d}"
        out.append(etree.tostring(template, xml_declaration=True, encoding="UTF-8"))
    return out


class Translator:
    """The EU gateway's send path for one CC315A, from the bytes received to a sealed envelope."""

    def __init__(
        self, packs: SchemaPacks, specs: dict[SourceMessage, MappingSpec], pki: TestPki
    ) -> None:
        self.packs = packs
        self.specs = specs
        self.identity = pki.identity("EU")
        self.form = form_for(BINDING)

    def seal(self, data: bytes) -> bytes:
        message = read_eu_message(data, self.packs)
        record = to_consignment(message, self.specs[message.source])
        payload = encode(record, self.form)
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock.UB2,
            message_type=Ub2Kind.TRANSACTION.value,
            sender=Administration.EU,
            receiver=Administration.CN,
            payload_content_type=CONTENT_TYPES[self.form],
            schema_version=SCHEMA_VERSION,
        )
        return seal_envelope(BINDING, header, payload, self.identity)

    def sealed(self, sources: Sequence[bytes], sent: list[bytes]) -> Iterator[bytes]:
        """Envelopes made one by one as the stream asks for them (kept in ``sent``)."""
        for data in sources:
            raw = self.seal(data)
            sent.append(raw)
            yield raw


# --- the receiving CN gateway (child process) ----------------------------------------------------
def serve(pki_root: Path, db: Path, insecure: bool) -> None:
    """Run the CN gateway with the UB2 handlers until our stdin closes; print its port first."""
    from gateway.node import GatewayNode
    from gateway.services.transactions import ub2_handlers
    from gateway.store.inbox import SqliteInbox
    from gateway.store.transaction_store import TransactionStore
    from gateway.transport.grpc_server import GrpcGatewayServer

    pki = TestPki(pki_root)
    trust = trust_store(pki_root, ("EU", "CN"))
    inbox = SqliteInbox(db, synchronous="FULL")
    node = GatewayNode(
        pki.identity("CN"),
        trust,
        inbox,
        handlers=ub2_handlers(TransactionStore(inbox.database, Administration.CN)),
    )
    tls = TlsIdentity.from_files(pki.key_path("CN", "tls"), pki.path("CN", "tls"))
    server = GrpcGatewayServer(node, tls=None if insecure else tls, insecure_loopback=insecure)
    port = server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies): stop
    server.stop(grace=None)
    inbox.close()


@contextmanager
def ub2_server(pki_root: Path, db: Path, insecure: bool) -> Iterator[str]:
    """The CN gateway in a child process; yields its target, stopped when the block ends."""
    args = [sys.executable, str(HERE), "--serve", "--pki", str(pki_root), "--db", str(db)]
    args += ["--insecure"] if insecure else []
    with sibling("bench_grpc_submit").child_server(args, "UB2") as (target, _):
        yield target


def ub2_client(target: str, pki_root: Path, insecure: bool) -> GrpcPartnerClient:
    """The EU gateway's client to CN: EU TLS certificate, CN CA (or plaintext loopback)."""
    client: GrpcPartnerClient = sibling("bench_grpc_submit").partner_client(
        target, pki_root, insecure, "CN"
    )
    return client


def check_ub2_receipts(sent: Sequence[bytes], answers: Sequence[bytes], pki_root: Path) -> None:
    """Every answer an ACCEPTED receipt for its envelope; a sample verified as the sender would."""
    submit = sibling("bench_grpc_submit")
    if len(sent) != len(answers):
        raise SystemExit(f"{len(sent)} envelopes sent, {len(answers)} receipts")
    for raw, (message_id, outcome) in zip(sent, submit.outcomes(answers), strict=True):
        if outcome != "ACCEPTED" or message_id != message_id_of(raw):
            raise SystemExit(f"bad receipt for {message_id_of(raw)}: {message_id} {outcome}")
    trust = trust_store(pki_root, ("EU", "CN"))
    now = dt.datetime.now(dt.UTC)
    step = max(1, len(sent) // 25)
    for raw, answer in list(zip(sent, answers, strict=True))[::step]:
        verify_receipt(
            answer,
            partner=Administration.CN,
            trust=trust,
            message_id=message_id_of(raw),
            sent=raw,
            now=now,
        )


def received_transactions(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM ub2_received").fetchone()
    return int(count)


# --- measuring -----------------------------------------------------------------------------------
def main(argv: Sequence[str] = ()) -> dict[str, float]:
    submit = sibling("bench_grpc_submit")
    stream = sibling("bench_grpc_stream")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--insecure", action="store_true", help="plaintext loopback, both sides")
    parser.add_argument("--messages", type=int, default=MESSAGES)
    args = parser.parse_args(list(argv))
    if not SAMPLE.is_file():
        raise SystemExit(f"{SAMPLE} is missing (../shared/data beside the repository)")
    security = "plaintext loopback" if args.insecure else "mutual TLS"
    count = args.messages
    with tempfile.TemporaryDirectory(prefix="bench-ub2-stream-") as tmp:
        work = Path(tmp)
        pki_root = work / "pki"
        pki = init_test_pki(pki_root, ADMINS)
        translator = Translator(
            load_schema_packs(SHARED / "xsds", None),
            dict(load_mapping_specs(REPO / "adapters" / "mappings")),
            pki,
        )
        started = time.perf_counter()
        sources = source_messages(count + WARM)
        warm_sources, timed_sources = sources[:WARM], sources[WARM:]
        corpus = submit.signed_corpus(pki_root, count + WARM)  # the foundation's, pre-signed
        print(
            f"{count} CC315A messages of {len(sources[0])} bytes (distinct LRNs) and {count} "
            f"pre-signed foundation envelopes of {len(corpus[0])} bytes made in "
            f"{time.perf_counter() - started:.1f} s before timing; {security}; servers in a "
            "child process, the client here; SQLite WAL synchronous=FULL",
            flush=True,
        )

        with submit.server_process("full", pki_root, work / "base.db", args.insecure) as server:
            client = submit.client_for(server, pki_root, args.insecure)
            list(client.stream(corpus[:WARM]))
            base, base_answers = stream.stream_rate(client, corpus[WARM:])
            client.close()
        submit.check_receipts(list(zip(corpus[WARM:], base_answers, strict=True)), pki_root)
        print(f"foundation stream (pre-signed):  {base:8.0f} envelopes/s", flush=True)

        db = work / "cn.db"
        with ub2_server(pki_root, db, args.insecure) as target:
            client = ub2_client(target, pki_root, args.insecure)
            warm_sent: list[bytes] = []
            warm_answers = list(client.stream(translator.sealed(warm_sources, warm_sent)))
            sent: list[bytes] = []
            started = time.perf_counter()
            answers = list(client.stream(translator.sealed(timed_sources, sent)))
            ub2 = len(answers) / (time.perf_counter() - started)
            client.close()
        check_ub2_receipts(warm_sent + sent, warm_answers + answers, pki_root)
        stored = received_transactions(db)
        if stored != count + WARM:
            raise SystemExit(f"the CN gateway stored {stored} transactions, not {count + WARM}")
        print(
            f"UB2 translate + seal + stream:   {ub2:8.0f} messages/s "
            f"(all {len(answers)} ACCEPTED, in order; {stored} transactions stored)",
            flush=True,
        )

        sample = timed_sources[0]
        rounds = 300
        started = time.perf_counter()
        for _ in range(rounds):
            translator.seal(sample)
        seal_us = (time.perf_counter() - started) / rounds * 1e6
        record = to_consignment(
            read_eu_message(sample, translator.packs), translator.specs[SourceMessage.CC315A]
        )
        started = time.perf_counter()
        for _ in range(rounds):
            consignment_findings(record)
        findings_us = (time.perf_counter() - started) / rounds * 1e6
    ratio = ub2 / base
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"  client, translate + seal alone: {seal_us:6.0f} µs per message (after the run)")
    print(f"  code-list check (not timed):    {findings_us:6.0f} µs per message")
    print(f"ratio UB2/foundation:            {ratio:8.2f}   ({verdict} the target >= {TARGET})")
    return {
        "foundation_stream_per_s": base,
        "ub2_stream_per_s": ub2,
        "ratio_ub2_over_foundation": ratio,
        "us_translate_and_seal": seal_us,
    }


def _serve_main(argv: Sequence[str]) -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--serve", action="store_true", required=True)
    cli.add_argument("--pki", type=Path, required=True)
    cli.add_argument("--db", type=Path, required=True)
    cli.add_argument("--insecure", action="store_true")
    args = cli.parse_args(list(argv))
    serve(args.pki, args.db, args.insecure)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve_main(sys.argv[1:])
    else:
        main(sys.argv[1:])
