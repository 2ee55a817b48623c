"""Hypothesis strategies for UB2 records (Consignment, ControlResult), shared by UB2 test modules.

Records are realistic: real countries, ISO 6346 containers with correct check digits, existing
commodity codes, Rec 21 package kinds, Rec 19 modes, decimals with up to 3 places, optional
fields often None. `consignments(findings=True)` also draws doubtful coded values (as an EU
message may declare them), which the bindings must carry unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import TypeVar

import pycountry
from hypothesis import strategies as st

from gateway.model.codelists import TRANSPORT_MODES, container_check_digit, package_kinds
from gateway.model.codes import Administration
from gateway.model.consignment import (
    Address,
    Consignment,
    CustomsOffice,
    Document,
    GoodsItem,
    OfficeRole,
    Package,
    Party,
    PartyRole,
    SourceMessage,
    TransportMeans,
    TransportRole,
)
from gateway.model.control_result import (
    ControlOutcome,
    ControlResult,
    ControlType,
    Discrepancy,
    DiscrepancyKind,
    SealCheck,
)

__all__ = [
    "commodity_codes",
    "consignments",
    "container_numbers",
    "control_results",
    "countries",
    "decimals",
    "texts",
]

_T = TypeVar("_T")
COUNTRIES = sorted(c.alpha_2 for c in pycountry.countries)
PACKAGE_KINDS = sorted(package_kinds())
MODES = sorted(TRANSPORT_MODES)

countries = st.sampled_from(COUNTRIES)


def regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def texts(
    max_size: int = 60, *, min_size: int = 1, multiline: bool = False
) -> st.SearchStrategy[str]:
    """Text an EU message can carry: no control characters (bar LF when multiline)."""
    chars = st.characters(
        blacklist_categories=("Cc", "Cs"),
        blacklist_characters="\ufffe\uffff",
        whitelist_characters="\n" if multiline else "",
    )
    strategy = st.text(chars, min_size=min_size, max_size=max_size)
    return strategy.filter(lambda s: bool(s.strip()) and s == s.strip()) if min_size else strategy


@st.composite
def container_numbers(draw: st.DrawFn) -> str:
    head = draw(regex(r"[A-Z]{3}[UJZ][0-9]{6}"))
    return head + str(container_check_digit(head))


@st.composite
def commodity_codes(draw: st.DrawFn) -> str:
    chapter = draw(st.integers(1, 97).filter(lambda c: c != 77))
    rest = draw(st.sampled_from([2, 4, 6, 8]))
    return f"{chapter:02d}" + draw(regex(f"[0-9]{{{rest}}}"))


# Up to 3 places, trailing zeros kept (1.500 and 1.5 are different texts of equal values).
decimals = st.builds(
    lambda units, places: Decimal(units).scaleb(-places), st.integers(0, 10**10), st.integers(0, 3)
)


locodes = st.builds(lambda c, loc: c + loc, countries, regex(r"[A-Z2-9]{3}"))
offices = st.builds(lambda c, n: c + n, countries, regex(r"[0-9]{6}"))


def _maybe(strategy: st.SearchStrategy[_T]) -> st.SearchStrategy[_T | None]:
    return st.none() | strategy


def _doubtful(
    good: st.SearchStrategy[str], bad: st.SearchStrategy[str], findings: bool
) -> st.SearchStrategy[str]:
    return (good | bad) if findings else good


def _parties(findings: bool) -> st.SearchStrategy[tuple[Party, ...]]:
    country = _doubtful(countries, st.sampled_from(["EN", "XX", "QQ"]), findings)
    address = st.builds(
        Address,
        street=_maybe(texts(70)),
        city=_maybe(texts(35)),
        postcode=_maybe(texts(9, min_size=0)),
        country=_maybe(country),
    )
    party = st.builds(
        Party,
        role=st.sampled_from(PartyRole),
        name=_maybe(texts(70)),
        identifier=_maybe(regex(r"[A-Z]{2}[A-Z0-9]{1,15}")),
        address=_maybe(address),
        category=_maybe(regex(r"[A-Z0-9]{1,4}")),
    )
    return st.lists(party, max_size=3).map(tuple)


def _transports(findings: bool) -> st.SearchStrategy[tuple[TransportMeans, ...]]:
    mode = _doubtful(st.sampled_from(MODES), st.sampled_from(["42", "X"]), findings)
    means = st.builds(
        TransportMeans,
        role=st.sampled_from(TransportRole),
        mode=_maybe(mode),
        identifier=_maybe(texts(35)),
        identification_type=_maybe(regex(r"[0-9]{1,2}")),
        nationality=_maybe(countries),
        conveyance_reference=_maybe(texts(35)),
    )
    return st.lists(means, max_size=2).map(tuple)


@st.composite
def goods_items(draw: st.DrawFn, sequence: int, findings: bool = False) -> GoodsItem:
    container = _doubtful(
        container_numbers(), st.sampled_from(["CSQU3054384", "Container 1"]), findings
    )
    kind = _doubtful(st.sampled_from(PACKAGE_KINDS), st.sampled_from(["A1", "ab"]), findings)
    package = st.builds(
        Package,
        kind=_maybe(kind),
        quantity=_maybe(st.integers(0, 99_999)),
        pieces=_maybe(st.integers(0, 99_999)),
        marks=_maybe(texts(140, multiline=True)),
    )
    document = st.builds(
        Document,
        type_code=_maybe(regex(r"[A-Z0-9]{4}")),
        reference=_maybe(texts(35)),
        category=_maybe(regex(r"[A-Z]")),
        name=_maybe(texts(35)),
    )
    code = _doubtful(commodity_codes(), st.sampled_from(["770000", "12345", "comco"]), findings)
    return GoodsItem(
        sequence=sequence,
        description=draw(_maybe(texts(280, multiline=True))),
        commodity_code=draw(_maybe(code)),
        gross_mass=draw(_maybe(decimals)),
        net_mass=draw(_maybe(decimals)),
        packages=tuple(draw(st.lists(package, max_size=2))),
        containers=tuple(draw(st.lists(container, max_size=2, unique=True))),
        dangerous_goods_code=draw(_maybe(regex(r"[0-9]{4}"))),
        documents=tuple(draw(st.lists(document, max_size=2))),
        parties=draw(_parties(findings)),
        transports=draw(_transports(findings)),
        place_of_loading=draw(_maybe(locodes)),
        place_of_unloading=draw(_maybe(locodes | texts(35) if findings else locodes)),
        origin_country=draw(_maybe(countries)),
        procedure=draw(_maybe(regex(r"[0-9]{4}"))),
        statistical_value=draw(_maybe(decimals)),
        additional_codes=tuple(draw(st.lists(regex(r"[0-9A-Z]{5}"), max_size=2))),
    )


_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)
_declared_times = st.one_of(
    _times,
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31)),  # naive
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2040, 12, 31),
        timezones=st.sampled_from([timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]),
    ),
)


_offices = st.builds(CustomsOffice, st.sampled_from(OfficeRole), offices)


@st.composite
def consignments(draw: st.DrawFn, *, findings: bool = False, max_items: int = 3) -> Consignment:
    """A consignment record; with ``findings`` some coded values break their lists."""
    count = draw(st.integers(0, max_items))
    return Consignment(
        source=draw(st.sampled_from(SourceMessage)),
        reference=draw(regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,21}")),
        mrn=draw(_maybe(regex(r"[0-9]{2}[A-Z]{2}[A-Z0-9]{13}[0-9]"))),
        declaration_type=draw(_maybe(st.sampled_from(["EX", "IM", "CO", "ENS"]))),
        function_code=draw(_maybe(st.sampled_from(["9", "13", "A"]))),
        declared_at=draw(_maybe(_declared_times)),
        specific_circumstance=draw(_maybe(regex(r"[A-Z]"))),
        commercial_reference=draw(_maybe(texts(35))),
        transport_document=draw(_maybe(texts(35))),
        parties=draw(_parties(findings)),
        transports=draw(_transports(findings)),
        offices=tuple(
            draw(
                st.lists(st.builds(CustomsOffice, st.sampled_from(OfficeRole), offices), max_size=2)
            )
        ),
        place_of_loading=draw(_maybe(locodes)),
        place_of_unloading=draw(_maybe(locodes)),
        goods_location=draw(_maybe(texts(35))),
        export_country=draw(_maybe(countries)),
        destination_country=draw(_maybe(countries)),
        routing_countries=tuple(draw(st.lists(countries, max_size=4))),
        seals=tuple(draw(st.lists(regex(r"[A-Z0-9]{4,12}"), max_size=3, unique=True))),
        total_items=draw(_maybe(st.integers(0, 999))),
        total_packages=draw(_maybe(st.integers(0, 99_999))),
        total_gross_mass=draw(_maybe(decimals)),
        invoice_amount=draw(_maybe(decimals)),
        invoice_currency=draw(_maybe(st.sampled_from(["EUR", "CNY", "USD", "MDL"]))),
        goods_items=tuple(draw(goods_items(i + 1, findings)) for i in range(count)),
    )


_seals = st.builds(
    SealCheck,
    seal_id=regex(r"[A-Z0-9][A-Z0-9-]{2,20}"),
    intact=st.booleans(),
    container=_maybe(container_numbers()),
)
_discrepancies = st.builds(
    Discrepancy,
    kind=st.sampled_from(DiscrepancyKind),
    description=texts(200, multiline=True),
    goods_item=_maybe(st.integers(1, 999)),
    declared=_maybe(texts(60)),
    found=_maybe(texts(60)),
)


@st.composite
def control_results(draw: st.DrawFn, *, outcome: ControlOutcome | None = None) -> ControlResult:
    """A coherent control result (the model's rules hold by construction)."""
    outcome = draw(st.sampled_from(ControlOutcome)) if outcome is None else outcome
    types = draw(st.lists(st.sampled_from(ControlType), min_size=1, max_size=4, unique=True))
    seals: list[SealCheck] = []
    discrepancies: list[Discrepancy] = []
    if outcome is not ControlOutcome.NOT_CONTROLLED and ControlType.SEAL_CHECK in types:
        seals = draw(st.lists(_seals, min_size=1, max_size=3, unique_by=lambda s: s.seal_id))
    if outcome is ControlOutcome.SATISFACTORY:
        seals = [SealCheck(s.seal_id, True, s.container) for s in seals]
    elif outcome is ControlOutcome.DISCREPANCIES_FOUND:
        discrepancies = draw(st.lists(_discrepancies, max_size=3))
        if not discrepancies and not any(not s.intact for s in seals):
            discrepancies = [draw(_discrepancies)]
    remarks = draw(_maybe(texts(400, multiline=True)))
    if outcome is ControlOutcome.NOT_CONTROLLED and remarks is None:
        remarks = "goods not presented"
    return ControlResult(
        reference=draw(regex(r"[A-Z0-9][A-Z0-9/_.-]{0,34}")),
        transaction_reference=draw(regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,21}")),
        transaction_message_id=draw(_maybe(st.uuids().map(str))),
        controlling_administration=draw(st.sampled_from(Administration)),
        controlled_at=draw(_times),
        control_types=tuple(types),
        outcome=outcome,
        office=draw(_maybe(offices)),
        seals=tuple(seals),
        discrepancies=tuple(discrepancies),
        remarks=remarks,
    )
