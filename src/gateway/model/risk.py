"""UB3 canonical records: risk information, feedback, IPR detentions and detention statistics.

Pure values (no I/O): each constructor checks its fields and raises a RiskError with a stable
code and the field's location, so an invalid record can never be built, sent or stored. Where
the WCO Data Model has an element the field names its WCO ID in a comment (and in
translate/schemas/ub3-risk.xsd).

Code lists: the EU common risk areas (``RiskArea``, with the family each sub-area belongs to, so
a partner cleared for ``FINANCIAL`` is cleared for ``FINANCIAL_UNDERVALUATION``), UN/ECE
Recommendation 19 transport modes, ISO 3166-1 countries, HS commodity codes and
ISO 6346 container numbers with their check digit (the rules live in model/codelists.py, shared
with UB2; here they raise RiskError with the RISK_* codes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from gateway.errors import (
    RISK_COMMODITY_CODE_INVALID,
    RISK_CONTAINER_ID_INVALID,
    RISK_COUNTRY_INVALID,
    RISK_TRANSPORT_MODE_INVALID,
    RISK_UNKNOWN_AREA,
    RISK_VALIDITY_EXPIRED,
    RiskError,
)
from gateway.model import codelists
from gateway.model.codelists import container_check_digit
from gateway.model.codes import Administration, HandlingLabel

__all__ = [
    "DetentionProcedure",
    "Feedback",
    "FeedbackOutcome",
    "GoodsItem",
    "Indicators",
    "IprDetention",
    "IprStatistics",
    "Operator",
    "OperatorRole",
    "RecommendedAction",
    "RightCategory",
    "RiskArea",
    "RiskInformation",
    "RiskKind",
    "StatisticsLine",
    "TransportMode",
    "UB3Record",
    "check_commodity_code",
    "check_container_id",
    "check_country",
    "container_check_digit",
    "parse_area",
]


class RiskArea(StrEnum):
    """The EU common risk areas (and the sub-areas partners are cleared for separately)."""

    SECURITY_SAFETY = "SECURITY_SAFETY"
    AVIATION_SECURITY = "AVIATION_SECURITY"
    FINANCIAL = "FINANCIAL"
    FINANCIAL_UNDERVALUATION = "FINANCIAL_UNDERVALUATION"
    FINANCIAL_ORIGIN = "FINANCIAL_ORIGIN"
    IPR = "IPR"
    PRODUCT_SAFETY = "PRODUCT_SAFETY"
    HEALTH = "HEALTH"
    HEALTH_ANIMAL = "HEALTH_ANIMAL"
    HEALTH_PLANT = "HEALTH_PLANT"
    HEALTH_FOOD = "HEALTH_FOOD"
    ENVIRONMENT = "ENVIRONMENT"
    ENVIRONMENT_WASTE = "ENVIRONMENT_WASTE"
    ENVIRONMENT_WILDLIFE = "ENVIRONMENT_WILDLIFE"
    DRUGS = "DRUGS"
    DRUG_PRECURSORS = "DRUG_PRECURSORS"
    FIREARMS_EXPLOSIVES = "FIREARMS_EXPLOSIVES"
    NON_PROLIFERATION_DUAL_USE = "NON_PROLIFERATION_DUAL_USE"
    CULTURAL_GOODS = "CULTURAL_GOODS"
    CASH = "CASH"

    @property
    def family(self) -> RiskArea:
        """The common risk area this (sub-)area belongs to: clearance for it covers the family."""
        return _FAMILY.get(self, self)


_FAMILY = {
    RiskArea.FINANCIAL_UNDERVALUATION: RiskArea.FINANCIAL,
    RiskArea.FINANCIAL_ORIGIN: RiskArea.FINANCIAL,
    RiskArea.HEALTH_ANIMAL: RiskArea.HEALTH,
    RiskArea.HEALTH_PLANT: RiskArea.HEALTH,
    RiskArea.HEALTH_FOOD: RiskArea.HEALTH,
    RiskArea.ENVIRONMENT_WASTE: RiskArea.ENVIRONMENT,
    RiskArea.ENVIRONMENT_WILDLIFE: RiskArea.ENVIRONMENT,
    RiskArea.DRUG_PRECURSORS: RiskArea.DRUGS,
}


def parse_area(value: str, location: str = "area") -> RiskArea:
    try:
        return RiskArea(value)
    except ValueError:
        raise RiskError(
            f"{value!r} is not a UB3 risk area ({', '.join(RiskArea)})",
            code=RISK_UNKNOWN_AREA,
            location=location,
        ) from None


class RiskKind(StrEnum):
    """The UB3 messages (also the envelope header's message_type)."""

    RISK_INFORMATION = "RiskInformation"
    FEEDBACK = "RiskFeedback"
    IPR_DETENTION = "IprDetention"
    IPR_STATISTICS = "IprDetentionStatistics"


class TransportMode(StrEnum):
    """UN/ECE Recommendation 19 mode of transport codes (WCO ID T005 border transport mode)."""

    NOT_SPECIFIED = "0"
    MARITIME = "1"
    RAIL = "2"
    ROAD = "3"
    AIR = "4"
    MAIL = "5"
    MULTIMODAL = "6"
    FIXED_INSTALLATION = "7"
    INLAND_WATER = "8"
    NOT_APPLICABLE = "9"


class RecommendedAction(StrEnum):
    PHYSICAL_CONTROL = "PHYSICAL_CONTROL"
    DOCUMENTARY_CHECK = "DOCUMENTARY_CHECK"
    NON_INTRUSIVE_INSPECTION = "NON_INTRUSIVE_INSPECTION"
    SAMPLING = "SAMPLING"
    PRE_ARRIVAL_ANALYSIS = "PRE_ARRIVAL_ANALYSIS"
    INFORMATION_ONLY = "INFORMATION_ONLY"


class OperatorRole(StrEnum):
    EXPORTER = "EXPORTER"  # WCO R031 (name) / R032 (id)
    IMPORTER = "IMPORTER"  # R039 / R040
    CONSIGNOR = "CONSIGNOR"  # R021
    CONSIGNEE = "CONSIGNEE"  # R014
    CARRIER = "CARRIER"  # R012
    DECLARANT = "DECLARANT"  # R030
    OTHER = "OTHER"


class FeedbackOutcome(StrEnum):
    NO_FINDINGS = "NO_FINDINGS"
    HIT = "HIT"
    SEIZURE = "SEIZURE"
    NOT_CONTROLLED = "NOT_CONTROLLED"


class RightCategory(StrEnum):
    """Category of the intellectual property right the right holder holds (EU Reg. 608/2013)."""

    TRADEMARK = "TRADEMARK"
    DESIGN = "DESIGN"
    COPYRIGHT = "COPYRIGHT"
    PATENT = "PATENT"
    GEOGRAPHICAL_INDICATION = "GEOGRAPHICAL_INDICATION"
    PLANT_VARIETY = "PLANT_VARIETY"
    SEMICONDUCTOR_TOPOGRAPHY = "SEMICONDUCTOR_TOPOGRAPHY"
    UTILITY_MODEL = "UTILITY_MODEL"
    TRADE_NAME = "TRADE_NAME"


class DetentionProcedure(StrEnum):
    DETENTION = "DETENTION"
    SEIZURE = "SEIZURE"
    DESTRUCTION = "DESTRUCTION"
    RELEASE = "RELEASE"


# --- field checks -------------------------------------------------------------------------------
_REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,34}")
_IDENTIFIER = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,34}")
_UNIT = re.compile(r"[A-Z0-9]{2,3}")


