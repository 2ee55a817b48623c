"""UB1 end to end on loopback: an EU gateway imports an EOS export, notifies and fully syncs a
US gateway over real gRPC (and XML) with mutual TLS through the outbox and delivery worker;
both sides' reconciliation summaries agree. Bad input is refused with its code and leaves
nothing partial on either side."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aeo_gateways import EU, US, Gateway, eu_and_us, mapping_spec, running_eu_and_us

from gateway import testpki
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    AEO_DATE_IN_FUTURE,
    AEO_FULL_LIST_SEQUENCE,
    AEO_IMPORT_REJECTED,
    AEO_NO_AGREEMENT,
    AEO_OUT_OF_ORDER,
    AEO_PAYLOAD_MALFORMED,
    AEO_SUMMARY_MISMATCH,
    AEO_UNKNOWN_AUTHORISATION,
    AeoError,
)
from gateway.model.aeo import AeoRecord, AeoRejected, AeoStatus, AeoType
from gateway.model.aeo_list import AeoChange, summarise
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import open_receipt, seal_envelope
from gateway.partners.profile import eligible_for
from gateway.translate import aeo_exchange
from gateway.translate.aeo_exchange import (
    CONTENT_TYPES,
    FullList,
    FullListEnd,
    FullListPart,
    Payload,
    PayloadForm,
    StatusChanges,
)
from gateway.translate.eos_aeo import ExportKind, write_eos_xml
from gateway.translate.sample_aeo import generate_eos_export, generate_records

N = 200


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("aeo-pki"), ("EU", "US", "CN"))


@pytest.fixture
def pair(module_pki: testpki.TestPki, tmp_path: Path) -> Iterator[tuple[Gateway, Gateway]]:
    with running_eu_and_us(tmp_path, module_pki, part_size=40) as pair:
        yield pair


def _us_view(eu: Gateway, record: AeoRecord) -> bool:
    return bool(eligible_for(eu.service.partner(US).profile, record))


def _import_and_sync(eu: Gateway, us: Gateway) -> None:
    data = generate_eos_export(N, 7, "xml", spec=mapping_spec())
    result = eu.service.import_export(data, source="eos-full.xml")
    assert result.records == N and result.applied == N
    visible = [r for r in eu.store.records(EU) if _us_view(eu, r)]
    (us_changes,) = result.partners
    assert us_changes.changes == len(visible) > 0
    report = eu.deliver(US)
    assert not report.dead and len(report.delivered) == us_changes.envelopes


def _summaries_agree(eu: Gateway, us: Gateway) -> None:
    ours = eu.service.own_view_summary(US)
    theirs = us.store.summary(EU)
    assert ours == theirs, ours.differences(theirs)


def test_eu_to_us_import_full_sync_suspension_and_withdrawal(
    pair: tuple[Gateway, Gateway],
) -> None:
    eu, us = pair
    _import_and_sync(eu, us)
    _summaries_agree(eu, us)

    # Full sync in parts: the US list is replaced by exactly the EU view of it.
    sync = eu.service.full_sync(US)
    assert sync.parts == math.ceil(sync.records / 40) and sync.records == us.store.count(EU)
    report = eu.deliver(US)
    assert len(report.delivered) == sync.parts + 1 and not report.dead
    _summaries_agree(eu, us)
    assert us.store.staged() == []
    assert sync.summary == us.store.summary(EU)

    # A suspension and a consent withdrawal of records the US sees.
    visible = [r for r in eu.store.records(EU) if _us_view(eu, r) and r.is_aeo]
    suspended, withdrawn = visible[0], visible[1]
    feed = [
        replace(suspended, status=AeoStatus.SUSPENDED, status_effective=date(2026, 2, 1),
                status_reason="Suspended pending re-assessment", version=suspended.version + 1),
        replace(withdrawn, status=AeoStatus.CONSENT_WITHDRAWN, consent=False,
                consent_date=date(2026, 2, 2), status_effective=date(2026, 2, 2),
                status_reason="Operator withdrew consent", version=withdrawn.version + 1),
    ]  # fmt: skip
    changes = write_eos_xml(feed, ExportKind.CHANGES, mapping_spec())
    result = eu.service.import_export(changes, source="eos-changes.xml")
    assert result.applied == 2 and result.partners[0].changes == 2
    assert result.partners[0].envelopes == 1
    assert eu.deliver(US).delivered
    (held,) = us.store.find(EU, suspended.authorisation_number)
    assert held.status is AeoStatus.SUSPENDED and held.version == suspended.version + 1
    # withdrawal of consent is a removal: no operator data stays at the partner
    assert us.store.find(EU, withdrawn.authorisation_number) == ()
    assert us.store.find(EU, withdrawn.holder_id) == ()
    kinds = [h.kind for h in us.store.history(EU, withdrawn.authorisation_number)]
    assert kinds[-1] == "REMOVED"
    _summaries_agree(eu, us)
    assert eu.service.received_summary(EU) == eu.store.summary(EU)  # own list kept whole


def test_records_without_consent_or_of_an_excluded_type_are_never_sent(
    pair: tuple[Gateway, Gateway],
) -> None:
    eu, us = pair
    _import_and_sync(eu, us)
    own = list(eu.store.records(EU))
    no_consent = [r for r in own if not r.consent]
    aeoc = [r for r in own if r.aeo_type is AeoType.AEOC and r.consent]
    assert no_consent and aeoc
    for record in no_consent + aeoc:
        assert us.store.find(EU, record.authorisation_number) == ()
    # and nothing the US holds lacks consent or is of a type the agreement excludes
    held = list(us.store.records(EU))
    assert held and all(r.consent and r.aeo_type in {AeoType.AEOS, AeoType.AEOF} for r in held)
    assert all(r.references("US-MID") for r in held)
    assert all(r.partner_programme == "CTPAT-MRA" for r in held)


def test_a_bad_export_changes_nothing_and_queues_nothing(pair: tuple[Gateway, Gateway]) -> None:
    eu, _ = pair
    data = generate_eos_export(20, 3, "xml", spec=mapping_spec())
    records = list(generate_records(20, 3))
    bad = data.replace(records[5].holder_id.encode(), b"ZZ" + records[5].holder_id[2:].encode())
    with pytest.raises(AeoError) as caught:
        eu.service.import_export(bad, source="bad.xml")
    assert caught.value.code == AEO_IMPORT_REJECTED
    assert eu.store.count(EU) == 0 and eu.outbox.list() == []

    # a change feed naming an authorisation the own list does not hold
    first = records[0]
    feed = write_eos_xml(
        [replace(first, status=AeoStatus.SUSPENDED, version=2)], ExportKind.CHANGES, mapping_spec()
    )
    with pytest.raises(AeoError) as caught:
        eu.service.import_export(feed, source="feed.xml")
    assert caught.value.code == AEO_UNKNOWN_AUTHORISATION
    assert eu.store.count(EU) == 0 and eu.outbox.list() == []


def test_full_sync_needs_an_agreement(pair: tuple[Gateway, Gateway]) -> None:
    eu, _ = pair
    with pytest.raises(AeoError) as caught:
        eu.service.full_sync(Administration.JP)
    assert caught.value.code == AEO_NO_AGREEMENT


# --- the receiving side refuses bad lists, keeping what it holds ----------------------------
def _send(eu: Gateway, us: Gateway, payload: Payload) -> tuple[bool, str]:
    """Seal a payload as EU and hand it to the US node; (accepted, code) of its receipt."""
    data = aeo_exchange.encode(payload, PayloadForm.PROTOBUF)
    header = new_header(
        payload=data,
        utility_block=UtilityBlock.UB1,
        message_type=payload.message_type.value,
        sender=EU,
        receiver=US,
        payload_content_type=CONTENT_TYPES[PayloadForm.PROTOBUF],
    )
    raw = seal_envelope(Binding.PROTOBUF, header, data, eu.config.signing_identity)
    receipt = open_receipt(Binding.PROTOBUF, us.node.receive(raw, Binding.PROTOBUF, EU)).receipt
    return receipt.accepted, receipt.error_code


def _granted_for_us(eu: Gateway, n: int) -> list[AeoRecord]:
    profile = eu.service.partner(US).profile
    from gateway.partners.profile import to_partner

    out = [
        to_partner(profile, r)
        for r in generate_records(60, 11)
        if eligible_for(profile, r) and r.is_aeo
    ]
    assert len(out) >= n
    return out[:n]


def test_status_change_for_unknown_authorisation_or_out_of_order_is_refused(
    pair: tuple[Gateway, Gateway],
) -> None:
    eu, us = pair
    a, b = _granted_for_us(eu, 2)
    assert _send(eu, us, StatusChanges(EU, (AeoChange.added(a),))) == (True, "")
    stored = us.node.inbox.count()
    before = us.store.summary(EU)

    suspended_b = replace(b, status=AeoStatus.SUSPENDED, version=b.version + 1)
    unknown = StatusChanges(EU, (AeoChange.changed(AeoStatus.GRANTED, suspended_b),))
    assert _send(eu, us, unknown) == (False, AEO_UNKNOWN_AUTHORISATION)

    newer = replace(a, status=AeoStatus.SUSPENDED, version=a.version + 2,
                    status_effective=date(2026, 3, 1))  # fmt: skip
    older = replace(a, status=AeoStatus.SUSPENDED, version=a.version + 1,
                    status_effective=date(2026, 2, 1))  # fmt: skip
    assert _send(eu, us, StatusChanges(EU, (AeoChange.changed(AeoStatus.GRANTED, newer),))) == (
        True,
        "",
    )
    after_newer = us.store.summary(EU)
    # an older change after a newer one; and effective dates going backwards
    stale = StatusChanges(EU, (AeoChange.changed(AeoStatus.SUSPENDED, older),))
    assert _send(eu, us, stale) == (False, AEO_OUT_OF_ORDER)
    backwards = replace(newer, version=newer.version + 1, status_effective=date(2026, 1, 20))
    back = StatusChanges(EU, (AeoChange.changed(AeoStatus.SUSPENDED, backwards),))
    assert _send(eu, us, back) == (False, AEO_OUT_OF_ORDER)
    # a batch with one good and one bad change is refused whole
    good = replace(newer, status=AeoStatus.GRANTED, version=newer.version + 1,
                   status_effective=date(2026, 4, 1))  # fmt: skip
    mixed = StatusChanges(
        EU, (AeoChange.changed(AeoStatus.SUSPENDED, good), AeoChange.changed(AeoStatus.GRANTED,
                                                                            suspended_b))
    )  # fmt: skip
    assert _send(eu, us, mixed) == (False, AEO_UNKNOWN_AUTHORISATION)
    assert us.store.summary(EU) == after_newer != before
    assert us.node.inbox.count() == stored + 1  # only the accepted change was stored


def test_a_list_of_another_administration_is_malformed(pair: tuple[Gateway, Gateway]) -> None:
    eu, us = pair
    (a,) = _granted_for_us(eu, 1)
    payload = StatusChanges(Administration.CN, (AeoChange.added(a),))
    assert _send(eu, us, payload) == (False, AEO_PAYLOAD_MALFORMED)
    assert us.store.count(EU) == 0 and us.store.count(Administration.CN) == 0


def test_a_full_list_whose_summary_mismatches_is_refused_and_the_previous_list_kept(
    pair: tuple[Gateway, Gateway],
) -> None:
    eu, us = pair
    records = _granted_for_us(eu, 6)
    first = FullList.build(EU, date(2026, 1, 15), records[:3])
    assert _send(eu, us, first) == (True, "")
    kept = us.store.summary(EU)
    assert kept == first.summary

    # parts of the next list, then an end whose summary is not that of the parts
    sync_id = "0b6c8f2e-6a57-4a43-9d7f-4f1f3a1b2c3d"
    part1 = FullListPart(EU, sync_id, date(2026, 1, 16), 1, tuple(records[:4]))
    part2 = FullListPart(EU, sync_id, date(2026, 1, 16), 2, tuple(records[4:5]))
    assert _send(eu, us, part1) == (True, "")
    assert _send(eu, us, part2) == (True, "")
    wrong = FullListEnd(EU, sync_id, date(2026, 1, 16), 2, summarise(records[:6]))
    assert _send(eu, us, wrong) == (False, AEO_SUMMARY_MISMATCH)
    assert us.store.summary(EU) == kept
    # an end announcing more parts than came
    early = FullListEnd(EU, sync_id, date(2026, 1, 16), 3, summarise(records[:5]))
    assert _send(eu, us, early) == (False, AEO_FULL_LIST_SEQUENCE)
    assert us.store.summary(EU) == kept
    # a part repeated under another message id
    assert _send(eu, us, part2) == (False, AEO_FULL_LIST_SEQUENCE)
    # the right end replaces the list at once
    right = FullListEnd(EU, sync_id, date(2026, 1, 16), 2, summarise(records[:5]))
    assert _send(eu, us, right) == (True, "")
    assert us.store.summary(EU) == summarise(records[:5])
    assert us.store.staged() == []
    # parts after the end are refused
    assert _send(eu, us, part1) == (False, AEO_FULL_LIST_SEQUENCE)


def test_a_full_list_older_than_the_one_held_is_refused_and_rolls_nothing_back(
    pair: tuple[Gateway, Gateway],
) -> None:
    """The list as of 2 February is held; one as of 1 February (in parts, or in one message)
    arriving later would put records back to older versions: refused, the newer list kept."""
    eu, us = pair
    records = _granted_for_us(eu, 6)
    newer = FullList.build(EU, date(2026, 2, 2), records[:5])
    assert _send(eu, us, newer) == (True, "")
    held = us.store.summary(EU)

    older = FullList.build(EU, date(2026, 2, 1), records[:2])
    assert _send(eu, us, older) == (False, AEO_FULL_LIST_SEQUENCE)
    assert us.store.summary(EU) == held

    sync_id = "5f0e1c7a-9d34-4b5e-8a61-0c2f9e7d4b11"
    assert _send(eu, us, FullListPart(EU, sync_id, date(2026, 2, 1), 1, tuple(records[:2])))[0]
    end = FullListEnd(EU, sync_id, date(2026, 2, 1), 1, summarise(records[:2]))
    assert _send(eu, us, end) == (False, AEO_FULL_LIST_SEQUENCE)
    assert us.store.summary(EU) == held

    same_day = FullList.build(EU, date(2026, 2, 2), records[:6])  # a resend of that day: fine
    assert _send(eu, us, same_day) == (True, "")
    assert us.store.summary(EU) == summarise(records[:6])


def test_full_list_over_xml(module_pki: testpki.TestPki, tmp_path: Path) -> None:
    eu, us = eu_and_us(tmp_path, module_pki, binding="xml", part_size=25)
    try:
        data = generate_eos_export(80, 5, "xml", spec=mapping_spec())
        eu.service.import_export(data, source="eos.xml")
        sync = eu.service.full_sync(US)
        report = eu.deliver(US)
        assert not report.dead and len(report.delivered) >= sync.parts + 1
        _summaries_agree(eu, us)
    finally:
        eu.close()
        us.close()


def test_a_change_queued_behind_a_full_list_is_not_overwritten_by_it(
    pair: tuple[Gateway, Gateway],
) -> None:
    """Full lists and changes share one ordering key: the change lands after the snapshot."""
    eu, us = pair
    _import_and_sync(eu, us)
    eu.service.full_sync(US)  # queued, not yet delivered: a snapshot of the current list
    target = next(r for r in eu.store.records(EU) if _us_view(eu, r) and r.is_aeo)
    suspension = replace(
        target,
        status=AeoStatus.SUSPENDED,
        status_effective=date(2026, 3, 1),
        status_reason="Suspended pending re-assessment",
        version=target.version + 1,
    )
    eu.service.import_export(
        write_eos_xml([suspension], ExportKind.CHANGES, mapping_spec()), source="changes.xml"
    )
    report = eu.deliver(US)
    assert not report.dead
    (held,) = us.store.find(EU, target.authorisation_number)
    assert held.status is AeoStatus.SUSPENDED and held.version == target.version + 1
    _summaries_agree(eu, us)


# --- pipelined full sync: parts queued unit by unit while delivery runs --------------------------
ABANDONED = "5f0c2a8e-1d3b-4c7a-9e2f-6b8d4a1c3e5f"
OVERTAKEN = "7a1e3c5b-2f4d-4e6a-8b0c-9d2f4a6c8e1b"


def _suspend(eu: Gateway) -> AeoRecord:
    """Import a suspension of one record the US sees; the record as suspended."""
    target = next(r for r in eu.store.records(EU) if _us_view(eu, r) and r.is_aeo)
    suspension = replace(
        target,
        status=AeoStatus.SUSPENDED,
        status_effective=date(2026, 3, 1),
        status_reason="Suspended pending re-assessment",
        version=target.version + 1,
    )
    eu.service.import_export(
        write_eos_xml([suspension], ExportKind.CHANGES, mapping_spec()), source="changes.xml"
    )
    return suspension


def _seal_hook(
    monkeypatch: pytest.MonkeyPatch, after: int, action: Callable[[], None]
) -> list[int]:
    """Run ``action`` once, just before the ``after + 1``-th seal (with one part per unit,
    ``after`` parts are then sealed and queued); the seal count."""
    import gateway.services.aeo as aeo_service

    real = aeo_service._seal
    calls = [0]

    def seal(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == after + 1:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(aeo_service, "_seal", seal)
    return calls


def _queued(eu: Gateway, message_type: str) -> int:
    return sum(1 for item in eu.outbox.list(partner=US) if item.message_type == message_type)


def test_parts_are_delivered_while_later_ones_are_queued(
    pair: tuple[Gateway, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One unit per part: the worker (another thread, as in `gncgw serve`) delivers the first
    parts before the end exists; the receiver stages them and swaps its list at the end."""
    eu, us = pair
    _import_and_sync(eu, us)
    eu.service.part_size, eu.service.parts_per_unit = 10, 1
    staged_midway: list[int] = []

    def deliver_now() -> None:
        worker = threading.Thread(target=eu.deliver, args=(US,))
        worker.start()
        worker.join()
        staged_midway.extend(s.parts for s in us.store.staged())

    _seal_hook(monkeypatch, 3, deliver_now)
    sync = eu.service.full_sync(US)
    assert sync.parts > 3
    assert staged_midway == [3]  # parts 1-3 delivered and staged; part 4 not yet sealed
    report = eu.deliver(US)
    assert not report.dead and len(report.delivered) == sync.parts + 1 - 3
    assert us.store.staged() == [] and us.store.summary(EU) == sync.summary
    _summaries_agree(eu, us)


