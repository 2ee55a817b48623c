"""`gncgw send --ub --type`: a raw payload goes through the sender's outbox like every other send,
so the sender's message log holds it with the partner's receipt, and a partner that cannot be
reached leaves it queued for `gncgw serve` instead of losing it. Real EU and US gateways on
loopback over both transports; the CLI runs in-process on EU's own configuration and store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aeo_gateways import US, Gateway, eu_and_us, running_eu_and_us, start_gateway

from gateway import testpki
from gateway.cli import main
from gateway.store.message_log import Direction, LogOutcome, SqliteMessageLog
from gateway.store.outbox import OutboundState

PING = b"<Ping xmlns='urn:gnc-gateway:demo'>link check</Ping>\n"


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("send-pki"), ("EU", "US"))


@pytest.fixture(params=["grpc", "xml"])
def pair(
    request: pytest.FixtureRequest, module_pki: testpki.TestPki, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    with running_eu_and_us(tmp_path, module_pki, binding=request.param) as pair:
        yield pair


def _send(gateway: Gateway, tmp_path: Path) -> list[str]:
    """`gncgw send` of a PING to US on `gateway`'s configuration."""
    payload = tmp_path / "ping.xml"
    payload.write_bytes(PING)
    assert gateway.config.path is not None
    return ["send", "--config", str(gateway.config.path), "--to", "US", "--ub", "UB1",
            "--type", "PING", "--content-type", "application/xml", str(payload)]  # fmt: skip


def _log(gateway: Gateway) -> SqliteMessageLog:
    assert gateway.node.message_log is not None
    return gateway.node.message_log


def test_a_raw_send_is_queued_delivered_and_logged_on_both_sides(
    pair: tuple[Gateway, Gateway], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eu, us = pair
    assert main(_send(eu, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "ACCEPTED" in out and "by US" in out

    sent = [e for e in _log(eu).entries() if e.message_type == "PING"]
    assert len(sent) == 1
    row = sent[0]
    assert (row.direction, row.partner, row.outcome) == (Direction.SENT, "US", LogOutcome.ACCEPTED)
    assert row.message_id in out and row.receipt
    item = eu.outbox.get(row.message_id)
    assert item is not None and item.state is OutboundState.DELIVERED
    assert row.envelope_sha256 == item.envelope_sha256

    received = [e for e in _log(us).entries() if e.message_id == row.message_id]
    assert [(e.direction, e.outcome) for e in received] == [
        (Direction.RECEIVED, LogOutcome.ACCEPTED)
    ]
    assert received[0].envelope_sha256 == item.envelope_sha256  # the bytes US stored


def test_an_unreachable_partner_leaves_the_envelope_queued(
    module_pki: testpki.TestPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eu, us = eu_and_us(tmp_path, module_pki)
    us.close()  # nothing answers at US's address any more
    eu.close()
    assert main(_send(eu, tmp_path)) == 1
    err = capsys.readouterr().err
    assert "stays queued" in err and "gncgw serve" in err

    again = start_gateway(eu.config.path)  # the store as the CLI left it
    try:
        queued = again.outbox.list(OutboundState.PENDING)
        assert [(q.partner, q.message_type) for q in queued] == [(US, "PING")]
        assert not [e for e in _log(again).entries() if e.outcome is LogOutcome.ACCEPTED]
    finally:
        again.close()


def test_sends_while_the_gateway_delivers_in_the_background_go_out_once(
    pair: tuple[Gateway, Gateway], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gncgw send` while `gncgw serve` delivers the same SQLite store: each message is sent,
    receipted and logged once (the two take turns), and each command shows its receipt."""
    eu, us = pair
    eu.worker.poll_seconds = 0.05  # serve's background worker, polling hard
    eu.worker.start()
    try:
        for _ in range(12):
            assert main(_send(eu, tmp_path)) == 0
            assert "ACCEPTED" in capsys.readouterr().out
    finally:
        eu.worker.stop()

    sent = [e for e in _log(eu).entries() if e.message_type == "PING"]
    assert len(sent) == 12 and len({e.message_id for e in sent}) == 12
    assert all(e.outcome is LogOutcome.ACCEPTED for e in sent)
    received = [e for e in _log(us).entries() if e.message_type == "PING"]
    assert [e.outcome for e in received] == [LogOutcome.ACCEPTED] * 12  # no resends