def _fail(message: str, location: str, code: str | None = None) -> RiskError:
    return RiskError(message, code=code, location=location)


def _text(value: str, location: str, max_len: int, *, required: bool, multiline: bool) -> None:
    if not isinstance(value, str):
        raise _fail(f"must be text, not {type(value).__name__}", location)
    if required and not value.strip():
        raise _fail("must not be empty", location)
    if len(value) > max_len:
        raise _fail(f"is {len(value)} characters, at most {max_len}", location)
    if value != value.strip():
        raise _fail("has leading or trailing white space", location)
    allowed = "\n" if multiline else ""
    if any(not ch.isprintable() and ch not in allowed for ch in value):
        raise _fail("holds control characters", location)


def _reference(value: str, location: str) -> None:
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        raise _fail(
            f"{value!r} is not a reference (1 to 35 of A-Z 0-9 / _ . -, starting with a letter "
            "or digit)",
            location,
        )


def _enum(value: object, kind: type[StrEnum], location: str, code: str | None = None) -> None:
    if not isinstance(value, kind):
        raise _fail(f"{value!r} is not a {kind.__name__}", location, code)


def _count(value: int, location: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**32 - 1:
        raise _fail(f"{value!r} is not a count 0..4294967295", location)


def check_commodity_code(value: str, location: str = "commodity_code") -> str:
    """An HS commodity code of 6 (HS), 8 (CN) or 10 (TARIC) digits, chapter 01-97 (not 77)."""
    return codelists.check_commodity_code(
        value, location, lengths=(6, 8, 10), error=RiskError, code=RISK_COMMODITY_CODE_INVALID
    )


def check_country(value: str, location: str = "country") -> str:
    """An ISO 3166-1 alpha-2 country code (upper case)."""
    return codelists.check_country(
        value, location, customs_codes=False, error=RiskError, code=RISK_COUNTRY_INVALID
    )


def check_container_id(value: str, location: str = "container_id") -> str:
    """An ISO 6346 container number: 3-letter owner, category, 6 digits, check digit."""
    return codelists.check_container_number(
        value, location, exact=True, error=RiskError, code=RISK_CONTAINER_ID_INVALID
    )


def _unique(items: Iterable[object], location: str) -> None:
    seen: set[object] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise _fail(f"{item!r} is listed twice", f"{location}[{index}]")
        seen.add(item)


# --- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operator:
    """An economic operator named as an indicator; a natural person's name and id are personal
    data (handling rules may forbid or remove them)."""

    role: OperatorRole
    identifier: str = ""  # EORI or another trader identification number
    name: str = ""
    country: str = ""  # ISO 3166-1 alpha-2, "" when unknown
    natural_person: bool = False

    def __post_init__(self) -> None:
        _enum(self.role, OperatorRole, "role")
        if self.identifier and not _IDENTIFIER.fullmatch(self.identifier):
            raise _fail(f"{self.identifier!r} is not an operator identifier", "identifier")
        _text(self.name, "name", 140, required=False, multiline=False)
        if not self.identifier and not self.name:
            raise _fail("an operator needs an identifier or a name", "identifier")
        if self.country:
            check_country(self.country, "country")
        if not isinstance(self.natural_person, bool):
            raise _fail("must be true or false", "natural_person")


def _nested(location: str, items: Iterable[object], check: type) -> None:
    for index, item in enumerate(items):
        if not isinstance(item, check):
            raise _fail(f"is not a {check.__name__}", f"{location}[{index}]")


def _operators(operators: tuple[Operator, ...], location: str) -> None:
    _nested(location, operators, Operator)


@dataclass(frozen=True)
class Indicators:
    """What to look for: goods, countries and routes, modes, operators, containers."""

    commodity_codes: tuple[str, ...] = ()  # WCO 145 (HS) / 146 (CN, TARIC)
    countries: tuple[str, ...] = ()  # countries of interest (origin, dispatch, destination)
    routes: tuple[tuple[str, ...], ...] = ()  # itineraries, countries in order (WCO 064)
    transport_modes: tuple[TransportMode, ...] = ()  # T005
    operators: tuple[Operator, ...] = ()
    container_ids: tuple[str, ...] = ()  # 159

    def __post_init__(self) -> None:
        for index, code in enumerate(self.commodity_codes):
            check_commodity_code(code, f"indicators.commodity_codes[{index}]")
        _unique(self.commodity_codes, "indicators.commodity_codes")
        for index, country in enumerate(self.countries):
            check_country(country, f"indicators.countries[{index}]")
        _unique(self.countries, "indicators.countries")
        for index, route in enumerate(self.routes):
            _route(route, f"indicators.routes[{index}]", minimum=2)
        for index, mode in enumerate(self.transport_modes):
            _enum(
                mode, TransportMode, f"indicators.transport_modes[{index}]",
                RISK_TRANSPORT_MODE_INVALID,
            )  # fmt: skip
        _unique(self.transport_modes, "indicators.transport_modes")
        _operators(self.operators, "indicators.operators")
        for index, container in enumerate(self.container_ids):
            check_container_id(container, f"indicators.container_ids[{index}]")
        _unique(self.container_ids, "indicators.container_ids")

    @property
    def empty(self) -> bool:
        return not (
            self.commodity_codes or self.countries or self.routes or self.transport_modes
            or self.operators or self.container_ids
        )  # fmt: skip


def _route(route: tuple[str, ...], location: str, *, minimum: int) -> None:
    if not isinstance(route, tuple) or not minimum <= len(route) <= 16:
        raise _fail(
            f"a route is {minimum} to 16 countries in order", location, RISK_COUNTRY_INVALID
        )
    for index, country in enumerate(route):
        check_country(country, f"{location}[{index}]")
    for index in range(1, len(route)):
        if route[index] == route[index - 1]:
            raise _fail(
                f"{route[index]} follows itself in the route", f"{location}[{index}]",
                RISK_COUNTRY_INVALID,
            )  # fmt: skip


def _common(originator: Administration, reference: str, label: HandlingLabel) -> None:
    if not isinstance(originator, Administration):
        raise _fail(f"{originator!r} is not an administration", "originator")
    _reference(reference, "reference")
    if not isinstance(label, HandlingLabel):
        raise _fail(f"{label!r} is not a handling label", "label")


@dataclass(frozen=True)
class RiskInformation:
    """A risk information record, as its originating administration issued it."""

    originator: Administration  # administration that issued it
    reference: str  # the originator's reference (unique per originator)
    area: RiskArea
    indicators: Indicators
    description: str
    valid_from: date
    valid_until: date
    recommended_action: RecommendedAction
    label: HandlingLabel
    issued_on: date

    kind = RiskKind.RISK_INFORMATION

    def __post_init__(self) -> None:
        _common(self.originator, self.reference, self.label)
        _enum(self.area, RiskArea, "area", RISK_UNKNOWN_AREA)
        if not isinstance(self.indicators, Indicators):
            raise _fail("must be Indicators", "indicators")
        if self.indicators.empty:
            raise _fail("a risk information record needs at least one indicator", "indicators")
        _text(self.description, "description", 4000, required=True, multiline=True)
        _enum(self.recommended_action, RecommendedAction, "recommended_action")
        if self.valid_until < self.valid_from:
            raise _fail(
                f"valid_until {self.valid_until} is before valid_from {self.valid_from}",
                "valid_until",
            )
        if self.issued_on > self.valid_until:
            raise _fail("issued after its validity ended", "issued_on")

    def check_valid_on(self, today: date) -> None:
        """Refuse a record whose validity has ended (RISK_VALIDITY_EXPIRED)."""
        if self.valid_until < today:
            raise RiskError(
                f"risk information {self.originator.value}/{self.reference} was valid until "
                f"{self.valid_until}; today is {today}",
                code=RISK_VALIDITY_EXPIRED,
                location="valid_until",
            )

    @property
    def areas(self) -> tuple[RiskArea, ...]:
        return (self.area,)

    @property
    def operators(self) -> tuple[Operator, ...]:
        return self.indicators.operators


@dataclass(frozen=True)
class Feedback:
    """What the receiving administration did with a risk information record and what it found."""

    originator: Administration  # who issued the risk information answered
    reference: str  # its reference
    reporter: Administration  # who reports
    reported_on: date
    outcome: FeedbackOutcome
    controls: int = 0  # controls made on the strength of the record
    hits: int = 0  # controls that found something
    seizures: int = 0
    remarks: str = ""
    label: HandlingLabel = HandlingLabel.LIMITED

    kind = RiskKind.FEEDBACK

    def __post_init__(self) -> None:
        _common(self.originator, self.reference, self.label)
        if not isinstance(self.reporter, Administration):
            raise _fail(f"{self.reporter!r} is not an administration", "reporter")
        if self.reporter is self.originator:
            raise _fail("an administration does not report feedback to itself", "reporter")
        _enum(self.outcome, FeedbackOutcome, "outcome")
        for name in ("controls", "hits", "seizures"):
            _count(getattr(self, name), name)
        _text(self.remarks, "remarks", 2000, required=False, multiline=True)
        if self.hits > self.controls:
            raise _fail(f"{self.hits} hits from {self.controls} controls", "hits")
        if self.seizures > self.hits:
            raise _fail(f"{self.seizures} seizures from {self.hits} hits", "seizures")
        rule = {
            FeedbackOutcome.NO_FINDINGS: (self.controls > 0 and self.hits == 0,
                                          "no findings means controls made and no hits"),
            FeedbackOutcome.HIT: (self.hits > 0 and self.seizures == 0,
                                  "a hit means hits and no seizure"),
            FeedbackOutcome.SEIZURE: (self.seizures > 0, "a seizure outcome needs seizures"),
            FeedbackOutcome.NOT_CONTROLLED: (self.controls == 0,
                                             "not controlled means no controls"),
        }[self.outcome]  # fmt: skip
        if not rule[0]:
            raise _fail(rule[1], "outcome")

    @property
    def areas(self) -> tuple[RiskArea, ...]:
        return ()

    @property
    def operators(self) -> tuple[Operator, ...]:
        return ()


@dataclass(frozen=True)
class GoodsItem:
    description: str  # WCO 137
    quantity: int  # number of units (WCO 131 for articles)
    unit: str = "PCE"  # UN/ECE Rec 20 unit code
    commodity_code: str = ""  # 145/146

    def __post_init__(self) -> None:
        _text(self.description, "description", 512, required=True, multiline=False)
        _count(self.quantity, "quantity")
        if self.quantity == 0:
            raise _fail("quantity must be at least 1", "quantity")
        if not isinstance(self.unit, str) or not _UNIT.fullmatch(self.unit):
            raise _fail(f"{self.unit!r} is not a UN/ECE Rec 20 unit code", "unit")
        if self.commodity_code:
            check_commodity_code(self.commodity_code)


@dataclass(frozen=True)
class IprDetention:
    """One detention or seizure of goods suspected of infringing an intellectual property right."""

    originator: Administration
    reference: str  # the detaining administration's case reference
    detained_on: date
    procedure: DetentionProcedure
    right_category: RightCategory
    goods: tuple[GoodsItem, ...]
    route: tuple[str, ...] = ()  # origin ... destination, ISO 3166-1
    transport_mode: TransportMode | None = None
    operators: tuple[Operator, ...] = ()
    label: HandlingLabel = HandlingLabel.RESTRICTED

    kind = RiskKind.IPR_DETENTION

    def __post_init__(self) -> None:
        _common(self.originator, self.reference, self.label)
        _enum(self.procedure, DetentionProcedure, "procedure")
        _enum(self.right_category, RightCategory, "right_category")
        if not self.goods:
            raise _fail("a detention names at least one goods item", "goods")
        _nested("goods", self.goods, GoodsItem)
        if self.route:
            _route(self.route, "route", minimum=1)
        if self.transport_mode is not None:
            _enum(self.transport_mode, TransportMode, "transport_mode", RISK_TRANSPORT_MODE_INVALID)
        _operators(self.operators, "operators")

    @property
    def areas(self) -> tuple[RiskArea, ...]:
        return (RiskArea.IPR,)


@dataclass(frozen=True)
class StatisticsLine:
    right_category: RightCategory
    product: str  # HS chapter (2 digits), heading (4) or subheading (6)
    origin: str  # ISO 3166-1 alpha-2
    cases: int
    articles: int

    def __post_init__(self) -> None:
        _enum(self.right_category, RightCategory, "right_category")
        if not isinstance(self.product, str) or not re.fullmatch(
            r"[0-9]{2}|[0-9]{4}|[0-9]{6}", self.product
        ):
            raise _fail(
                f"{self.product!r} is not an HS chapter, heading or subheading", "product",
                RISK_COMMODITY_CODE_INVALID,
            )  # fmt: skip
        check_country(self.origin, "origin")
        _count(self.cases, "cases")
        _count(self.articles, "articles")
        if self.cases == 0:
            raise _fail("a statistics line counts at least one case", "cases")


@dataclass(frozen=True)
class IprStatistics:
    """Detention statistics of one period (no operators, no personal data)."""

    originator: Administration
    reference: str
    period_start: date
    period_end: date
    lines: tuple[StatisticsLine, ...] = field(default=())
    label: HandlingLabel = HandlingLabel.LIMITED

    kind = RiskKind.IPR_STATISTICS

    def __post_init__(self) -> None:
        _common(self.originator, self.reference, self.label)
        if self.period_end < self.period_start:
            raise _fail("the period ends before it starts", "period_end")
        _nested("lines", self.lines, StatisticsLine)
        _unique(((line.right_category, line.product, line.origin) for line in self.lines), "lines")

    @property
    def areas(self) -> tuple[RiskArea, ...]:
        return (RiskArea.IPR,)

    @property
    def operators(self) -> tuple[Operator, ...]:
        return ()


UB3Record = RiskInformation | Feedback | IprDetention | IprStatistics