def test_an_abandoned_full_sync_keeps_the_previous_list_until_a_later_one_completes(
    pair: tuple[Gateway, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender failing (or crashing) mid-way leaves parts queued without an end: the receiver
    stages them and keeps its list; the next full sync completes and clears that staging."""
    eu, us = pair
    _import_and_sync(eu, us)
    eu.service.part_size, eu.service.parts_per_unit = 10, 1
    before = us.store.summary(EU)

    def crash() -> None:
        raise OSError("the sender died")

    _seal_hook(monkeypatch, 3, crash)
    with pytest.raises(OSError):
        eu.service.full_sync(US, sync_id=ABANDONED)
    assert _queued(eu, "AeoFullListPart") == 3 and _queued(eu, "AeoFullListEnd") == 0
    assert not eu.deliver(US).dead
    (staged,) = us.store.staged()
    assert (staged.sync_id, staged.parts, staged.records) == (ABANDONED, 3, 30)
    assert us.store.summary(EU) == before  # the previous list is kept
    monkeypatch.undo()

    suspended = _suspend(eu)  # the own list moves on meanwhile
    sync = eu.service.full_sync(US)
    report = eu.deliver(US)
    assert not report.dead and len(report.delivered) == sync.parts + 1 + 1  # + the change
    assert us.store.staged() == []
    assert us.store.count(EU) == sync.records and us.store.summary(EU) == sync.summary
    (held,) = us.store.find(EU, suspended.authorisation_number)
    assert held.status is AeoStatus.SUSPENDED
    _summaries_agree(eu, us)


def test_an_import_committed_during_a_pipelined_sync_is_not_overwritten_by_it(
    pair: tuple[Gateway, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts are one read snapshot; a delta queued between two of its units would reach
    the partner before the end and be overwritten by the older snapshot, so the sync is
    abandoned and queued again in one unit: the partner gets the change, then a list with it."""
    eu, us = pair
    _import_and_sync(eu, us)
    eu.service.part_size, eu.service.parts_per_unit = 10, 1
    suspended: list[AeoRecord] = []
    _seal_hook(monkeypatch, 1, lambda: suspended.append(_suspend(eu)))
    sync = eu.service.full_sync(US, sync_id=OVERTAKEN)
    assert sync.sync_id != OVERTAKEN  # queued again under a new sync id
    types = [item.message_type for item in eu.outbox.list(partner=US) if item.state == "pending"]
    assert types[:2] == ["AeoFullListPart", "AeoStatusChanges"]  # the abandoned part 1, delta
    assert types[2:] == ["AeoFullListPart"] * sync.parts + ["AeoFullListEnd"]
    report = eu.deliver(US)
    assert not report.dead
    assert us.store.staged() == []
    assert us.store.count(EU) == sync.records and us.store.summary(EU) == sync.summary
    (held,) = us.store.find(EU, suspended[0].authorisation_number)
    assert held.status is AeoStatus.SUSPENDED and held.version == suspended[0].version
    _summaries_agree(eu, us)


def test_an_export_dated_after_today_is_refused_whole_naming_each_record(
    pair: tuple[Gateway, Gateway],
) -> None:
    """A year typo (2099) would otherwise make the trader an AEO 'since 2099' at once, and
    lock every later change of that authorisation behind the wrong date."""
    eu, _ = pair
    records = list(generate_records(5, 7))
    typo = replace(records[1], authorised_since=date(2099, 6, 1), status_effective=date(2099, 6, 1))
    later = replace(records[3], status_effective=date(2099, 1, 1))
    data = write_eos_xml(
        [records[0], typo, records[2], later, records[4]], ExportKind.FULL, mapping_spec()
    )
    before = eu.store.count(EU)
    with pytest.raises(AeoRejected) as caught:
        eu.service.import_export(data, source="eos.xml")
    assert caught.value.code == AEO_IMPORT_REJECTED
    assert [(p.field, p.code) for p in caught.value.problems] == [
        ("authorised_since", AEO_DATE_IN_FUTURE),
        ("status_effective", AEO_DATE_IN_FUTURE),
        ("status_effective", AEO_DATE_IN_FUTURE),
    ]
    assert "2099-06-01 is after today" in caught.value.problems[0].message
    assert eu.store.count(EU) == before  # nothing of the file was taken
