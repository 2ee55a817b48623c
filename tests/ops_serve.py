"""A real `gncgw serve` (EU) for the operations tests: a subprocess with a gRPC listener and the
metrics endpoint on loopback, the US partner linked by a profile with a tiny retry policy and an
endpoint nobody listens on (so whatever is queued for US fails and dead-letters quickly); and
the US side's client that sends it real signed envelopes over mutual TLS."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway import testpki
from gateway.envelope.opened import Binding, new_header
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import VerifiedReceipt, seal_envelope, verify_partner_receipt
from gateway.store.outbox import OutboundMessage, SqliteOutbox
from gateway.store.sqlite import SqliteDatabase
from gateway.translate.aeo_exchange import MessageType
from gateway.transport.grpc_client import GrpcPartnerClient
from gateway.transport.tls import ClientTls
from gateway.trust.store import PartnerTrust, TrustStore

EU, US, CN = Administration.EU, Administration.US, Administration.CN
ROOT = Path(__file__).resolve().parent.parent
US_PROFILE = ROOT / "adapters" / "partners" / "us.toml"
METRICS_LINE = re.compile(r"metrics and health listening on (http://127\.0\.0\.1:\d+)/metrics")
GRPC_LINE = re.compile(r"gRPC \S+ listening on (127\.0\.0\.1:\d+)")
MESSAGE_TYPE = "AEO_STATUS_CHANGE"  # no UB1 handler takes it: stored as received
RETRY_BACKOFF_SECONDS = 2.0  # between the two attempts of the tiny retry policy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def write_config(base: Path, pki: testpki.TestPki, *, extra: str = "") -> Path:
    """eu.toml and its US profile (2 attempts, 2 s apart) under `base`; `extra` is appended."""
    profile = US_PROFILE.read_text()
    start, end = profile.index("[retry]"), profile.index("[delivery]")
    profile = (
        profile[:start]
        + "[retry]\nmax_attempts = 2\n"
        + f"initial_backoff_seconds = {RETRY_BACKOFF_SECONDS}\nmultiplier = 1.0\n"
        + f"max_backoff_seconds = {RETRY_BACKOFF_SECONDS}\n\n"
        + profile[end:]
    )
    (base / "us-profile.toml").write_text(profile)
    config = base / "eu.toml"
    config.write_text(
        f"""{pki.gateway_table("EU")}

[store]
url = "sqlite:///eu.db"

[listen]
grpc = "127.0.0.1:0"

[delivery]
poll_seconds = 0.1

[[partners]]
administration = "US"
binding = "grpc"
endpoint = "127.0.0.1:9"   # nobody listens: every delivery attempt fails
ca = "{pki.path("US", "ca")}"
crl = "{pki.path("US", "crl")}"
profile = "us-profile.toml"
{extra}"""
    )
    return config


def seed_full_list_sent(db: Path) -> None:
    """The store's history: US got our full list a minute ago (so `gncgw serve` does not queue
    one at start and the outbox holds only what a test queues)."""
    database = SqliteDatabase(db)
    try:
        outbox = SqliteOutbox(database)
        message = OutboundMessage(
            message_id="00000000-0000-4000-8000-000000000001",
            partner=US,
            binding=Binding.PROTOBUF,
            ordering_key="full-list:seed",
            utility_block=UtilityBlock.UB1,
            message_type=MessageType.FULL_LIST_END.value,
            envelope=b"sent earlier",
        )
        outbox.enqueue_all([message])
        outbox.mark_delivered(message.message_id, b"receipt", datetime.now(UTC))
    finally:
        database.close()


def enqueue_for_us(db: Path, pki: testpki.TestPki, count: int) -> list[str]:
    """Queue `count` sealed envelopes for US in the running gateway's outbox (another process
    on the same SQLite file, as `gncgw aeo` commands do); their ids."""
    database = SqliteDatabase(db)
    try:
        messages = []
        for index in range(count):
            payload = f"<AEO><Id>NL00000000{index}</Id></AEO>".encode()
            header = new_header(
                payload=payload,
                utility_block=UtilityBlock.UB1,
                message_type=MESSAGE_TYPE,
                sender=EU,
                receiver=US,
                payload_content_type="application/xml",
            )
            raw = seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("EU"))
            messages.append(
                OutboundMessage(
                    message_id=header.message_id,
                    partner=US,
                    binding=Binding.PROTOBUF,
                    ordering_key=f"ops-{index}",
                    utility_block=UtilityBlock.UB1,
                    message_type=MESSAGE_TYPE,
                    envelope=raw,
                )
            )
        SqliteOutbox(database).enqueue_all(messages)
        return [m.message_id for m in messages]
    finally:
        database.close()


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log: Path
    grpc_target: str
    metrics_url: str  # http://127.0.0.1:PORT (empty when [metrics] is off)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(served_log: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = pattern.search(served_log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            pytest.fail(f"gncgw serve exited with {proc.returncode}:\n{served_log.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"gncgw serve did not log {pattern.pattern!r}:\n{served_log.read_text()}")


@contextmanager
def serve(config: Path, *args: str, metrics: bool = True) -> Iterator[Served]:
    """`gncgw serve --config CONFIG ARGS...` until the block ends (then SIGTERM, exit 0)."""
    log = config.parent / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
        )
    try:
        target = wait_for(log, GRPC_LINE, proc)
        url = wait_for(log, METRICS_LINE, proc) if metrics else ""
        yield Served(proc, log, target, url)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def scrape(base_url: str) -> Samples:
    """Every sample of /metrics, keyed by (sample name, labels)."""
    status, body = http_get(f"{base_url}/metrics")
    assert status == 200, body
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[sample.name, frozenset(sample.labels.items())] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value (0 when the series is absent: a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def wait_until(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def seal_us_envelope(
    pki: testpki.TestPki, *, receiver: Administration = EU, correlation_id: str | None = None
) -> tuple[str, bytes]:
    """A protobuf envelope US signs (for EU unless `receiver` says otherwise); its id."""
    payload = b"<AEO><Id>US-CTPAT-0001</Id><Status>granted</Status></AEO>"
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type=MESSAGE_TYPE,
        sender=US,
        receiver=receiver,
        payload_content_type="application/xml",
        correlation_id=correlation_id,
        created_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    return header.message_id, seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("US"))


class UsClient:
    """The US side: seals envelopes for EU and checks EU's signed receipts."""

    def __init__(self, pki: testpki.TestPki, target: str) -> None:
        self.pki = pki
        tls = ClientTls.from_files(
            pki.key_path("US", "tls"), pki.path("US", "tls"), pki.path("EU", "ca")
        )
        self.client = GrpcPartnerClient(target, tls=tls)
        self.trust = TrustStore([PartnerTrust(EU, (pki.ca("EU"),), (pki.crl("EU"),))])

    def envelope(
        self, *, receiver: Administration = EU, correlation_id: str | None = None
    ) -> tuple[str, bytes]:
        return seal_us_envelope(self.pki, receiver=receiver, correlation_id=correlation_id)

    def submit(self, message_id: str, raw: bytes) -> VerifiedReceipt:
        answer = self.client.submit(raw)
        return verify_partner_receipt(
            Binding.PROTOBUF, answer, partner=EU, trust=self.trust, message_id=message_id, sent=raw
        )

    def close(self) -> None:
        self.client.close()
