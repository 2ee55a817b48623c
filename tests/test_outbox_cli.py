"""`gncgw outbox` and `gncgw log` as an operator uses them (output and exit codes), and
`gncgw serve` running the delivery worker: queued messages reach a real partner gateway, and
SIGTERM stops everything cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import testpki
from gateway.cli import main
from gateway.envelope.opened import Binding, new_header
from gateway.errors import TransportError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import GatewayNode, seal_envelope
from gateway.store.inbox import SqliteInbox
from gateway.store.message_log import SqliteMessageLog
from gateway.store.outbox import OutboundMessage, SqliteOutbox
from gateway.store.sqlite import SqliteDatabase
from gateway.transport.grpc_server import GrpcGatewayServer
from gateway.transport.tls import TlsIdentity
from gateway.trust.store import PartnerTrust, TrustStore

EU, US = Administration.EU, Administration.US
Pki = testpki.TestPki
PROFILE = Path(__file__).resolve().parent.parent / "adapters" / "partners" / "us.toml"


def write_config(tmp_path: Path, pki: Pki, endpoint: str = "127.0.0.1:9") -> Path:
    root = pki.root
    (tmp_path / "data").mkdir(exist_ok=True)
    config = tmp_path / "eu.toml"
    config.write_text(
        f"""\
[gateway]
administration = "EU"
signing_key = "{root}/EU/signing.key.pem"
signing_cert = "{root}/EU/signing.pem"
tls_key = "{root}/EU/tls.key.pem"
tls_cert = "{root}/EU/tls.pem"

[store]
url = "sqlite:///data/eu.db"

[listen]
grpc = "127.0.0.1:0"

[delivery]
poll_seconds = 0.1

[[partners]]
administration = "US"
binding = "grpc"
endpoint = "{endpoint}"
ca = ["{root}/US/ca.pem"]
crl = ["{root}/US/crl.pem"]
profile = "{PROFILE}"
"""
    )
    return config


def sealed(pki: Pki, key: str, n: int = 0) -> OutboundMessage:
    payload = f"<AeoStatusChange><Key>{key}</Key><N>{n}</N></AeoStatusChange>".encode()
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        sender=EU,
        receiver=US,
        payload_content_type="application/xml",
    )
    raw = seal_envelope(Binding.PROTOBUF, header, payload, pki.identity("EU"))
    return OutboundMessage(
        header.message_id, US, Binding.PROTOBUF, key, UtilityBlock.UB1, "AEO_STATUS_CHANGE", raw
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_outbox_list_replay_discard_and_log_list(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path, pki))
    code, _, err = run(capsys, "outbox", "list", "--config", config)
    assert code == 1 and "no message store at" in err  # nothing has run yet

    database = SqliteDatabase(tmp_path / "data" / "eu.db")
    outbox = SqliteOutbox(database)
    pending, delivered, dead = sealed(pki, "A"), sealed(pki, "B"), sealed(pki, "C")
    outbox.enqueue_all([pending, delivered, dead])
    now = datetime.now(UTC)
    outbox.mark_delivered(delivered.message_id, b"signed receipt", now)
    outbox.mark_failed(
        dead.message_id, TransportError("Submit to 127.0.0.1:9 failed: refused"), now, None
    )
    outbox.mark_failed(pending.message_id, TransportError("refused"), now, now + timedelta(hours=1))
    database.close()

    code, out, _ = run(capsys, "outbox", "list", "--config", config)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0].startswith(f"{pending.message_id}  US  pending ")
    assert "attempts=1" in lines[0] and "key=A" in lines[0] and "next 20" in lines[0]
    assert f"{delivered.message_id}  US  delivered" in lines[1]
    assert "dead" in lines[2] and "TRN_UNAVAILABLE: " in lines[2]
    assert lines[3] == "3 listed; outbox: pending 1, delivered 1, dead 1, discarded 0"

    code, out, _ = run(capsys, "outbox", "list", "--state", "dead", "--config", config)
    assert code == 0 and out.splitlines()[0].startswith(dead.message_id)
    assert out.splitlines()[1].startswith("1 listed")

    refusals = [
        (("replay",), "CFG_INVALID: give a MESSAGE_ID, or --all-dead"),
        (("replay", "no-such-id"), "DLV_OUTBOX_UNKNOWN_MESSAGE"),
        (("replay", pending.message_id), "DLV_OUTBOX_STATE"),
        (("discard", delivered.message_id), "DLV_OUTBOX_STATE"),
        (("list", "--partner", "XX"), "--partner 'XX' is not a known administration"),
    ]
    for args, expected in refusals:
        code, _, err = run(capsys, "outbox", *args, "--config", config)
        assert code == 1 and err.startswith("error: ") and expected in err, (args, err)

    code, out, _ = run(capsys, "outbox", "replay", dead.message_id, "--config", config)
    assert code == 0 and out.startswith(f"replayed 1 ({dead.message_id})")
    code, out, _ = run(
        capsys, "outbox", "replay", "--all-dead", "--partner", "us", "--config", config
    )
    assert code == 0 and out.startswith("replayed 0 (dead letters to US)")

    again = SqliteDatabase(tmp_path / "data" / "eu.db")
    try:
        item = SqliteOutbox(again).get(dead.message_id)
        assert item is not None and item.state.value == "pending" and item.attempts == 0
        assert SqliteMessageLog(again).count() == 0
    finally:
        again.close()
    code, out, _ = run(capsys, "log", "list", "--config", config)
    assert code == 0 and out == ""


@pytest.fixture
def us_gateway(pki: Pki, tmp_path: Path) -> Iterator[tuple[GatewayNode, str]]:
    inbox = SqliteInbox(tmp_path / "us.db")
    trust = TrustStore([PartnerTrust(EU, (pki.ca("EU"),), (pki.crl("EU"),))])
    node = GatewayNode(pki.identity("US"), trust, inbox)
    server = GrpcGatewayServer(
        node, tls=TlsIdentity.from_files(pki.key_path("US", "tls"), pki.path("US", "tls"))
    )
    server.start()
    yield node, server.target
    server.stop(grace=None)
    inbox.close()


def test_serve_delivers_the_outbox_and_stops_cleanly_on_sigterm(
    pki: Pki,
    tmp_path: Path,
    us_gateway: tuple[GatewayNode, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    us_node, target = us_gateway
    config = write_config(tmp_path, pki, endpoint=target)
    store = SqliteInbox(tmp_path / "data" / "eu.db")  # the EU store, as the UB1 service fills it
    messages = [sealed(pki, f"KEY{i % 2}", n=i) for i in range(5)]
    SqliteOutbox(store.database).enqueue_all(messages)
    store.close()

    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while us_node.inbox.count() < 5:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        # The receipt is settled just after the partner stored it: wait for the outbox.
        while True:
            code, out, _ = run(capsys, "outbox", "list", "--config", str(config))
            # 5 queued here, plus the daily full AEO list serve queues for a profiled partner
            settled = re.search(r"outbox: pending 0, delivered (\d+), dead 0", out)
            if settled and int(settled.group(1)) >= 5:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert "delivery worker started (partners US; poll every 0.1 s)" in text
    assert "delivery worker stopped" in text and "gateway EU stopped" in text

    code, out, _ = run(capsys, "log", "list", "--config", str(config), "--partner", "US")
    ours = {m.message_id for m in messages}
    rows = [row for row in out.splitlines() if row.split()[4] in ours]
    assert code == 0 and len(rows) == 5
    assert all(" sent " in row and "ACCEPTED" in row and "receipt " in row for row in rows)
    assert [row.split()[4] for row in rows] == [m.message_id for m in messages]
