"""UB3 end to end on real gateways (EU, CN over gRPC, HK over XML/HTTPS, real PKI and SQLite).

Each handling rule is shown to keep the forbidden record off the wire: after the refusal (and a
delivery pass), the receiving gateway's inbox, UB3 tables and message log hold nothing of it, and
the EU's outbox holds nothing for it; the refusal is in the EU's refusal log with its rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from risk_gateways import CN, EU, HK, US, VECTORS, Gateway, eu_cn_hk

from gateway.errors import GatewayError, RiskError
from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import Feedback, FeedbackOutcome, IprDetention, RiskInformation
from gateway.store.message_log import Direction, LogOutcome
from gateway.store.outbox import OutboundState
from gateway.testpki import TestPki
from gateway.translate.crms_risk import parse_form


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki
) -> Iterator[dict[Administration, Gateway]]:
    started = eu_cn_hk(tmp_path_factory.mktemp("ub3"), pki)
    yield started
    for gateway in started.values():
        gateway.close()


def form(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def wire_snapshot(gateway: Gateway) -> tuple[int, int, int]:
    """What a receiving gateway holds from the wire: inbox rows, received UB3 rows, log rows."""
    store = gateway.service.store
    return (
        len(gateway.inbox_envelopes()),
        len(store.received()) + len(store.feedback("received")),
        gateway.node.message_log.count() if gateway.node.message_log else 0,
    )


def assert_refused_off_the_wire(
    gateways: dict[Administration, Gateway],
    to: Administration,
    data: bytes,
    code: str,
    rule: str,
    secret: bytes,
) -> None:
    eu, receiver = gateways[EU], gateways[to]
    before = wire_snapshot(receiver)
    queued = len(eu.outbox.list())
    refusals = len(eu.service.store.refusals())
    with pytest.raises(RiskError) as caught:
        eu.service.send_form(data, to, actor="tester", source="form.xml")
    assert caught.value.code == code
    assert rule in (caught.value.location or "")
    eu.deliver(to)
    assert len(eu.outbox.list()) == queued, "nothing may be queued"
    assert wire_snapshot(receiver) == before, "nothing may reach the partner"
    assert all(secret not in raw for raw in receiver.inbox_envelopes())
    logged = eu.service.store.refusals()
    assert len(logged) == refusals + 1
    assert logged[-1].code == code and logged[-1].partner == to.value
    assert rule in logged[-1].rule and logged[-1].actor == "tester"


def send_and_deliver(gateway: Gateway, to: Administration, data: bytes) -> str:
    result = gateway.service.send_form(data, to, actor="tester", source="form.xml")
    gateway.deliver(to)
    item = gateway.outbox.get(result.message_id)
    assert item is not None and item.state is OutboundState.DELIVERED, item
    return result.message_id


# --- what is sent, and what is removed on the way ------------------------------------------------
def test_risk_information_reaches_cn_over_grpc_without_operator_identifiers(
    gateways: dict[Administration, Gateway],
) -> None:
    eu, cn = gateways[EU], gateways[CN]
    message_id = send_and_deliver(eu, CN, form("ipr-shoes.xml"))
    [held] = cn.service.store.received(reference="RIF-2025-IPR-0001")
    record = held.record
    assert isinstance(record, RiskInformation)
    assert held.label is HandlingLabel.LIMITED and held.message_id == message_id
    # kept for the retention of the rules CN holds for the EU (30 days in the test rules)
    assert held.retain_until is not None
    assert (held.retain_until - held.received_at).days == 30
    assert [op.identifier for op in record.indicators.operators] == [""]  # cn.toml removes them
    assert record.indicators.operators[0].name == "Shenzhen Example Trading Co Ltd"
    assert all(b"CN91440300MA5F" not in raw for raw in cn.inbox_envelopes())
    [sent] = [s for s in eu.service.store.sent(CN) if s.message_id == message_id]
    assert sent.removed == ("indicators.operators[0].identifier",)
    entries = cn.node.message_log.entries(message_id=message_id) if cn.node.message_log else []
    assert [(e.direction, e.outcome) for e in entries] == [
        (Direction.RECEIVED, LogOutcome.ACCEPTED)
    ]


def test_natural_person_is_removed_for_hk_over_xml(gateways: dict[Administration, Gateway]) -> None:
    eu, hk = gateways[EU], gateways[HK]
    send_and_deliver(eu, HK, form("ipr-natural-person.xml"))
    [held] = hk.service.store.received(reference="RIF-2025-IPR-0002")
    assert isinstance(held.record, RiskInformation)
    assert [op.role.value for op in held.record.indicators.operators] == ["CONSIGNOR"]
    assert all(b"Jan Jansen" not in raw for raw in hk.inbox_envelopes())


def test_ipr_detention_to_hk_loses_the_natural_person(
    gateways: dict[Administration, Gateway],
) -> None:
    eu, hk = gateways[EU], gateways[HK]
    send_and_deliver(eu, HK, form("ipr-detention.xml"))
    [held] = hk.service.store.received(reference="NL-IPR-2025-000412")
    assert isinstance(held.record, IprDetention)
    assert held.label is HandlingLabel.RESTRICTED
    assert [op.role.value for op in held.record.operators] == ["EXPORTER"]
    assert all(b"Piet de Vries" not in raw for raw in hk.inbox_envelopes())


def test_ipr_statistics_to_cn_and_hk(gateways: dict[Administration, Gateway]) -> None:
    eu = gateways[EU]
    for partner in (CN, HK):
        send_and_deliver(eu, partner, form("ipr-statistics.xml"))
        [held] = gateways[partner].service.store.received(reference="EU-IPR-STAT-2025Q1")
        assert held.record == parse_form(form("ipr-statistics.xml"))


# --- each handling rule keeps the forbidden record off the wire ---------------------------------
def test_personal_data_forbidden_for_cn(gateways: dict[Administration, Gateway]) -> None:
    assert_refused_off_the_wire(
        gateways, CN, form("ipr-natural-person.xml"), "RISK_PERSONAL_DATA_FORBIDDEN",
        "cn.toml:remove.personal_data", b"Jan Jansen",
    )  # fmt: skip


def test_label_above_clearance(gateways: dict[Administration, Gateway]) -> None:
    for partner in (CN, HK):
        assert_refused_off_the_wire(
            gateways, partner, form("ipr-confidential.xml"), "RISK_LABEL_ABOVE_CLEARANCE",
            "receive.max_label", b"RIF-2025-IPR-0003",
        )  # fmt: skip


def test_restricted_detention_above_cn_clearance(gateways: dict[Administration, Gateway]) -> None:
    assert_refused_off_the_wire(
        gateways, CN, form("ipr-detention.xml"), "RISK_LABEL_ABOVE_CLEARANCE",
        "cn.toml:receive.max_label", b"NL-IPR-2025-000412",
    )  # fmt: skip


def test_area_not_cleared(gateways: dict[Administration, Gateway]) -> None:
    for partner in (CN, HK):
        assert_refused_off_the_wire(
            gateways, partner, form("financial.xml"), "RISK_AREA_NOT_CLEARED",
            "receive.risk_areas", b"RIF-2025-FIN-0001",
        )  # fmt: skip


def test_message_not_agreed_for_us(gateways: dict[Administration, Gateway]) -> None:
    eu = gateways[EU]
    with pytest.raises(RiskError) as caught:
        eu.service.send_form(form("ipr-statistics.xml"), US, actor="tester")
    assert caught.value.code == "RISK_MESSAGE_NOT_AGREED"
    assert caught.value.location == "us.toml:receive.messages"
    assert eu.outbox.list(partner=US) == []


def test_partner_without_handling_rules(gateways: dict[Administration, Gateway]) -> None:
    with pytest.raises(RiskError) as caught:
        gateways[EU].service.send_form(form("ipr-shoes.xml"), Administration.JP, actor="tester")
    assert caught.value.code == "RISK_NO_AGREEMENT"
    assert gateways[EU].service.store.refusals()[-1].code == "RISK_NO_AGREEMENT"


# --- bad input: its code, nothing sent, the attempt logged --------------------------------------
@pytest.mark.parametrize(
    ("vector", "code", "reference"),
    [
        ("bad-unknown-area.xml", "RISK_UNKNOWN_AREA", b"RIF-2025-XXX-0001"),
        ("bad-expired.xml", "RISK_VALIDITY_EXPIRED", b"RIF-2020-IPR-0001"),
        ("bad-container.xml", "RISK_CONTAINER_ID_INVALID", b"RIF-BAD-CONTAINER"),
        ("bad-commodity.xml", "RISK_COMMODITY_CODE_INVALID", b"RIF-BAD-COMMODITY"),
        ("bad-schema.xml", "RISK_FORM_INVALID", b"RIF-BAD-SCHEMA"),
    ],
)
def test_bad_forms_are_refused_and_logged(
    gateways: dict[Administration, Gateway], vector: str, code: str, reference: bytes
) -> None:
    assert_refused_off_the_wire(gateways, CN, form(vector), code, "", reference)


def test_only_the_originator_sends_its_records(gateways: dict[Administration, Gateway]) -> None:
    record = parse_form(form("ipr-shoes.xml"))
    assert isinstance(record, RiskInformation)
    with pytest.raises(RiskError) as caught:
        gateways[EU].service.send(replace(record, originator=US), CN, actor="tester")
    assert caught.value.code == "RISK_NOT_ORIGINATOR"


# --- receiving side refusals (signed rejections, nothing stored) --------------------------------
def test_record_expired_on_arrival_is_rejected(gateways: dict[Administration, Gateway]) -> None:
    """An EU service whose clock is in 2020 passes the sending check; CN refuses on arrival."""
    from gateway.services.risk import RiskService

    eu, cn = gateways[EU], gateways[CN]
    past = RiskService(
        store=eu.service.store, outbox=eu.outbox, identity=eu.service.identity,
        partners=list(eu.service.partners.values()),
        clock=lambda: datetime(2020, 6, 1, tzinfo=UTC),
    )  # fmt: skip
    result = past.send_form(form("bad-expired.xml"), CN, actor="tester")
    before = len(cn.service.store.received())
    eu.deliver(CN)
    item = eu.outbox.get(result.message_id)
    assert item is not None and item.state is OutboundState.DEAD
    assert item.last_error_code == "RISK_VALIDITY_EXPIRED"
    assert len(cn.service.store.received()) == before
    assert cn.node.inbox.receipt_for(result.message_id) is None
    [entry] = cn.node.message_log.entries(message_id=result.message_id)  # type: ignore[union-attr]
    assert entry.outcome is LogOutcome.REJECTED and entry.code == "RISK_VALIDITY_EXPIRED"
    eu.outbox.discard(result.message_id)  # unblock the EU->CN key for the other tests


# --- feedback and outstanding -------------------------------------------------------------------
def test_feedback_from_hk_clears_outstanding(gateways: dict[Administration, Gateway]) -> None:
    eu, hk = gateways[EU], gateways[HK]
    send_and_deliver(eu, HK, form("ipr-shoes.xml"))
    outstanding = {(s.partner, s.reference) for s in eu.service.outstanding()}
    assert (HK, "RIF-2025-IPR-0001") in outstanding
    result = hk.service.send_feedback(
        "RIF-2025-IPR-0001", form("feedback-seizure.xml"), actor="hk-officer"
    )
    hk.deliver(EU)
    item = hk.outbox.get(result.message_id)
    assert item is not None and item.state is OutboundState.DELIVERED
    outstanding = {(s.partner, s.reference) for s in eu.service.outstanding()}
    assert (HK, "RIF-2025-IPR-0001") not in outstanding
    if any(s.reference == "RIF-2025-IPR-0001" for s in eu.service.store.sent(CN)):
        assert (CN, "RIF-2025-IPR-0001") in outstanding  # CN has not answered
    assert all(s.partner is HK for s in eu.service.outstanding(HK))
    received = [fb for d, p, fb in eu.service.store.feedback("received") if p is HK]
    assert received[-1].outcome is FeedbackOutcome.SEIZURE and received[-1].seizures == 1


def test_feedback_on_unknown_reference_is_refused_before_sending(
    gateways: dict[Administration, Gateway],
) -> None:
    hk = gateways[HK]
    queued = len(hk.outbox.list())
    with pytest.raises(RiskError) as caught:
        hk.service.send_feedback("RIF-NEVER-SENT", form("feedback-seizure.xml"), actor="x")
    assert caught.value.code == "RISK_UNKNOWN_REFERENCE"
    assert len(hk.outbox.list()) == queued
    assert hk.service.store.refusals()[-1].reference == "RIF-NEVER-SENT"


def test_feedback_on_a_record_never_sent_is_rejected_by_the_originator(
    gateways: dict[Administration, Gateway],
) -> None:
    """HK's gateway bypassed (send() directly): the EU answers RISK_UNKNOWN_REFERENCE, signed."""
    eu, hk = gateways[EU], gateways[HK]
    bogus = Feedback(
        EU, "RIF-NOT-SENT-TO-HK", HK, datetime.now(UTC).date(), FeedbackOutcome.NO_FINDINGS,
        controls=1,
    )  # fmt: skip
    result = hk.service.send(bogus, EU, actor="x")
    hk.deliver(EU)
    item = hk.outbox.get(result.message_id)
    assert item is not None and item.state is OutboundState.DEAD
    assert item.last_error_code == "RISK_UNKNOWN_REFERENCE"
    assert all(fb.reference != "RIF-NOT-SENT-TO-HK" for _, _, fb in eu.service.store.feedback())
    hk.outbox.discard(result.message_id)


