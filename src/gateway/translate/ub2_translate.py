"""UB2 translators: CC315A, CC313A and WCO DEC-DMS declarations into the canonical record.

What maps where is data, one spec per source message (adapters/mappings/cc315a.toml,
cc313a.toml, dec-dms-export.toml, dec-dms-import.toml), run by the engine in
``gateway.translate.mapping``. This module is the face the rest of the gateway uses:

- ``load_mapping_specs(directory)`` reads and checks the specs at start-up (a bad spec is
  UB2_MAPPING_INVALID naming file:row, and the gateway does not start);
- ``to_consignment(message, spec)`` translates one message already read and validated by
  ``gateway.translate.eu_messages.read_eu_message`` (it reads only ``source``, ``root`` and
  ``base_path``), filling ``source_paths`` so code-list findings point into the message;
- ``coverage(spec, schema_dir)`` lists every element the source schema defines and says whether
  it is carried (target, WCO ID), dropped (reason) or not covered: ``gncgw mapping coverage``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Protocol

from lxml import etree

from gateway.errors import UB2_MAPPING_INVALID, UB2_UNKNOWN_MESSAGE, TransactionError
from gateway.model.consignment import Consignment, SourceMessage
from gateway.translate.dropped_checks import check_dropped
from gateway.translate.mapping import (
    DroppedRow,
    FieldRow,
    MappingSpec,
    RepeatRow,
    element_paths,
    read_spec_file,
    run_spec,
    strip_predicates,
    unmapped,
)

__all__ = [
    "CoverageEntry",
    "CoverageReport",
    "CoverageStatus",
    "DroppedRow",
    "FieldRow",
    "MappingSpec",
    "RepeatRow",
    "TranslatableMessage",
    "coverage",
    "element_paths",
    "load_mapping_spec",
    "load_mapping_specs",
    "schema_elements",
    "to_consignment",
    "unmapped",
]


class TranslatableMessage(Protocol):
    """What a translator reads of an ``EuMessage`` (gateway.translate.eu_messages)."""

    @property
    def source(self) -> SourceMessage: ...

    @property
    def root(self) -> etree._Element: ...

    @property
    def base_path(self) -> str: ...


def load_mapping_spec(path: Path) -> MappingSpec:
    """Read, check and compile one spec file (UB2_MAPPING_INVALID with file:row)."""
    return read_spec_file(path)


def load_mapping_specs(directory: Path) -> dict[SourceMessage, MappingSpec]:
    """Every UB2 spec in ``directory`` by source message (files without ``spec.source``, such
    as the UB1 eos-aeo.toml beside them, are not UB2 specs and are left alone)."""
    if not directory.is_dir():
        raise TransactionError(
            "the mapping spec directory does not exist",
            code=UB2_MAPPING_INVALID,
            location=str(directory),
        )
    specs: dict[SourceMessage, MappingSpec] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            head = tomllib.loads(path.read_text("utf-8")).get("spec")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            head = {"source": "?"}  # let the spec reader report it properly
        if not isinstance(head, dict) or "source" not in head:
            continue
        spec = read_spec_file(path)
        if spec.source in specs:
            raise TransactionError(
                f"a second spec for {spec.source} (first: {specs[spec.source].path})",
                code=UB2_MAPPING_INVALID,
                location=str(path),
            )
        specs[spec.source] = spec
    return specs


def to_consignment(message: TranslatableMessage, spec: MappingSpec) -> Consignment:
    """Translate one EU message by its spec; values as declared, each with its source XPath."""
    if message.source != spec.source:
        raise TransactionError(
            f"the message is a {message.source}, the spec {spec.path or spec.name} maps "
            f"{spec.source}",
            code=UB2_MAPPING_INVALID,
            location=message.base_path,
        )
    if etree.QName(message.root).localname != spec.root:
        raise TransactionError(
            f"the message element is {etree.QName(message.root).localname}, not {spec.root}",
            code=UB2_UNKNOWN_MESSAGE,
            location=message.base_path,
        )
    record = run_spec(spec, message.root, message.base_path)
    check_dropped(spec, message.root)
    return record


# --- coverage -----------------------------------------------------------------------------------
class CoverageStatus(StrEnum):
    CARRIED = "carried"
    DROPPED = "dropped"
    NOT_COVERED = "NOT COVERED"


@dataclass(frozen=True)
class CoverageEntry:
    """One source element and what the spec does with it."""

    path: str  # element path below the message element, local names ("HEAHEA/RefNumHEA4")
    status: CoverageStatus
    targets: tuple[str, ...] = ()  # record fields it fills (or the list a repeat makes)
    wco_ids: tuple[str, ...] = ()  # the WCO IDs the spec names for them
    reason: str = ""  # why dropped; for a carried group, "group"
    schema_wco_id: str = ""  # the WCO ID the source schema annotates the element with


@dataclass(frozen=True)
class CoverageReport:
    spec: str
    source: SourceMessage
    schema: str  # the schema walked ("" when none was given: then only the spec's own rows)
    entries: tuple[CoverageEntry, ...]

    @property
    def not_covered(self) -> tuple[CoverageEntry, ...]:
        return tuple(e for e in self.entries if e.status is CoverageStatus.NOT_COVERED)

    def count(self, status: CoverageStatus) -> int:
        return sum(1 for e in self.entries if e.status is status)

    def render(self) -> str:
        """A text table for `gncgw mapping coverage SOURCE` (one line per element)."""
        rows = [("STATUS", "SOURCE ELEMENT", "TARGET", "WCO ID", "REASON / NOTE")]
        for entry in self.entries:
            rows.append(
                (
                    str(entry.status),
                    entry.path,
                    ", ".join(entry.targets),
                    ", ".join(i for i in entry.wco_ids if i) or entry.schema_wco_id,
                    entry.reason,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            f"{self.source} mapping coverage (spec {self.spec}"
            + (f", schema {self.schema})" if self.schema else ", no schema given)"),
        ]
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(4)]
            lines.append("  ".join([*cells, row[4]]).rstrip())
        lines.append(
            f"{len(self.entries)} elements: {self.count(CoverageStatus.CARRIED)} carried, "
            f"{self.count(CoverageStatus.DROPPED)} dropped, "
            f"{self.count(CoverageStatus.NOT_COVERED)} not covered"
        )
        return "\n".join(lines) + "\n"


@cache
def _schema_elements(path: str, root: str) -> tuple[tuple[str, str], ...]:
    import xmlschema  # slow to import and to build; only coverage needs it

    try:
        schema = xmlschema.XMLSchema(path)
    except (OSError, xmlschema.XMLSchemaException) as exc:
        raise TransactionError(
            f"the source schema does not load: {exc}", code=UB2_MAPPING_INVALID, location=path
        ) from None
    top = next((e for e in schema.elements.values() if e.local_name == root), None)
    if top is None:
        raise TransactionError(
            f"the schema declares no element {root}", code=UB2_MAPPING_INVALID, location=path
        )
    out: list[tuple[str, str]] = []

    def wco_id(element: object) -> str:
        annotation = getattr(element, "annotation", None)
        for documentation in getattr(annotation, "documentation", ()):
            for child in documentation:
                if isinstance(child.tag, str) and child.tag.endswith("WCOID"):
                    return (child.text or "").strip()
        return ""

    def walk(element: object, path: str, seen: frozenset[str]) -> None:
        element_type = getattr(element, "type", None)
        if element_type is None or not element_type.is_complex():
            return
        for child in element.iterchildren():  # type: ignore[attr-defined]
            child_path = f"{path}/{child.local_name}" if path else child.local_name
            out.append((child_path, wco_id(child)))
            name = child.type.name
            if name and name in seen:
                continue  # a recursive type: listed once
            walk(child, child_path, seen | {name} if name else seen)

    walk(top, "", frozenset())
    return tuple(out)


def schema_elements(spec: MappingSpec, schema_dir: Path) -> tuple[tuple[str, str], ...]:
    """(element path, WCO ID annotated or "") for every element the spec's schema defines."""
    path = schema_dir / spec.schema
    if not path.is_file():
        raise TransactionError(
            f"the schema pack has no {spec.schema}", code=UB2_MAPPING_INVALID, location=str(path)
        )
    return _schema_elements(str(path), spec.root)


