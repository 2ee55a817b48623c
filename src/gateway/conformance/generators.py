"""Named input generators: the UB1 messages a case sends, built as the EU side builds them.

Pure code: records come from translate.sample_aeo (seeded) and go through the partner profile
exactly as the gateway's own UB1 service sends them (partners.profile: eligibility, programme,
the partner's cross references only), so a passing case shows both that the target answers
correctly and what the EU side puts on the wire. Authorisation numbers carry a per-run nonce,
so cases never collide with each other or with an earlier run against the same target.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from gateway.errors import AeoError
from gateway.model.aeo import AeoRecord, AeoStatus, AeoType, CrossReference
from gateway.model.aeo_list import AeoChange, summarise
from gateway.model.codes import Administration
from gateway.partners.profile import PartnerProfile, partner_delta, to_partner
from gateway.translate.aeo_exchange import (
    FullListEnd,
    FullListPart,
    Payload,
    Query,
    StatusChanges,
)
from gateway.translate.sample_aeo import generate_records

__all__ = ["GeneratorInput", "Plan", "generate"]

EU = Administration.EU
_LETTER = {AeoType.AEOC: "C", AeoType.AEOS: "S", AeoType.AEOF: "F"}


@dataclass(frozen=True)
class GeneratorInput:
    profile: PartnerProfile
    nonce: str  # digits unique to this run and case (at most 15)
    today: date
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    """What a case sends: messages in order (the last is judged), or what the EU side withheld."""

    messages: tuple[Payload, ...] = ()
    withheld_code: str = ""  # the refusal code when the EU side refuses to send
    withheld_reason: str = ""
    note: str = ""


def _records(inp: GeneratorInput, count: int, aeo_type: AeoType | None = None) -> list[AeoRecord]:
    """``count`` granted, consenting EU records of eligible (or the given) type, unique per run."""
    profile = inp.profile
    types = sorted(profile.ub1.eligible_types)
    out: list[AeoRecord] = []
    seed = int(inp.nonce[-9:] or "0")
    for index, record in enumerate(generate_records(count, seed, today=inp.today)):
        chosen = aeo_type or AeoType(types[index % len(types)])
        cc = record.issuing_country
        serial = f"{inp.nonce}{index:04d}"
        other = "CN" if profile.administration is Administration.JP else "JP"
        refs = {  # the partner's own references, and others it must never be sent
            CrossReference("US-MID", f"MID{cc}{serial}"),
            CrossReference(f"{profile.administration.value}-AEO", f"{cc}{serial}"),
            CrossReference(f"{other}-AEO", f"{cc}{serial}"),
        }
        since = min(record.authorised_since, inp.today - timedelta(days=60))
        out.append(
            replace(
                record,
                holder_id=f"{cc}{serial}"[:17],
                authorisation_number=f"{cc}AEO{_LETTER[chosen]}{serial}",
                aeo_type=chosen,
                status=AeoStatus.GRANTED,
                status_effective=since,
                authorised_since=since,
                status_reason="",
                consent=True,
                consent_date=since,
                version=1,
                cross_references=tuple(refs),
            )
        )
    return out


def _added(profile: PartnerProfile, records: list[AeoRecord]) -> StatusChanges:
    return StatusChanges(EU, tuple(AeoChange.added(to_partner(profile, r)) for r in records))


def _suspended(record: AeoRecord, version: int, days: int) -> AeoRecord:
    return replace(
        record,
        status=AeoStatus.SUSPENDED,
        status_effective=record.status_effective + timedelta(days=days),
        status_reason="Suspended pending re-assessment (conformance)",
        version=version,
    )


def _count(inp: GeneratorInput, default: int = 3) -> int:
    return int(inp.params.get("count", default))


def status_changes(inp: GeneratorInput) -> Plan:
    return Plan((_added(inp.profile, _records(inp, _count(inp))),))


def status_change_sequence(inp: GeneratorInput) -> Plan:
    """ADDED, then the suspension of the same AEO as the EU side computes it (CHANGED)."""
    record = _records(inp, 1)[0]
    later = _suspended(record, 2, 10)
    change = partner_delta(inp.profile, record, later)
    assert change is not None
    return Plan((_added(inp.profile, [record]), StatusChanges(EU, (change,))))


def consent_withdrawn(inp: GeneratorInput) -> Plan:
    """ADDED, then a withdrawal of consent: sent at once as a REMOVED change without data."""
    record = _records(inp, 1)[0]
    withdrawn = replace(
        record,
        consent=False,
        status=AeoStatus.CONSENT_WITHDRAWN,
        status_effective=record.status_effective + timedelta(days=5),
        status_reason="Operator withdrew consent",
        version=2,
    )
    change = partner_delta(inp.profile, record, withdrawn)
    assert change is not None
    return Plan((_added(inp.profile, [record]), StatusChanges(EU, (change,))))


def out_of_order(inp: GeneratorInput) -> Plan:
    """ADDED v1, CHANGED v3, then a stale CHANGED v2: the receiver must refuse the last."""
    record = _records(inp, 1)[0]
    newer = to_partner(inp.profile, _suspended(record, 3, 20))
    stale = to_partner(inp.profile, replace(record, version=2))  # reinstated, older version
    return Plan(
        (
            _added(inp.profile, [record]),
            StatusChanges(EU, (AeoChange.changed(AeoStatus.GRANTED, newer),)),
            StatusChanges(EU, (AeoChange.changed(AeoStatus.SUSPENDED, stale),)),
        )
    )


def unknown_authorisation(inp: GeneratorInput) -> Plan:
    """A CHANGED for an authorisation the target was never sent."""
    record = to_partner(inp.profile, _suspended(_records(inp, 1)[0], 2, 10))
    return Plan((StatusChanges(EU, (AeoChange.changed(AeoStatus.GRANTED, record),)),))


def _parts(inp: GeneratorInput, records: list[AeoRecord], sync_id: str) -> list[Payload]:
    size = int(inp.params.get("part_size", 2))
    translated = sorted(
        (to_partner(inp.profile, r) for r in records), key=lambda r: r.authorisation_number
    )
    return [
        FullListPart(EU, sync_id, inp.today, number, tuple(translated[start : start + size]))
        for number, start in enumerate(range(0, len(translated), size), start=1)
    ]


def _sync_id(inp: GeneratorInput) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gnc-conformance:{inp.nonce}"))


def full_list_in_parts(inp: GeneratorInput) -> Plan:
    records = _records(inp, _count(inp, 5))
    sync_id = _sync_id(inp)
    parts = _parts(inp, records, sync_id)
    summary = summarise(to_partner(inp.profile, r) for r in records)
    return Plan((*parts, FullListEnd(EU, sync_id, inp.today, len(parts), summary)))


def full_list_summary_mismatch(inp: GeneratorInput) -> Plan:
    """Parts, then an end whose summary leaves one record out: the target must keep its list."""
    records = _records(inp, _count(inp, 4))
    sync_id = _sync_id(inp)
    parts = _parts(inp, records, sync_id)
    summary = summarise(to_partner(inp.profile, r) for r in records[1:])
    return Plan((*parts, FullListEnd(EU, sync_id, inp.today, len(parts), summary)))


def _withheld(inp: GeneratorInput, record: AeoRecord) -> Plan:
    try:
        payload = _added(inp.profile, [record])
    except AeoError as error:
        return Plan(withheld_code=error.code, withheld_reason=error.message)
    return Plan((payload,), note="the EU side did not withhold this record")


def not_eligible_type(inp: GeneratorInput) -> Plan:
    """A record of a type the agreement does not recognise (parameter ``type``, default AEOC)."""
    aeo_type = AeoType(str(inp.params.get("type", "AEOC")))
    return _withheld(inp, _records(inp, 1, aeo_type)[0])


def missing_identifier(inp: GeneratorInput) -> Plan:
    """A record without the cross references the agreement requires (the US: a MID)."""
    record = _records(inp, 1)[0]
    return _withheld(inp, replace(record, cross_references=()))


def no_consent(inp: GeneratorInput) -> Plan:
    record = _records(inp, 1)[0]
    return _withheld(inp, replace(record, consent=False, consent_date=None))


def query(inp: GeneratorInput) -> Plan:
    """An online query about an identifier (an EORI-shaped one of this run)."""
    return Plan((Query(str(uuid.uuid4()), f"DE{inp.nonce}"),))


_GENERATORS: Mapping[str, Callable[[GeneratorInput], Plan]] = {
    "status_changes": status_changes,
    "status_change_sequence": status_change_sequence,
    "consent_withdrawn": consent_withdrawn,
    "out_of_order": out_of_order,
    "unknown_authorisation": unknown_authorisation,
    "full_list_in_parts": full_list_in_parts,
    "full_list_summary_mismatch": full_list_summary_mismatch,
    "not_eligible_type": not_eligible_type,
    "missing_identifier": missing_identifier,
    "no_consent": no_consent,
    "query": query,
}


def generate(name: str, inp: GeneratorInput) -> Plan:
    """Run the named generator (names are checked when the suite is loaded)."""
    return _GENERATORS[name](inp)
