"""Partner profiles: loading and checking them, and the UB1 eligibility rules they drive.

Loading is strict because a profile is legal configuration: an unknown key is an error (a
misspelt optional key would otherwise be silently ignored), every value has its type and range,
and each error names ``source:key`` (and the line, where it can be found) and the rule.

The eligibility rules decide what a partner ever sees of the EU list:

* only operators who consented are sent (AEO_NO_CONSENT otherwise);
* only the AEO types the agreement recognises (AEO_TYPE_NOT_ELIGIBLE);
* only records carrying the identifiers the partner needs, e.g. the US targets on MID numbers
  (AEO_IDENTIFIER_MISSING);
* a record leaving the partner's view (consent withdrawn, identifiers unlinked) is sent as a
  removal, at once, without operator data.

What the partner receives is the record translated into its terms: the partner programme the EU
type is recognised as, and only the cross references of that partner (a US MID is not sent to
Japan).

A profile holds ``[ub1]`` (AEO mutual recognition) and/or ``[ub2]`` (transaction data: the
messages agreed and the lanes, see partners/lanes.py). Both are optional: Moldova and Ukraine
exchange TIR pre-arrival data without an AEO agreement. A partner without ``[ub1]`` simply gets
no UB1: every UB1 rule here refuses it with AEO_NO_AGREEMENT, and the UB1 service does not list it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from gateway.errors import (
    AEO_IDENTIFIER_MISSING,
    AEO_NO_AGREEMENT,
    AEO_NO_CONSENT,
    AEO_TYPE_NOT_ELIGIBLE,
    AEO_UNKNOWN_PROGRAMME,
    PRF_BAD_BINDING,
    PRF_BAD_RETRY,
    PRF_MISSING_KEY,
    PRF_NOT_TOML,
    PRF_UNKNOWN_ADMINISTRATION,
    PRF_UNKNOWN_AEO_TYPE,
    PRF_UNKNOWN_KEY,
    PRF_WRONG_TYPE,
    AeoError,
    ProfileError,
    TransactionError,
)
from gateway.model.aeo import AeoRecord, AeoStatus, AeoType
from gateway.model.aeo_list import AeoChange, AeoList
from gateway.model.codelists import check_customs_office, check_location_code
from gateway.model.codes import Administration
from gateway.partners.lanes import UB2_MESSAGES, Lane, LanePattern, Ub2Rules

__all__ = [
    "Agreement",
    "Binding",
    "Eligibility",
    "LinkStatus",
    "PartnerAnswer",
    "PartnerProfile",
    "RetryPolicy",
    "Transport",
    "Ub1Rules",
    "Ub2Rules",
    "answer_query",
    "eligible_for",
    "from_partner",
    "load_profile",
    "load_profiles",
    "partner_delta",
    "partner_view",
    "to_partner",
]


class Binding(StrEnum):
    GRPC = "grpc"
    XML = "xml"


class LinkStatus(StrEnum):
    PRODUCTION = "production"
    STAGING = "staging"  # test traffic only (e.g. an agreement still being negotiated)


@dataclass(frozen=True)
class Agreement:
    name: str
    reference: str
    version: str
    notes: str = ""


@dataclass(frozen=True)
class Ub1Rules:
    """What the agreement recognises and how EU AEOs are presented to the partner."""

    eligible_types: frozenset[AeoType]
    programme: Mapping[AeoType, str]  # EU type -> partner programme it is recognised as
    inbound: Mapping[str, AeoType]  # partner programme -> EU type it is recognised as
    required_identifiers: tuple[str, ...]  # cross-reference schemes each sent record needs
    full_list_interval: timedelta


@dataclass(frozen=True)
class Transport:
    binding: Binding
    endpoint: str  # host:port for grpc, https URL for xml
    ca: tuple[str, ...]  # partner trust anchors, paths relative to the PKI directory
    crl: tuple[str, ...]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff: timedelta
    multiplier: float
    max_backoff: timedelta

    def delay(self, attempt: int) -> timedelta:
        """Back-off before retry number ``attempt`` (1 = first retry), capped at max_backoff."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        seconds = self.initial_backoff.total_seconds() * self.multiplier ** (attempt - 1)
        return min(timedelta(seconds=seconds), self.max_backoff)


