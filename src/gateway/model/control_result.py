"""UB2 control results: what a control of a consignment found, for the other side to recognise.

"Assess in advance, control where required": when one side controls a consignment whose
transaction data it received (or sent), it reports the control types carried out, the outcome,
the seals it checked and the discrepancies it found, linked to the transaction by its reference
(and, where known, the message id of the envelope that carried it).

Pure values (no I/O). The constructor checks every field and the coherence of the outcome, and
raises a `TransactionError` (UB2_CONTROL_RESULT_INVALID, or the code-list code of the value, e.g.
UB2_CONTAINER_INVALID for a seal's container) located by the field path, so an incoherent result
(SATISFACTORY with a broken seal, DISCREPANCIES_FOUND with nothing found) is never built, sent or
stored. WCO IDs are named where the WCO DM has the element (and in ub2-transaction.xsd).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.errors import UB2_CONTROL_RESULT_INVALID, TransactionError
from gateway.model.codelists import check_container_number, check_customs_office
from gateway.model.codes import Administration

__all__ = [
    "ControlOutcome",
    "ControlResult",
    "ControlType",
    "Discrepancy",
    "DiscrepancyKind",
    "SealCheck",
]

MAX_ID = 35  # WCO an..35 identifiers (seal T027, reference)
MAX_TEXT = 512
MAX_REMARKS = 4000
_REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,34}")
# XML 1.0 cannot carry C0 controls (bar tab and line feed), surrogates or U+FFFE/U+FFFF; carriage
# returns are refused too because XML parsers fold them into line feeds. What remains has the
# same meaning in protobuf, XML and JSON, which keeps the bindings lossless.
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


class ControlType(StrEnum):
    """Kinds of control (UCC Art. 46: documentary, physical, scanning, seals, samples)."""

    DOCUMENTARY = "DOCUMENTARY"
    PHYSICAL = "PHYSICAL"  # examination of the goods
    NON_INTRUSIVE = "NON_INTRUSIVE"  # scanning (X-ray, gamma), detection equipment
    SEAL_CHECK = "SEAL_CHECK"
    SAMPLING = "SAMPLING"
    IDENTITY_CHECK = "IDENTITY_CHECK"  # the goods are those declared (marks, numbers, containers)


class ControlOutcome(StrEnum):
    SATISFACTORY = "SATISFACTORY"  # nothing found: the other side may recognise the control
    DISCREPANCIES_FOUND = "DISCREPANCIES_FOUND"
    NOT_CONTROLLED = "NOT_CONTROLLED"  # planned but not carried out (remarks say why)


class DiscrepancyKind(StrEnum):
    """Which declared value the control contradicted."""

    DESCRIPTION = "DESCRIPTION"  # 137
    COMMODITY_CODE = "COMMODITY_CODE"  # 145
    QUANTITY = "QUANTITY"
    GROSS_MASS = "GROSS_MASS"  # 126 / 131
    PACKAGES = "PACKAGES"  # 141 / 144
    CONTAINER = "CONTAINER"  # 159
    SEAL = "SEAL"  # T027
    PARTY = "PARTY"
    OTHER = "OTHER"


def _fail(message: str, location: str, code: str = UB2_CONTROL_RESULT_INVALID) -> TransactionError:
    return TransactionError(message, code=code, location=location)


def _text(value: object, location: str, max_len: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(f"must be text, not {type(value).__name__}", location)
    if not value.strip():
        raise _fail("must not be empty", location)
    if value != value.strip():
        raise _fail("has leading or trailing white space", location)
    if len(value) > max_len:
        raise _fail(f"is {len(value)} characters, at most {max_len}", location)
    bad = _FORBIDDEN.search(value) or (None if multiline else re.search("[\t\n]", value))
    if bad is not None:
        raise _fail(f"holds the control character U+{ord(bad.group()):04X}", location)
    return value


def _optional_text(value: object, location: str, max_len: int, *, multiline: bool = False) -> None:
    if value is not None:
        _text(value, location, max_len, multiline=multiline)


def _enum(value: object, kind: type[StrEnum], location: str) -> None:
    if not isinstance(value, kind):
        raise _fail(f"{value!r} is not a {kind.__name__}", location)


@dataclass(frozen=True)
class SealCheck:
    """A seal found on the consignment: its identifier (T027), whether it was intact."""

    seal_id: str
    intact: bool
    container: str | None = None  # 159: the container it seals, ISO 6346 compact form

    def __post_init__(self) -> None:
        _text(self.seal_id, "seal_id", MAX_ID)
        if not isinstance(self.intact, bool):
            raise _fail(f"{self.intact!r} is not true or false", "intact")
        if self.container is not None:
            compact = check_container_number(self.container, "container")
            if compact != self.container:
                raise _fail(
                    f"{self.container!r} is not in compact form (write {compact!r})", "container"
                )


@dataclass(frozen=True)
class Discrepancy:
    """What the control found against what was declared."""

    kind: DiscrepancyKind
    description: str
    goods_item: int | None = None  # 006 goods item number (1-based) it concerns, None: all
    declared: str | None = None
    found: str | None = None

    def __post_init__(self) -> None:
        _enum(self.kind, DiscrepancyKind, "kind")
        _text(self.description, "description", MAX_TEXT, multiline=True)
        if self.goods_item is not None and (
            not isinstance(self.goods_item, int)
            or isinstance(self.goods_item, bool)
            or not 1 <= self.goods_item <= 99_999
        ):
            raise _fail(f"{self.goods_item!r} is not a goods item number 1..99999", "goods_item")
        _optional_text(self.declared, "declared", MAX_TEXT)
        _optional_text(self.found, "found", MAX_TEXT)


def _nested(location: str, items: object, kind: type) -> None:
    if not isinstance(items, tuple):
        raise _fail(f"must be a tuple, not {type(items).__name__}", location)
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            raise _fail(f"{item!r} is not a {kind.__name__}", f"{location}[{index}]")


@dataclass(frozen=True)
class ControlResult:
    """The result of one control of the consignment of one UB2 transaction."""

    reference: str  # the control result's own reference (unique per controlling administration)
    transaction_reference: str  # Consignment.reference (LRN / D026) it concerns
    transaction_message_id: str | None  # envelope message id of the transaction, when known
    controlling_administration: Administration
    controlled_at: datetime  # UTC, aware
    control_types: tuple[ControlType, ...]
    outcome: ControlOutcome
    office: str | None = None  # customs office reference number where controlled (G...)
    seals: tuple[SealCheck, ...] = ()
    discrepancies: tuple[Discrepancy, ...] = ()
    remarks: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.reference, str) or not _REFERENCE.fullmatch(self.reference):
            raise _fail(
                f"{self.reference!r} is not a reference (1 to 35 of A-Z 0-9 / _ . -, starting "
                "with a letter or digit)",
                "reference",
            )
        _text(self.transaction_reference, "transaction_reference", MAX_ID)
        if self.transaction_message_id is not None:
            _check_uuid(self.transaction_message_id, "transaction_message_id")
        _enum(self.controlling_administration, Administration, "controlling_administration")
        _check_utc(self.controlled_at, "controlled_at")
        self._check_types()
        _enum(self.outcome, ControlOutcome, "outcome")
        if self.office is not None:
            check_customs_office(self.office, "office")
        _nested("seals", self.seals, SealCheck)
        seen: set[str] = set()
        for index, seal in enumerate(self.seals):
            if seal.seal_id in seen:
                raise _fail(f"seal {seal.seal_id!r} is listed twice", f"seals[{index}].seal_id")
            seen.add(seal.seal_id)
        _nested("discrepancies", self.discrepancies, Discrepancy)
        _optional_text(self.remarks, "remarks", MAX_REMARKS, multiline=True)
        self._check_outcome()

    def _check_types(self) -> None:
        if not isinstance(self.control_types, tuple) or not self.control_types:
            raise _fail("at least one control type is required", "control_types")
        for index, kind in enumerate(self.control_types):
            _enum(kind, ControlType, f"control_types[{index}]")
            if kind in self.control_types[:index]:
                raise _fail(f"{kind.value} is listed twice", f"control_types[{index}]")

    def _check_outcome(self) -> None:
        broken = [i for i, seal in enumerate(self.seals) if not seal.intact]
        if self.seals and ControlType.SEAL_CHECK not in self.control_types:
            raise _fail("seals are reported but SEAL_CHECK is not a control type", "seals")
        if self.outcome is ControlOutcome.SATISFACTORY:
            if self.discrepancies:
                raise _fail("a SATISFACTORY control reports no discrepancy", "discrepancies[0]")
            if broken:
                raise _fail(
                    "a SATISFACTORY control reports no broken seal", f"seals[{broken[0]}].intact"
                )
        elif self.outcome is ControlOutcome.DISCREPANCIES_FOUND:
            if not self.discrepancies and not broken:
                raise _fail(
                    "DISCREPANCIES_FOUND needs a discrepancy or a broken seal", "discrepancies"
                )
        else:  # NOT_CONTROLLED
            if self.seals:
                raise _fail("a control NOT_CONTROLLED checked no seal", "seals")
            if self.discrepancies:
                raise _fail("a control NOT_CONTROLLED found no discrepancy", "discrepancies")
            if self.remarks is None:
                raise _fail("NOT_CONTROLLED needs remarks saying why", "remarks")
        if (
            ControlType.SEAL_CHECK in self.control_types
            and not self.seals
            and self.outcome is not ControlOutcome.NOT_CONTROLLED
        ):
            raise _fail("a SEAL_CHECK control lists the seals it checked", "seals")

    @property
    def broken_seals(self) -> tuple[SealCheck, ...]:
        return tuple(seal for seal in self.seals if not seal.intact)


def _check_uuid(value: object, location: str) -> None:
    try:
        if not isinstance(value, str) or str(uuid.UUID(value)) != value:
            raise ValueError
    except ValueError:
        raise _fail(f"{value!r} is not a UUID in canonical lower-case form", location) from None


def _check_utc(value: object, location: str) -> None:
    if not isinstance(value, datetime):
        raise _fail(f"{value!r} is not a date and time", location)
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise _fail(f"{value.isoformat()} is not an aware UTC date and time", location)
