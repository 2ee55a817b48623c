"""EU side of UB3: CRMS-style risk forms in XML (schemas/crms-risk-form.xsd), in and out.

Four forms, one per UB3 message: ``RiskInformationForm``, ``RiskFeedbackForm``,
``IprDetentionForm`` and ``IprStatisticsForm``. ``parse_form`` reads one (hardened parser, XSD
validation, then the model's checks) into its canonical record; ``write_form`` writes a record
back as its form, for EU risk systems (what a partner sent us, read out with ``gncgw risk show
--form``). Pure functions, no I/O.

A feedback form answers a risk information record the reporting side received: the reference
comes from the command (``gncgw risk feedback REF FILE``); a ``RiskReference`` in the form, if
present, must name the same record.

Schema violations are RISK_FORM_INVALID (with the line); a form that is valid XML but breaks a
model rule keeps the model's code (RISK_UNKNOWN_AREA, RISK_CONTAINER_ID_INVALID, ...) with
``source:line`` and the field as location.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import cache
from importlib import resources
from typing import TypeVar

from lxml import etree

from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import RISK_FORM_INVALID, RISK_UNKNOWN_REFERENCE, GatewayError, RiskError
from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import (
    DetentionProcedure,
    Feedback,
    FeedbackOutcome,
    GoodsItem,
    Indicators,
    IprDetention,
    IprStatistics,
    Operator,
    OperatorRole,
    RecommendedAction,
    RightCategory,
    RiskInformation,
    RiskKind,
    StatisticsLine,
    TransportMode,
    UB3Record,
    parse_area,
)

__all__ = ["FORMS", "NAMESPACE", "form_kind", "parse_feedback_form", "parse_form", "write_form"]

NAMESPACE = "urn:gnc-gateway:crms:risk-form:1"
_NS = f"{{{NAMESPACE}}}"
FORMS = {
    "RiskInformationForm": RiskKind.RISK_INFORMATION,
    "RiskFeedbackForm": RiskKind.FEEDBACK,
    "IprDetentionForm": RiskKind.IPR_DETENTION,
    "IprStatisticsForm": RiskKind.IPR_STATISTICS,
}
_T = TypeVar("_T")
MAX_FORM_BYTES = 4 * 1024 * 1024


@cache
def _schema() -> etree.XMLSchema:
    """Our XSD, loaded once from the package."""
    data = (resources.files("gateway.translate") / "schemas" / "crms-risk-form.xsd").read_bytes()
    return etree.XMLSchema(
        etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    )


def _invalid(message: str, location: str) -> RiskError:
    return RiskError(message, code=RISK_FORM_INVALID, location=location)


def _load(data: bytes, source: str) -> etree._Element:
    try:
        root = parse_xml(data, max_bytes=MAX_FORM_BYTES, max_elements=100_000, remove_comments=True)
    except GatewayError as exc:
        raise RiskError(
            f"CRMS form {source} refused: {exc.message}", code=exc.code, location=source
        ) from None
    schema = _schema()
    if not schema.validate(root):
        first = schema.error_log[0] if schema.error_log else None
        line = first.line if first else 1
        raise _invalid(
            f"not valid against crms-risk-form.xsd: {first.message if first else 'invalid'}",
            f"{source}:{line}",
        )
    return root


def form_kind(root_tag: str) -> RiskKind | None:
    return FORMS.get(root_tag.removeprefix(_NS))


def _located(source: str, element: etree._Element, build: Callable[[], _T]) -> _T:
    try:
        return build()
    except RiskError as exc:
        where = f"{source}:{element.sourceline}"
        location = f"{where}:{exc.location}" if exc.location else where
        raise RiskError(exc.message, code=exc.code, location=location) from None


def _text(element: etree._Element, path: str, default: str = "") -> str:
    node = element
    for step in path.split("/"):
        child = node.find(_NS + step)
        if child is None:
            return default
        node = child
    return node.text or ""


def _date(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{value!r} is not a calendar date", where) from None


def _code(kind: type[_T], value: str, where: str) -> _T:
    try:
        return kind(value)  # type: ignore[call-arg]
    except ValueError:
        raise RiskError(f"{value!r} is not a {kind.__name__} code", location=where) from None


def _admin(value: str, where: str) -> Administration:
    try:
        return Administration(value)
    except ValueError:
        raise _invalid(f"{value!r} is not a known administration", where) from None


def _traders(parent: etree._Element) -> tuple[Operator, ...]:
    out = []
    for index, trader in enumerate(parent.iterchildren(_NS + "Trader")):
        where = f"trader[{index}]"
        out.append(
            Operator(
                _code(OperatorRole, trader.get("role", ""), f"{where}.role"),
                _text(trader, "TraderId"),
                _text(trader, "TraderName"),
                _text(trader, "TraderCountry"),
                trader.get("naturalPerson") in ("true", "1"),
            )
        )
    return tuple(out)


def _route(element: etree._Element | None) -> tuple[str, ...]:
    if element is None:
        return ()
    return tuple(leg.get("country", "") for leg in element.iterchildren(_NS + "Leg"))


def _risk_information(root: etree._Element) -> RiskInformation:
    header = root.find(_NS + "Header")
    assert header is not None  # the XSD requires it
    ind = root.find(_NS + "RiskIndicators")
    assert ind is not None
    validity = root.find(_NS + "Validity")
    assert validity is not None
    modes = []
    for index, mode in enumerate(ind.iterchildren(_NS + "TransportMode")):
        code = mode.get("code", "")
        try:
            modes.append(TransportMode(code))
        except ValueError:
            from gateway.errors import RISK_TRANSPORT_MODE_INVALID

            raise RiskError(
                f"{code!r} is not a UN/ECE Rec 19 transport mode (0-9)",
                code=RISK_TRANSPORT_MODE_INVALID,
                location=f"indicators.transport_modes[{index}]",
            ) from None
    indicators = Indicators(
        commodity_codes=tuple(g.get("hsCode", "") for g in ind.iterchildren(_NS + "Goods")),
        countries=tuple(c.get("code", "") for c in ind.iterchildren(_NS + "CountryOfInterest")),
        routes=tuple(_route(r) for r in ind.iterchildren(_NS + "Route")),
        transport_modes=tuple(modes),
        operators=_traders(ind),
        container_ids=tuple(c.get("number", "") for c in ind.iterchildren(_NS + "Container")),
    )
    return RiskInformation(
        originator=_admin(_text(header, "IssuingAdministration"), "originator"),
        reference=_text(header, "FormReference"),
        area=parse_area(_text(root, "RiskArea")),
        indicators=indicators,
        description=_text(root, "RiskDescription"),
        valid_from=_date(validity.get("from", ""), "valid_from"),
        valid_until=_date(validity.get("to", ""), "valid_until"),
        recommended_action=_code(
            RecommendedAction, _text(root, "RecommendedAction"), "recommended_action"
        ),
        label=_code(HandlingLabel, _text(header, "HandlingCode"), "label"),
        issued_on=_date(_text(header, "IssueDate"), "issued_on"),
    )


def _ipr_detention(root: etree._Element) -> IprDetention:
    header = root.find(_NS + "Header")
    assert header is not None
    goods = tuple(
        GoodsItem(
            a.get("description", ""), int(a.get("quantity", "0")), a.get("unit", "PCE"),
            a.get("hsCode", ""),
        )
        for a in root.iterchildren(_NS + "Article")
    )  # fmt: skip
    mode = root.find(_NS + "TransportMode")
    return IprDetention(
        originator=_admin(_text(header, "IssuingAdministration"), "originator"),
        reference=_text(header, "CaseReference"),
        detained_on=_date(_text(header, "DetentionDate"), "detained_on"),
        procedure=_code(DetentionProcedure, _text(root, "Procedure"), "procedure"),
        right_category=_code(RightCategory, _text(root, "RightCategory"), "right_category"),
        goods=goods,
        route=_route(root.find(_NS + "Route")),
        transport_mode=(
            _code(TransportMode, mode.get("code", ""), "transport_mode")
            if mode is not None
            else None
        ),
        operators=_traders(root),
        label=_code(HandlingLabel, _text(header, "HandlingCode"), "label"),
    )


def _ipr_statistics(root: etree._Element) -> IprStatistics:
    header = root.find(_NS + "Header")
    assert header is not None
    lines = tuple(
        StatisticsLine(
            _code(RightCategory, line.get("rightCategory", ""), f"lines[{i}].right_category"),
            line.get("product", ""), line.get("origin", ""), int(line.get("cases", "0")),
            int(line.get("articles", "0")),
        )
        for i, line in enumerate(root.iterchildren(_NS + "Line"))
    )  # fmt: skip
    return IprStatistics(
        originator=_admin(_text(header, "IssuingAdministration"), "originator"),
        reference=_text(header, "StatisticsReference"),
        period_start=_date(_text(header, "PeriodStart"), "period_start"),
        period_end=_date(_text(header, "PeriodEnd"), "period_end"),
        lines=lines,
        label=_code(HandlingLabel, _text(header, "HandlingCode"), "label"),
    )


def parse_form(
    data: bytes, source: str = "<form>"
) -> RiskInformation | IprDetention | IprStatistics:
    """A risk information, IPR detention or IPR statistics form as its canonical record."""
    root = _load(data, source)
    kind = form_kind(str(root.tag))
    if kind is RiskKind.RISK_INFORMATION:
        return _located(source, root, lambda: _risk_information(root))
    if kind is RiskKind.IPR_DETENTION:
        return _located(source, root, lambda: _ipr_detention(root))
    if kind is RiskKind.IPR_STATISTICS:
        return _located(source, root, lambda: _ipr_statistics(root))
    raise _invalid(
        "a RiskFeedbackForm answers a received record: send it with `gncgw risk feedback REF FILE`",
        f"{source}:{root.sourceline}",
    )


def parse_feedback_form(
    data: bytes, originator: Administration, reference: str, source: str = "<form>"
) -> Feedback:
    """A feedback form as the Feedback answering ``originator``'s record ``reference``."""
    root = _load(data, source)
    if form_kind(str(root.tag)) is not RiskKind.FEEDBACK:
        raise _invalid(f"{root.tag!s} is not a RiskFeedbackForm", f"{source}:{root.sourceline}")
    named = root.find(_NS + "RiskReference")
    if named is not None and (
        named.text != reference or named.get("originator") != originator.value
    ):
        raise RiskError(
            f"the form answers {named.get('originator')}/{named.text}, not "
            f"{originator.value}/{reference}",
            code=RISK_UNKNOWN_REFERENCE,
            location=f"{source}:{named.sourceline}",
        )

    def build() -> Feedback:
        header = root.find(_NS + "Header")
        result = root.find(_NS + "Result")
        assert header is not None and result is not None
        return Feedback(
            originator=originator,
            reference=reference,
            reporter=_admin(_text(header, "ReportingAdministration"), "reporter"),
            reported_on=_date(_text(header, "ReportDate"), "reported_on"),
            outcome=_code(FeedbackOutcome, result.get("outcome", ""), "outcome"),
            controls=int(result.get("controls", "0")),
            hits=int(result.get("hits", "0")),
            seizures=int(result.get("seizures", "0")),
            remarks=_text(root, "Remarks"),
            label=_code(HandlingLabel, _text(header, "HandlingCode"), "label"),
        )

    return _located(source, root, build)


