"""UB2 exchange payloads as bytes, in both wire forms, and as JSON. Pure functions, no I/O.

Two messages: ``TransactionData`` (a `Consignment`: what the exporting side declared) and
``ControlResult`` (what a control found). As in UB3, each record is mapped once, to its
protobuf message (proto/gnc/v1/transaction.proto); the XML form (schemas/ub2-transaction.xsd,
every element annotated with its WCO ID) is that message tree rendered element by element in
field-number order, each element named as its field in PascalCase with ``id`` written ``ID``
(``FunctionalReferenceID``, ``TransportEquipmentID``), so the two bindings cannot drift apart.

Values travel exactly: decimals as strings (``format(d, "f")``, so ``1.500`` stays ``1.500``),
date-times as RFC 3339 (UTC as ``Z``; a declared local time without offset travels without one),
absent values as absent elements (proto3 ``optional``), never as "". ``source_paths`` is
provenance on the sending side and does not travel.

Decoding is strict: protobuf must parse; XML goes through the hardened parser
(envelope.xmlsafe: its XML_* codes, e.g. XML_DTD_FORBIDDEN, are kept, as for every XML intake)
and is validated against the XSD (loaded once) before it is read; anything else malformed is
UB2_PAYLOAD_MALFORMED with a location. A control result is then checked by its constructor.
Code lists are *not* checked here: `model.codelists.consignment_findings` reports those.
"""

from __future__ import annotations

import json
import linecache
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from lxml import etree

from gateway._proto.gnc.v1 import transaction_pb2
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import (
    UB2_PAYLOAD_MALFORMED,
    UB2_VALUE_INVALID,
    TransactionError,
)
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
from gateway.translate.protobuf_xml import read_into
from gateway.translate.ub3_exchange import CONTENT_TYPES, PayloadForm

__all__ = [
    "CONTENT_TYPES",
    "NAMESPACE",
    "PayloadForm",
    "Ub2Kind",
    "Ub2Record",
    "decode",
    "encode",
    "from_json",
    "from_message",
    "kind_of",
    "to_json",
    "to_message",
]

NAMESPACE = "urn:gnc-gateway:ub2:transaction:1"
_NS = f"{{{NAMESPACE}}}"
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)

Ub2Record = Consignment | ControlResult


class Ub2Kind(StrEnum):
    """The envelope header's message_type of a UB2 payload (and the XML root element)."""

    TRANSACTION = "TransactionData"
    CONTROL_RESULT = "ControlResult"


_MESSAGES: dict[Ub2Kind, type[Message]] = {
    Ub2Kind.TRANSACTION: transaction_pb2.TransactionData,
    Ub2Kind.CONTROL_RESULT: transaction_pb2.ControlResult,
}


def kind_of(record: Ub2Record) -> Ub2Kind:
    return Ub2Kind.CONTROL_RESULT if isinstance(record, ControlResult) else Ub2Kind.TRANSACTION


def _malformed(message: str, location: str | None = None) -> TransactionError:
    return TransactionError(message, code=UB2_PAYLOAD_MALFORMED, location=location)


def _parse_kind(kind: Ub2Kind | str) -> Ub2Kind:
    try:
        return Ub2Kind(kind)
    except ValueError:
        raise _malformed(
            f"{kind!r} is not a UB2 message ({', '.join(Ub2Kind)})", "header.message_type"
        ) from None


# --- scalar forms ---------------------------------------------------------------------------------
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


