"""UB2 lanes: which consignments a partner may be sent. Pure values and one check, no I/O.

A UB2 agreement does not open the whole trade to the partner: only consignments on an agreed
*lane* are sent. A lane is a pair of places and the economic operators taking part in it:

* SSTL (EU-China Smart and Secure Trade Lanes, maritime first): a pair of ports (UN/LOCODEs),
  place of loading -> place of unloading, and the participating operators (EORI numbers, CN
  operator ids). Two roles count, each on its own side: the *shipper* side (consignor,
  exporter) and the *receiving* side (consignee, importer).
* TIR (Moldova, Ukraine: TIR carnet pre-arrival data): a pair of border crossing points as
  customs office reference numbers, the EU office of exit -> the partner's office of first entry,
  and the participating TIR carnet holders (role: carrier).

A consignment is on a lane only if every place it declares matches the pair (header and goods
items: a consignment loaded in two ports is on no single lane) and, for each side, at least one
party is named in the side's roles and EVERY party named in them (header or goods item) is a
participating operator. Strict on purpose: one non-participating consignee means the
consignment is not an SSTL consignment, and its data stays home.

``lane_for`` returns the lane or raises TransactionError(UB2_NO_LANE) whose message lists each
criterion that failed and whose location names the record fields, in source terms
(``Consignment.source_path``), so the operator sees which element of the EU message kept it off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.errors import UB2_NO_LANE, TransactionError
from gateway.model.consignment import (
    Consignment,
    CustomsOffice,
    OfficeRole,
    Party,
    PartyRole,
)

__all__ = [
    "UB2_MESSAGES",
    "Lane",
    "LanePattern",
    "Side",
    "Ub2Rules",
    "lane_for",
]

# The UB2 message types a profile may agree (the envelope header's message_type; these are the
# values of translate.ub2_exchange.Ub2Kind, kept here so the profile stays free of bindings).
UB2_MESSAGES = ("TransactionData", "ControlResult")


class LanePattern(StrEnum):
    SSTL = "sstl"  # port pair (UN/LOCODE) + participating operators (shipper and receiver)
    TIR = "tir"  # border crossing pair (customs office reference numbers) + TIR holders


@dataclass(frozen=True)
class Side:
    """Roles of which at least one party must be named, and every named one participate."""

    name: str
    roles: tuple[PartyRole, ...]


SIDES: dict[LanePattern, tuple[Side, ...]] = {
    LanePattern.SSTL: (
        Side("shipper", (PartyRole.CONSIGNOR, PartyRole.EXPORTER)),
        Side("receiver", (PartyRole.CONSIGNEE, PartyRole.IMPORTER)),
    ),
    LanePattern.TIR: (Side("TIR holder", (PartyRole.CARRIER,)),),
}


_PLACE_LABELS = {
    LanePattern.SSTL: ("place of loading", "place of unloading"),
    LanePattern.TIR: ("office of exit", "office of first entry"),
}


@dataclass(frozen=True)
class Lane:
    """One agreed lane. ``origin``/``destination``: ports (SSTL) or offices (TIR)."""

    name: str
    origin: str
    destination: str
    operators: frozenset[str]

    @property
    def pair(self) -> str:
        return f"{self.origin} -> {self.destination}"


@dataclass(frozen=True)
class Ub2Rules:
    """A partner profile's ``[ub2]`` table: the messages agreed and the lanes."""

    messages: frozenset[str]
    pattern: LanePattern
    lanes: tuple[Lane, ...]
    source: str = ""  # the profile file, for error locations (``cn.toml:ub2.messages``)

    def agrees(self, message_type: str) -> bool:
        return message_type in self.messages

    @property
    def sides(self) -> tuple[Side, ...]:
        return SIDES[self.pattern]


@dataclass(frozen=True)
class _Failure:
    reason: str
    fields: tuple[str, ...]  # record field paths


def _places(c: Consignment, pattern: LanePattern) -> tuple[list[tuple[str, str]], ...]:
    """(field path, value) of every declared origin and destination of the record."""
    if pattern is LanePattern.TIR:
        return _offices(c.offices, OfficeRole.EXIT), _offices(c.offices, OfficeRole.FIRST_ENTRY)
    origins: list[tuple[str, str]] = []
    destinations: list[tuple[str, str]] = []
    if c.place_of_loading is not None:
        origins.append(("place_of_loading", c.place_of_loading))
    if c.place_of_unloading is not None:
        destinations.append(("place_of_unloading", c.place_of_unloading))
    for index, item in enumerate(c.goods_items):
        if item.place_of_loading is not None:
            origins.append((f"goods_items[{index}].place_of_loading", item.place_of_loading))
        if item.place_of_unloading is not None:
            destinations.append(
                (f"goods_items[{index}].place_of_unloading", item.place_of_unloading)
            )
    return origins, destinations


