"""Named input generators: the UB1 and UB3 messages a case sends, built as the EU side builds them.

Pure code: records come from translate.sample_aeo (seeded) and go through the partner profile
exactly as the gateway's own UB1 service sends them (partners.profile: eligibility, programme,
the partner's cross references only), so a passing case shows both that the target answers
correctly and what the EU side puts on the wire. Authorisation numbers carry a per-run nonce,
so cases never collide with each other or with an earlier run against the same target.

UB3 records are built for the partner's handling rules (the suite's ``handling``) and pass
``partners.handling.prepare_outbound`` exactly as services.risk sends them: a record the rules
refuse is withheld with the rule's code. Target-side negatives (an expired record, feedback on
a reference never sent) deliberately skip only the check they test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from gateway.errors import CNF_SUITE_INVALID, AeoError, ConformanceError, RiskError
from gateway.model.aeo import AeoRecord, AeoStatus, AeoType, CrossReference
from gateway.model.aeo_list import AeoChange, summarise
from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import (
    Feedback,
    FeedbackOutcome,
    Indicators,
    Operator,
    OperatorRole,
    RecommendedAction,
    RiskArea,
    RiskInformation,
    TransportMode,
    UB3Record,
)
from gateway.partners.handling import HandlingRules, prepare_outbound
from gateway.partners.profile import PartnerProfile, partner_delta, to_partner
from gateway.translate.aeo_exchange import (
    FullListEnd,
    FullListPart,
    Payload,
    Query,
    StatusChanges,
)
from gateway.translate.sample_aeo import generate_records

__all__ = ["GeneratorInput", "Message", "Plan", "generate"]

EU = Administration.EU
_LETTER = {AeoType.AEOC: "C", AeoType.AEOS: "S", AeoType.AEOF: "F"}


@dataclass(frozen=True)
class GeneratorInput:
    profile: PartnerProfile
    nonce: str  # digits unique to this run and case (at most 15)
    today: date
    params: Mapping[str, Any]
    rules: HandlingRules | None = None  # the partner's UB3 handling rules (UB3 generators)


Message = Payload | UB3Record  # a UB1 payload or a UB3 record


@dataclass(frozen=True)
class Plan:
    """What a case sends: messages in order (the last is judged), or what the EU side withheld."""

    messages: tuple[Message, ...] = ()
    withheld_code: str = ""  # the refusal code when the EU side refuses to send
    withheld_reason: str = ""
    note: str = ""


def _records(inp: GeneratorInput, count: int, aeo_type: AeoType | None = None) -> list[AeoRecord]:
    """``count`` granted, consenting EU records of eligible (or the given) type, unique per run."""
    profile = inp.profile
    types = sorted(profile.ub1_rules().eligible_types)
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


# --- UB3 ---------------------------------------------------------------------------------------
def _rules(inp: GeneratorInput) -> HandlingRules:
    if inp.rules is None:
        raise ConformanceError(
            "a UB3 case needs the partner's handling rules (handling = ... in [suite])",
            code=CNF_SUITE_INVALID,
        )
    return inp.rules


def _cleared_area(rules: HandlingRules) -> RiskArea:
    """The first risk area (code-list order) the partner is cleared for."""
    return next(area for area in RiskArea if rules.cleared_for(area))


def _risk_record(
    inp: GeneratorInput,
    *,
    area: RiskArea | None = None,
    label: HandlingLabel | None = None,
    operators: tuple[Operator, ...] = (),
    valid: tuple[int, int] = (-1, 30),  # validity in days from today
) -> RiskInformation:
    """EU risk information in a cleared area at the partner's highest label, unique per run."""
    rules = _rules(inp)
    today = inp.today
    start, end = (today + timedelta(days=d) for d in valid)
    legal = Operator(OperatorRole.CONSIGNEE, f"DE{inp.nonce}", "Conformance Trading GmbH", "DE")
    return RiskInformation(
        originator=EU,
        reference=f"EU-CNF-{inp.nonce}",
        area=area or _cleared_area(rules),
        indicators=Indicators(
            commodity_codes=("640399",),
            countries=("VN",),
            transport_modes=(TransportMode.MARITIME,),
            operators=operators or (legal,),
        ),
        description="Conformance test record: consignments of footwear declared below value.",
        valid_from=start,
        valid_until=end,
        recommended_action=RecommendedAction.DOCUMENTARY_CHECK,
        label=label or rules.max_label,
        issued_on=start,
    )


