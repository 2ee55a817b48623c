"""The conformance case model and suite loading, as pure code (texts in, checked objects out).

A suite is data a tester can review: ``conformance/<partner>/suite.toml`` names the partner, the
agreement version it tests (which must be the partner profile's), the profile, the suites it
includes (``conformance/base``: what every partner must pass) and its cases. Every problem is
reported before anything runs, as CNF_SUITE_INVALID with ``file:line``, so a typo in a case can
never make a run silently test less.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.envelope.opened import Binding
from gateway.errors import CNF_SUITE_INVALID, ConformanceError, registry
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.risk import RiskKind
from gateway.partners.handling import HandlingRules
from gateway.translate.aeo_exchange import MessageType

__all__ = [
    "EXCHANGES",
    "GENERATORS",
    "Case",
    "Direction",
    "Exchange",
    "Expectation",
    "Mutation",
    "Outcome",
    "Suite",
    "SuiteFile",
    "ValueCheck",
    "parse_suite_file",
    "resolve_suite",
]


class Direction(StrEnum):
    SEND = "send"  # `conformance run`: the tester (EU side) sends, the target answers
    RECEIVE = "receive"  # `conformance listen`: the partner system sends, the tester answers


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # signed ACCEPTED receipt naming the message and the digest sent
    REJECTED = "rejected"  # signed REJECTED receipt with the expected code
    DUPLICATE = "duplicate"  # a resend answered with the original receipt
    REFUSED = "refused"  # rejected, by a signed receipt or a transport refusal naming the code
    NOT_SENT = "not_sent"  # the tester's own side must refuse to send it (agreement rules)
    ANSWERED = "answered"  # a signed, correlated answer envelope (online query)


class Mutation(StrEnum):
    NONE = "none"
    BAD_SIGNATURE = "bad_signature"  # one bit of the signature value flipped
    TAMPERED_PAYLOAD = "tampered_payload"  # payload changed after signing
    WRONG_PARTNER_CERTIFICATE = "wrong_partner_certificate"  # signed by a third administration
    EXPIRED_CERTIFICATE = "expired_certificate"
    REVOKED_CERTIFICATE = "revoked_certificate"
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"  # an impostor under a foreign CA
    REPLAY_SAME = "replay_same"  # the same envelope twice
    REPLAY_CONFLICT = "replay_conflict"  # the same message id, another payload
    OVERSIZE = "oversize"  # above the target's envelope size limit
    CLOCK_SKEW = "clock_skew"  # created-at beyond the profile's tolerance in the future
    TOO_OLD = "too_old"  # created-at older than the profile's duplicate window


@dataclass(frozen=True)
class Exchange:
    """A Utility Block exchange: the UB and the message type of the message judged."""

    utility_block: UtilityBlock
    message_type: str

    def __str__(self) -> str:
        return f"{self.utility_block.value}/{self.message_type}"


# The exchanges the runner knows how to play; a suite naming another is refused at load.
EXCHANGES: Mapping[str, Exchange] = {
    f"UB1/{kind.value}": Exchange(UtilityBlock.UB1, kind.value)
    for kind in (
        MessageType.STATUS_CHANGES,
        MessageType.FULL_LIST,
        MessageType.FULL_LIST_PART,
        MessageType.FULL_LIST_END,
        MessageType.QUERY,
    )
} | {
    f"UB3/{kind.value}": Exchange(UtilityBlock.UB3, kind.value)
    for kind in (RiskKind.RISK_INFORMATION, RiskKind.FEEDBACK)
}

# Named generators and the message type of the LAST message each produces (the one judged).
GENERATORS: Mapping[str, str] = {
    "status_changes": MessageType.STATUS_CHANGES.value,
    "status_change_sequence": MessageType.STATUS_CHANGES.value,
    "consent_withdrawn": MessageType.STATUS_CHANGES.value,
    "out_of_order": MessageType.STATUS_CHANGES.value,
    "unknown_authorisation": MessageType.STATUS_CHANGES.value,
    "full_list_in_parts": MessageType.FULL_LIST_END.value,
    "full_list_summary_mismatch": MessageType.FULL_LIST_END.value,
    "not_eligible_type": MessageType.STATUS_CHANGES.value,
    "missing_identifier": MessageType.STATUS_CHANGES.value,
    "no_consent": MessageType.STATUS_CHANGES.value,
    "query": MessageType.QUERY.value,
    # UB3: records built and checked against the partner's handling rules (the suite's handling)
    "risk_information": RiskKind.RISK_INFORMATION.value,
    "risk_validity_expired": RiskKind.RISK_INFORMATION.value,
    "risk_area_not_cleared": RiskKind.RISK_INFORMATION.value,
    "risk_label_above_clearance": RiskKind.RISK_INFORMATION.value,
    "risk_personal_data": RiskKind.RISK_INFORMATION.value,
    "risk_feedback_unknown_reference": RiskKind.FEEDBACK.value,
}
_GENERATOR_PARAMS = {"count", "part_size", "type"}


class ValueCheck(StrEnum):
    """Checks on the translated UB1 values of the judged message (sent or received)."""

    PARTNER_PROGRAMME = "partner_programme"  # every record carries this partner programme
    CROSS_REFERENCE = "cross_reference"  # every record carries a reference of this scheme
    ONLY_PARTNER_REFERENCES = "only_partner_references"  # no other partner's references
    INBOUND_PROGRAMME_KNOWN = "inbound_programme_known"  # the profile maps every programme
    LIST_OWNER_IS_SENDER = "list_owner_is_sender"  # a partner sends only its own AEOs


_VALUE_KINDS: Mapping[ValueCheck, type] = {
    ValueCheck.PARTNER_PROGRAMME: str,
    ValueCheck.CROSS_REFERENCE: str,
    ValueCheck.ONLY_PARTNER_REFERENCES: bool,
    ValueCheck.INBOUND_PROGRAMME_KNOWN: bool,
    ValueCheck.LIST_OWNER_IS_SENDER: bool,
}


@dataclass(frozen=True)
class Expectation:
    outcome: Outcome
    codes: Mapping[Binding, str] = field(default_factory=dict)  # expected code per binding
    values: Mapping[ValueCheck, str | bool] = field(default_factory=dict)

    def code_for(self, binding: Binding) -> str:
        return self.codes.get(binding, "")


@dataclass(frozen=True)
class Case:
    """One case of a suite; run once per binding it names."""

    id: str
    title: str
    exchange: Exchange
    bindings: tuple[Binding, ...]
    direction: Direction
    required: bool
    generator: str | None  # a named generator, or None for a fixture
    params: Mapping[str, Any]
    fixtures: Mapping[Binding, bytes]  # payload bytes per binding (fixture input)
    fixture_names: Mapping[Binding, str]
    mutation: Mutation
    expect: Expectation
    source: str  # file:line of the case, for reports and errors
    suite: str  # the suite (directory name) that defines it


@dataclass(frozen=True)
class SuiteFile:
    """One parsed suite.toml before its includes are resolved."""

    name: str
    source: str
    partner: Administration | None  # None for the base suite
    version: str | None
    profile: str | None  # path relative to the suite directory
    handling: str | None  # UB3 handling rules, path relative to the suite directory
    includes: tuple[str, ...]
    title: str
    cases: tuple[Case, ...]
    max_envelope_bytes: int
    sha256: str


@dataclass(frozen=True)
class Suite:
    """A partner suite with its includes resolved: what a run executes, in order."""

    name: str
    partner: Administration
    version: str
    title: str
    profile: str | None
    cases: tuple[Case, ...]
    max_envelope_bytes: int
    sha256: str  # over every file of the suite and its includes: a changed suite is new
    handling: str | None = None  # UB3 handling rules file, relative to the suite directory
    rules: HandlingRules | None = None  # those rules, loaded with the suite (suites.load_suite)

    @property
    def needs_handling(self) -> bool:
        """Whether a case plays a UB3 exchange (its records are built under handling rules)."""
        return any(c.exchange.utility_block is UtilityBlock.UB3 for c in self.cases)

    def selected(self, direction: Direction) -> tuple[Case, ...]:
        return tuple(case for case in self.cases if case.direction is direction)


# --- parsing ---------------------------------------------------------------------------------
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
DEFAULT_MAX_ENVELOPE_BYTES = 8 * 1024 * 1024


def _fail(where: str, message: str) -> ConformanceError:
    return ConformanceError(message, code=CNF_SUITE_INVALID, location=where)


def _case_lines(text: str) -> list[int]:
    """The line number of each ``[[case]]`` header, in order."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip().startswith("[[case]]")
    ]