# --- out -------------------------------------------------------------------------------------
def _el(parent: etree._Element, name: str, text: str | None = None, **attrs: str) -> etree._Element:
    child = etree.SubElement(parent, _NS + name, {k: v for k, v in attrs.items()})
    if text is not None:
        child.text = text
    return child


def _write_traders(parent: etree._Element, operators: tuple[Operator, ...]) -> None:
    for op in operators:
        trader = _el(
            parent, "Trader", role=op.role.value,
            naturalPerson="true" if op.natural_person else "false",
        )  # fmt: skip
        if op.identifier:
            _el(trader, "TraderId", op.identifier)
        if op.name:
            _el(trader, "TraderName", op.name)
        if op.country:
            _el(trader, "TraderCountry", op.country)


def _write_route(parent: etree._Element, route: tuple[str, ...]) -> None:
    element = _el(parent, "Route")
    for country in route:
        _el(element, "Leg", country=country)


def write_form(record: UB3Record) -> bytes:
    """A record as its CRMS form (what EU risk systems read)."""
    name = {v: k for k, v in FORMS.items()}[record.kind]
    root = etree.Element(_NS + name, nsmap={None: NAMESPACE})
    header = _el(root, "Header")
    if isinstance(record, RiskInformation):
        _el(header, "IssuingAdministration", record.originator.value)
        _el(header, "FormReference", record.reference)
        _el(header, "IssueDate", record.issued_on.isoformat())
        _el(header, "HandlingCode", record.label.value)
        _el(root, "RiskArea", record.area.value)
        _el(root, "RiskDescription", record.description)
        _el(root, "Validity", **{"from": record.valid_from.isoformat(),
                                 "to": record.valid_until.isoformat()})  # fmt: skip
        _el(root, "RecommendedAction", record.recommended_action.value)
        ind = _el(root, "RiskIndicators")
        i = record.indicators
        for code in i.commodity_codes:
            _el(ind, "Goods", hsCode=code)
        for country in i.countries:
            _el(ind, "CountryOfInterest", code=country)
        for route in i.routes:
            _write_route(ind, route)
        for mode in i.transport_modes:
            _el(ind, "TransportMode", code=mode.value)
        _write_traders(ind, i.operators)
        for container in i.container_ids:
            _el(ind, "Container", number=container)
    elif isinstance(record, Feedback):
        _el(header, "ReportingAdministration", record.reporter.value)
        _el(header, "ReportDate", record.reported_on.isoformat())
        _el(header, "HandlingCode", record.label.value)
        _el(root, "RiskReference", record.reference, originator=record.originator.value)
        _el(
            root, "Result", outcome=record.outcome.value, controls=str(record.controls),
            hits=str(record.hits), seizures=str(record.seizures),
        )  # fmt: skip
        if record.remarks:
            _el(root, "Remarks", record.remarks)
    elif isinstance(record, IprDetention):
        _el(header, "IssuingAdministration", record.originator.value)
        _el(header, "CaseReference", record.reference)
        _el(header, "DetentionDate", record.detained_on.isoformat())
        _el(header, "HandlingCode", record.label.value)
        _el(root, "Procedure", record.procedure.value)
        _el(root, "RightCategory", record.right_category.value)
        for item in record.goods:
            attrs = {"description": item.description, "quantity": str(item.quantity),
                     "unit": item.unit}  # fmt: skip
            if item.commodity_code:
                attrs["hsCode"] = item.commodity_code
            _el(root, "Article", **attrs)
        if record.route:
            _write_route(root, record.route)
        if record.transport_mode is not None:
            _el(root, "TransportMode", code=record.transport_mode.value)
        _write_traders(root, record.operators)
    else:
        _el(header, "IssuingAdministration", record.originator.value)
        _el(header, "StatisticsReference", record.reference)
        _el(header, "PeriodStart", record.period_start.isoformat())
        _el(header, "PeriodEnd", record.period_end.isoformat())
        _el(header, "HandlingCode", record.label.value)
        for line in record.lines:
            _el(
                root, "Line", rightCategory=line.right_category.value, product=line.product,
                origin=line.origin, cases=str(line.cases), articles=str(line.articles),
            )  # fmt: skip
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