@dataclass(frozen=True)
class PartnerProfile:
    source: str
    administration: Administration
    name: str
    status: LinkStatus
    agreement: Agreement
    ub1: Ub1Rules | None  # None: no AEO mutual recognition with this partner
    transport: Transport
    retry: RetryPolicy
    duplicate_window: timedelta
    clock_skew: timedelta
    ub2: Ub2Rules | None = None  # None: no UB2 transaction data agreed

    def ub1_rules(self) -> Ub1Rules:
        """The UB1 rules, or AEO_NO_AGREEMENT for a partner whose profile has no [ub1]."""
        if self.ub1 is None:
            raise AeoError(
                f"the profile of {self.administration.value} ({self.source}) has no [ub1]: no "
                "AEO mutual recognition with this partner",
                code=AEO_NO_AGREEMENT,
                location=f"{self.source}:ub1",
            )
        return self.ub1

    @property
    def scheme_prefix(self) -> str:
        """Cross references of this partner have schemes '<CODE>-...' (US-MID, JP-AEO)."""
        return f"{self.administration.value}-"


# --- loading -----------------------------------------------------------------------------------
_SCHEME = re.compile(r"[A-Z]{2}-[A-Z0-9]{2,16}")
_PROGRAMME = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
_HOST_PORT = re.compile(r"[A-Za-z0-9.-]+:[0-9]{1,5}")
_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
_REL_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class _Reader:
    """Typed access to one TOML table, with errors naming source:key and its line."""

    def __init__(self, data: Mapping[str, Any], path: str, source: str, text: str) -> None:
        self.data = data
        self.path = path
        self.source = source
        self.text = text
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, key: str, message: str, code: str) -> ProfileError:
        line = _line_of(self.text, key)
        where = f" (line {line})" if line else ""
        return ProfileError(f"{key}{where}: {message}", code=code, location=f"{self.source}:{key}")

    def get(self, name: str, kind: type | tuple[type, ...], what: str, default: Any = ...) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise self.error(self.key(name), f"missing ({what} required)", PRF_MISSING_KEY)
            return default
        value = self.data[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise self.error(
                self.key(name),
                f"{value!r} is a {_toml_type(value)}, expected {what}",
                PRF_WRONG_TYPE,
            )
        return value

    def text_value(self, name: str, default: Any = ...) -> str:
        value = self.get(name, str, "a string", default)
        if isinstance(value, str) and not value.strip() and default is ...:
            raise self.error(self.key(name), "must not be empty", PRF_MISSING_KEY)
        return str(value)

    def number(self, name: str, what: str) -> float:
        value = self.get(name, (int, float), what)
        return float(value)

    def table(self, name: str, required: bool = True) -> _Reader:
        value = self.get(name, dict, "a table", ... if required else {})
        return _Reader(value, self.key(name), self.source, self.text)

    def string_list(self, name: str, default: Any = ...) -> list[str]:
        value = self.get(name, list, "a list of strings", default)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    f"{self.key(name)}[{index}]", f"{item!r} is not a string", PRF_WRONG_TYPE
                )
        return list(value)

    def expect(self, *names: str) -> None:
        """Refuse unknown keys first, so a misspelt key reads as unknown, not as missing."""
        for name in sorted(set(self.data) - set(names)):
            raise self.error(
                self.key(name), f"unknown key (known: {', '.join(names)})", PRF_UNKNOWN_KEY
            )

    def done(self) -> None:
        for name in sorted(set(self.data) - self.used):
            raise self.error(self.key(name), "unknown key", PRF_UNKNOWN_KEY)