# --- logged reads -------------------------------------------------------------------------------
def test_every_read_of_a_received_record_is_logged(
    gateways: dict[Administration, Gateway],
) -> None:
    cn = gateways[CN]
    if not cn.service.store.received(reference="RIF-2025-IPR-0001"):
        send_and_deliver(gateways[EU], CN, form("ipr-shoes.xml"))
    before = len(cn.service.store.access_log())
    [row] = cn.service.show("RIF-2025-IPR-0001", actor="analyst1")
    assert row.label is HandlingLabel.LIMITED
    listed = cn.service.list_received(actor="analyst2")
    log = cn.service.store.access_log()[before:]
    assert (log[0].actor, log[0].action, log[0].reference, log[0].label) == (
        "analyst1", "show", "RIF-2025-IPR-0001", "LIMITED",
    )  # fmt: skip
    assert [(e.actor, e.action) for e in log[1:]] == [("analyst2", "list")] * len(listed)
    with pytest.raises(GatewayError) as caught:
        cn.service.show("RIF-UNKNOWN", actor="analyst1")
    assert caught.value.code == "RISK_UNKNOWN_REFERENCE"


def test_logs_are_append_only(gateways: dict[Administration, Gateway]) -> None:
    import sqlite3

    eu = gateways[EU]
    with pytest.raises(RiskError):
        eu.service.send_form(form("financial.xml"), CN, actor="tester")
    conn = sqlite3.connect(eu.node.inbox.database.path)
    try:
        conn.execute(
            "INSERT INTO risk_access_log (at, actor, action, originator, kind, reference, label)"
            " VALUES ('2026-01-01T00:00:00.000000Z', 'x', 'show', 'CN', 'RiskInformation', 'R',"
            " 'LIMITED')"
        )
        conn.commit()
        for table in ("risk_refusals", "risk_access_log"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(f"DELETE FROM {table}")
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(f"UPDATE {table} SET actor = 'someone else'")
    finally:
        conn.close()


def test_config_links_handling_rules(
    gateways: dict[Administration, Gateway], tmp_path: Path
) -> None:
    eu = gateways[EU]
    rules = {p.administration: p.handling for p in eu.config.partners}
    cn = rules[CN]
    assert cn is not None and cn.max_label is HandlingLabel.LIMITED
    assert rules[HK] is not None and rules[US] is not None


def test_retention_purge_erases_the_record_and_the_inbox_copy(
    gateways: dict[Administration, Gateway],
) -> None:
    """Past retention the record and the envelope bytes go; digests and receipt stay as proof."""
    eu, cn = gateways[EU], gateways[CN]
    message_id = send_and_deliver(eu, CN, form("ipr-shoes.xml"))
    [held] = [r for r in cn.service.store.received() if r.message_id == message_id]
    assert held.retain_until is not None
    inbox = cn.node.inbox
    assert inbox.envelope_for(message_id)
    receipt = inbox.receipt_for(message_id)
    # Before the retention date nothing is purged; after it, this record is.
    assert cn.service.store.purge_expired(held.received_at, "retention") == 0
    purged = cn.service.store.purge_expired(held.retain_until + timedelta(seconds=1), "retention")
    assert purged >= 1
    assert not [r for r in cn.service.store.received() if r.message_id == message_id]
    assert inbox.envelope_for(message_id) == b""
    assert inbox.receipt_for(message_id) == receipt
    assert cn.service.store.access_log()[-1].action == "purge"


def test_a_superseded_record_leaves_no_envelope_bytes_behind(
    gateways: dict[Administration, Gateway],
) -> None:
    """A new version of a record (same originator and reference) replaces the row; the old
    version's envelope bytes go at once (a purge follows the row, so they would stay for
    ever), its digests and signed receipt stay as proof."""
    eu, cn = gateways[EU], gateways[CN]
    original = form("ipr-shoes.xml")
    first = send_and_deliver(eu, CN, original)
    edited = original.replace(b"</RiskDescription>", b" Second version.</RiskDescription>", 1)
    assert edited != original
    second = send_and_deliver(eu, CN, edited)
    inbox = cn.node.inbox
    assert inbox.envelope_for(first) == b"" and inbox.receipt_for(first)
    assert inbox.envelope_for(second)
    [held] = [r for r in cn.service.store.received() if r.message_id == second]
    assert not [r for r in cn.service.store.received() if r.message_id == first]
    assert held.retain_until is not None


def test_feedback_received_is_purged_after_the_senders_retention(
    gateways: dict[Administration, Gateway],
) -> None:
    """Feedback remarks may name people: what HK sends is kept no longer than its retention,
    like its records (digests and the signed receipt stay in the inbox)."""
    eu, hk = gateways[EU], gateways[HK]
    send_and_deliver(eu, HK, form("ipr-shoes.xml"))
    result = hk.service.send_feedback(
        "RIF-2025-IPR-0001", form("feedback-seizure.xml"), actor="hk-officer"
    )
    hk.deliver(EU)
    inbox = eu.node.inbox
    assert inbox.envelope_for(result.message_id)
    now = datetime.now(UTC)
    assert eu.service.store.purge_expired(now, "retention") == 0  # within HK's retention
    assert [fb for _, p, fb in eu.service.store.feedback("received") if p is HK]
    later = now + timedelta(days=10 * 366)  # past any retention the rules give
    assert eu.service.store.purge_expired(later, "retention") >= 1
    assert not [fb for _, p, fb in eu.service.store.feedback("received") if p is HK]
    assert inbox.envelope_for(result.message_id) == b""
    assert inbox.receipt_for(result.message_id)
