"""The UB1 tables on a real SQLite file and a real PostgreSQL database: records round-trip,
deltas all or nothing, full lists replaced atomically with removal markers, the identifier index,
and a restart keeps it all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from store_engines import ENGINES, fresh_database, fresh_database_url

from gateway.errors import (
    AEO_OUT_OF_ORDER,
    AEO_UNKNOWN_AUTHORISATION,
    AeoError,
    GatewayError,
)
from gateway.model.aeo import AeoStatus
from gateway.model.aeo_list import AeoChange, summarise
from gateway.model.codes import Administration
from gateway.store.aeo_store import AeoStore, record_from_json, record_to_json
from gateway.store.database import open_database
from gateway.translate.sample_aeo import generate_records

EU = Administration.EU
RECORDS = list(generate_records(30, 4))


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AeoStore]:
    with fresh_database(request.param, tmp_path) as database:
        yield AeoStore(database, EU)


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database_url(request.param, tmp_path) as url:
        yield url


def test_records_round_trip_through_their_stored_form() -> None:
    for record in RECORDS:
        assert record_from_json(record_to_json(record)) == record


def test_deltas_apply_all_or_nothing(store: AeoStore) -> None:
    db = store.database
    db.write(lambda c: store.apply_changes(c, EU, [AeoChange.added(r) for r in RECORDS[:3]], "t"))
    before = store.summary(EU)
    a = next(r for r in RECORDS[:3] if r.status is AeoStatus.GRANTED)
    suspended = replace(a, status=AeoStatus.SUSPENDED, version=a.version + 1)
    unknown = replace(RECORDS[5], status=AeoStatus.SUSPENDED, version=RECORDS[5].version + 1)
    batch = [
        AeoChange.changed(AeoStatus.GRANTED, suspended),
        AeoChange.changed(AeoStatus.GRANTED, unknown),
    ]
    with pytest.raises(GatewayError) as caught:
        db.write(lambda c: store.apply_changes(c, EU, batch, "t"))
    assert caught.value.code == AEO_UNKNOWN_AUTHORISATION
    assert store.summary(EU) == before  # the good change of the batch was not kept either
    db.write(lambda c: store.apply_changes(c, EU, batch[:1], "t"))
    (held,) = store.find(EU, a.authorisation_number)
    assert held.status is AeoStatus.SUSPENDED
    assert [h.kind for h in store.history(EU, a.authorisation_number)] == ["ADDED", "CHANGED"]


def test_replace_is_exact_and_remembers_removals(store: AeoStore) -> None:
    db = store.database
    db.write(lambda c: store.replace(c, EU, RECORDS[:10], "full 1"))
    assert store.summary(EU) == summarise(RECORDS[:10])
    db.write(lambda c: store.replace(c, EU, RECORDS[5:15], "full 2"))
    assert store.summary(EU) == summarise(RECORDS[5:15])
    gone = RECORDS[0]
    assert store.find(EU, gone.holder_id) == ()
    # a stale grant of a removed authorisation (same version) is out of order, not a revival
    with pytest.raises(AeoError) as caught:
        db.write(lambda c: store.apply_changes(c, EU, [AeoChange.added(gone)], "late"))
    assert caught.value.code == AEO_OUT_OF_ORDER
    later = replace(gone, version=gone.version + 1, status_effective=date(2026, 2, 1))
    db.write(lambda c: store.apply_changes(c, EU, [AeoChange.added(later)], "regrant"))
    assert store.find(EU, gone.authorisation_number) == (later,)


def test_identifiers_find_records_and_a_restart_keeps_everything(database_url: str) -> None:
    database = open_database(database_url)
    store = AeoStore(database, EU)
    database.write(lambda c: store.replace(c, EU, RECORDS, "full"))
    with_mid = next(r for r in RECORDS if r.references("US-MID"))
    summary = store.summary(EU)
    database.close()

    reopened = open_database(database_url)
    again = AeoStore(reopened, EU)
    try:
        assert again.summary(EU) == summary and again.count(EU) == len(RECORDS)
        mid = with_mid.references("US-MID")[0]
        assert with_mid in again.find(EU, mid)
        assert again.find(EU, with_mid.holder_id) == (with_mid,)
        assert again.owners() == [EU]
    finally:
        reopened.close()