def _toml_type(value: object) -> str:
    return {
        bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _line_of(text: str, key: str) -> int | None:
    """Best-effort line of a dotted key: its table header, then the key below it."""
    parts = key.split("[")[0].split(".")
    table, last = parts[:-1], parts[-1]
    lines = text.splitlines()
    start = 0
    if table:
        header = re.compile(
            r"\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]\s*(#.*)?$"
        )
        for number, line in enumerate(lines):
            if header.match(line):
                start = number + 1
                break
        else:
            return None
    key_re = re.compile(r"\s*\"?" + re.escape(last) + r"\"?\s*=")
    for number in range(start, len(lines)):
        if number > start and lines[number].lstrip().startswith("[") and table:
            break
        if key_re.match(lines[number]):
            return number + 1
    if table:
        return start  # the table header line
    return None


def _aeo_type(reader: _Reader, key: str, value: str) -> AeoType:
    try:
        return AeoType(value)
    except ValueError:
        raise reader.error(
            key, f"{value!r} is not an AEO type (AEOC, AEOS, AEOF)", PRF_UNKNOWN_AEO_TYPE
        ) from None


def _positive_seconds(reader: _Reader, name: str, *, allow_zero: bool = False) -> timedelta:
    value = reader.number(name, "a number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise reader.error(
            reader.key(name), f"{value} must be {'>= 0' if allow_zero else '> 0'}", PRF_BAD_RETRY
        )
    return timedelta(seconds=value)


def load_profile(text: str, source: str) -> PartnerProfile:
    """Read and check one partner profile. ``source`` (e.g. 'us.toml') names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"not valid TOML: {exc}", code=PRF_NOT_TOML, location=source) from None
    top = _Reader(data, "", source, text)
    top.expect("partner", "agreement", "ub1", "ub2", "transport", "retry", "delivery")

    partner = top.table("partner")
    partner.expect("administration", "name", "status")
    code = partner.text_value("administration")
    try:
        admin = Administration(code)
    except ValueError:
        raise partner.error(
            "partner.administration",
            f"{code!r} is not a known administration ({', '.join(Administration)})",
            PRF_UNKNOWN_ADMINISTRATION,
        ) from None
    if admin is Administration.EU:
        raise partner.error(
            "partner.administration",
            "EU is this gateway, not a partner",
            PRF_UNKNOWN_ADMINISTRATION,
        )
    name = partner.text_value("name")
    status_text = partner.text_value("status")
    try:
        status = LinkStatus(status_text)
    except ValueError:
        raise partner.error(
            "partner.status", f"{status_text!r} is not production or staging", PRF_WRONG_TYPE
        ) from None
    partner.done()

    agreement_table = top.table("agreement")
    agreement_table.expect("name", "reference", "version", "notes")
    agreement = Agreement(
        agreement_table.text_value("name"),
        agreement_table.text_value("reference"),
        agreement_table.text_value("version"),
        agreement_table.text_value("notes", ""),
    )
    agreement_table.done()

    ub1 = _load_ub1(top.table("ub1"), admin) if "ub1" in data else None
    ub2 = _load_ub2(top.table("ub2"), admin) if "ub2" in data else None
    if ub1 is None and ub2 is None:
        raise top.error("ub1", "a profile agrees at least one of [ub1] and [ub2]", PRF_MISSING_KEY)
    transport = _load_transport(top.table("transport"))

    retry_table = top.table("retry")
    retry_table.expect(
        "max_attempts", "initial_backoff_seconds", "multiplier", "max_backoff_seconds"
    )
    max_attempts = retry_table.get("max_attempts", int, "an integer")
    if max_attempts < 1:
        raise retry_table.error("retry.max_attempts", f"{max_attempts} must be >= 1", PRF_BAD_RETRY)
    initial = _positive_seconds(retry_table, "initial_backoff_seconds")
    multiplier = retry_table.number("multiplier", "a number")
    if multiplier < 1:
        raise retry_table.error(
            "retry.multiplier", f"{multiplier} must be >= 1 (back-off never shrinks)", PRF_BAD_RETRY
        )
    maximum = _positive_seconds(retry_table, "max_backoff_seconds")
    if maximum < initial:
        raise retry_table.error(
            "retry.max_backoff_seconds", "must be >= initial_backoff_seconds", PRF_BAD_RETRY
        )
    retry_table.done()

    delivery = top.table("delivery")
    delivery.expect("duplicate_window_seconds", "clock_skew_seconds")
    window = _positive_seconds(delivery, "duplicate_window_seconds")
    skew = _positive_seconds(delivery, "clock_skew_seconds", allow_zero=True)
    delivery.done()
    top.done()
    return PartnerProfile(
        source, admin, name, status, agreement, ub1, transport,
        RetryPolicy(max_attempts, initial, multiplier, maximum), window, skew, ub2,
    )  # fmt: skip


def _load_ub1(table: _Reader, admin: Administration) -> Ub1Rules:
    table.expect(
        "eligible_types", "programme", "inbound", "required_identifiers",
        "full_list_interval_hours",
    )  # fmt: skip
    types_list = table.string_list("eligible_types")
    if not types_list:
        raise table.error("ub1.eligible_types", "at least one AEO type", PRF_MISSING_KEY)
    eligible = frozenset(
        _aeo_type(table, f"ub1.eligible_types[{i}]", v) for i, v in enumerate(types_list)
    )
    programme_table = table.table("programme")
    programme: dict[AeoType, str] = {}
    for key, value in programme_table.data.items():
        aeo_type = _aeo_type(programme_table, f"ub1.programme.{key}", key)
        value = programme_table.text_value(key)
        if not _PROGRAMME.fullmatch(value):
            raise programme_table.error(
                f"ub1.programme.{key}",
                f"{value!r} is not a programme code (A-Z, 0-9, '_', '-')",
                PRF_WRONG_TYPE,
            )
        programme[aeo_type] = value
    missing = sorted(t.value for t in eligible - set(programme))
    if missing:
        raise programme_table.error(
            "ub1.programme",
            f"no partner programme for eligible type(s) {', '.join(missing)}",
            PRF_MISSING_KEY,
        )
    extra = sorted(t.value for t in set(programme) - eligible)
    if extra:
        raise programme_table.error(
            f"ub1.programme.{extra[0]}",
            f"{extra[0]} is not an eligible type of this agreement",
            PRF_UNKNOWN_AEO_TYPE,
        )
    inbound_table = table.table("inbound")
    inbound: dict[str, AeoType] = {}
    for key in list(inbound_table.data):
        if not _PROGRAMME.fullmatch(key):
            raise inbound_table.error(f"ub1.inbound.{key}", "not a programme code", PRF_WRONG_TYPE)
        inbound[key] = _aeo_type(inbound_table, f"ub1.inbound.{key}", inbound_table.text_value(key))
    identifiers = table.string_list("required_identifiers", [])
    for index, scheme in enumerate(identifiers):
        if not _SCHEME.fullmatch(scheme) or not scheme.startswith(f"{admin.value}-"):
            raise table.error(
                f"ub1.required_identifiers[{index}]",
                f"{scheme!r} is not a scheme of this partner ('{admin.value}-NAME')",
                PRF_WRONG_TYPE,
            )
    hours = table.get("full_list_interval_hours", int, "an integer")
    if not 1 <= hours <= 24 * 7:
        raise table.error(
            "ub1.full_list_interval_hours", f"{hours} must be 1 to 168", PRF_BAD_RETRY
        )
    table.done()
    return Ub1Rules(
        eligible,
        MappingProxyType(programme),
        MappingProxyType(inbound),
        tuple(identifiers),
        timedelta(hours=hours),
    )


PRF_INVALID = ProfileError.code
# EORI (country + up to 15), CN operator ids (10-digit customs code, 18-character unified social
# credit code), TIR carnet holder ids (e.g. MDA/001/000123): letters, digits, '/', '-'.
_OPERATOR = re.compile(r"[A-Z0-9][A-Z0-9/-]{1,34}")
_LANE_KEYS = {
    LanePattern.SSTL: ("loading", "unloading", "operators"),
    LanePattern.TIR: ("exit_office", "entry_office", "holders"),
}


def _load_ub2(table: _Reader, admin: Administration) -> Ub2Rules:
    table.expect("messages", "pattern", "notes", "lanes")
    messages = table.string_list("messages")
    if not messages:
        raise table.error("ub2.messages", "at least one UB2 message", PRF_MISSING_KEY)
    for index, message in enumerate(messages):
        if message not in UB2_MESSAGES:
            raise table.error(
                f"ub2.messages[{index}]",
                f"{message!r} is not a UB2 message ({', '.join(UB2_MESSAGES)})",
                PRF_INVALID,
            )
    pattern_text = table.text_value("pattern")
    try:
        pattern = LanePattern(pattern_text)
    except ValueError:
        raise table.error(
            "ub2.pattern",
            f"{pattern_text!r} is not a lane pattern ({', '.join(LanePattern)})",
            PRF_INVALID,
        ) from None
    table.text_value("notes", "")
    lane_tables = table.get("lanes", list, "an array of [[ub2.lanes]] tables", [])
    if "TransactionData" in messages and not lane_tables:
        raise table.error(
            "ub2.lanes", "TransactionData is agreed: at least one [[ub2.lanes]]", PRF_MISSING_KEY
        )
    lanes: list[Lane] = []
    for index, value in enumerate(lane_tables):
        key = f"ub2.lanes[{index}]"
        if not isinstance(value, dict):
            raise table.error(key, f"{value!r} is not a table", PRF_WRONG_TYPE)
        lane = _load_lane(_Reader(value, key, table.source, table.text), pattern, admin)
        for other in lanes:
            if other.name == lane.name or other.pair == lane.pair:
                raise table.error(
                    key, f"lane {lane.name} ({lane.pair}) repeats lane {other.name}", PRF_INVALID
                )
        lanes.append(lane)
    table.done()
    return Ub2Rules(frozenset(messages), pattern, tuple(lanes), table.source)


def _load_lane(table: _Reader, pattern: LanePattern, admin: Administration) -> Lane:
    origin_key, destination_key, operators_key = _LANE_KEYS[pattern]
    table.expect("name", origin_key, destination_key, operators_key)
    name = table.text_value("name")
    ends = []
    for key in (origin_key, destination_key):
        value = table.text_value(key).strip().upper()
        try:  # formats and country parts from the UB2 code lists (model.codelists)
            if pattern is LanePattern.SSTL:
                value = check_location_code(value, key)
                if len(value) != 5:
                    raise TransactionError(f"{value!r} is a customs office, not a UN/LOCODE")
            else:
                value = check_customs_office(value, key)
        except TransactionError as error:
            what = "a port (UN/LOCODE)" if pattern is LanePattern.SSTL else "a customs office"
            raise table.error(
                table.key(key), f"{error.message} (a lane end is {what})", PRF_INVALID
            ) from None
        ends.append(value)
    origin, destination = ends
    if origin == destination:
        raise table.error(table.key(destination_key), "the lane ends where it starts", PRF_INVALID)
    if admin.value not in (origin[:2], destination[:2]):
        raise table.error(
            table.key(origin_key),
            f"{origin} -> {destination}: one end of a lane is in {admin.value}",
            PRF_INVALID,
        )
    operators = [v.strip().upper() for v in table.string_list(operators_key)]
    if not operators:
        raise table.error(
            table.key(operators_key), "at least one participating operator", PRF_MISSING_KEY
        )
    for index, operator in enumerate(operators):
        if not _OPERATOR.fullmatch(operator):
            raise table.error(
                f"{table.key(operators_key)}[{index}]",
                f"{operator!r} is not an operator id (EORI, CN operator id, TIR holder id)",
                PRF_INVALID,
            )
    table.done()
    return Lane(name, origin, destination, frozenset(operators))


def _load_transport(table: _Reader) -> Transport:
    table.expect("binding", "endpoint", "ca", "crl")
    binding_text = table.text_value("binding")
    try:
        binding = Binding(binding_text)
    except ValueError:
        raise table.error(
            "transport.binding", f"{binding_text!r} is not 'grpc' or 'xml'", PRF_BAD_BINDING
        ) from None
    endpoint = table.text_value("endpoint")
    pattern = _HOST_PORT if binding is Binding.GRPC else _HTTPS_URL
    if not pattern.fullmatch(endpoint):
        raise table.error(
            "transport.endpoint",
            f"{endpoint!r} is not "
            + ("host:port (grpc binding)" if binding is Binding.GRPC else "an https:// URL (xml)"),
            PRF_BAD_BINDING,
        )
    paths = {}
    for name in ("ca", "crl"):
        values = table.string_list(name)
        if name == "ca" and not values:
            raise table.error("transport.ca", "at least one CA certificate", PRF_MISSING_KEY)
        for index, value in enumerate(values):
            if not _REL_PATH.fullmatch(value) or ".." in value.split("/"):
                raise table.error(
                    f"transport.{name}[{index}]",
                    f"{value!r} must be a relative path inside the PKI directory",
                    PRF_WRONG_TYPE,
                )
        paths[name] = tuple(values)
    table.done()
    return Transport(binding, endpoint, paths["ca"], paths["crl"])


def load_profiles(texts: Mapping[str, str]) -> dict[Administration, PartnerProfile]:
    """All profiles (source name -> text); one administration may have one profile only."""
    out: dict[Administration, PartnerProfile] = {}
    for source in sorted(texts):
        profile = load_profile(texts[source], source)
        if profile.administration in out:
            raise ProfileError(
                f"partner {profile.administration} is also defined in "
                f"{out[profile.administration].source}",
                location=f"{source}:partner.administration",
            )
        out[profile.administration] = profile
    return out


# --- eligibility and translation ---------------------------------------------------------------
@dataclass(frozen=True)
class Eligibility:
    """Whether a record may be sent to a partner, and if not every reason (code, message)."""

    reasons: tuple[tuple[str, str], ...] = ()

    @property
    def eligible(self) -> bool:
        return not self.reasons

    def __bool__(self) -> bool:
        return self.eligible

    @property
    def code(self) -> str | None:
        return self.reasons[0][0] if self.reasons else None


def eligible_for(profile: PartnerProfile, record: AeoRecord) -> Eligibility:
    ub1 = profile.ub1
    if ub1 is None:  # no AEO mutual recognition: nothing of the list is ever the partner's
        return Eligibility(
            (
                (
                    AEO_NO_AGREEMENT,
                    f"{record.authorisation_number}: no UB1 agreement with "
                    f"{profile.administration} ({profile.source} has no [ub1])",
                ),
            )
        )
    reasons = []
    if not record.consent or record.status is AeoStatus.CONSENT_WITHDRAWN:
        reasons.append(
            (
                AEO_NO_CONSENT,
                f"{record.authorisation_number}: the operator has not consented to the exchange",
            )
        )
    if record.aeo_type not in ub1.eligible_types:
        allowed = ", ".join(sorted(ub1.eligible_types))
        reasons.append(
            (
                AEO_TYPE_NOT_ELIGIBLE,
                f"{record.authorisation_number} is "
                f"{record.aeo_type}; the {profile.administration} agreement recognises "
                f"{allowed}",
            )
        )
    for scheme in ub1.required_identifiers:
        if not record.references(scheme):
            reasons.append(
                (
                    AEO_IDENTIFIER_MISSING,
                    f"{record.authorisation_number} has no "
                    f"{scheme} linked; {profile.administration} needs it",
                )
            )
    return Eligibility(tuple(reasons))


def to_partner(profile: PartnerProfile, record: AeoRecord) -> AeoRecord:
    """The record as the partner receives it, or AeoError with the first refusal code."""
    eligibility = eligible_for(profile, record)
    if not eligibility:
        code = eligibility.code or AEO_NO_CONSENT
        raise AeoError(
            "; ".join(m for _, m in eligibility.reasons),
            code=code,
            location=f"{profile.administration}:{record.authorisation_number}",
        )
    assert record.aeo_type is not None  # eligible types are AEO types
    refs = tuple(r for r in record.cross_references if r.scheme.startswith(profile.scheme_prefix))
    return replace(
        record,
        partner_programme=profile.ub1_rules().programme[record.aeo_type],
        cross_references=refs,
    )


def partner_view(profile: PartnerProfile, records: Iterable[AeoRecord]) -> list[AeoRecord]:
    """What the partner holds of these records: the eligible ones, translated."""
    return [to_partner(profile, r) for r in records if eligible_for(profile, r)]


def partner_delta(
    profile: PartnerProfile, before: AeoRecord | None, after: AeoRecord
) -> AeoChange | None:
    """The delta to send the partner when an EU record moves from ``before`` to ``after``.

    None when the partner sees neither state. Leaving the partner's view (consent withdrawn,
    MIDs unlinked) is a REMOVED change, sent at once, carrying no operator data.
    """
    held = (
        to_partner(profile, before)
        if before is not None and eligible_for(profile, before)
        else None
    )
    new = to_partner(profile, after) if eligible_for(profile, after) else None
    if held is None and new is None:
        return None
    if held is None:
        assert new is not None
        return AeoChange.added(new)
    if new is None:
        reason = (
            after.status_reason
            if after.status is AeoStatus.CONSENT_WITHDRAWN
            else "no longer within the agreement: "
            + "; ".join(m for _, m in eligible_for(profile, after).reasons)
        )
        return AeoChange.removed(
            held,
            version=after.version,
            status=after.status,
            effective_date=after.status_effective,
            reason=reason[:512],
        )
    return AeoChange.changed(held.status, new)


def from_partner(profile: PartnerProfile, record: AeoRecord) -> AeoRecord:
    """A partner's AEO record with the EU type its programme is recognised as (inbound)."""
    if record.administration is not profile.administration:
        raise AeoError(
            f"{record.authorisation_number} is a {record.administration} record, not "
            f"{profile.administration}",
            location="administration",
        )
    inbound = profile.ub1_rules().inbound
    mapped = inbound.get(record.partner_programme)
    if mapped is None:
        known = ", ".join(sorted(inbound)) or "none"
        raise AeoError(
            f"{record.authorisation_number}: programme {record.partner_programme!r} has no EU "
            f"equivalent in {profile.source} (known: {known})",
            code=AEO_UNKNOWN_PROGRAMME,
            location="partner_programme",
        )
    return replace(record, aeo_type=mapped)


