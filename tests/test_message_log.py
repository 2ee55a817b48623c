"""The message log: append-only in the database itself, and the receiving node writes one row
per envelope it answers (accepted in the same transaction as the inbox record; duplicates and
refusals with their codes), each with the receipt exactly as signed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_engines import ENGINES, fresh_database

from gateway import testpki
from gateway.envelope.intake import Accepted
from gateway.envelope.opened import Binding, new_header
from gateway.errors import AEO_OUT_OF_ORDER, AeoError
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import Apply, GatewayNode, open_receipt, seal_envelope
from gateway.store.inbox import SqliteInbox
from gateway.store.message_log import (
    Direction,
    LogEntry,
    LogOutcome,
    SqliteMessageLog,
)
from gateway.trust.store import PartnerTrust, TrustStore

EU, US = Administration.EU, Administration.US
Pki = testpki.TestPki


def envelope(pki: Pki, binding: Binding, stem: str = "signing", kind: str = "PING") -> bytes:
    payload = b"<Ping/>"
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type=kind,
        sender=EU,
        receiver=US,
        payload_content_type="application/xml",
    )
    return seal_envelope(binding, header, payload, pki.identity("EU", stem))


class RefuseOnApply:
    """An exchange that refuses in its apply step (on the stored state), after storing began."""

    def prepare(self, accepted: Accepted) -> Apply | None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1")
            raise AeoError("version goes backwards", code=AEO_OUT_OF_ORDER, location="version")

        return apply


@pytest.fixture(params=ENGINES)
def node(pki: Pki, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GatewayNode]:
    """A receiving node, on SQLite and on PostgreSQL."""
    with fresh_database(request.param, tmp_path) as database:
        yield from _node(pki, SqliteInbox(database=database))


def _node(pki: Pki, inbox: SqliteInbox) -> Iterator[GatewayNode]:
    trust = TrustStore([PartnerTrust(EU, (pki.ca("EU"),), (pki.crl("EU"),))])
    node = GatewayNode(
        pki.identity("US"),
        trust,
        inbox,
        message_log=SqliteMessageLog(inbox.database),
        handlers={(UtilityBlock.UB1, "REFUSED"): RefuseOnApply()},
    )
    yield node  # (the database is closed by the fixture)


@pytest.mark.parametrize("binding", [Binding.PROTOBUF, Binding.XML])
def test_every_envelope_received_is_logged_with_its_receipt(
    pki: Pki, node: GatewayNode, binding: Binding
) -> None:
    assert node.message_log is not None
    good = envelope(pki, binding)
    revoked = envelope(pki, binding, stem="revoked")
    refused_on_apply = envelope(pki, binding, kind="REFUSED")
    answers = node.receive_many([good, revoked, good, refused_on_apply, b"garbage"], binding, EU)

    entries = node.message_log.entries()
    malformed = "ENV_MALFORMED" if binding is Binding.PROTOBUF else "XML_NOT_WELL_FORMED"
    assert [(e.outcome, e.code) for e in entries] == [
        (LogOutcome.ACCEPTED, ""),  # written in the inbox record's own transaction
        (LogOutcome.REJECTED, "TRUST_REVOKED"),  # then refusals and duplicates, one unit
        (LogOutcome.REJECTED, malformed),
        (LogOutcome.DUPLICATE, ""),
        (LogOutcome.REJECTED, "AEO_OUT_OF_ORDER"),
    ]
    by_sha = {e.envelope_sha256: e for e in entries}
    assert len(entries) == 5 and all(e.direction is Direction.RECEIVED for e in entries)
    assert node.inbox.count() == 1  # the refused-on-apply message left no inbox row
    # Each row carries the receipt exactly as answered.
    assert {e.receipt for e in entries} == set(answers)
    accepted = next(e for e in entries if e.outcome is LogOutcome.ACCEPTED)
    receipt = open_receipt(binding, accepted.receipt or b"").receipt
    assert receipt.accepted and receipt.message_id == accepted.message_id
    assert accepted.partner == "EU" and accepted.utility_block == "UB1"
    assert accepted.message_type == "PING" and accepted.binding is binding
    garbage = [e for e in entries if e.message_id == "" and e.partner == "EU"]
    assert garbage, "an unreadable envelope is logged with the TLS peer as partner"
    assert len(by_sha) == 4  # the duplicate has the same bytes as the original


def test_the_log_is_append_only(tmp_path: Path) -> None:
    inbox = SqliteInbox(tmp_path / "db.sqlite")
    log = SqliteMessageLog(inbox.database)
    log.record(
        [
            LogEntry(
                direction=Direction.SENT,
                message_id="m1",
                partner="US",
                utility_block="UB1",
                message_type="PING",
                binding=Binding.PROTOBUF,
                envelope_sha256=b"\x00" * 32,
                receipt=b"receipt",
                outcome=LogOutcome.ACCEPTED,
            )
        ]
    )
    inbox.close()
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        for statement in ("UPDATE message_log SET outcome = 'REJECTED'", "DELETE FROM message_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT outcome FROM message_log").fetchall() == [("ACCEPTED",)]
    finally:
        conn.close()
