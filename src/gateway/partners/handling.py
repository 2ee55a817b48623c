"""UB3 handling rules per partner (adapters/handling/*.toml): loading them, and applying them.

A handling rules file is the part of an agreement that says what of the EU's risk information a
partner may receive: which UB3 messages, which risk areas (a family such as ``HEALTH`` covers its
sub-areas), the highest handling label, what happens to personal data of natural persons
(``refuse`` the record, ``remove`` those operators, or ``allow``), which other fields are removed
before sending, and how long received records are kept. Loading is strict (unknown keys, wrong
types and unknown codes are HDL_* errors naming ``source:key`` and its line) because the file is
legal configuration a customs expert reviews.

``prepare_outbound`` is the gate every outbound UB3 record passes BEFORE it is signed: it either
returns what may be sent (with the removals applied and listed) or raises a RiskError whose code
names the rule and whose location is ``source:key`` of the rule that refused it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from gateway.errors import (
    HDL_MISSING_KEY,
    HDL_NOT_TOML,
    HDL_UNKNOWN_CODE,
    HDL_UNKNOWN_KEY,
    HDL_WRONG_TYPE,
    RISK_AREA_NOT_CLEARED,
    RISK_LABEL_ABOVE_CLEARANCE,
    RISK_MESSAGE_NOT_AGREED,
    RISK_PERSONAL_DATA_FORBIDDEN,
    HandlingRulesError,
    RiskError,
)
from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import (
    Feedback,
    Indicators,
    IprDetention,
    IprStatistics,
    Operator,
    RiskArea,
    RiskInformation,
    RiskKind,
    UB3Record,
)

__all__ = [
    "HandlingRules",
    "Outbound",
    "PersonalData",
    "RemovableField",
    "load_handling_rules",
    "prepare_outbound",
]


class PersonalData(StrEnum):
    """What to do with operators that are natural persons (their name and identifier)."""

    REFUSE = "refuse"  # the record is refused (RISK_PERSONAL_DATA_FORBIDDEN)
    REMOVE = "remove"  # those operators are removed before sending
    ALLOW = "allow"


class RemovableField(StrEnum):
    """Fields a handling rules file may order removed before sending."""

    OPERATOR_IDENTIFIERS = "operator_identifiers"  # ids of every operator (legal persons too)
    OPERATOR_NAMES = "operator_names"
    CONTAINER_IDS = "container_ids"
    FEEDBACK_REMARKS = "feedback_remarks"


@dataclass(frozen=True)
class HandlingRules:
    source: str  # file name, for locations of errors and refusals
    administration: Administration
    agreement: str
    agreement_reference: str
    messages: frozenset[RiskKind]
    areas: frozenset[RiskArea]
    max_label: HandlingLabel
    personal_data: PersonalData
    remove: frozenset[RemovableField]
    retention: timedelta

    def cleared_for(self, area: RiskArea) -> bool:
        return area in self.areas or area.family in self.areas

    def rule(self, key: str) -> str:
        """The location of a rule, as refusals name it."""
        return f"{self.source}:{key}"


# --- loading -----------------------------------------------------------------------------------
def _line_of(text: str, table: str, key: str) -> int | None:
    lines = text.splitlines()
    start = 0
    if table:
        header = re.compile(r"\s*\[\s*" + re.escape(table) + r"\s*\]\s*(#.*)?$")
        for number, line in enumerate(lines):
            if header.match(line):
                start = number + 1
                break
        else:
            return None
        if not key:
            return start
    pattern = re.compile(r"\s*" + re.escape(key) + r"\s*=")
    for number in range(start, len(lines)):
        if number > start and table and lines[number].lstrip().startswith("["):
            break
        if pattern.match(lines[number]):
            return number + 1
    return start or None


class _Table:
    def __init__(self, data: Mapping[str, Any], name: str, source: str, text: str) -> None:
        self.data = data
        self.name = name
        self.source = source
        self.text = text

    def error(self, key: str, message: str, code: str) -> HandlingRulesError:
        dotted = f"{self.name}.{key}" if self.name and key else self.name or key
        line = _line_of(self.text, self.name, key.split("[")[0])
        where = f" (line {line})" if line else ""
        return HandlingRulesError(
            f"{dotted}{where}: {message}", code=code, location=f"{self.source}:{dotted}"
        )

    def expect(self, *names: str) -> None:
        for name in sorted(set(self.data) - set(names)):
            raise self.error(name, f"unknown key (known: {', '.join(names)})", HDL_UNKNOWN_KEY)

    def get(self, name: str, kind: type, what: str) -> Any:
        if name not in self.data:
            raise self.error(name, f"missing ({what} required)", HDL_MISSING_KEY)
        value = self.data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"{value!r} is not {what}", HDL_WRONG_TYPE)
        return value

    def text_value(self, name: str) -> str:
        value: str = self.get(name, str, "a string")
        if not value.strip():
            raise self.error(name, "must not be empty", HDL_MISSING_KEY)
        return value.strip()

    def strings(self, name: str) -> list[str]:
        value: list[Any] = self.get(name, list, "a list of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{index}]", f"{item!r} is not a string", HDL_WRONG_TYPE)
        return [str(item) for item in value]

    def table(self, name: str) -> _Table:
        value = self.get(name, dict, "a table")
        return _Table(value, f"{self.name}.{name}" if self.name else name, self.source, self.text)

    def code(self, name: str, raw: str, kind: type[StrEnum], index: int | None = None) -> Any:
        try:
            return kind(raw)
        except ValueError:
            key = name if index is None else f"{name}[{index}]"
            known = ", ".join(m.value for m in kind)
            raise self.error(key, f"{raw!r} is not one of: {known}", HDL_UNKNOWN_CODE) from None

    def codes(self, name: str, kind: type[StrEnum]) -> list[Any]:
        out = []
        for index, raw in enumerate(self.strings(name)):
            item = self.code(name, raw, kind, index)
            if item in out:
                raise self.error(f"{name}[{index}]", f"{raw!r} is listed twice", HDL_WRONG_TYPE)
            out.append(item)
        return out


def load_handling_rules(text: str, source: str) -> HandlingRules:
    """Read and check one handling rules file; ``source`` names it in errors and refusals."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HandlingRulesError(
            f"not valid TOML: {exc}", code=HDL_NOT_TOML, location=source
        ) from None
    top = _Table(data, "", source, text)
    top.expect("partner", "agreement", "receive", "remove", "retention")

    partner = top.table("partner")
    partner.expect("administration")
    admin: Administration = partner.code(
        "administration", partner.text_value("administration"), Administration
    )

    agreement = top.table("agreement")
    agreement.expect("name", "reference")
    name = agreement.text_value("name")
    reference = agreement.text_value("reference")

    receive = top.table("receive")
    receive.expect("messages", "risk_areas", "max_label")
    messages = frozenset(receive.codes("messages", RiskKind))
    areas = frozenset(receive.codes("risk_areas", RiskArea))
    if RiskKind.RISK_INFORMATION in messages and not areas:
        raise receive.error(
            "risk_areas", "RiskInformation is agreed but no risk area is cleared", HDL_MISSING_KEY
        )
    if messages & {RiskKind.IPR_DETENTION, RiskKind.IPR_STATISTICS} and RiskArea.IPR not in areas:
        raise receive.error(
            "risk_areas", "IPR detention messages are agreed but IPR is not cleared", HDL_WRONG_TYPE
        )
    max_label: HandlingLabel = receive.code(
        "max_label", receive.text_value("max_label"), HandlingLabel
    )

    remove = top.table("remove")
    remove.expect("personal_data", "fields")
    personal: PersonalData = remove.code(
        "personal_data", remove.text_value("personal_data"), PersonalData
    )
    fields = frozenset(remove.codes("fields", RemovableField))

    retention = top.table("retention")
    retention.expect("days")
    days: int = retention.get("days", int, "an integer number of days")
    if not 1 <= days <= 3660:
        raise retention.error("days", f"{days} is outside 1..3660", HDL_WRONG_TYPE)
    return HandlingRules(
        source, admin, name, reference, messages, areas, max_label, personal, fields,
        timedelta(days=days),
    )  # fmt: skip


