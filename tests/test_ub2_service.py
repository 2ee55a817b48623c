"""UB2 end to end on real gateways (EU -> CN over gRPC, EUX -> CN over XML/HTTPS, real PKI and
SQLite files): transactions on a lane reach CN; off-lane and badly coded consignments never
leave the EU; control results come back linked to their transaction; unknown ones are refused on
both sides.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ub2_gateways import (
    CN,
    EU,
    MD,
    SOURCE_PATHS,
    UA,
    US,
    Gateway,
    eu_cn,
    sstl_consignment,
    tir_consignment,
)

from gateway.envelope.opened import Binding, new_header
from gateway.envelope.protobuf_binding import read_header_unverified
from gateway.errors import TransactionError
from gateway.model.codes import UtilityBlock
from gateway.model.consignment import Consignment
from gateway.model.control_result import (
    ControlOutcome,
    ControlResult,
    ControlType,
    Discrepancy,
    DiscrepancyKind,
    SealCheck,
)
from gateway.node import seal_envelope
from gateway.services.aeo import responder_for, ub1_partners
from gateway.services.transactions import ordering_key
from gateway.store.outbox import OutboundMessage, OutboundState
from gateway.store.transaction_store import Direction
from gateway.testpki import TestPki
from gateway.translate import ub2_exchange
from gateway.translate.ub2_exchange import Ub2Kind
from gateway.translate.ub3_exchange import CONTENT_TYPES, PayloadForm

CONTROLLED_AT = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki
) -> Iterator[dict[str, Gateway]]:
    started = eu_cn(tmp_path_factory.mktemp("ub2"), pki)
    yield started
    for gateway in started.values():
        gateway.close()


def wire_snapshot(gateway: Gateway) -> tuple[int, int, int]:
    """What a receiving gateway holds from the wire: inbox rows, UB2 rows, message-log rows."""
    store = gateway.service.store
    return (
        len(gateway.inbox_envelopes()),
        len(store.received()) + len(store.control_results(Direction.RECEIVED)),
        gateway.node.message_log.count() if gateway.node.message_log else 0,
    )


def send_and_deliver(sender: Gateway, consignment: Consignment) -> str:
    result = sender.service.send_consignment(consignment, CN, actor="tester")
    sender.deliver(CN)
    item = sender.outbox.get(result.message_id)
    assert item is not None and item.state is OutboundState.DELIVERED, item
    return result.message_id


def assert_nothing_sent(
    gateways: dict[str, Gateway], consignment: Consignment, code: str, rule: str = ""
) -> TransactionError:
    eu, cn = gateways["EU"], gateways["CN"]
    before = wire_snapshot(cn)
    queued = len(eu.outbox.list())
    refusals = len(eu.service.store.refusals())
    with pytest.raises(TransactionError) as caught:
        eu.service.send_consignment(consignment, CN, actor="tester")
    assert caught.value.code == code
    eu.deliver(CN)
    assert len(eu.outbox.list()) == queued, "nothing may be queued"
    assert eu.service.store.sent(reference=consignment.reference) == []
    assert wire_snapshot(cn) == before, "nothing may reach CN"
    assert cn.service.store.received(reference=consignment.reference) == []
    assert all(consignment.reference.encode() not in raw for raw in cn.inbox_envelopes())
    logged = eu.service.store.refusals()[refusals:]
    assert logged and logged[0].code == code and logged[0].partner == "CN"
    assert all(r.actor == "tester" and r.reference == consignment.reference for r in logged)
    assert rule in logged[0].rule
    return caught.value


# --- on a lane: sent, received, stored, receipted ------------------------------------------------
@pytest.mark.parametrize(("name", "binding"), [("EU", Binding.PROTOBUF), ("EUX", Binding.XML)])
def test_on_lane_consignment_reaches_cn(
    gateways: dict[str, Gateway], name: str, binding: Binding
) -> None:
    eu, cn = gateways[name], gateways["CN"]
    consignment = sstl_consignment(f"NL25EX{name}00000001")
    message_id = send_and_deliver(eu, consignment)
    item = eu.outbox.get(message_id)
    assert item is not None and item.binding is binding
    assert item.ordering_key == ordering_key(CN, consignment.reference)
    assert eu.outbox.receipt_for(message_id), "CN's signed receipt is kept"
    [sent] = eu.service.store.sent(CN, consignment.reference)
    assert (sent.message_id, sent.lane, sent.record) == (
        message_id,
        "Rotterdam-Shanghai",
        consignment,
    )
    [held] = cn.service.store.received(EU, consignment.reference)
    assert held.message_id == message_id
    assert held.record == consignment, "every value arrives as sent"
    assert held.record.container_ids == ("CSQU3054383",)


def test_amendment_follows_its_original(gateways: dict[str, Gateway]) -> None:
    eu, cn = gateways["EU"], gateways["CN"]
    original = sstl_consignment("NL25EX0000000042")
    amended = replace(original, function_code="13", total_packages=14)
    first = eu.service.send_consignment(original, CN, actor="tester")
    second = eu.service.send_consignment(amended, CN, actor="tester")
    eu.deliver(CN)
    held = cn.service.store.received(EU, original.reference)
    assert [h.message_id for h in held] == [first.message_id, second.message_id]
    assert held[-1].record == amended
    envelope = cn.node.inbox.envelope_for(second.message_id)
    assert envelope is not None
    # The amendment's envelope names its original as correlation id.
    assert read_header_unverified(envelope).correlation_id == first.message_id


# --- off a lane, or a bad code: nothing leaves the EU ---------------------------------------------
def test_wrong_port_pair_is_refused(gateways: dict[str, Gateway]) -> None:
    error = assert_nothing_sent(
        gateways, sstl_consignment("NL25EX0000000101", unloading="USNYC"), "UB2_NO_LANE",
        "cn.toml:ub2.lanes",
    )  # fmt: skip
    assert "NLRTM -> USNYC is not agreed" in error.message
    assert SOURCE_PATHS["place_of_unloading"] in (error.location or "")


def test_non_participating_operator_is_refused(gateways: dict[str, Gateway]) -> None:
    error = assert_nothing_sent(
        gateways, sstl_consignment("NL25EX0000000102", consignee="91310000MA1FL0XX0X"),
        "UB2_NO_LANE", "cn.toml:ub2.lanes",
    )  # fmt: skip
    assert "91310000MA1FL0XX0X is not a participating operator" in error.message
    assert (
        gateways["EU"].service.store.refusals()[-1].location
        == SOURCE_PATHS["parties[1].identifier"]
    )


def test_country_that_does_not_exist_is_refused(gateways: dict[str, Gateway]) -> None:
    error = assert_nothing_sent(
        gateways, sstl_consignment("NL25EX0000000103", consignee_country="XZ"),
        "UB2_COUNTRY_INVALID",
    )  # fmt: skip
    assert error.location == SOURCE_PATHS["parties[1].address.country"]


def test_container_with_bad_check_digit_is_refused(gateways: dict[str, Gateway]) -> None:
    error = assert_nothing_sent(
        gateways, sstl_consignment("NL25EX0000000104", container="CSQU3054384"),
        "UB2_CONTAINER_INVALID",
    )  # fmt: skip
    assert error.location == SOURCE_PATHS["goods_items[0].containers[0]"]


def test_every_bad_code_is_logged(gateways: dict[str, Gateway]) -> None:
    eu = gateways["EU"]
    before = len(eu.service.store.refusals())
    bad = sstl_consignment("NL25EX0000000105", consignee_country="XZ", container="CSQU3054384")
    with pytest.raises(TransactionError) as caught:
        eu.service.send_consignment(bad, CN, actor="tester")
    assert caught.value.code == "UB2_COUNTRY_INVALID"  # the first, in record order
    logged = eu.service.store.refusals()[before:]
    assert [r.code for r in logged] == ["UB2_COUNTRY_INVALID", "UB2_CONTAINER_INVALID"]
    assert [r.location for r in logged] == [
        SOURCE_PATHS["parties[1].address.country"], SOURCE_PATHS["goods_items[0].containers[0]"],
    ]  # fmt: skip
    assert eu.service.store.sent(reference=bad.reference) == []


def test_partner_without_ub2_agreement(gateways: dict[str, Gateway]) -> None:
    eu = gateways["EU"]
    with pytest.raises(TransactionError) as caught:
        eu.service.send_consignment(sstl_consignment("NL25EX0000000106"), US, actor="tester")
    assert (caught.value.code, caught.value.location) == ("UB2_NOT_AGREED", "partners.profile")
    assert eu.outbox.list(partner=US) == []
    with pytest.raises(TransactionError) as caught:  # UA is not configured here at all
        eu.service.send_consignment(sstl_consignment("NL25EX0000000107"), UA, actor="tester")
    assert (caught.value.code, caught.value.location) == ("UB2_NOT_AGREED", "partners")
    assert [r.code for r in eu.service.store.refusals()[-2:]] == ["UB2_NOT_AGREED"] * 2


# --- TIR to Moldova (XML, unreachable: only what is queued is looked at) -----------------------
def test_tir_consignment_is_queued_for_md_and_off_lane_is_not(gateways: dict[str, Gateway]) -> None:
    eu = gateways["EU"]
    result = eu.service.send_consignment(tir_consignment(), MD, actor="tester")
    assert result.lane == "Albita-Leuseni"
    item = eu.outbox.get(result.message_id)
    assert item is not None and item.binding is Binding.XML and item.partner is MD
    queued = len(eu.outbox.list(partner=MD))
    with pytest.raises(TransactionError) as caught:
        eu.service.send_consignment(
            tir_consignment("RO25EX0000000008", holder="ROU/009/000001"), MD, actor="tester"
        )
    assert caught.value.code == "UB2_NO_LANE"
    assert eu.service.store.refusals()[-1].rule == "md.toml:ub2.lanes"
    assert len(eu.outbox.list(partner=MD)) == queued


def test_partner_without_ub1_gets_no_ub1_service(gateways: dict[str, Gateway]) -> None:
    config = gateways["EU"].config
    assert config.partner(MD).profile is not None
    assert [p.administration for p in ub1_partners(config)] == [CN]
    responder = responder_for(config, gateways["EU"].node.inbox.database, message_log=None)
    assert set(responder.profiles) == {CN}


# --- control results ----------------------------------------------------------------------------
def control_result(
    transaction_reference: str, transaction_message_id: str | None, reference: str = "CN-CR-1"
) -> ControlResult:
    return ControlResult(
        reference=reference,
        transaction_reference=transaction_reference,
        transaction_message_id=transaction_message_id,
        controlling_administration=CN,
        controlled_at=CONTROLLED_AT,
        control_types=(ControlType.SEAL_CHECK, ControlType.PHYSICAL),
        outcome=ControlOutcome.DISCREPANCIES_FOUND,
        office="CN220100",
        seals=(SealCheck("SH-778812", intact=False, container="CSQU3054383"),),
        discrepancies=(
            Discrepancy(DiscrepancyKind.PACKAGES, "12 cases declared, 11 found", 1, "12", "11"),
        ),
    )


def test_control_result_comes_back_linked(gateways: dict[str, Gateway]) -> None:
    eu, cn = gateways["EU"], gateways["CN"]
    consignment = sstl_consignment("NL25EX0000000201")
    message_id = send_and_deliver(eu, consignment)
    result = control_result(consignment.reference, message_id)
    sent = cn.service.send_control_result(result, EU, actor="cn-officer")
    cn.deliver(EU)
    item = cn.outbox.get(sent.message_id)
    assert item is not None and item.state is OutboundState.DELIVERED, item
    assert item.ordering_key == ordering_key(EU, consignment.reference)
    [held] = eu.service.control_results_for(consignment.reference)
    assert held.direction is Direction.RECEIVED and held.partner is CN
    assert (held.transaction_reference, held.transaction_message_id) == (
        consignment.reference, message_id,
    )  # fmt: skip
    assert held.result == result
    assert held.result.broken_seals[0].seal_id == "SH-778812"
    [own] = cn.service.control_results_for(consignment.reference)
    assert own.direction is Direction.SENT and own.message_id == held.message_id


def test_control_result_naming_only_the_reference(gateways: dict[str, Gateway]) -> None:
    eu, cn = gateways["EU"], gateways["CN"]
    consignment = sstl_consignment("NL25EX0000000202")
    message_id = send_and_deliver(eu, consignment)
    satisfactory = ControlResult(
        "CN-CR-2", consignment.reference, None, CN, CONTROLLED_AT, (ControlType.DOCUMENTARY,),
        ControlOutcome.SATISFACTORY,
    )  # fmt: skip
    cn.service.send_control_result(satisfactory, EU, actor="cn-officer")
    cn.deliver(EU)
    [held] = eu.service.control_results_for(consignment.reference)
    assert held.transaction_message_id == message_id  # linked to the transaction sent
    assert held.result.outcome is ControlOutcome.SATISFACTORY


def test_control_result_for_unknown_transaction_refused_when_sending(
    gateways: dict[str, Gateway],
) -> None:
    cn = gateways["CN"]
    queued = len(cn.outbox.list())
    for result in (
        control_result("NL25EX9999999999", None),
        control_result("NL25EX0000000201", str(uuid.uuid4())),  # known reference, other message
    ):
        with pytest.raises(TransactionError) as caught:
            cn.service.send_control_result(result, EU, actor="cn-officer")
        assert caught.value.code == "UB2_UNKNOWN_TRANSACTION"
        assert cn.service.store.refusals()[-1].code == "UB2_UNKNOWN_TRANSACTION"
    assert len(cn.outbox.list()) == queued


def test_control_result_of_another_administration_refused(gateways: dict[str, Gateway]) -> None:
    cn = gateways["CN"]
    queued = len(cn.outbox.list())
    foreign = replace(control_result("NL25EX0000000201", None), controlling_administration=EU)
    with pytest.raises(TransactionError) as caught:
        cn.service.send_control_result(foreign, EU, actor="cn-officer")
    assert caught.value.code == "UB2_CONTROL_RESULT_INVALID"
    assert len(cn.outbox.list()) == queued


def test_crafted_control_result_for_unknown_transaction_refused_on_receipt(
    gateways: dict[str, Gateway],
) -> None:
    eu, cn = gateways["EU"], gateways["CN"]
    before = eu.service.store.control_results(Direction.RECEIVED)
    crafted = control_result("NL25EX0000000999", None, reference="CN-CR-999")
    data = ub2_exchange.encode(crafted, PayloadForm.PROTOBUF)
    header = new_header(
        payload=data, utility_block=UtilityBlock.UB2, message_type=Ub2Kind.CONTROL_RESULT.value,
        sender=CN, receiver=EU, payload_content_type=CONTENT_TYPES[PayloadForm.PROTOBUF],
    )  # fmt: skip
    raw = seal_envelope(Binding.PROTOBUF, header, data, cn.config.signing_identity)

    def queue(conn: sqlite3.Connection) -> None:
        cn.outbox.enqueue(
            conn,
            OutboundMessage(header.message_id, EU, Binding.PROTOBUF, "crafted", UtilityBlock.UB2,
                            header.message_type, raw),
        )  # fmt: skip

    cn.outbox.database.write(queue)
    report = cn.deliver(EU)
    assert report.codes[header.message_id] == "UB2_UNKNOWN_TRANSACTION"
    item = cn.outbox.get(header.message_id)
    assert item is not None and item.state is OutboundState.DEAD
    assert eu.service.store.control_results(Direction.RECEIVED) == before
    assert all(header.message_id.encode() not in r for r in eu.inbox_envelopes())


def test_store_is_real_sqlite(gateways: dict[str, Gateway]) -> None:
    path = Path(gateways["EU"].config.store_path)
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"ub2_sent", "ub2_received", "ub2_control_results", "ub2_refusals"} <= tables
