"""EU AEO input: the EOS AEO export (XML or CSV, full or change feed) into canonical records.

Pure functions over bytes. Where each field comes from (XML path, CSV column) is not written
here: it is read from the mapping spec (adapters/mappings/eos-aeo.toml), which the caller loads
with ``load_mapping_spec`` and passes in, so the spec a customs expert reviews is the one that
runs. The writers use the same spec, so what the gateway writes it can read back.

A file is accepted whole or not at all: every bad record is listed (line, field, rule) in one
``AeoRejected`` error (code AEO_IMPORT_REJECTED), so an operator fixes an export in one round.

XML is parsed by the hardened ``gateway.envelope.xmlsafe.parse_xml`` (no DTD, no entities, no
network, size/depth/element limits), then validated against our XSD
(schemas/eos-aeo-export.xsd, loaded once). Structure errors come from the XSD; semantic rules
(EORI form, authorisation number against type, known type and status) from the model, which
names each rule.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from lxml import etree

from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import (
    AEO_DUPLICATE_AUTHORISATION,
    AEO_EORI_NOT_VALID,
    AEO_IMPORT_REJECTED,
    AEO_MAPPING_SPEC_INVALID,
    XML_SCHEMA,
    AeoError,
    GatewayError,
)
from gateway.model.aeo import (
    Address,
    AeoRecord,
    AeoRejected,
    AeoStatus,
    CrossReference,
    Problem,
    check_change_order,
    check_transition,
    parse_aeo_type,
    parse_status,
)
from gateway.model.codes import Administration

__all__ = [
    "CANONICAL_FIELDS",
    "EosExport",
    "ExportKind",
    "FieldMapping",
    "MappingSpec",
    "coverage_report",
    "load_mapping_spec",
    "parse_eos_csv",
    "parse_eos_export",
    "parse_eos_xml",
    "write_eos_csv",
    "write_eos_xml",
]

# The canonical fields an EOS mapping must cover (the AeoRecord fields, dotted for the address,
# plus eori_status which is checked on import and not kept).
CANONICAL_FIELDS = (
    "version",
    "administration",
    "holder_id",
    "eori_status",
    "holder_name",
    "address.street",
    "address.postcode",
    "address.city",
    "address.country",
    "authorisation_number",
    "aeo_type",
    "partner_programme",
    "issuing_country",
    "competent_authority",
    "authorised_since",
    "status",
    "status_effective",
    "status_reason",
    "consent",
    "consent_date",
    "cross_references",
)
MAX_PROBLEMS = 1000  # a file with more bad records is refused listing the first ones


class ExportKind(StrEnum):
    FULL = "FULL"  # the whole list: each authorisation once; replaces what is held
    CHANGES = "CHANGES"  # change feed: record states in order, applied as deltas


# --- the mapping spec --------------------------------------------------------------------------
_SPEC_KEYS = {
    "name", "version", "description", "xml_namespace", "xml_prefix", "xml_root", "xml_record",
    "csv_multi_separator",
}  # fmt: skip
_FIELD_KEYS = {
    "canonical", "xml", "xml_qualifier", "csv", "wco_element", "wco_id", "required", "multi",
    "default", "notes",
}  # fmt: skip
_WCO_ID = re.compile(r"[0-9]{3}|[A-Z][0-9]{3}|[0-9]{2}[A-Z]")
_XML_STEP = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9]*):(?P<name>[A-Za-z][A-Za-z0-9_.-]*)")
_XML_ATTR = re.compile(r"@(?P<name>[A-Za-z][A-Za-z0-9_.-]*)")
_CSV_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class FieldMapping:
    """One row of a mapping spec: where a canonical field comes from and what it is in WCO DM."""

    canonical: str
    xml: str
    csv: str
    wco_element: str
    wco_id: str
    required: bool
    notes: str
    multi: bool = False
    xml_qualifier: str = ""
    default: str = ""
    xml_steps: tuple[str, ...] = ()  # the XML path in Clark notation, one entry per step


@dataclass(frozen=True)
class MappingSpec:
    name: str
    version: str
    description: str
    xml_namespace: str
    xml_prefix: str
    xml_root: str
    xml_record: str
    csv_multi_separator: str
    fields: tuple[FieldMapping, ...]

    def field(self, canonical: str) -> FieldMapping:
        for mapping in self.fields:
            if mapping.canonical == canonical:
                return mapping
        raise KeyError(canonical)

    def qname(self, local: str) -> str:
        return f"{{{self.xml_namespace}}}{local}"


def _spec_error(source: str, where: str, message: str) -> AeoError:
    return AeoError(message, code=AEO_MAPPING_SPEC_INVALID, location=f"{source}:{where}")


def load_mapping_spec(text: str | bytes, source: str) -> MappingSpec:
    """Read and check a mapping spec (TOML). ``source`` names the file in errors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _spec_error(source, "", f"not UTF-8: {exc.reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _spec_error(source, "", f"not valid TOML: {exc}") from None
    unknown = set(data) - {"spec", "field"}
    if unknown:
        raise _spec_error(source, sorted(unknown)[0], "unknown table (expected [spec], [[field]])")
    head = data.get("spec")
    if not isinstance(head, dict):
        raise _spec_error(source, "spec", "the [spec] table is required")
    for key in sorted(set(head) - _SPEC_KEYS):
        raise _spec_error(source, f"spec.{key}", "unknown key")
    spec_values: dict[str, str] = {}
    for key in sorted(_SPEC_KEYS):
        value = head.get(key)
        if not isinstance(value, str) or not value:
            raise _spec_error(source, f"spec.{key}", "required, a non-empty string")
        spec_values[key] = value
    rows = data.get("field")
    if not isinstance(rows, list) or not rows:
        raise _spec_error(source, "field", "at least one [[field]] row is required")
    fields = []
    seen: dict[str, set[str]] = {"canonical": set(), "csv": set(), "xml": set()}
    for index, row in enumerate(rows):
        where = f"field[{index}]"
        if not isinstance(row, dict):
            raise _spec_error(source, where, "must be a table")
        mapping = _field_mapping(
            row, source, where, spec_values["xml_prefix"], spec_values["xml_namespace"]
        )
        for key in ("canonical", "csv", "xml"):
            value = getattr(mapping, key)
            if value in seen[key]:
                raise _spec_error(source, f"{where}.{key}", f"{value!r} is mapped twice")
            seen[key].add(value)
        fields.append(mapping)
    return MappingSpec(fields=tuple(fields), **spec_values)


def _field_mapping(
    row: dict[str, Any], source: str, where: str, prefix: str, namespace: str
) -> FieldMapping:
    for key in sorted(set(row) - _FIELD_KEYS):
        raise _spec_error(source, f"{where}.{key}", "unknown key")
    values: dict[str, Any] = {}
    for key in ("canonical", "xml", "csv", "wco_element", "wco_id", "notes"):
        value = row.get(key)
        if not isinstance(value, str):
            raise _spec_error(source, f"{where}.{key}", "required, a string")
        values[key] = value
    for key in ("xml_qualifier", "default"):
        value = row.get(key, "")
        if not isinstance(value, str):
            raise _spec_error(source, f"{where}.{key}", "must be a string")
        values[key] = value
    for key in ("required", "multi"):
        value = row.get(key, False)
        if not isinstance(value, bool):
            raise _spec_error(source, f"{where}.{key}", "must be true or false")
        values[key] = value
    if values["wco_id"] and not _WCO_ID.fullmatch(values["wco_id"]):
        raise _spec_error(source, f"{where}.wco_id", f"{values['wco_id']!r} is not a WCO ID form")
    if values["wco_id"] and not values["wco_element"]:
        raise _spec_error(source, f"{where}.wco_element", "a field with a WCO ID names its element")
    if not values["wco_id"] and not values["notes"].strip():
        raise _spec_error(source, f"{where}.notes", "without a WCO ID, notes must say why")
    if not _CSV_COLUMN.fullmatch(values["csv"]):
        raise _spec_error(source, f"{where}.csv", f"{values['csv']!r} is not a column name")
    steps = []
    for step in values["xml"].split("/"):
        match = _XML_STEP.fullmatch(step)
        if match is None or match["prefix"] != prefix:
            raise _spec_error(
                source,
                f"{where}.xml",
                f"step {step!r} is not '{prefix}:Name' (paths are child steps only)",
            )
        steps.append(f"{{{namespace}}}{match['name']}")
    if values["xml_qualifier"] and not _XML_ATTR.fullmatch(values["xml_qualifier"]):
        raise _spec_error(source, f"{where}.xml_qualifier", "must be '@attribute'")
    if values["multi"] != bool(values["xml_qualifier"]):
        raise _spec_error(
            source,
            f"{where}.xml_qualifier",
            "repeated (multi) fields, and only they, name their qualifier attribute",
        )
    return FieldMapping(xml_steps=tuple(steps), **values)


def coverage_report(spec: MappingSpec) -> str:
    """Which WCO DM elements the mapping covers, one line per field (for review and the CLI)."""
    width = max(len(f.canonical) for f in spec.fields)
    lines = [
        f"{spec.name} v{spec.version}: {len(spec.fields)} fields, "
        f"{sum(1 for f in spec.fields if f.wco_id)} with a WCO ID"
    ]
    for f in spec.fields:
        target = f"{f.wco_id:>4}  {f.wco_element}" if f.wco_id else "   -  (no WCO DM element)"
        lines.append(f"  {f.canonical:<{width}}  {target}")
    return "\n".join(lines)


def _check_spec_covers(spec: MappingSpec) -> None:
    have = [f.canonical for f in spec.fields]
    missing = [name for name in CANONICAL_FIELDS if name not in have]
    extra = [name for name in have if name not in CANONICAL_FIELDS]
    if missing or extra:
        raise AeoError(
            f"spec {spec.name} does not map the AEO record: missing {missing}, unknown {extra}",
            code=AEO_MAPPING_SPEC_INVALID,
            location=spec.name,
        )


# --- raw values -> records ---------------------------------------------------------------------
@dataclass(frozen=True)
class EosExport:
    """The records of one export, with where each came from ("line 12") for later errors."""

    kind: ExportKind
    records: tuple[AeoRecord, ...]
    locations: tuple[str, ...] = ()


RawValues = Mapping[str, str | None]


def _parse_date(value: str, name: str) -> date:
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise AeoError(f"{value!r} is not a date YYYY-MM-DD", location=name) from None


def _parse_bool(value: str, name: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise AeoError(f"{value!r} is not true or false", location=name)


def _parse_int(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise AeoError(f"{value!r} is not a positive whole number", location=name)
    return int(value)


def _record_from_raw(
    raw: RawValues, xrefs: Sequence[tuple[str, str]], spec: MappingSpec
) -> tuple[AeoRecord | None, list[AeoError]]:
    """Build one record, collecting a problem per bad field (then the record-level rules)."""
    errors: list[AeoError] = []
    values: dict[str, Any] = {}

    def text(name: str) -> str:
        value = raw.get(name)
        return value if value is not None else ""

    def convert(name: str, parse: Any) -> None:
        value = raw.get(name)
        if value is None:
            values[name] = None
            return
        try:
            values[name] = parse(value, name)
        except AeoError as exc:
            errors.append(exc)

    for mapping in spec.fields:
        if mapping.required and not mapping.multi and not raw.get(mapping.canonical):
            errors.append(AeoError(f"{mapping.canonical} is required", location=mapping.canonical))
    if errors:
        return None, errors
    convert("version", _parse_int)
    convert("administration", _parse_administration)
    convert("aeo_type", parse_aeo_type)
    convert("status", parse_status)
    convert("authorised_since", _parse_date)
    convert("status_effective", _parse_date)
    convert("consent", _parse_bool)
    convert("consent_date", _parse_date)
    convert("eori_status", _parse_eori_status)
    refs = []
    for scheme, value in xrefs:
        try:
            refs.append(CrossReference(scheme, value))
        except AeoError as exc:
            errors.append(exc)
    try:
        address = Address(
            text("address.street"),
            text("address.postcode"),
            text("address.city"),
            text("address.country"),
        )
    except AeoError as exc:
        errors.append(exc)
    if errors:
        return None, errors
    if values["eori_status"] == "INVALID" and values["status"] is AeoStatus.GRANTED:
        return None, [
            AeoError(
                f"EORI {text('holder_id')} is reported INVALID, so it cannot hold a GRANTED AEO "
                "status",
                code=AEO_EORI_NOT_VALID,
                location="eori_status",
            )
        ]
    try:
        record = AeoRecord(
            administration=values["administration"],
            holder_id=text("holder_id"),
            holder_name=text("holder_name"),
            address=address,
            authorisation_number=text("authorisation_number"),
            aeo_type=values["aeo_type"],
            issuing_country=text("issuing_country"),
            competent_authority=text("competent_authority"),
            authorised_since=values["authorised_since"],
            status=values["status"],
            status_effective=values["status_effective"],
            consent=values["consent"],
            consent_date=values["consent_date"],
            version=values["version"],
            status_reason=text("status_reason"),
            partner_programme=text("partner_programme"),
            cross_references=tuple(refs),
        )
    except AeoError as exc:
        return None, [exc]
    return record, []


def _parse_administration(value: str, name: str) -> Administration:
    try:
        return Administration(value)
    except ValueError:
        raise AeoError(f"{value!r} is not a known administration code", location=name) from None


def _parse_eori_status(value: str, name: str) -> str:
    if value not in ("VALID", "INVALID"):
        raise AeoError(f"{value!r} is not VALID or INVALID", location=name)
    return value


def _with_defaults(raw: dict[str, str | None], spec: MappingSpec) -> dict[str, str | None]:
    for mapping in spec.fields:
        if mapping.default and not raw.get(mapping.canonical):
            raw[mapping.canonical] = mapping.default
    return raw


class _Collector:
    """Gathers records and problems of one file; checks the file-level rules of its kind."""

    def __init__(self, kind: ExportKind, source: str) -> None:
        self.kind = kind
        self.source = source
        self.records: list[AeoRecord] = []
        self.problems: list[Problem] = []
        self.seen: dict[str, tuple[str, AeoRecord]] = {}
        self.locations: list[str] = []

    def add(self, where: str, record: AeoRecord | None, errors: Iterable[AeoError]) -> None:
        for error in errors:
            self.problems.append(Problem.of(where, error))
        if record is None:
            return
        number = record.authorisation_number
        earlier = self.seen.get(number)
        if earlier is not None:
            try:
                if self.kind is ExportKind.FULL:
                    raise AeoError(
                        f"{number} is also at {earlier[0]}: a full export lists it once",
                        code=AEO_DUPLICATE_AUTHORISATION,
                        location="authorisation_number",
                    )
                held = earlier[1]
                check_change_order(
                    held.version,
                    held.status_effective,
                    record.version,
                    record.status_effective,
                    where="version",
                )
                check_transition(held.status, record.status)
            except AeoError as exc:
                self.problems.append(Problem.of(where, exc))
                return
        self.seen[number] = (where, record)
        self.records.append(record)
        self.locations.append(where)

    def result(self) -> EosExport:
        if self.problems:
            raise AeoRejected(
                f"EOS {self.kind.value.lower()} export {self.source} refused",
                self.problems[:MAX_PROBLEMS],
                code=AEO_IMPORT_REJECTED,
                location=self.source,
            )
        return EosExport(self.kind, tuple(self.records), tuple(self.locations))


# --- XML ---------------------------------------------------------------------------------------
@cache
def _schema() -> etree.XMLSchema:
    """Our XSD, loaded once from the package (no network: it imports nothing)."""
    data = (resources.files("gateway.translate") / "schemas" / "eos-aeo-export.xsd").read_bytes()
    return etree.XMLSchema(
        etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    )


def parse_eos_xml(
    data: bytes,
    spec: MappingSpec,
    *,
    source: str = "<xml>",
    max_bytes: int = 256 * 1024 * 1024,
    max_elements: int = 5_000_000,
) -> EosExport:
    """Parse an EOS AEO export in XML (full or change feed, as its ``kind`` attribute says).

    Large lists are better sent as CSV: XML validation holds the whole tree in memory.
    """
    _check_spec_covers(spec)
    try:
        root = parse_xml(data, max_bytes=max_bytes, max_elements=max_elements, remove_comments=True)
    except GatewayError as exc:
        raise AeoRejected(
            f"EOS export {source} refused",
            [Problem(exc.location or "document", "", exc.code, exc.message)],
            code=AEO_IMPORT_REJECTED,
            location=source,
        ) from None
    schema = _schema()
    if root.tag != spec.qname(spec.xml_root) or not schema.validate(root):
        problems = [
            Problem(f"line {entry.line}", "", XML_SCHEMA, entry.message)
            for entry in list(schema.error_log)[:MAX_PROBLEMS]
        ] or [
            Problem(
                "line 1",
                "",
                XML_SCHEMA,
                f"root element is {root.tag!r}, expected {spec.qname(spec.xml_root)}",
            )
        ]
        raise AeoRejected(
            f"EOS export {source} is not valid against eos-aeo-export.xsd",
            problems,
            code=AEO_IMPORT_REJECTED,
            location=source,
        )
    collector = _Collector(ExportKind(root.get("kind") or ""), source)
    single = [m for m in spec.fields if not m.multi]
    multi = [m for m in spec.fields if m.multi]
    for element in root.iterchildren(spec.qname(spec.xml_record)):
        raw: dict[str, str | None] = {}
        for mapping in single:
            node: etree._Element | None = element
            for step in mapping.xml_steps:
                node = node.find(step) if node is not None else None
            raw[mapping.canonical] = node.text if node is not None else None
        xrefs: list[tuple[str, str]] = []
        for mapping in multi:
            parent: etree._Element | None = element
            for step in mapping.xml_steps[:-1]:
                parent = parent.find(step) if parent is not None else None
            if parent is not None:
                attr = mapping.xml_qualifier[1:]
                for item in parent.iterchildren(mapping.xml_steps[-1]):
                    xrefs.append((item.get(attr) or "", item.text or ""))
        record, errors = _record_from_raw(_with_defaults(raw, spec), xrefs, spec)
        collector.add(f"line {element.sourceline}", record, errors)
    return collector.result()


def _record_values(record: AeoRecord) -> dict[str, str | None]:
    """A record's fields as the text the export carries (None: left out)."""
    return {
        "version": str(record.version),
        "administration": record.administration.value,
        "holder_id": record.holder_id,
        "eori_status": None,
        "holder_name": record.holder_name,
        "address.street": record.address.street,
        "address.postcode": record.address.postcode or None,
        "address.city": record.address.city,
        "address.country": record.address.country,
        "authorisation_number": record.authorisation_number,
        "aeo_type": record.aeo_type.value if record.aeo_type is not None else None,
        "partner_programme": record.partner_programme or None,
        "issuing_country": record.issuing_country,
        "competent_authority": record.competent_authority,
        "authorised_since": record.authorised_since.isoformat(),
        "status": record.status.value,
        "status_effective": record.status_effective.isoformat(),
        "status_reason": record.status_reason or None,
        "consent": "true" if record.consent else "false",
        "consent_date": record.consent_date.isoformat() if record.consent_date else None,
    }


def write_eos_xml(records: Iterable[AeoRecord], kind: ExportKind, spec: MappingSpec) -> bytes:
    """An EOS export in XML, valid against our XSD, readable by ``parse_eos_xml``."""
    _check_spec_covers(spec)
    nsmap = {spec.xml_prefix: spec.xml_namespace}
    root = etree.Element(spec.qname(spec.xml_root), nsmap=nsmap)
    root.set("kind", kind.value)
    root.set("schemaVersion", "1")
    record_tag = spec.qname(spec.xml_record)
    for record in records:
        element = etree.SubElement(root, record_tag)
        values = _record_values(record)
        for mapping in spec.fields:
            if mapping.multi:
                parent = _ensure_path(element, mapping.xml_steps[:-1])
                for ref in record.cross_references:
                    item = etree.SubElement(parent, mapping.xml_steps[-1])
                    item.set(mapping.xml_qualifier[1:], ref.scheme)
                    item.text = ref.value
                continue
            value = values[mapping.canonical]
            if value is None or (mapping.default and value == mapping.default):
                continue
            _ensure_path(element, mapping.xml_steps).text = value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _ensure_path(element: etree._Element, steps: Sequence[str]) -> etree._Element:
    """The element at ``steps`` below ``element``, created (appended) where missing.

    Steps are written in spec order, so reusing the last child with a tag keeps siblings
    grouped (Address/Street then Address/City land in one Address).
    """
    node = element
    for index, step in enumerate(steps):
        last = node[-1] if len(node) and index < len(steps) - 1 else None
        node = last if last is not None and last.tag == step else etree.SubElement(node, step)
    return node


# --- CSV ---------------------------------------------------------------------------------------
def parse_eos_csv(
    data: bytes, spec: MappingSpec, *, kind: ExportKind, source: str = "<csv>"
) -> EosExport:
    """Parse an EOS AEO export in CSV: UTF-8 (a BOM is allowed), a header row with the spec's
    columns in any order, one authorisation per row. The kind (full or change feed) is not in
    the file; the caller says which it imports."""
    _check_spec_covers(spec)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AeoRejected(
            f"EOS export {source} refused",
            [Problem(f"byte {exc.start}", "", AEO_IMPORT_REJECTED, "the file is not UTF-8")],
            code=AEO_IMPORT_REJECTED,
            location=source,
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    collector = _Collector(kind, source)
    try:
        header = next(reader, None)
        if header is None:
            raise _header_problem(source, "the file is empty: a header row is required")
        columns = {m.csv: m for m in spec.fields}
        unknown = [name for name in header if name not in columns]
        missing = [name for name in columns if name not in header]
        if unknown or missing or len(set(header)) != len(header):
            raise _header_problem(
                source,
                f"header row: unknown columns {unknown}, missing columns {missing}"
                + (", a column is repeated" if len(set(header)) != len(header) else "")
                + f"; expected {', '.join(columns)}",
            )
        positions = [(index, columns[name]) for index, name in enumerate(header)]
        separator = spec.csv_multi_separator
        for row in reader:
            where = f"line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                collector.problems.append(
                    Problem(
                        where,
                        "",
                        AEO_IMPORT_REJECTED,
                        f"{len(row)} cells, the header has {len(header)}",
                    )
                )
                continue
            raw: dict[str, str | None] = {}
            xrefs: list[tuple[str, str]] = []
            for index, mapping in positions:
                cell = row[index]
                if mapping.multi:
                    for item in filter(None, cell.split(separator)):
                        scheme, _, value = item.partition(":")
                        xrefs.append((scheme, value))
                else:
                    raw[mapping.canonical] = cell if cell != "" else None
            record, errors = _record_from_raw(_with_defaults(raw, spec), xrefs, spec)
            collector.add(where, record, errors)
    except csv.Error as exc:
        collector.problems.append(
            Problem(f"line {reader.line_num}", "", AEO_IMPORT_REJECTED, f"not valid CSV: {exc}")
        )
    return collector.result()


def _header_problem(source: str, message: str) -> AeoRejected:
    return AeoRejected(
        f"EOS export {source} refused",
        [Problem("line 1", "", AEO_IMPORT_REJECTED, message)],
        code=AEO_IMPORT_REJECTED,
        location=source,
    )


def write_eos_csv(records: Iterable[AeoRecord], spec: MappingSpec) -> bytes:
    """An EOS export in CSV (header row in spec order), readable by ``parse_eos_csv``."""
    _check_spec_covers(spec)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([m.csv for m in spec.fields])
    separator = spec.csv_multi_separator
    for record in records:
        values = _record_values(record)
        row = []
        for mapping in spec.fields:
            if mapping.multi:
                row.append(separator.join(f"{r.scheme}:{r.value}" for r in record.cross_references))
            else:
                value = values[mapping.canonical]
                row.append("" if value is None else value)
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


def parse_eos_export(
    data: bytes, spec: MappingSpec, *, csv_kind: ExportKind | None = None, source: str = "<input>"
) -> EosExport:
    """XML or CSV, told apart by the first non-blank byte ('<' is XML); CSV needs its kind."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return parse_eos_xml(data, spec, source=source)
    if csv_kind is None:
        raise AeoRejected(
            f"EOS export {source} refused",
            [
                Problem(
                    "line 1",
                    "",
                    AEO_IMPORT_REJECTED,
                    "a CSV export does not say whether it is a full export or a change feed: "
                    "name the kind",
                )
            ],
            code=AEO_IMPORT_REJECTED,
            location=source,
        )
    return parse_eos_csv(data, spec, kind=csv_kind, source=source)
