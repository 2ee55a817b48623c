"""`gncgw serve --config` as an operator runs it: a subprocess with both listeners, health,
one envelope over each binding, then SIGTERM and a clean exit."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import testpki
from gateway.envelope.opened import Binding, new_header
from gateway.errors import TransportError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import seal_envelope
from gateway.testpki import init_test_pki
from gateway.transport.grpc_client import GrpcPartnerClient, PartnerExchange
from gateway.transport.tls import ClientTls
from gateway.transport.xml_http import XmlPartnerClient
from gateway.trust.store import PartnerTrust, TrustStore

EU, US = Administration.EU, Administration.US
XML_LINE = re.compile(r"XML over HTTPS listening on (https://127\.0\.0\.1:\d+/gnc/v1/envelopes)")
GRPC_LINE = re.compile(r"gRPC \S+ listening on (127\.0\.0\.1:\d+)")

CONFIG = """\
[gateway]
administration = "US"
signing_key = "pki/US/signing.key.pem"
signing_cert = "pki/US/signing.pem"
tls_key = "pki/US/tls.key.pem"
tls_cert = "pki/US/tls.pem"

[store]
url = "sqlite:///data/us-inbox.db"

[listen]
grpc = "127.0.0.1:0"   # 0: a free port, logged at start-up
xml = "127.0.0.1:0"

[[partners]]
administration = "EU"
binding = "xml"
endpoint = "https://127.0.0.1:9/gnc/v1/envelopes"
ca = ["pki/EU/ca.pem"]
crl = ["pki/EU/crl.pem"]
"""


def _wait_for(log: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = pattern.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            pytest.fail(f"gncgw serve exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"gncgw serve did not log {pattern.pattern!r}:\n{log.read_text()}")


def _envelope(pki: testpki.TestPki, binding: Binding) -> tuple[str, bytes]:
    payload = b"<AEO><Id>NL123456789</Id><Status>granted</Status></AEO>"
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        sender=EU,
        receiver=US,
        payload_content_type="application/xml",
    )
    return header.message_id, seal_envelope(binding, header, payload, pki.identity("EU"))


def test_serve_runs_both_listeners_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    pki = init_test_pki(tmp_path / "pki", ("EU", "US"))
    (tmp_path / "data").mkdir()
    config = tmp_path / "us.toml"
    config.write_text(CONFIG)
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        url = _wait_for(log, XML_LINE, proc)
        target = _wait_for(log, GRPC_LINE, proc)
        tls = ClientTls.from_files(
            pki.key_path("EU", "tls"), pki.path("EU", "tls"), pki.path("US", "ca")
        )
        sender_trust = TrustStore([PartnerTrust(US, (pki.ca("US"),), (pki.crl("US"),))])

        with XmlPartnerClient(url, tls=tls) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.health():
                        break
                except TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            message_id, raw = _envelope(pki, Binding.XML)
            checked = client.deliver(raw, partner=US, trust=sender_trust, message_id=message_id)
            assert checked.accepted, checked.receipt.error_message

        with GrpcPartnerClient(target, tls=tls) as grpc_client:
            message_id, raw = _envelope(pki, Binding.PROTOBUF)
            exchange = PartnerExchange(grpc_client, partner=US, trust=sender_trust)
            assert exchange.deliver(raw).accepted

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "SIGTERM received: stopping" in text
    assert "gateway US stopped" in text
    with sqlite3.connect(tmp_path / "data" / "us-inbox.db") as db:  # closed cleanly, both stored
        assert db.execute("SELECT binding FROM inbox ORDER BY binding").fetchall() == [
            ("protobuf",),
            ("xml",),
        ]


def test_serve_reports_a_config_error_and_exits_1(tmp_path: Path) -> None:
    init_test_pki(tmp_path / "pki", ("EU", "US"))
    (tmp_path / "data").mkdir()
    config = tmp_path / "us.toml"
    config.write_text(CONFIG.replace('ca = ["pki/EU/ca.pem"]', 'ca = ["pki/EU/missing.pem"]'))
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "error: CFG_INVALID: config error: partners[0].ca[0]: file not found:" in done.stderr