# --- applying ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outbound:
    """What may be sent to the partner, and what the rules removed from it to get there."""

    record: UB3Record
    removed: tuple[str, ...]  # e.g. "indicators.operators[1] (natural person)"


def _refuse(rules: HandlingRules, key: str, code: str, message: str) -> RiskError:
    return RiskError(
        f"not sent to {rules.administration.value}: {message} (rule {rules.rule(key)})",
        code=code,
        location=rules.rule(key),
    )


def _strip_operators(
    rules: HandlingRules,
    operators: tuple[Operator, ...],
    where: str,
    removed: list[str],
    withheld: list[tuple[str, str]],
) -> tuple[Operator, ...]:
    """The operators the partner may see; what was taken out goes to `removed` (where) and
    `withheld` (where, the value), so free text repeating a value can be refused."""
    kept: list[Operator] = []
    for index, operator in enumerate(operators):
        if operator.natural_person and rules.personal_data is PersonalData.REMOVE:
            removed.append(f"{where}[{index}] (natural person)")
            withheld.extend(
                (f"{where}[{index}]", value) for value in (operator.name, operator.identifier)
            )
            continue
        identifier, name = operator.identifier, operator.name
        if identifier and RemovableField.OPERATOR_IDENTIFIERS in rules.remove:
            removed.append(f"{where}[{index}].identifier")
            withheld.append((f"{where}[{index}].identifier", identifier))
            identifier = ""
        if name and RemovableField.OPERATOR_NAMES in rules.remove:
            removed.append(f"{where}[{index}].name")
            withheld.append((f"{where}[{index}].name", name))
            name = ""
        if not identifier and not name:
            removed.append(f"{where}[{index}] (nothing left to identify it)")
            continue
        kept.append(replace(operator, identifier=identifier, name=name))
    return tuple(kept)


