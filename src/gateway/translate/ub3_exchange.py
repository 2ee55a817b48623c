"""UB3 exchange payloads as bytes, in both wire forms. Pure functions, no I/O.

Four messages (model.risk): ``RiskInformation``, ``RiskFeedback``, ``IprDetention`` and
``IprDetentionStatistics``. The canonical record is mapped once, to its protobuf message
(proto/gnc/v1/risk.proto); the XML form (schemas/ub3-risk.xsd, elements annotated with WCO IDs)
is that same message tree rendered element by element in field order, each element named as its
field in PascalCase. So the two bindings cannot drift apart: what one carries the other carries.

Decoding is strict: protobuf must parse and hold no unknown fields; XML is parsed by the hardened
parser (envelope.xmlsafe) and validated against the XSD (loaded once) before it is read; then the
model's constructors check every field, refusing with their RISK_* codes and the location.
Both encodings are lossless for every valid record (property-tested).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from lxml import etree

from gateway._proto.gnc.v1 import risk_pb2
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import RISK_PAYLOAD_MALFORMED, GatewayError, RiskError, XmlIntakeError
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
from gateway.translate.protobuf_xml import read_into

__all__ = [
    "CONTENT_TYPES",
    "NAMESPACE",
    "PayloadForm",
    "decode",
    "encode",
    "from_message",
    "to_message",
]

NAMESPACE = "urn:gnc-gateway:ub3:risk:1"
_NS = f"{{{NAMESPACE}}}"
_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")


class PayloadForm(StrEnum):
    PROTOBUF = "protobuf"
    XML = "xml"


CONTENT_TYPES = {
    PayloadForm.PROTOBUF: "application/x-protobuf",
    PayloadForm.XML: "application/xml",
}

_MESSAGES: dict[RiskKind, type[Message]] = {
    RiskKind.RISK_INFORMATION: risk_pb2.RiskInformation,
    RiskKind.FEEDBACK: risk_pb2.RiskFeedback,
    RiskKind.IPR_DETENTION: risk_pb2.IprDetention,
    RiskKind.IPR_STATISTICS: risk_pb2.IprDetentionStatistics,
}


def _malformed(message: str, location: str | None = None) -> RiskError:
    return RiskError(message, code=RISK_PAYLOAD_MALFORMED, location=location)


def _in_context(where: str, build: Callable[[], _T]) -> _T:
    """Run a model constructor, prefixing the location of its error with ``where``."""
    try:
        return build()
    except RiskError as exc:
        location = f"{where}.{exc.location}" if where and exc.location else where or exc.location
        raise RiskError(exc.message, code=exc.code, location=location) from None


def _code(kind: type[_E], value: str, where: str, error_code: str | None = None) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise RiskError(
            f"{value!r} is not a {kind.__name__} code", code=error_code, location=where
        ) from None


def _admin(value: str, where: str) -> Administration:
    try:
        return Administration(value)
    except ValueError:
        raise _malformed(f"{value!r} is not a known administration", where) from None


def _date(value: str, where: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise _malformed(f"{value!r} is not a date YYYY-MM-DD", where) from None


def _label(value: str, where: str = "label") -> HandlingLabel:
    return _code(HandlingLabel, value, where)


# --- canonical -> protobuf ---------------------------------------------------------------------
def _operator_to_pb(operator: Operator, out: Any) -> None:
    out.role = operator.role.value
    out.identifier = operator.identifier
    out.name = operator.name
    out.country = operator.country
    out.natural_person = operator.natural_person


def to_message(record: UB3Record) -> Message:
    """The protobuf message of a canonical UB3 record."""
    if isinstance(record, RiskInformation):
        msg: Any = risk_pb2.RiskInformation(
            originator=record.originator.value,
            reference=record.reference,
            area=record.area.value,
            description=record.description,
            valid_from=record.valid_from.isoformat(),
            valid_until=record.valid_until.isoformat(),
            recommended_action=record.recommended_action.value,
            label=record.label.value,
            issued_on=record.issued_on.isoformat(),
        )
        ind = record.indicators
        out = msg.indicators
        out.SetInParent()
        out.commodity_code.extend(ind.commodity_codes)
        out.country.extend(ind.countries)
        for route in ind.routes:
            out.route.add().country.extend(route)
        out.transport_mode.extend(m.value for m in ind.transport_modes)
        for operator in ind.operators:
            _operator_to_pb(operator, out.operator.add())
        out.container_id.extend(ind.container_ids)
        return msg  # type: ignore[no-any-return]
    if isinstance(record, Feedback):
        return risk_pb2.RiskFeedback(
            originator=record.originator.value,
            reference=record.reference,
            reporter=record.reporter.value,
            reported_on=record.reported_on.isoformat(),
            outcome=record.outcome.value,
            controls=record.controls,
            hits=record.hits,
            seizures=record.seizures,
            remarks=record.remarks,
            label=record.label.value,
        )
    if isinstance(record, IprDetention):
        msg = risk_pb2.IprDetention(
            originator=record.originator.value,
            reference=record.reference,
            detained_on=record.detained_on.isoformat(),
            procedure=record.procedure.value,
            right_category=record.right_category.value,
            transport_mode=record.transport_mode.value if record.transport_mode else "",
            label=record.label.value,
        )
        for item in record.goods:
            msg.goods.add(
                description=item.description, quantity=item.quantity, unit=item.unit,
                commodity_code=item.commodity_code,
            )  # fmt: skip
        msg.route_country.extend(record.route)
        for operator in record.operators:
            _operator_to_pb(operator, msg.operator.add())
        return msg  # type: ignore[no-any-return]
    msg = risk_pb2.IprDetentionStatistics(
        originator=record.originator.value,
        reference=record.reference,
        period_start=record.period_start.isoformat(),
        period_end=record.period_end.isoformat(),
        label=record.label.value,
    )
    for line in record.lines:
        msg.line.add(
            right_category=line.right_category.value, product=line.product, origin=line.origin,
            cases=line.cases, articles=line.articles,
        )  # fmt: skip
    return msg  # type: ignore[no-any-return]


# --- protobuf -> canonical ---------------------------------------------------------------------
def _operator_from_pb(msg: Any, where: str) -> Operator:
    return _in_context(
        where,
        lambda: Operator(
            _code(OperatorRole, msg.role, "role"), msg.identifier, msg.name, msg.country,
            msg.natural_person,
        ),
    )  # fmt: skip


def _transport_mode(value: str, where: str) -> TransportMode:
    from gateway.errors import RISK_TRANSPORT_MODE_INVALID

    return _code(TransportMode, value, where, RISK_TRANSPORT_MODE_INVALID)


def _goods_from_pb(g: Any, where: str) -> GoodsItem:
    return _in_context(
        where, lambda: GoodsItem(g.description, g.quantity, g.unit, g.commodity_code)
    )


def _line_from_pb(line: Any, where: str) -> StatisticsLine:
    return _in_context(where, lambda: StatisticsLine(
        _code(RightCategory, line.right_category, "right_category"), line.product,
        line.origin, line.cases, line.articles,
    ))  # fmt: skip


def from_message(kind: RiskKind, msg: Any) -> UB3Record:
    """The canonical record of a protobuf message; the model refuses what is invalid."""
    if kind is RiskKind.RISK_INFORMATION:
        ind = msg.indicators
        indicators = _in_context("", lambda: Indicators(
            commodity_codes=tuple(ind.commodity_code),
            countries=tuple(ind.country),
            routes=tuple(tuple(r.country) for r in ind.route),
            transport_modes=tuple(
                _transport_mode(m, f"indicators.transport_modes[{i}]")
                for i, m in enumerate(ind.transport_mode)
            ),
            operators=tuple(
                _operator_from_pb(op, f"indicators.operators[{i}]")
                for i, op in enumerate(ind.operator)
            ),
            container_ids=tuple(ind.container_id),
        ))  # fmt: skip
        return _in_context("", lambda: RiskInformation(
            originator=_admin(msg.originator, "originator"),
            reference=msg.reference,
            area=parse_area(msg.area),
            indicators=indicators,
            description=msg.description,
            valid_from=_date(msg.valid_from, "valid_from"),
            valid_until=_date(msg.valid_until, "valid_until"),
            recommended_action=_code(
                RecommendedAction, msg.recommended_action, "recommended_action"
            ),
            label=_label(msg.label),
            issued_on=_date(msg.issued_on, "issued_on"),
        ))  # fmt: skip
    if kind is RiskKind.FEEDBACK:
        return _in_context("", lambda: Feedback(
            originator=_admin(msg.originator, "originator"),
            reference=msg.reference,
            reporter=_admin(msg.reporter, "reporter"),
            reported_on=_date(msg.reported_on, "reported_on"),
            outcome=_code(FeedbackOutcome, msg.outcome, "outcome"),
            controls=msg.controls, hits=msg.hits, seizures=msg.seizures,
            remarks=msg.remarks,
            label=_label(msg.label),
        ))  # fmt: skip
    if kind is RiskKind.IPR_DETENTION:
        goods = tuple(_goods_from_pb(g, f"goods[{i}]") for i, g in enumerate(msg.goods))
        return _in_context("", lambda: IprDetention(
            originator=_admin(msg.originator, "originator"),
            reference=msg.reference,
            detained_on=_date(msg.detained_on, "detained_on"),
            procedure=_code(DetentionProcedure, msg.procedure, "procedure"),
            right_category=_code(RightCategory, msg.right_category, "right_category"),
            goods=goods,
            route=tuple(msg.route_country),
            transport_mode=(
                _transport_mode(msg.transport_mode, "transport_mode")
                if msg.transport_mode else None
            ),
            operators=tuple(
                _operator_from_pb(op, f"operators[{i}]") for i, op in enumerate(msg.operator)
            ),
            label=_label(msg.label),
        ))  # fmt: skip
    lines = tuple(_line_from_pb(line, f"lines[{i}]") for i, line in enumerate(msg.line))
    return _in_context("", lambda: IprStatistics(
        originator=_admin(msg.originator, "originator"),
        reference=msg.reference,
        period_start=_date(msg.period_start, "period_start"),
        period_end=_date(msg.period_end, "period_end"),
        lines=lines,
        label=_label(msg.label),
    ))  # fmt: skip


# --- protobuf tree <-> XML ---------------------------------------------------------------------
def _element_name(field: FieldDescriptor) -> str:
    return "".join(part.capitalize() for part in field.name.split("_"))


def _scalar_text(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    return str(value)


def _to_xml(msg: Message, element: etree._Element) -> None:
    for field, value in msg.ListFields():  # set fields, in field-number order
        name = _NS + _element_name(field)
        items = value if _is_repeated(field) else [value]
        for item in items:
            child = etree.SubElement(element, name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _to_xml(item, child)
            else:
                child.text = _scalar_text(field, item)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


@cache
def _schema() -> etree.XMLSchema:
    """Our XSD, loaded once from the package (it imports nothing, so no network)."""
    data = (resources.files("gateway.translate") / "schemas" / "ub3-risk.xsd").read_bytes()
    return etree.XMLSchema(
        etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    )


# --- bytes -------------------------------------------------------------------------------------
def encode(record: UB3Record, form: PayloadForm) -> bytes:
    """The payload bytes of a record in ``form``."""
    msg = to_message(record)
    if form is PayloadForm.PROTOBUF:
        return msg.SerializeToString(deterministic=True)
    root = etree.Element(_NS + record.kind.value, nsmap={None: NAMESPACE})
    _to_xml(msg, root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def decode(
    data: bytes, kind: RiskKind | str, form: PayloadForm, *, max_bytes: int = 16 * 1024 * 1024
) -> UB3Record:
    """The record a payload carries; refuses malformed payloads and invalid records."""
    try:
        kind = RiskKind(kind)
    except ValueError:
        raise _malformed(
            f"{kind!r} is not a UB3 message ({', '.join(RiskKind)})", "header.message_type"
        ) from None
    if len(data) > max_bytes:
        raise _malformed(f"payload of {len(data)} bytes exceeds {max_bytes}", "payload")
    msg: Any = _MESSAGES[kind]()
    if form is PayloadForm.PROTOBUF:
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise _malformed(f"not a {kind.value} protobuf message: {exc}", "payload") from None
        return from_message(kind, msg)
    try:
        root = parse_xml(data, max_bytes=max_bytes, max_elements=200_000, remove_comments=True)
    except XmlIntakeError:
        raise
    except GatewayError as exc:  # pragma: no cover - parse_xml raises XmlIntakeError only
        raise _malformed(exc.message, exc.location) from None
    if root.tag != _NS + kind.value:
        raise _malformed(
            f"root element is {root.tag!r}, the header says {kind.value} in {NAMESPACE}", "payload"
        )
    schema = _schema()
    if not schema.validate(root):
        first = schema.error_log[0] if schema.error_log else None
        detail = f"line {first.line}: {first.message}" if first else "invalid"
        raise _malformed(f"not valid against ub3-risk.xsd: {detail}", "payload")
    read_into(root, msg, namespace=NAMESPACE, element_name=_element_name, malformed=_malformed)
    return from_message(kind, msg)