def _offices(offices: Iterable[CustomsOffice], role: OfficeRole) -> list[tuple[str, str]]:
    return [(f"offices[{i}]", o.identifier) for i, o in enumerate(offices) if o.role is role]


def _parties(c: Consignment) -> list[tuple[str, Party]]:
    found = [(f"parties[{i}]", p) for i, p in enumerate(c.parties)]
    for index, item in enumerate(c.goods_items):
        found.extend((f"goods_items[{index}].parties[{i}]", p) for i, p in enumerate(item.parties))
    return found


def _norm(value: str) -> str:
    return value.replace(" ", "").upper()


def _place_failures(c: Consignment, rules: Ub2Rules, lane: Lane) -> list[_Failure]:
    origins, destinations = _places(c, rules.pattern)
    what = _PLACE_LABELS[rules.pattern]
    out = []
    for label, declared, wanted in (
        (what[0], origins, lane.origin),
        (what[1], destinations, lane.destination),
    ):
        if not declared:
            path = "offices" if rules.pattern is LanePattern.TIR else label.replace(" ", "_")
            out.append(_Failure(f"no {label} declared", (path,)))
            continue
        wrong = [(path, value) for path, value in declared if _norm(value) != wanted]
        if wrong:
            values = ", ".join(sorted({v for _, v in wrong}))
            out.append(_Failure(f"{label} {values} is not {wanted}", tuple(p for p, _ in wrong)))
    return out


def _operator_failures(c: Consignment, rules: Ub2Rules, lane: Lane) -> list[_Failure]:
    parties = _parties(c)
    out = []
    for side in rules.sides:
        named = [(path, p) for path, p in parties if p.role in side.roles]
        roles = "/".join(r.value.lower() for r in side.roles)
        if not named:
            out.append(_Failure(f"no {side.name} ({roles}) named", ("parties",)))
            continue
        for path, party in named:
            if party.identifier is None or not party.identifier.strip():
                out.append(
                    _Failure(
                        f"{party.role.value.lower()} {party.name or ''} has no identifier".replace(
                            "  ", " "
                        ),
                        (f"{path}.identifier",),
                    )
                )
            elif _norm(party.identifier) not in lane.operators:
                out.append(
                    _Failure(
                        f"{party.role.value.lower()} {party.identifier} is not a participating "
                        f"operator of lane {lane.name}",
                        (f"{path}.identifier",),
                    )
                )
    return out


def _pair_failure(c: Consignment, rules: Ub2Rules) -> _Failure:
    """No lane's pair matches: what the record declares, and the pairs agreed."""
    origins, destinations = _places(c, rules.pattern)
    word = "port" if rules.pattern is LanePattern.SSTL else "border crossing"

    def shown(declared: list[tuple[str, str]]) -> str:
        return "/".join(sorted({_norm(v) for _, v in declared})) or "(none)"

    agreed = ", ".join(lane.pair for lane in rules.lanes)
    labels = _PLACE_LABELS[rules.pattern]
    declared = (origins, destinations)
    missing = [label for label, places in zip(labels, declared, strict=True) if not places]
    if missing:
        fields = (
            ("offices",)
            if rules.pattern is LanePattern.TIR
            else tuple(label.replace(" ", "_") for label in missing)
        )
        return _Failure(f"no {' and no '.join(missing)} declared (agreed: {agreed})", fields)
    return _Failure(
        f"{word} pair {shown(origins)} -> {shown(destinations)} is not agreed (agreed: {agreed})",
        tuple(p for p, _ in origins + destinations),
    )


def lane_for(consignment: Consignment, rules: Ub2Rules) -> Lane:
    """The agreed lane ``consignment`` is on, or TransactionError(UB2_NO_LANE) saying why not.

    The lanes whose place pair matches are tried first (the operators are then what failed);
    when no pair matches, the message says so and lists the agreed pairs.
    """
    if not rules.lanes:
        raise TransactionError(
            f"{consignment.reference}: the profile agrees no lane",
            code=UB2_NO_LANE,
            location=f"{rules.source}:ub2.lanes" if rules.source else "ub2.lanes",
        )
    best: tuple[Lane, list[_Failure]] | None = None
    for lane in rules.lanes:
        places = _place_failures(consignment, rules, lane)
        if places:
            continue
        operators = _operator_failures(consignment, rules, lane)
        if not operators:
            return lane
        if best is None or len(operators) < len(best[1]):
            best = (lane, operators)
    if best is not None:
        lane, failures = best
        head = f"{consignment.reference}: on the pair of lane {lane.name} ({lane.pair}), but "
    else:
        failures = [_pair_failure(consignment, rules)]
        head = f"{consignment.reference}: "
    paths: dict[str, None] = {}
    for failure in failures:
        for field_path in failure.fields:
            paths.setdefault(consignment.source_path(field_path), None)
    raise TransactionError(
        head + "; ".join(f.reason for f in failures),
        code=UB2_NO_LANE,
        location=", ".join(paths),
    )