def _gated(inp: GeneratorInput, record: UB3Record, on: date | None = None) -> Plan:
    """The record as services.risk sends it (rules checked, removals applied), or withheld."""
    try:
        outbound = prepare_outbound(_rules(inp), record, on or inp.today)
    except RiskError as error:
        return Plan(withheld_code=error.code, withheld_reason=error.message)
    note = f"removed by the rules: {', '.join(outbound.removed)}" if outbound.removed else ""
    return Plan((outbound.record,), note=note or "the EU side did not withhold this record")


def risk_information(inp: GeneratorInput) -> Plan:
    """Risk information in an area and at a label the partner is cleared for."""
    return _gated(inp, _risk_record(inp))


def risk_validity_expired(inp: GeneratorInput) -> Plan:
    """Risk information whose validity ended ten days ago: every rule but expiry applied (the
    EU side never sends it; the case checks that the target refuses it)."""
    record = _risk_record(inp, valid=(-40, -10))
    return _gated(inp, record, on=record.valid_until)


def risk_area_not_cleared(inp: GeneratorInput) -> Plan:
    """Risk information in the first area the partner is not cleared for: withheld."""
    rules = _rules(inp)
    area = next((a for a in RiskArea if not rules.cleared_for(a)), None)
    if area is None:
        return Plan(note=f"{rules.source}: the partner is cleared for every risk area")
    return _gated(inp, _risk_record(inp, area=area))


def risk_label_above_clearance(inp: GeneratorInput) -> Plan:
    """Risk information one label above the partner's clearance: withheld."""
    rules = _rules(inp)
    above = sorted((lb for lb in HandlingLabel if lb.rank > rules.max_label.rank), key=_rank)
    if not above:
        return Plan(note=f"{rules.source}: the partner is cleared for every label")
    return _gated(inp, _risk_record(inp, label=above[0]))


def _rank(label: HandlingLabel) -> int:
    return label.rank


def risk_personal_data(inp: GeneratorInput) -> Plan:
    """Risk information naming a natural person: withheld where personal data is refused."""
    person = Operator(OperatorRole.DECLARANT, "", "Conformance Test Person", "DE", True)
    return _gated(inp, _risk_record(inp, operators=(person,)))


def risk_feedback_unknown_reference(inp: GeneratorInput) -> Plan:
    """EU feedback on a record of the partner's it never sent the EU (checked by the target)."""
    rules = _rules(inp)
    label = min(HandlingLabel.LIMITED, rules.max_label, key=_rank)
    feedback = Feedback(
        originator=rules.administration,
        reference=f"{rules.administration.value}-CNF-{inp.nonce}",
        reporter=EU,
        reported_on=inp.today,
        outcome=FeedbackOutcome.NO_FINDINGS,
        controls=1,
        label=label,
    )
    return _gated(inp, feedback)


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
    "risk_information": risk_information,
    "risk_validity_expired": risk_validity_expired,
    "risk_area_not_cleared": risk_area_not_cleared,
    "risk_label_above_clearance": risk_label_above_clearance,
    "risk_personal_data": risk_personal_data,
    "risk_feedback_unknown_reference": risk_feedback_unknown_reference,
}


def generate(name: str, inp: GeneratorInput) -> Plan:
    """Run the named generator (names are checked when the suite is loaded)."""
    return _GENERATORS[name](inp)