def prepare_outbound(rules: HandlingRules, record: UB3Record, today: date) -> Outbound:
    """Check ``record`` against the partner's rules and apply the removals, before signing.

    Refusals, in this order: RISK_MESSAGE_NOT_AGREED, RISK_VALIDITY_EXPIRED (risk
    information), RISK_AREA_NOT_CLEARED, RISK_LABEL_ABOVE_CLEARANCE,
    RISK_PERSONAL_DATA_FORBIDDEN (personal_data = "refuse" and a natural person is named).
    """
    if record.kind not in rules.messages:
        raise _refuse(
            rules, "receive.messages", RISK_MESSAGE_NOT_AGREED,
            f"{record.kind.value} is not among the agreed messages "
            f"({', '.join(sorted(m.value for m in rules.messages)) or 'none'})",
        )  # fmt: skip
    if isinstance(record, RiskInformation):
        record.check_valid_on(today)
    for area in record.areas:
        if not rules.cleared_for(area):
            raise _refuse(
                rules, "receive.risk_areas", RISK_AREA_NOT_CLEARED,
                f"risk area {area.value} is not cleared "
                f"(cleared: {', '.join(sorted(a.value for a in rules.areas))})",
            )  # fmt: skip
    if record.label.rank > rules.max_label.rank:
        raise _refuse(
            rules, "receive.max_label", RISK_LABEL_ABOVE_CLEARANCE,
            f"handling label {record.label.value} is above {rules.max_label.value}",
        )  # fmt: skip
    naturals = [i for i, op in enumerate(record.operators) if op.natural_person]
    if naturals and rules.personal_data is PersonalData.REFUSE:
        where = "indicators.operators" if isinstance(record, RiskInformation) else "operators"
        raise _refuse(
            rules, "remove.personal_data", RISK_PERSONAL_DATA_FORBIDDEN,
            f"{where}{naturals} name natural persons and the agreement forbids personal data",
        )  # fmt: skip
    removed: list[str] = []
    withheld: list[tuple[str, str]] = []
    out: UB3Record = record
    if isinstance(record, RiskInformation):
        indicators = record.indicators
        operators = _strip_operators(
            rules, indicators.operators, "indicators.operators", removed, withheld
        )
        containers = indicators.container_ids
        if containers and RemovableField.CONTAINER_IDS in rules.remove:
            removed.append("indicators.container_ids")
            containers = ()
        new_indicators = replace(indicators, operators=operators, container_ids=containers)
        if new_indicators.empty:
            raise _refuse(
                rules, "remove", RISK_PERSONAL_DATA_FORBIDDEN,
                "no indicator is left once the rules' removals are applied",
            )  # fmt: skip
        out = replace(record, indicators=_same_or(indicators, new_indicators))
    elif isinstance(record, IprDetention):
        out = replace(
            record,
            operators=_strip_operators(rules, record.operators, "operators", removed, withheld),
        )
    elif isinstance(record, Feedback):
        if record.remarks and RemovableField.FEEDBACK_REMARKS in rules.remove:
            removed.append("remarks")
            out = replace(record, remarks="")
    elif isinstance(record, IprStatistics):
        pass
    _refuse_withheld_in_text(rules, out, withheld)
    return Outbound(out, tuple(removed))


def _free_texts(record: UB3Record) -> Iterator[tuple[str, str]]:
    """(where, text) of the record's free-text fields."""
    if isinstance(record, RiskInformation):
        yield "description", record.description
    elif isinstance(record, IprDetention):
        for index, item in enumerate(record.goods):
            yield f"goods[{index}].description", item.description
    elif isinstance(record, Feedback):
        yield "remarks", record.remarks


def _refuse_withheld_in_text(
    rules: HandlingRules, record: UB3Record, withheld: list[tuple[str, str]]
) -> None:
    """A value the rules removed from the operators must not go out in free text either. The
    gateway does not edit free text (it cannot know what else a sentence says): it refuses."""
    for where, value in withheld:
        needle = value.strip().casefold()
        if len(needle) < 3:
            continue  # too short to tell a name from a word
        for text_where, text in _free_texts(record):
            if needle in text.casefold():
                raise _refuse(
                    rules, "remove", RISK_PERSONAL_DATA_FORBIDDEN,
                    f"{text_where} repeats {value!r}, which the rules remove ({where}): take it "
                    "out of the text and send again (the gateway does not edit free text)",
                )  # fmt: skip


def _same_or(old: Indicators, new: Indicators) -> Indicators:
    return old if old == new else new