def _key_line(text: str, key: str, start: int) -> int:
    """The first line at or after ``start`` that sets ``key`` (for pointing at a bad value)."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines()[start - 1 :], start=start):
        if pattern.match(line):
            return number
        if number > start and line.strip().startswith("[[case]]"):
            break
    return start


class _Table:
    """Typed access to one table, errors pointing at source:line."""

    def __init__(self, data: Mapping[str, Any], path: str, source: str, text: str, line: int):
        self.data = data
        self.path = path
        self.source = source
        self.text = text
        self.line = line

    def where(self, key: str) -> str:
        return f"{self.source}:{_key_line(self.text, key.split('.')[-1], self.line)}"

    def fail(self, key: str, message: str) -> ConformanceError:
        name = f"{self.path}.{key}" if self.path else key
        return _fail(self.where(key), f"{name}: {message}")

    def only(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                raise self.fail(key, f"unknown key (known: {', '.join(keys)})")

    def text_value(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise _fail(f"{self.source}:{self.line}", f"{self.path}: missing key {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        return value


def _parse_bindings(table: _Table) -> tuple[Binding, ...]:
    value = table.data.get("binding", "both")
    options = {
        "both": (Binding.PROTOBUF, Binding.XML),
        "protobuf": (Binding.PROTOBUF,),
        "xml": (Binding.XML,),
    }
    if value not in options:
        raise table.fail("binding", f"{value!r} is not protobuf, xml or both")
    return options[value]


def _parse_codes(table: _Table, value: object) -> dict[Binding, str]:
    known = registry()
    if value is None:
        return {}
    if isinstance(value, str):
        by_binding = {Binding.PROTOBUF: value, Binding.XML: value}
    elif isinstance(value, dict):
        by_binding = {}
        for name, code in value.items():
            try:
                by_binding[Binding(name)] = code
            except ValueError:
                raise table.fail("code", f"{name!r} is not a binding (protobuf, xml)") from None
    else:
        raise table.fail("code", "must be an error code or a table {protobuf = .., xml = ..}")
    for code in by_binding.values():
        if not isinstance(code, str) or code not in known:
            raise table.fail("code", f"{code!r} is not an error code of docs/errors.md")
    return by_binding


def _parse_expect(case: _Table, direction: Direction) -> Expectation:
    raw = case.data.get("expect")
    if not isinstance(raw, dict):
        raise case.fail("expect", "missing or not a table (outcome = ..., code = ...)")
    table = _Table(raw, f"{case.path}.expect", case.source, case.text, case.line)
    table.only("outcome", "code", "values")
    try:
        outcome = Outcome(table.text_value("outcome"))
    except ValueError:
        raise table.fail(
            "outcome", f"{raw.get('outcome')!r} is not one of {', '.join(Outcome)}"
        ) from None
    codes = _parse_codes(table, raw.get("code"))
    needs_code = outcome in (Outcome.REJECTED, Outcome.REFUSED, Outcome.NOT_SENT)
    if needs_code and not codes:
        raise table.fail("code", f"outcome {outcome.value} needs the expected error code")
    if not needs_code and codes:
        raise table.fail("code", f"outcome {outcome.value} takes no error code")
    if direction is Direction.RECEIVE and outcome not in (Outcome.ACCEPTED, Outcome.REJECTED):
        raise table.fail("outcome", "a receive case expects accepted or rejected")
    values: dict[ValueCheck, str | bool] = {}
    raw_values = raw.get("values", {})
    if not isinstance(raw_values, dict):
        raise table.fail("values", "must be a table")
    for key, value in raw_values.items():
        try:
            check = ValueCheck(key)
        except ValueError:
            raise table.fail(
                "values", f"unknown value check {key!r} (known: {', '.join(ValueCheck)})"
            ) from None
        kind = _VALUE_KINDS[check]
        if not isinstance(value, kind):
            raise table.fail(key, f"must be a {kind.__name__}, not {value!r}")
        values[check] = value if isinstance(value, str | bool) else str(value)
    return Expectation(outcome, codes, values)


def _parse_case(
    raw: object,
    index: int,
    source: str,
    text: str,
    line: int,
    suite: str,
    read_fixture: Callable[[str, str], bytes],
) -> Case:
    if not isinstance(raw, dict):
        raise _fail(f"{source}:{line}", f"case[{index}] is not a table")
    table = _Table(raw, f"case[{index}]", source, text, line)
    table.only(
        "id",
        "title",
        "exchange",
        "binding",
        "direction",
        "required",
        "input",
        "mutation",
        "expect",
    )
    case_id = table.text_value("id")
    if not _ID.fullmatch(case_id):
        raise table.fail("id", f"{case_id!r}: lower-case letters, digits and '-', at most 80")
    exchange_name = table.text_value("exchange")
    exchange = EXCHANGES.get(exchange_name)
    if exchange is None:
        raise table.fail(
            "exchange", f"unknown exchange {exchange_name!r} (known: {', '.join(EXCHANGES)})"
        )
    bindings = _parse_bindings(table)
    try:
        direction = Direction(raw.get("direction", "send"))
    except ValueError:
        raise table.fail("direction", f"{raw.get('direction')!r} is not send or receive") from None
    required = raw.get("required", True)
    if not isinstance(required, bool):
        raise table.fail("required", "must be true or false")
    try:
        mutation = Mutation(raw.get("mutation", "none"))
    except ValueError:
        raise table.fail(
            "mutation", f"{raw.get('mutation')!r} is not one of {', '.join(Mutation)}"
        ) from None
    expect = _parse_expect(table, direction)
    generator: str | None = None
    params: dict[str, Any] = {}
    fixtures: dict[Binding, bytes] = {}
    names: dict[Binding, str] = {}
    raw_input = raw.get("input")
    if direction is Direction.SEND:
        if not isinstance(raw_input, dict):
            raise table.fail("input", "missing: { generator = NAME, ... } or { fixture = FILE }")
        inp = _Table(raw_input, f"{table.path}.input", source, text, line)
        if "generator" in raw_input:
            inp.only("generator", *_GENERATOR_PARAMS)
            generator = inp.text_value("generator")
            produced = GENERATORS.get(generator)
            if produced is None:
                raise inp.fail(
                    "generator", f"unknown generator {generator!r} (known: {', '.join(GENERATORS)})"
                )
            if produced != exchange.message_type:
                raise inp.fail(
                    "generator",
                    f"{generator} produces {produced}, but the case names {exchange_name}",
                )
            params = {k: v for k, v in raw_input.items() if k != "generator"}
            for key in ("count", "part_size"):
                value = params.get(key, 1)
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 500:
                    raise inp.fail(key, f"{value!r} is not an integer from 1 to 500")
        elif "fixture" in raw_input:
            inp.only("fixture")
            spec = raw_input["fixture"]
            chosen = {b: spec for b in bindings} if isinstance(spec, str) else spec
            if not isinstance(chosen, dict):
                raise inp.fail("fixture", "a file name or a table {protobuf = .., xml = ..}")
            for binding in bindings:
                name = chosen.get(binding.value)
                if not isinstance(name, str):
                    raise inp.fail("fixture", f"no fixture for the {binding.value} binding")
                try:
                    fixtures[binding] = read_fixture(suite, name)
                except OSError as exc:
                    raise inp.fail("fixture", f"{name}: {exc.strerror or exc}") from None
                names[binding] = name
        else:
            raise inp.fail("input", "needs generator = NAME or fixture = FILE")
        if expect.outcome is Outcome.NOT_SENT and generator is None:
            raise table.fail("expect", "outcome not_sent needs a generator")
    elif raw_input is not None:
        raise table.fail("input", "a receive case has no input: the partner system sends")
    if exchange.utility_block is UtilityBlock.UB3:
        if direction is Direction.RECEIVE:
            raise table.fail("direction", f"{exchange_name}: listen checks UB1 exchanges only")
        if expect.values:
            raise table.fail("expect", "values are UB1 checks; a UB3 case takes none")
    if expect.outcome is Outcome.ANSWERED and exchange.message_type != MessageType.QUERY:
        raise table.fail("expect", "outcome answered is for UB1/AeoQuery")
    if exchange.message_type == MessageType.QUERY and expect.outcome not in (
        Outcome.ANSWERED,
        Outcome.NOT_SENT,
    ):
        raise table.fail("expect", "a UB1/AeoQuery case expects answered")
    return Case(
        id=case_id,
        title=raw.get("title", case_id) if isinstance(raw.get("title"), str) else case_id,
        exchange=exchange,
        bindings=bindings,
        direction=direction,
        required=required,
        generator=generator,
        params=params,
        fixtures=fixtures,
        fixture_names=names,
        mutation=mutation,
        expect=expect,
        source=f"{source}:{line}",
        suite=suite,
    )


def parse_suite_file(
    text: str,
    source: str,
    name: str,
    read_fixture: Callable[[str, str], bytes],
) -> SuiteFile:
    """Parse one suite.toml. ``read_fixture(suite, file)`` returns a fixture's bytes."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        where = f"{source}:{found.group(1)}" if found else source
        raise _fail(where, f"not valid TOML: {_TOML_POSITION.sub('', message).strip()}") from None
    top = _Table(data, "", source, text, 1)
    top.only("suite", "case")
    header = data.get("suite")
    if not isinstance(header, dict):
        raise _fail(f"{source}:1", "missing [suite] table (partner, version, profile, include)")
    line = next(
        (n for n, s in enumerate(text.splitlines(), 1) if s.strip() == "[suite]"),
        1,
    )
    suite = _Table(header, "suite", source, text, line)
    suite.only(
        "partner", "version", "profile", "handling", "include", "title", "max_envelope_bytes"
    )
    partner: Administration | None = None
    if "partner" in header:
        code = suite.text_value("partner")
        try:
            partner = Administration(code)
        except ValueError:
            raise suite.fail("partner", f"{code!r} is not an administration code") from None
    version = suite.text_value("version") if partner is not None else header.get("version")
    if version is not None and not isinstance(version, str):
        raise suite.fail("version", "must be a string")
    profile = suite.text_value("profile") if "profile" in header else None
    handling = suite.text_value("handling") if "handling" in header else None
    includes = header.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise suite.fail("include", "must be a list of suite directories")
    limit = header.get("max_envelope_bytes", DEFAULT_MAX_ENVELOPE_BYTES)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1024 <= limit <= 2**28:
        raise suite.fail("max_envelope_bytes", f"{limit!r} is not an integer 1024..268435456")
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list):
        raise _fail(f"{source}:1", "case must be an array of tables ([[case]])")
    lines = _case_lines(text)
    cases = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(raw_cases):
        case_line = lines[index] if index < len(lines) else 1
        case = _parse_case(raw, index, source, text, case_line, name, read_fixture)
        if case.id in seen:
            raise _fail(case.source, f"case id {case.id!r} already used at {seen[case.id]}")
        seen[case.id] = case.source
        cases.append(case)
    title = header.get("title", name)
    return SuiteFile(
        name=name,
        source=source,
        partner=partner,
        version=version,
        profile=profile,
        handling=handling,
        includes=tuple(includes),
        title=title if isinstance(title, str) else name,
        cases=tuple(cases),
        max_envelope_bytes=limit,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def resolve_suite(main: SuiteFile, included: Sequence[SuiteFile]) -> Suite:
    """The partner suite with its includes' cases first (base before the partner's own)."""
    if main.partner is None or main.version is None:
        raise _fail(
            main.source,
            "a runnable suite names its partner and version in [suite] (the base suite is only "
            "included by partner suites)",
        )
    cases: list[Case] = []
    seen: dict[str, str] = {}
    digest = hashlib.sha256()
    ub3 = [c for part in (*included, main) for c in part.cases if c.exchange.utility_block
           is UtilityBlock.UB3]  # fmt: skip
    if ub3 and main.handling is None:
        raise _fail(
            ub3[0].source,
            f"case {ub3[0].id!r} plays {ub3[0].exchange}: the suite must name the partner's UB3 "
            'handling rules in [suite] (handling = "../../adapters/handling/<partner>.toml")',
        )
    for part in (*included, main):
        digest.update(part.sha256.encode())
        for case in part.cases:
            if case.id in seen:
                raise _fail(case.source, f"case id {case.id!r} already defined at {seen[case.id]}")
            seen[case.id] = case.source
            cases.append(case)
            for data in case.fixtures.values():
                digest.update(hashlib.sha256(data).digest())
    return Suite(
        name=main.name,
        partner=main.partner,
        version=main.version,
        title=main.title,
        profile=main.profile,
        cases=tuple(cases),
        max_envelope_bytes=main.max_envelope_bytes,
        sha256=digest.hexdigest(),
        handling=main.handling,
    )