def _decimal_text(value: Decimal, where: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TransactionError(
            f"{value!r} is not a finite decimal", code=UB2_VALUE_INVALID, location=where
        )
    return format(value, "f")


def _decimal(text: str, where: str) -> Decimal:
    if not _DECIMAL.fullmatch(text):
        raise _malformed(f"{text!r} is not a decimal number", where)
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise _malformed(f"{text!r} is not a decimal number", where) from None


def _datetime_text(value: datetime, where: str) -> str:
    if not isinstance(value, datetime):
        raise TransactionError(
            f"{value!r} is not a date and time", code=UB2_VALUE_INVALID, location=where
        )
    offset = value.utcoffset()
    if offset is None:
        return value.isoformat()
    # The offset as declared (an acceptance at 00:30+01:00 is on that day, not the day before
    # in UTC); UTC itself as Z.
    text = value.isoformat()
    return text.removesuffix("+00:00") + "Z" if not offset else text


def _datetime(text: str, where: str) -> datetime:
    if not _DATETIME.fullmatch(text):
        raise _malformed(f"{text!r} is not an RFC 3339 date and time", where)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _malformed(f"{text!r} is not an RFC 3339 date and time", where) from None


def _enum(kind: type[_E], value: str, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise _malformed(f"{value!r} is not a {kind.__name__} code", where) from None


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _set(msg: Any, name: str, value: object) -> None:
    if value is not None:
        setattr(msg, name, value)


def _opt_decimal(msg: Any, name: str, where: str) -> Decimal | None:
    text = _opt(msg, name)
    return None if text is None else _decimal(text, where)


def _dec_or_none(value: Decimal | None, where: str) -> str | None:
    return None if value is None else _decimal_text(value, where)


# --- canonical -> protobuf ------------------------------------------------------------------------
def _party_to_pb(party: Party, out: Any) -> None:
    out.role_code = party.role.value
    _set(out, "name", party.name)
    _set(out, "id", party.identifier)
    if party.address is not None:
        address = out.address
        address.SetInParent()
        _set(address, "line", party.address.street)
        _set(address, "city_name", party.address.city)
        _set(address, "postcode_id", party.address.postcode)
        _set(address, "country_code", party.address.country)
    _set(out, "category_code", party.category)


def _means_to_pb(means: TransportMeans, out: Any) -> None:
    out.role_code = means.role.value
    _set(out, "mode_code", means.mode)
    _set(out, "id", means.identifier)
    _set(out, "identification_type_code", means.identification_type)
    _set(out, "registration_nationality_code", means.nationality)
    _set(out, "conveyance_reference_id", means.conveyance_reference)


def _document_to_pb(document: Document, out: Any) -> None:
    _set(out, "type_code", document.type_code)
    _set(out, "id", document.reference)
    _set(out, "category_code", document.category)
    _set(out, "name", document.name)
    _set(out, "line_numeric", document.line)


def _item_to_pb(item: GoodsItem, out: Any, where: str) -> None:
    out.sequence_numeric = item.sequence
    _set(out, "description", item.description)
    _set(out, "classification_id", item.commodity_code)
    _set(out, "gross_mass_measure", _dec_or_none(item.gross_mass, f"{where}.gross_mass"))
    _set(out, "net_mass_measure", _dec_or_none(item.net_mass, f"{where}.net_mass"))
    for package in item.packages:
        pkg = out.packaging.add()
        _set(pkg, "type_code", package.kind)
        _set(pkg, "quantity_quantity", package.quantity)
        _set(pkg, "piece_quantity", package.pieces)
        _set(pkg, "marks_numbers_id", package.marks)
    out.transport_equipment_id.extend(item.containers)
    _set(out, "undg_id", item.dangerous_goods_code)
    for document in item.documents:
        _document_to_pb(document, out.additional_document.add())
    for party in item.parties:
        _party_to_pb(party, out.party.add())
    for means in item.transports:
        _means_to_pb(means, out.transport_means.add())
    _set(out, "loading_location_id", item.place_of_loading)
    _set(out, "unloading_location_id", item.place_of_unloading)
    _set(out, "origin_country_code", item.origin_country)
    _set(out, "procedure_code", item.procedure)
    _set(
        out,
        "statistical_value_amount",
        _dec_or_none(item.statistical_value, f"{where}.statistical_value"),
    )
    out.additional_information_code.extend(item.additional_codes)
    _set(out, "ucr", item.commercial_reference)
    _set(out, "payment_method_code", item.transport_charges_payment)
    for document in item.previous_documents:
        _document_to_pb(document, out.previous_document.add())
    _set(out, "previous_procedure_code", item.previous_procedure)
    out.additional_procedure_code.extend(item.additional_procedures)
    _set(out, "statistical_value_currency_code", item.statistical_value_currency)
    _set(out, "export_country_code", item.export_country)
    _set(out, "destination_country_code", item.destination_country)
    _set(out, "preferential_origin_country_code", item.preferential_origin_country)


def _consignment_to_pb(c: Consignment) -> Any:
    msg: Any = transaction_pb2.TransactionData(
        source_message=c.source.value, functional_reference_id=c.reference
    )
    _set(msg, "mrn", c.mrn)
    _set(msg, "type_code", c.declaration_type)
    _set(msg, "function_code", c.function_code)
    if c.declared_at is not None:
        msg.issue_date_time = _datetime_text(c.declared_at, "declared_at")
    _set(msg, "specific_circumstances_code", c.specific_circumstance)
    _set(msg, "ucr", c.commercial_reference)
    _set(msg, "transport_document_id", c.transport_document)
    for party in c.parties:
        _party_to_pb(party, msg.party.add())
    for means in c.transports:
        _means_to_pb(means, msg.transport_means.add())
    for office in c.offices:
        msg.office.add(role_code=office.role.value, id=office.identifier)
    _set(msg, "loading_location_id", c.place_of_loading)
    _set(msg, "unloading_location_id", c.place_of_unloading)
    _set(msg, "goods_location_id", c.goods_location)
    _set(msg, "export_country_code", c.export_country)
    _set(msg, "destination_country_code", c.destination_country)
    msg.routing_country_code.extend(c.routing_countries)
    msg.seal_id.extend(c.seals)
    _set(msg, "goods_item_quantity", c.total_items)
    _set(msg, "total_package_quantity", c.total_packages)
    _set(msg, "total_gross_mass_measure", _dec_or_none(c.total_gross_mass, "total_gross_mass"))
    _set(msg, "invoice_amount", _dec_or_none(c.invoice_amount, "invoice_amount"))
    _set(msg, "currency_code", c.invoice_currency)
    for index, item in enumerate(c.goods_items):
        _item_to_pb(item, msg.goods_item.add(), f"goods_items[{index}]")
    _set(msg, "issue_location_id", c.declaration_place)
    if c.accepted_at is not None:
        msg.acceptance_date_time = _datetime_text(c.accepted_at, "accepted_at")
    if c.expected_arrival is not None:
        msg.expected_arrival_date_time = _datetime_text(c.expected_arrival, "expected_arrival")
    _set(msg, "payment_method_code", c.transport_charges_payment)
    msg.transport_equipment_id.extend(c.containers)
    for document in c.documents:
        _document_to_pb(document, msg.additional_document.add())
    for document in c.previous_documents:
        _document_to_pb(document, msg.previous_document.add())
    msg.additional_information_code.extend(c.additional_codes)
    return msg


def _control_to_pb(r: ControlResult) -> Any:
    msg: Any = transaction_pb2.ControlResult(
        reference=r.reference,
        transaction_reference=r.transaction_reference,
        controlling_administration=r.controlling_administration.value,
        controlled_at=_datetime_text(r.controlled_at, "controlled_at"),
        outcome=r.outcome.value,
    )
    _set(msg, "transaction_message_id", r.transaction_message_id)
    msg.control_type.extend(t.value for t in r.control_types)
    _set(msg, "office_id", r.office)
    for seal in r.seals:
        out = msg.seal.add(seal_id=seal.seal_id, intact=seal.intact)
        _set(out, "container_id", seal.container)
    for d in r.discrepancies:
        out = msg.discrepancy.add(kind_code=d.kind.value, description=d.description)
        _set(out, "goods_item_sequence_numeric", d.goods_item)
        _set(out, "declared", d.declared)
        _set(out, "found", d.found)
    _set(msg, "remarks", r.remarks)
    return msg


def to_message(record: Ub2Record) -> Message:
    """The protobuf message of a UB2 record (UB2_VALUE_INVALID if a value cannot travel)."""
    try:
        if isinstance(record, ControlResult):
            return _control_to_pb(record)  # type: ignore[no-any-return]
        return _consignment_to_pb(record)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:  # protobuf refuses a value (type, int64 range)
        raise TransactionError(
            f"a value cannot be encoded: {exc}", code=UB2_VALUE_INVALID, location="record"
        ) from None


# --- protobuf -> canonical ------------------------------------------------------------------------
def _party_from_pb(msg: Any, where: str) -> Party:
    address = None
    if msg.HasField("address"):
        a = msg.address
        address = Address(
            street=_opt(a, "line"),
            city=_opt(a, "city_name"),
            postcode=_opt(a, "postcode_id"),
            country=_opt(a, "country_code"),
        )
    return Party(
        role=_enum(PartyRole, msg.role_code, f"{where}.role"),
        name=_opt(msg, "name"),
        identifier=_opt(msg, "id"),
        address=address,
        category=_opt(msg, "category_code"),
    )


def _means_from_pb(msg: Any, where: str) -> TransportMeans:
    return TransportMeans(
        role=_enum(TransportRole, msg.role_code, f"{where}.role"),
        mode=_opt(msg, "mode_code"),
        identifier=_opt(msg, "id"),
        identification_type=_opt(msg, "identification_type_code"),
        nationality=_opt(msg, "registration_nationality_code"),
        conveyance_reference=_opt(msg, "conveyance_reference_id"),
    )


def _documents_from_pb(documents: Any) -> tuple[Document, ...]:
    return tuple(
        Document(
            type_code=_opt(d, "type_code"),
            reference=_opt(d, "id"),
            category=_opt(d, "category_code"),
            name=_opt(d, "name"),
            line=_opt(d, "line_numeric"),
        )
        for d in documents
    )


def _item_from_pb(msg: Any, where: str) -> GoodsItem:
    return GoodsItem(
        sequence=msg.sequence_numeric,
        description=_opt(msg, "description"),
        commodity_code=_opt(msg, "classification_id"),
        gross_mass=_opt_decimal(msg, "gross_mass_measure", f"{where}.gross_mass"),
        net_mass=_opt_decimal(msg, "net_mass_measure", f"{where}.net_mass"),
        packages=tuple(
            Package(
                kind=_opt(p, "type_code"),
                quantity=_opt(p, "quantity_quantity"),
                pieces=_opt(p, "piece_quantity"),
                marks=_opt(p, "marks_numbers_id"),
            )
            for p in msg.packaging
        ),
        containers=tuple(msg.transport_equipment_id),
        dangerous_goods_code=_opt(msg, "undg_id"),
        documents=_documents_from_pb(msg.additional_document),
        parties=tuple(_party_from_pb(p, f"{where}.parties[{i}]") for i, p in enumerate(msg.party)),
        transports=tuple(
            _means_from_pb(t, f"{where}.transports[{i}]") for i, t in enumerate(msg.transport_means)
        ),
        place_of_loading=_opt(msg, "loading_location_id"),
        place_of_unloading=_opt(msg, "unloading_location_id"),
        origin_country=_opt(msg, "origin_country_code"),
        procedure=_opt(msg, "procedure_code"),
        statistical_value=_opt_decimal(
            msg, "statistical_value_amount", f"{where}.statistical_value"
        ),
        additional_codes=tuple(msg.additional_information_code),
        commercial_reference=_opt(msg, "ucr"),
        transport_charges_payment=_opt(msg, "payment_method_code"),
        previous_documents=_documents_from_pb(msg.previous_document),
        previous_procedure=_opt(msg, "previous_procedure_code"),
        additional_procedures=tuple(msg.additional_procedure_code),
        statistical_value_currency=_opt(msg, "statistical_value_currency_code"),
        export_country=_opt(msg, "export_country_code"),
        destination_country=_opt(msg, "destination_country_code"),
        preferential_origin_country=_opt(msg, "preferential_origin_country_code"),
    )


def _consignment_from_pb(msg: Any) -> Consignment:
    if not msg.functional_reference_id:
        raise _malformed("the transaction has no reference", "reference")
    issued = _opt(msg, "issue_date_time")
    accepted = _opt(msg, "acceptance_date_time")
    arrival = _opt(msg, "expected_arrival_date_time")
    return Consignment(
        source=_enum(SourceMessage, msg.source_message, "source"),
        reference=msg.functional_reference_id,
        mrn=_opt(msg, "mrn"),
        declaration_type=_opt(msg, "type_code"),
        function_code=_opt(msg, "function_code"),
        declared_at=None if issued is None else _datetime(issued, "declared_at"),
        specific_circumstance=_opt(msg, "specific_circumstances_code"),
        commercial_reference=_opt(msg, "ucr"),
        transport_document=_opt(msg, "transport_document_id"),
        parties=tuple(_party_from_pb(p, f"parties[{i}]") for i, p in enumerate(msg.party)),
        transports=tuple(
            _means_from_pb(t, f"transports[{i}]") for i, t in enumerate(msg.transport_means)
        ),
        offices=tuple(
            CustomsOffice(_enum(OfficeRole, o.role_code, f"offices[{i}].role"), o.id)
            for i, o in enumerate(msg.office)
        ),
        place_of_loading=_opt(msg, "loading_location_id"),
        place_of_unloading=_opt(msg, "unloading_location_id"),
        goods_location=_opt(msg, "goods_location_id"),
        export_country=_opt(msg, "export_country_code"),
        destination_country=_opt(msg, "destination_country_code"),
        routing_countries=tuple(msg.routing_country_code),
        seals=tuple(msg.seal_id),
        total_items=_opt(msg, "goods_item_quantity"),
        total_packages=_opt(msg, "total_package_quantity"),
        total_gross_mass=_opt_decimal(msg, "total_gross_mass_measure", "total_gross_mass"),
        invoice_amount=_opt_decimal(msg, "invoice_amount", "invoice_amount"),
        invoice_currency=_opt(msg, "currency_code"),
        goods_items=tuple(
            _item_from_pb(g, f"goods_items[{i}]") for i, g in enumerate(msg.goods_item)
        ),
        declaration_place=_opt(msg, "issue_location_id"),
        accepted_at=None if accepted is None else _datetime(accepted, "accepted_at"),
        expected_arrival=None if arrival is None else _datetime(arrival, "expected_arrival"),
        transport_charges_payment=_opt(msg, "payment_method_code"),
        containers=tuple(msg.transport_equipment_id),
        documents=_documents_from_pb(msg.additional_document),
        previous_documents=_documents_from_pb(msg.previous_document),
        additional_codes=tuple(msg.additional_information_code),
    )


def _in_context(where: str, build: Callable[[], _T]) -> _T:
    """Run a model constructor, prefixing the location of its error with ``where``."""
    try:
        return build()
    except TransactionError as exc:
        location = f"{where}.{exc.location}" if exc.location else where
        raise TransactionError(exc.message, code=exc.code, location=location) from None


def _seal_from_pb(msg: Any, where: str) -> SealCheck:
    return _in_context(where, lambda: SealCheck(msg.seal_id, msg.intact, _opt(msg, "container_id")))


def _discrepancy_from_pb(msg: Any, where: str) -> Discrepancy:
    kind = _enum(DiscrepancyKind, msg.kind_code, f"{where}.kind")
    return _in_context(
        where,
        lambda: Discrepancy(
            kind=kind,
            description=msg.description,
            goods_item=_opt(msg, "goods_item_sequence_numeric"),
            declared=_opt(msg, "declared"),
            found=_opt(msg, "found"),
        ),
    )


def _control_from_pb(msg: Any) -> ControlResult:
    try:
        administration = Administration(msg.controlling_administration)
    except ValueError:
        raise _malformed(
            f"{msg.controlling_administration!r} is not a known administration",
            "controlling_administration",
        ) from None
    seals = tuple(_seal_from_pb(s, f"seals[{i}]") for i, s in enumerate(msg.seal))
    discrepancies = tuple(
        _discrepancy_from_pb(d, f"discrepancies[{i}]") for i, d in enumerate(msg.discrepancy)
    )
    return ControlResult(
        reference=msg.reference,
        transaction_reference=msg.transaction_reference,
        transaction_message_id=_opt(msg, "transaction_message_id"),
        controlling_administration=administration,
        controlled_at=_datetime(msg.controlled_at, "controlled_at"),
        control_types=tuple(
            _enum(ControlType, t, f"control_types[{i}]") for i, t in enumerate(msg.control_type)
        ),
        outcome=_enum(ControlOutcome, msg.outcome, "outcome"),
        office=_opt(msg, "office_id"),
        seals=seals,
        discrepancies=discrepancies,
        remarks=_opt(msg, "remarks"),
    )


def from_message(kind: Ub2Kind | str, msg: Any) -> Ub2Record:
    """The canonical record of a protobuf message; a control result's model refuses what is bad."""
    if _parse_kind(kind) is Ub2Kind.CONTROL_RESULT:
        return _control_from_pb(msg)
    return _consignment_from_pb(msg)


# --- protobuf tree <-> XML ------------------------------------------------------------------------
_WORDS = {"id": "ID", "mrn": "MRN", "ucr": "UCR", "undg": "UNDG"}


def element_name(field: Any) -> str:
    """The XML element of a protobuf field: PascalCase, WCO DM acronyms in capitals."""
    return "".join(_WORDS.get(part, part.capitalize()) for part in field.name.split("_"))


# The XML binding is written straight from the record, not through a protobuf message and
# reflection (six times slower: the UB2 translation benchmark's largest cost). What keeps the two
# bindings from drifting apart is still the .proto: element order and names come from each
# message's descriptor, and _XML_FIELDS must name every field of it (checked at import), so a
# field added to the .proto and not here stops the gateway from starting. tests/test_ub2_xml_writer
# checks the output byte for byte against a rendering of ``to_message`` by reflection.
#
# Per message: proto field -> (record attribute, value kind); a kind that is a message name
# renders that message (one record, or one per entry of a tuple for a repeated field).
_XML_FIELDS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "TransactionAddress": {
        "line": ("street", "text"),
        "city_name": ("city", "text"),
        "postcode_id": ("postcode", "text"),
        "country_code": ("country", "text"),
    },
    "TransactionParty": {
        "role_code": ("role", "enum"),
        "name": ("name", "text"),
        "id": ("identifier", "text"),
        "address": ("address", "TransactionAddress"),
        "category_code": ("category", "text"),
    },
    "TransactionPackaging": {
        "type_code": ("kind", "text"),
        "quantity_quantity": ("quantity", "int"),
        "piece_quantity": ("pieces", "int"),
        "marks_numbers_id": ("marks", "text"),
    },
    "TransactionDocument": {
        "type_code": ("type_code", "text"),
        "id": ("reference", "text"),
        "category_code": ("category", "text"),
        "name": ("name", "text"),
        "line_numeric": ("line", "int"),
    },
    "TransactionTransportMeans": {
        "role_code": ("role", "enum"),
        "mode_code": ("mode", "text"),
        "id": ("identifier", "text"),
        "identification_type_code": ("identification_type", "text"),
        "registration_nationality_code": ("nationality", "text"),
        "conveyance_reference_id": ("conveyance_reference", "text"),
    },
    "TransactionOffice": {"role_code": ("role", "enum"), "id": ("identifier", "text")},
    "TransactionGoodsItem": {
        "sequence_numeric": ("sequence", "int"),
        "description": ("description", "text"),
        "classification_id": ("commodity_code", "text"),
        "gross_mass_measure": ("gross_mass", "decimal"),
        "net_mass_measure": ("net_mass", "decimal"),
        "packaging": ("packages", "TransactionPackaging"),
        "transport_equipment_id": ("containers", "text"),
        "undg_id": ("dangerous_goods_code", "text"),
        "additional_document": ("documents", "TransactionDocument"),
        "party": ("parties", "TransactionParty"),
        "transport_means": ("transports", "TransactionTransportMeans"),
        "loading_location_id": ("place_of_loading", "text"),
        "unloading_location_id": ("place_of_unloading", "text"),
        "origin_country_code": ("origin_country", "text"),
        "procedure_code": ("procedure", "text"),
        "statistical_value_amount": ("statistical_value", "decimal"),
        "additional_information_code": ("additional_codes", "text"),
        "ucr": ("commercial_reference", "text"),
        "payment_method_code": ("transport_charges_payment", "text"),
        "previous_document": ("previous_documents", "TransactionDocument"),
        "previous_procedure_code": ("previous_procedure", "text"),
        "additional_procedure_code": ("additional_procedures", "text"),
        "statistical_value_currency_code": ("statistical_value_currency", "text"),
        "export_country_code": ("export_country", "text"),
        "destination_country_code": ("destination_country", "text"),
        "preferential_origin_country_code": ("preferential_origin_country", "text"),
    },
    "TransactionData": {
        "source_message": ("source", "enum"),
        "functional_reference_id": ("reference", "text"),
        "mrn": ("mrn", "text"),
        "type_code": ("declaration_type", "text"),
        "function_code": ("function_code", "text"),
        "issue_date_time": ("declared_at", "datetime"),
        "specific_circumstances_code": ("specific_circumstance", "text"),
        "ucr": ("commercial_reference", "text"),
        "transport_document_id": ("transport_document", "text"),
        "party": ("parties", "TransactionParty"),
        "transport_means": ("transports", "TransactionTransportMeans"),
        "office": ("offices", "TransactionOffice"),
        "loading_location_id": ("place_of_loading", "text"),
        "unloading_location_id": ("place_of_unloading", "text"),
        "goods_location_id": ("goods_location", "text"),
        "export_country_code": ("export_country", "text"),
        "destination_country_code": ("destination_country", "text"),
        "routing_country_code": ("routing_countries", "text"),
        "seal_id": ("seals", "text"),
        "goods_item_quantity": ("total_items", "int"),
        "total_package_quantity": ("total_packages", "int"),
        "total_gross_mass_measure": ("total_gross_mass", "decimal"),
        "invoice_amount": ("invoice_amount", "decimal"),
        "currency_code": ("invoice_currency", "text"),
        "goods_item": ("goods_items", "TransactionGoodsItem"),
        "issue_location_id": ("declaration_place", "text"),
        "acceptance_date_time": ("accepted_at", "datetime"),
        "expected_arrival_date_time": ("expected_arrival", "datetime"),
        "payment_method_code": ("transport_charges_payment", "text"),
        "transport_equipment_id": ("containers", "text"),
        "additional_document": ("documents", "TransactionDocument"),
        "previous_document": ("previous_documents", "TransactionDocument"),
        "additional_information_code": ("additional_codes", "text"),
    },
    "ControlSealCheck": {
        "seal_id": ("seal_id", "text"),
        "intact": ("intact", "bool"),
        "container_id": ("container", "text"),
    },
    "ControlDiscrepancy": {
        "kind_code": ("kind", "enum"),
        "description": ("description", "text"),
        "goods_item_sequence_numeric": ("goods_item", "int"),
        "declared": ("declared", "text"),
        "found": ("found", "text"),
    },
    "ControlResult": {
        "reference": ("reference", "text"),
        "transaction_reference": ("transaction_reference", "text"),
        "transaction_message_id": ("transaction_message_id", "text"),
        "controlling_administration": ("controlling_administration", "enum"),
        "controlled_at": ("controlled_at", "datetime"),
        "control_type": ("control_types", "enum"),
        "outcome": ("outcome", "enum"),
        "office_id": ("office", "text"),
        "seal": ("seals", "ControlSealCheck"),
        "discrepancy": ("discrepancies", "ControlDiscrepancy"),
        "remarks": ("remarks", "text"),
    },
}


@dataclass(frozen=True)
class _Slot:
    """One element of a message's XML rendering, in field-number order."""

    attribute: str  # the record's attribute it is read from
    kind: str  # text, enum, int, decimal, datetime, bool, or "message"
    repeated: bool  # the attribute is a tuple: one element per entry
    required: bool  # no presence in the .proto: always written, so never None
    open: str
    close: str
    empty: str  # a message element with nothing set inside
    plan: tuple[_Slot, ...] = ()  # kind "message": the plan of the message inside
    text: Callable[[Any], str] = str  # a scalar's element text (raises _CannotTravel)


_SCALAR_KINDS = ("text", "enum", "int", "decimal", "datetime", "bool")
_INT64 = range(-(2**63), 2**63)


def _plan(descriptor: Any) -> tuple[_Slot, ...]:
    table = _XML_FIELDS.get(descriptor.name)
    if table is None or set(table) != {f.name for f in descriptor.fields}:
        raise RuntimeError(  # a bug, caught by any test: the .proto and this table differ
            f"the XML plan of {descriptor.name} does not name exactly the fields of the .proto"
        )
    slots = []
    for f in descriptor.fields:
        attribute, kind = table[f.name]
        plan: tuple[_Slot, ...] = ()
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            inner = f.message_type
            if inner is None or kind != inner.name:
                raise RuntimeError(f"{descriptor.name}.{f.name} is not a {kind}")
            plan, kind = _plan(inner), "message"
        elif kind not in _SCALAR_KINDS:
            raise RuntimeError(f"{descriptor.name}.{f.name}: unknown value kind {kind}")
        name = element_name(f)
        slots.append(
            _Slot(
                attribute,
                kind,
                f.is_repeated,
                not f.is_repeated and not f.has_presence,
                f"<{name}>",
                f"</{name}>",
                f"<{name}/>",
                plan,
                _TEXT_OF.get(kind, str),
            )
        )
    return tuple(slots)


# Characters outside XML 1.0's Char production cannot be written at all (not even escaped).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# One search finds both what needs escaping and what cannot be written.
_SPECIAL = re.compile("[&<>\r]|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escaped(text: str) -> str:
    """Text content as libxml2 writes it (``\\r`` as a reference, so it survives parsing)."""
    if _SPECIAL.search(text) is None:
        return text
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise _CannotTravel(
            f"the character U+{ord(bad.group()):04X} cannot be written in XML (in {text!r})"
        )
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


class _CannotTravel(Exception):
    """A value the XML writer cannot write; the caller adds where it stands."""


def _text_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _CannotTravel(f"{value!r} is not text")
    return _escaped(value)


def _enum_text(value: Any) -> str:
    if not isinstance(value, Enum) or not isinstance(value.value, str):
        raise _CannotTravel(f"{value!r} is not a code")
    return _escaped(value.value)


def _int_text(value: Any) -> str:
    if not isinstance(value, int) or value not in _INT64:
        raise _CannotTravel(f"{value!r} is not a 64-bit integer")
    return str(int(value))


def _decimal_xml(value: Any) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise _CannotTravel(f"{value!r} is not a finite decimal")
    return format(value, "f")


def _datetime_xml(value: Any) -> str:
    if not isinstance(value, datetime):
        raise _CannotTravel(f"{value!r} is not a date and time")
    return _datetime_text(value, "")


def _bool_text(value: Any) -> str:
    if not isinstance(value, bool):
        raise _CannotTravel(f"{value!r} is not true or false")
    return "true" if value else "false"


_TEXT_OF: Mapping[str, Callable[[Any], str]] = {
    "text": _text_text,
    "enum": _enum_text,
    "int": _int_text,
    "decimal": _decimal_xml,
    "datetime": _datetime_xml,
    "bool": _bool_text,
}


def _write(plan: tuple[_Slot, ...], record: object, out: list[str], where: str) -> None:
    """Append the elements of ``record`` by ``plan`` to ``out`` (``where``: its field path
    and a dot, for errors only)."""
    for slot in plan:
        value = getattr(record, slot.attribute)
        if value is None:
            if slot.required:
                raise TransactionError(
                    f"{where}{slot.attribute} is required",
                    code=UB2_VALUE_INVALID,
                    location=where + slot.attribute,
                )
            continue
        if slot.plan:
            if slot.repeated:
                for index, item in enumerate(value):
                    _write_message(slot, item, out, f"{where}{slot.attribute}[{index}].")
            else:
                _write_message(slot, value, out, f"{where}{slot.attribute}.")
            continue
        text, open_, close = slot.text, slot.open, slot.close
        if not slot.repeated:
            try:
                out += (open_, text(value), close)
            except _CannotTravel as exc:
                raise _cannot_travel(exc, where + slot.attribute) from None
            continue
        for index, item in enumerate(value):
            try:
                out += (open_, text(item), close)
            except _CannotTravel as exc:
                raise _cannot_travel(exc, f"{where}{slot.attribute}[{index}]") from None


def _cannot_travel(exc: _CannotTravel, location: str) -> TransactionError:
    return TransactionError(str(exc), code=UB2_VALUE_INVALID, location=location)


def _write_message(slot: _Slot, value: object, out: list[str], where: str) -> None:
    out.append(slot.open)
    mark = len(out)
    _write(slot.plan, value, out, where)
    if len(out) == mark:
        out[-1] = slot.empty
    else:
        out.append(slot.close)


_ROOT_PLANS: dict[Ub2Kind, tuple[_Slot, ...]] = {
    kind: _plan(message.DESCRIPTOR) for kind, message in _MESSAGES.items()
}


# The writer above interprets the plans; the one below is generated from the same plans once, at
# import: a function per message with each field's test and markup written in place (a third of
# the time). It only ever writes what the interpreter would write: a value of an unexpected type
# or out of range, a required field left empty, or text that cannot be written makes it give up
# (_Fallback) and the interpreter writes the record, or names the field that cannot travel.
# Escaping: the plain variant collects every text it writes and checks them all with one search
# at the end; when some need escaping, the escaping variant writes the record again.
class _Fallback(Exception):
    """The generated writer met a value it does not write itself: the interpreter takes over."""


class _XmlCodegen:
    """Python source of the XML writer of the UB2 plans, in one of two variants."""

    def __init__(self, escaping: bool) -> None:
        self.escaping = escaping
        self.lines: list[str] = []
        self.names: dict[tuple[_Slot, ...], str] = {}
        self.pending: list[tuple[tuple[_Slot, ...], str]] = []

    def function(self, plan: tuple[_Slot, ...]) -> str:
        name = self.names.get(plan)
        if name is None:
            name = self.names[plan] = f"_message_{len(self.names)}"
            self.pending.append((plan, name))
        return name

    def generate(self) -> str:
        roots = [
            f"ROOTS[{kind.value!r}] = {self.function(plan)}" for kind, plan in _ROOT_PLANS.items()
        ]
        while self.pending:
            plan, name = self.pending.pop(0)
            self._message(plan, name)
        return "\n".join([*self.lines, "", *roots]) + "\n"

    def _message(self, plan: tuple[_Slot, ...], name: str) -> None:
        line = self.lines.append
        line("")
        line(f"def {name}(r, out, add, text):")
        for slot in plan:
            line(f"    v = r.{slot.attribute}")
            if slot.required:
                line("    if v is None:")
                line("        raise _Fallback")
                body = "    "
            else:
                line("    if v is not None:")
                body = "        "
            if slot.repeated:
                line(f"{body}for v in v:")
                body += "    "
            self._value(slot, body)

    def _value(self, slot: _Slot, at: str) -> None:
        line = self.lines.append
        open_, close = slot.open, slot.close
        kind = slot.kind
        if kind == "message":
            line(f"{at}add({open_!r})")
            line(f"{at}m = len(out)")
            line(f"{at}{self.function(slot.plan)}(v, out, add, text)")
            line(f"{at}if len(out) == m:")
            line(f"{at}    out[-1] = {slot.empty!r}")
            line(f"{at}else:")
            line(f"{at}    add({close!r})")
            return
        if kind in ("text", "enum"):
            if kind == "enum":
                line(f"{at}if not isinstance(v, _Enum):")
                line(f"{at}    raise _Fallback")
                line(f"{at}v = v._value_")
            line(f"{at}if v.__class__ is not str:")
            line(f"{at}    raise _Fallback")
            line(f"{at}v = _escaped(v)" if self.escaping else f"{at}text(v)")
            value = "{v}"
        elif kind == "int":
            line(f"{at}if v.__class__ is not int or not {_INT64.start} <= v < {_INT64.stop}:")
            line(f"{at}    raise _Fallback")
            value = "{v}"
        elif kind == "decimal":
            line(f"{at}if v.__class__ is not _Decimal or not v.is_finite():")
            line(f"{at}    raise _Fallback")
            value = "{v:f}"
        elif kind == "datetime":
            line(f"{at}v = _datetime_xml(v)")
            value = "{v}"
        else:  # bool
            line(f"{at}if v is not True and v is not False:")
            line(f"{at}    raise _Fallback")
            line(f"{at}v = 'true' if v else 'false'")
            value = "{v}"
        line(f"{at}add(f{open_ + value + close!r})")


def _generated_writers() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The generated writer's source (both variants) and their root functions by kind."""
    variants = []
    for escaping in (False, True):
        source = _XmlCodegen(escaping).generate()
        filename = f"<ub2 xml writer{' escaping' if escaping else ''}>"
        code = compile(source, filename, "exec")
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict[str, Any] = {
            "ROOTS": {},
            "_Fallback": _Fallback,
            "_Enum": Enum,
            "_Decimal": Decimal,
            "_escaped": _escaped,
            "_datetime_xml": _datetime_xml,
        }
        exec(code, namespace)  # our own source, generated from the plans
        variants.append((source, namespace["ROOTS"]))
    (plain_source, plain), (_, escaping_roots) = variants
    return plain_source, plain, escaping_roots


_GENERATED_SOURCE, _PLAIN_WRITERS, _ESCAPING_WRITERS = _generated_writers()


def _xml_bytes(record: Ub2Record) -> bytes:
    kind = kind_of(record)
    head = f"<?xml version='1.0' encoding='UTF-8'?>\n<{kind.value} xmlns=\"{NAMESPACE}\">"
    try:
        out = [head]
        texts: list[str] = []
        _PLAIN_WRITERS[kind.value](record, out, out.append, texts.append)
        if _SPECIAL.search("".join(texts)) is not None:
            out = [head]
            _ESCAPING_WRITERS[kind.value](record, out, out.append, None)
    except (_Fallback, _CannotTravel):
        out = [head]
        _write(_ROOT_PLANS[kind], record, out, "")
    out.append(f"</{kind.value}>")
    return "".join(out).encode("utf-8")


@cache
def schema() -> etree.XMLSchema:
    """ub2-transaction.xsd, loaded once from the package (it imports nothing: no network)."""
    data = (resources.files("gateway.translate") / "schemas" / "ub2-transaction.xsd").read_bytes()
    return etree.XMLSchema(
        etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    )


def schema_problem(root: etree._Element) -> tuple[str, str] | None:
    """The first error of ub2-transaction.xsd in ``root`` as (detail, path); None when valid."""
    xsd = schema()
    if xsd.validate(root):
        return None
    first = xsd.error_log[0] if xsd.error_log else None
    detail = f"line {first.line}: {first.message}" if first else "invalid"
    return detail, (first.path if first is not None and first.path else "payload")


def to_xml_element(record: Ub2Record) -> etree._Element:
    """The XML form of a record as an lxml tree (our own bytes, parsed back)."""
    return etree.fromstring(_xml_bytes(record))


def _has_unknown_fields(msg: Message) -> bool:
    """Whether the message or one inside it holds fields of a schema this gateway does not know."""
    if len(UnknownFieldSet(msg)):
        return True
    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            items = value if field.is_repeated else [value]
            if any(_has_unknown_fields(item) for item in items):
                return True
    return False


# --- bytes ----------------------------------------------------------------------------------------
def encode(record: Ub2Record, form: PayloadForm) -> bytes:
    """The payload bytes of a record in ``form`` (UB2_VALUE_INVALID if a value cannot travel)."""
    if form is PayloadForm.PROTOBUF:
        return to_message(record).SerializeToString(deterministic=True)
    return _xml_bytes(record)


def decode(
    data: bytes, kind: Ub2Kind | str, form: PayloadForm, *, max_bytes: int = 16 * 1024 * 1024
) -> Ub2Record:
    """The record a payload carries; refuses malformed payloads and invalid control results."""
    kind = _parse_kind(kind)
    if not isinstance(data, bytes):
        raise _malformed(f"payload is {type(data).__name__}, not bytes", "payload")
    if len(data) > max_bytes:
        raise _malformed(f"payload of {len(data)} bytes exceeds {max_bytes}", "payload")
    msg: Any = _MESSAGES[kind]()
    if form is PayloadForm.PROTOBUF:
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise _malformed(f"not a {kind.value} protobuf message: {exc}", "payload") from None
        if _has_unknown_fields(msg):
            raise _malformed(f"{kind.value} carries fields this gateway does not know", "payload")
        return from_message(kind, msg)
    root = parse_xml(data, max_bytes=max_bytes, max_elements=500_000, remove_comments=True)
    if root.tag != _NS + kind.value:
        raise _malformed(
            f"root element is {root.tag!r}, the header says {kind.value} in {NAMESPACE}", "/*[1]"
        )
    problem = schema_problem(root)
    if problem is not None:
        detail, location = problem
        raise _malformed(f"not valid against ub2-transaction.xsd: {detail}", location)
    read_into(root, msg, namespace=NAMESPACE, element_name=element_name, malformed=_malformed)
    return from_message(kind, msg)


# --- JSON -----------------------------------------------------------------------------------------
def _to_plain(value: object, where: str) -> object:
    if value is None or (isinstance(value, bool | int | str) and not isinstance(value, Enum)):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return _decimal_text(value, where)
    if isinstance(value, datetime):
        return _datetime_text(value, where)
    if isinstance(value, tuple):
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_plain(getattr(value, f.name), f"{where}.{f.name}" if where else f.name)
            for f in fields(value)
            if f.compare  # provenance (source_paths) takes no part in equality: it stays home
        }
    raise TransactionError(
        f"{type(value).__name__} cannot be written as JSON", code=UB2_VALUE_INVALID, location=where
    )


def to_json(record: Ub2Record) -> str:
    """Stable, human-readable JSON of a record: sorted keys, decimals and times as strings."""
    plain = {"kind": kind_of(record).value, "record": _to_plain(record, "")}
    return json.dumps(plain, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _from_plain(value: object, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _from_plain(value, args[0], where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _malformed(f"expected a list, got {type(value).__name__}", where)
        (item_hint, _) = typing.get_args(hint)
        return tuple(_from_plain(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and is_dataclass(hint):
        return _dataclass_from_plain(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        if not isinstance(value, str):
            raise _malformed(f"expected a {hint.__name__} code", where)
        return _enum(hint, value, where)
    if hint is Decimal:
        if not isinstance(value, str):
            raise _malformed("expected a decimal as a string", where)
        return _decimal(value, where)
    if hint is datetime:
        if not isinstance(value, str):
            raise _malformed("expected an RFC 3339 date and time", where)
        return _datetime(value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise _malformed("expected true or false", where)
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _malformed("expected an integer", where)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _malformed("expected a string", where)
        return value
    raise _malformed(f"cannot read a {hint!r}", where)  # pragma: no cover - model types only


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_from_plain(cls: type[_T], value: object, where: str) -> _T:
    if not isinstance(value, dict):
        raise _malformed(f"expected an object for {cls.__name__}", where or "record")
    known = {f.name: f for f in fields(cls) if f.compare}  # type: ignore[arg-type]
    for key in value:
        if key not in known:
            raise _malformed(f"unknown field {key!r}", f"{where}.{key}" if where else key)
    hints = _hints(typing.cast(type, cls))
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        path = f"{where}.{name}" if where else name
        if name in value:
            kwargs[name] = _from_plain(value[name], hints[name], path)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise _malformed(f"{name} is required", path)
    return _in_context(where, lambda: cls(**kwargs)) if where else cls(**kwargs)


def from_json(text: str, kind: Ub2Kind | str) -> Ub2Record:
    """The record of `to_json` output; refuses unknown fields, wrong types and other kinds."""
    kind = _parse_kind(kind)
    try:
        plain = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise _malformed(f"not JSON: {exc}", "json") from None
    if not isinstance(plain, Mapping) or set(plain) != {"kind", "record"}:
        raise _malformed('expected {"kind": ..., "record": {...}}', "json")
    if plain["kind"] != kind.value:
        raise _malformed(f"the JSON holds a {plain['kind']!r}, not a {kind.value}", "kind")
    cls: type[Ub2Record] = ControlResult if kind is Ub2Kind.CONTROL_RESULT else Consignment
    record: Ub2Record = _dataclass_from_plain(cls, plain["record"], "")
    return record