def coverage(
    spec: MappingSpec, schema_dir: Path | None, *, only: Collection[str] | None = None
) -> CoverageReport:
    """Carried / dropped / not covered for every element of the source schema.

    ``only`` restricts the report to those element paths (DEC-DMS defines hundreds of elements
    no EU declaration uses: the tests pass the paths occurring in the samples). Without a
    schema, the report lists the elements the spec names.
    """
    known: dict[str, str] = {}
    if schema_dir is not None:
        known = dict(schema_elements(spec, schema_dir))
    paths: list[str] = list(known)
    if only is not None:
        wanted = [p for p in only if "@" not in p]
        paths = [p for p in paths if p in set(wanted)] + sorted(set(wanted) - set(known))
    elif schema_dir is None:
        named = {strip_predicates(r.source) for r in _carrying(spec)}
        named |= {strip_predicates(r.source) for r in spec.dropped}
        paths = sorted(p for p in named if "@" not in p)
    entries = tuple(_entry(spec, path, known.get(path, "")) for path in paths)
    return CoverageReport(
        spec.path or spec.name,
        spec.source,
        str(schema_dir / spec.schema) if schema_dir is not None else "",
        entries,
    )


def _entry(spec: MappingSpec, path: str, schema_wco_id: str) -> CoverageEntry:
    carried: list[FieldRow | RepeatRow] = [
        r for r in _carrying(spec) if strip_predicates(r.source) == path
    ]
    dropped = [d for d in spec.dropped if strip_predicates(d.source) == path]
    partly = "; ".join(f"{d.source}: {d.reason}" for d in dropped if d.source != path)
    if carried:
        return CoverageEntry(
            path,
            CoverageStatus.CARRIED,
            tuple(r.target for r in carried),
            tuple(r.wco_id for r in carried),
            f"partly dropped: {partly}" if partly else "",
            schema_wco_id,
        )
    exact = [d for d in dropped if d.source == path]
    if exact:
        return CoverageEntry(path, CoverageStatus.DROPPED, reason=exact[0].reason,
                             schema_wco_id=schema_wco_id)  # fmt: skip
    for d in spec.dropped:
        if d.source == strip_predicates(d.source) and path.startswith(d.source + "/"):
            return CoverageEntry(
                path,
                CoverageStatus.DROPPED,
                reason=f"inside {d.source}: {d.reason}",
                schema_wco_id=schema_wco_id,
            )
    below = [r for r in _carrying(spec) if _under(r.source, path)]
    if below:
        return CoverageEntry(
            path, CoverageStatus.CARRIED, reason="group: its elements are listed below",
            schema_wco_id=schema_wco_id,
        )  # fmt: skip
    if dropped or any(_under(d.source, path) for d in spec.dropped):
        return CoverageEntry(
            path, CoverageStatus.DROPPED, reason=partly or "every element inside it is dropped",
            schema_wco_id=schema_wco_id,
        )  # fmt: skip
    return CoverageEntry(path, CoverageStatus.NOT_COVERED, schema_wco_id=schema_wco_id)


def _carrying(spec: MappingSpec) -> tuple[FieldRow | RepeatRow, ...]:
    return (*spec.repeats, *spec.fields)


def _under(source: str, path: str) -> bool:
    return strip_predicates(source).startswith(path + "/")