@dataclass(frozen=True)
class PartnerAnswer:
    """The answer to a partner's query: a translated record, or a refusal code and why."""

    identifier: str
    record: AeoRecord | None
    refusal_code: str = ""
    refusal: str = ""

    @property
    def is_aeo(self) -> bool:
        return self.record is not None and self.record.is_aeo


def answer_query(profile: PartnerProfile, aeo_list: AeoList, identifier: str) -> PartnerAnswer:
    """Is ``identifier`` an AEO the partner may know of, right now, and since when.

    Only records the partner may see answer. A partner asking about a type its agreement
    excludes is refused with AEO_TYPE_NOT_ELIGIBLE; an operator who has not consented is refused
    with AEO_NO_CONSENT and nothing about it is disclosed beyond that.
    """
    if profile.ub1 is None:
        return PartnerAnswer(
            identifier, None, AEO_NO_AGREEMENT, "no AEO mutual recognition with this partner"
        )
    matches = aeo_list.find(identifier)
    if not matches:
        return PartnerAnswer(identifier, None)
    candidates = [r for r in matches if eligible_for(profile, r)]
    if not candidates:
        codes = {code for r in matches for code, _ in eligible_for(profile, r).reasons}
        if AEO_NO_CONSENT in codes and all(
            not r.consent or r.status is AeoStatus.CONSENT_WITHDRAWN for r in matches
        ):
            return PartnerAnswer(
                identifier, None, AEO_NO_CONSENT, "no data on this identifier may be disclosed"
            )
        if AEO_TYPE_NOT_ELIGIBLE in codes:
            allowed = ", ".join(sorted(profile.ub1.eligible_types))
            return PartnerAnswer(
                identifier,
                None,
                AEO_TYPE_NOT_ELIGIBLE,
                f"the identifier holds no authorisation of a type the agreement recognises "
                f"({allowed})",
            )
        return PartnerAnswer(
            identifier,
            None,
            AEO_IDENTIFIER_MISSING,
            "the authorisation lacks an identifier the agreement requires",
        )
    view = AeoList.from_records(candidates).query(identifier)
    assert view.record is not None
    return PartnerAnswer(identifier, to_partner(profile, view.record))
