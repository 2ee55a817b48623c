"""The daily full list: queued when none was sent yet, then again once the profile's interval
has passed, and delivered so the partner's summary matches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aeo_gateways import EU, US, Gateway, mapping_spec, running_eu_and_us

from gateway import testpki
from gateway.model.header import utc_now
from gateway.services.schedule import FullListSchedule
from gateway.translate.sample_aeo import generate_eos_export


@pytest.fixture
def pair(tmp_path: Path, pki: testpki.TestPki) -> Iterator[tuple[Gateway, Gateway]]:
    with running_eu_and_us(tmp_path, pki, part_size=25) as pair:
        yield pair


def test_full_list_is_queued_daily_and_reconciles(pair: tuple[Gateway, Gateway]) -> None:
    eu, us = pair
    eu.service.import_export(generate_eos_export(120, 3, "xml", spec=mapping_spec()))
    now = [utc_now()]
    schedule = FullListSchedule(eu.service, eu.outbox, clock=lambda: now[0])
    interval = eu.service.partner(US).profile.ub1.full_list_interval
    assert interval == timedelta(hours=24)

    first = schedule.run_once()
    assert [r.partner for r in first] == [US]
    assert schedule.run_once() == []  # not due again yet
    report = eu.deliver(US)
    assert not report.dead
    assert us.store.summary(EU) == eu.service.own_view_summary(US) == first[0].summary

    now[0] = datetime.fromisoformat(eu.outbox.last_enqueued(US, "AeoFullListEnd").isoformat())
    now[0] += interval - timedelta(seconds=1)
    assert schedule.due(now[0]) == []
    now[0] += timedelta(seconds=2)
    assert schedule.due(now[0]) == [US]
    assert len(schedule.run_once()) == 1


def test_periodic_runs_at_once_keeps_going_after_a_refusal_and_stops() -> None:
    import threading

    from gateway.errors import GatewayError
    from gateway.services.schedule import Periodic

    calls: list[int] = []
    twice = threading.Event()

    def action() -> None:
        calls.append(1)
        if len(calls) >= 2:
            twice.set()
        raise GatewayError("store busy", code="DLV_STORE_UNAVAILABLE")

    periodic = Periodic("test", action, 0.01)
    periodic.start()
    assert twice.wait(5), "the action ran at most once"
    periodic.stop()
    settled = len(calls)
    twice.clear()
    assert not twice.wait(0.05) and len(calls) == settled
