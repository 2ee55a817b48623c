"""The canonical AEO record of UB1 (AEO mutual recognition), WCO-DM aligned. No I/O.

One record is one authorisation: an operator (holder), its identifier (EU: EORI, WCO ID R144),
its AEO type (R145), the authorisation number, who issued it, its status with the date that
status took effect, whether the operator consented to the exchange, and the identifiers partners
know it by (US MID numbers, a partner's own AEO id, R143). The WCO IDs of each field are in the
mapping spec (adapters/mappings/eos-aeo.toml), not here, so a customs expert reviews them there.

Records are validated when built: an invalid record cannot exist, so every later stage (lists,
exchanges, partner views) can trust the fields. The rules name themselves in error messages
(e.g. "rule EORI-2") so an operator can find them in the mapping spec notes.

Status changes follow a small state machine (``check_transition``) and effective dates never go
backwards (``check_change_order``): a missed revocation or a replayed old grant must be refused,
not silently applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from gateway.errors import (
    AEO_AUTHORISATION_NUMBER_INVALID,
    AEO_EORI_INVALID,
    AEO_ILLEGAL_TRANSITION,
    AEO_OUT_OF_ORDER,
    AEO_UNKNOWN_STATUS,
    AEO_UNKNOWN_TYPE,
    AeoError,
)
from gateway.model import codelists
from gateway.model.codes import Administration

__all__ = [
    "EORI_COUNTRIES",
    "EU_MEMBER_STATES",
    "LEGAL_TRANSITIONS",
    "MAX_VERSION",
    "Address",
    "AeoRecord",
    "AeoRejected",
    "AeoStatus",
    "AeoType",
    "CrossReference",
    "Problem",
    "canonical_bytes",
    "check_authorisation_number",
    "check_change_order",
    "check_eori",
    "check_transition",
    "parse_aeo_type",
    "parse_status",
]


class AeoType(StrEnum):
    """EU AEO authorisation types (UCC Art. 38(2)); the code EU systems use for R145."""

    AEOC = "AEOC"  # customs simplifications
    AEOS = "AEOS"  # security and safety
    AEOF = "AEOF"  # full: both


class AeoStatus(StrEnum):
    GRANTED = "GRANTED"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"


# Which status may follow which. REVOKED is final: a new authorisation gets a new number, and
# only amendments follow (the same status with other details, e.g. the operator withdrawing its
# consent, which keeps REVOKED with consent = false so the revocation cannot be undone through
# CONSENT_WITHDRAWN). Staying in the same status is an amendment (e.g. a new address).
# CONSENT_WITHDRAWN may end when the operator consents again (back to the status the
# authorisation has then).
_G, _S, _R, _W = (
    AeoStatus.GRANTED,
    AeoStatus.SUSPENDED,
    AeoStatus.REVOKED,
    AeoStatus.CONSENT_WITHDRAWN,
)
LEGAL_TRANSITIONS: Mapping[AeoStatus, frozenset[AeoStatus]] = {
    _G: frozenset({_G, _S, _R, _W}),  # amend, suspend, revoke, consent withdrawn
    _S: frozenset({_S, _G, _R, _W}),  # amend, suspension lifted, revoke, consent withdrawn
    _R: frozenset({_R}),  # final: only amendments (e.g. consent withdrawn: consent = false)
    _W: frozenset({_W, _G, _S, _R}),  # consent given again (to the status then held), revoke
}

# The 27 member states by ISO 3166-1 code (Greece is GR in EORIs, not the VAT prefix EL).
# fmt: off
EU_MEMBER_STATES = frozenset(
    {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
        "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
    }
)
# fmt: on
# EORIs (and AEO authorisations) are also issued with the XI prefix for Northern Ireland
# (Windsor Framework), though XI is not an ISO 3166-1 code.
EORI_COUNTRIES = EU_MEMBER_STATES | {"XI"}

_TYPE_LETTER = {AeoType.AEOC: "C", AeoType.AEOS: "S", AeoType.AEOF: "F"}
_EORI_TAIL = re.compile(r"[A-Z0-9]{1,15}")
_AUTH_NUMBER = re.compile(r"(?P<cc>[A-Z]{2})AEO(?P<letter>[CSF])(?P<serial>[0-9]{1,29})")
_PARTNER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9./-]{0,34}")
_SCHEME = re.compile(r"[A-Z]{2}-[A-Z0-9]{2,16}")
_XREF_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9./-]{0,34}")
_PROGRAMME = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
MAX_VERSION = 2**63 - 1
# Unicode categories Cc (C0, DEL, C1) and Cs (surrogates), and the XML non-characters.
_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

# Field lengths: WCO DM formats where they exist (245 postcode an..17, 241 city an..35,
# R144 an..17), generous bounds elsewhere.
MAX_NAME = 512
MAX_STREET = 256
MAX_POSTCODE = 17
MAX_CITY = 35
MAX_AUTHORITY = 256
MAX_REASON = 512


def _fail(field_name: str, message: str, code: str | None = None) -> AeoError:
    return AeoError(message, code=code, location=field_name)


def check_text(value: object, field_name: str, max_len: int, *, required: bool = True) -> str:
    """Printable text of bounded length.

    Control characters, surrogates and XML non-characters are refused so that every record has
    the same meaning in protobuf, XML and CSV (XML cannot carry most control characters and
    normalises line ends): this is what makes the bindings lossless.
    """
    if not isinstance(value, str):
        raise _fail(field_name, f"{field_name} must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise _fail(field_name, f"{field_name} is required (rule TEXT-1: not empty)")
    if len(value) > max_len:
        raise _fail(
            field_name, f"{field_name} has {len(value)} characters (rule TEXT-2: at most {max_len})"
        )
    bad = _FORBIDDEN_CHARS.search(value)
    if bad is not None:
        raise _fail(
            field_name,
            f"{field_name} contains the character U+{ord(bad.group()):04X} "
            "(rule TEXT-3: no control characters, surrogates or non-characters)",
        )
    return value


def check_country(value: object, field_name: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper case (the rule of model/codelists.py, as an AeoError)."""
    return codelists.check_country(
        value, field_name, customs_codes=False, error=AeoError, code=None
    )


def check_eori(value: object, field_name: str = "holder_id") -> str:
    """An EU EORI: rule EORI-1 the country prefix, rule EORI-2 the national part."""
    if not isinstance(value, str):
        raise _fail(field_name, "the EORI must be text", AEO_EORI_INVALID)
    prefix, tail = value[:2], value[2:]
    if prefix not in EORI_COUNTRIES:
        raise _fail(
            field_name,
            f"EORI {value!r}: prefix {prefix!r} is not an EU member state code or XI (rule EORI-1)",
            AEO_EORI_INVALID,
        )
    if not _EORI_TAIL.fullmatch(tail):
        raise _fail(
            field_name,
            f"EORI {value!r}: after the country code come 1 to 15 upper-case letters or digits, "
            f"found {tail!r} (rule EORI-2)",
            AEO_EORI_INVALID,
        )
    return value


def check_authorisation_number(
    value: object, aeo_type: AeoType, issuing_country: str, field_name: str = "authorisation_number"
) -> str:
    """EU form: issuing country + 'AEO' + the type letter (C, S, F) + digits (DEAEOF00001234)."""
    if not isinstance(value, str):
        raise _fail(
            field_name, "the authorisation number must be text", AEO_AUTHORISATION_NUMBER_INVALID
        )
    match = _AUTH_NUMBER.fullmatch(value)
    if match is None:
        raise _fail(
            field_name,
            f"{value!r} is not country code + 'AEO' + C/S/F + 1 to 29 digits (rule AUTH-1)",
            AEO_AUTHORISATION_NUMBER_INVALID,
        )
    if match["letter"] != _TYPE_LETTER[aeo_type]:
        raise _fail(
            field_name,
            f"{value!r} is an AEO{match['letter']} number but the type is {aeo_type} (rule AUTH-2)",
            AEO_AUTHORISATION_NUMBER_INVALID,
        )
    if match["cc"] != issuing_country:
        raise _fail(
            field_name,
            f"{value!r} starts with {match['cc']!r} but the issuing country is "
            f"{issuing_country!r} (rule AUTH-3)",
            AEO_AUTHORISATION_NUMBER_INVALID,
        )
    return value


def parse_aeo_type(value: object, field_name: str = "aeo_type") -> AeoType:
    try:
        return AeoType(str(value))
    except ValueError:
        raise _fail(
            field_name, f"{value!r} is not an AEO type (AEOC, AEOS, AEOF)", AEO_UNKNOWN_TYPE
        ) from None


def parse_status(value: object, field_name: str = "status") -> AeoStatus:
    try:
        return AeoStatus(str(value))
    except ValueError:
        allowed = ", ".join(AeoStatus)
        raise _fail(field_name, f"{value!r} is not one of {allowed}", AEO_UNKNOWN_STATUS) from None


def check_transition(current: AeoStatus, new: AeoStatus, where: str = "status") -> None:
    """Refuse a status change the state machine does not allow (LEGAL_TRANSITIONS)."""
    if new not in LEGAL_TRANSITIONS[current]:
        raise _fail(
            where,
            f"{current} -> {new} is not a legal status change"
            + (
                " (REVOKED is final: a new authorisation gets a new number)"
                if current is AeoStatus.REVOKED
                else ""
            ),
            AEO_ILLEGAL_TRANSITION,
        )


def check_change_order(
    held_version: int,
    held_effective: date,
    new_version: int,
    new_effective: date,
    where: str = "version",
) -> None:
    """A change must be newer than what is held: higher version, effective date not earlier."""
    if new_version <= held_version:
        raise _fail(
            where,
            f"version {new_version} is not after the held version {held_version} "
            "(a replayed or reordered change)",
            AEO_OUT_OF_ORDER,
        )
    if new_effective < held_effective:
        raise _fail(
            "status_effective",
            f"effective date {new_effective.isoformat()} is before the held "
            f"{held_effective.isoformat()} (effective dates must not go backwards)",
            AEO_OUT_OF_ORDER,
        )


@dataclass(frozen=True)
class Address:
    """Street and number (WCO 239), postcode (245), city (241), country (242)."""

    street: str
    postcode: str
    city: str
    country: str

    def __post_init__(self) -> None:
        check_text(self.street, "address.street", MAX_STREET)
        check_text(self.postcode, "address.postcode", MAX_POSTCODE, required=False)
        check_text(self.city, "address.city", MAX_CITY)
        check_country(self.country, "address.country")


@dataclass(frozen=True, order=True)
class CrossReference:
    """An identifier a partner knows the operator by, e.g. ("US-MID", "NLACMSTR1234AMS")."""

    scheme: str
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, str) or not _SCHEME.fullmatch(self.scheme):
            raise _fail(
                "cross_references",
                f"scheme {self.scheme!r} is not 'CC-NAME' (country code, '-', 2 to 16 "
                "upper-case letters or digits), e.g. US-MID",
            )
        if not isinstance(self.value, str) or not _XREF_VALUE.fullmatch(self.value):
            raise _fail(
                "cross_references",
                f"{self.scheme} value {self.value!r}: 1 to 35 letters, digits, '.', '/', '-'",
            )


@dataclass(frozen=True)
class AeoRecord:
    """One AEO authorisation as the gateway holds and exchanges it.

    ``administration`` owns the programme: EU for EU AEOs (EORI, EU authorisation number and
    type are then enforced); a partner code for records received from that partner, whose own
    identifier and number formats are only bounded, and whose ``aeo_type`` is the EU equivalent
    once known (None until the profile maps ``partner_programme``).
    """

    administration: Administration
    holder_id: str
    holder_name: str
    address: Address
    authorisation_number: str
    aeo_type: AeoType | None
    issuing_country: str
    competent_authority: str
    authorised_since: date
    status: AeoStatus
    status_effective: date
    consent: bool
    consent_date: date | None
    version: int
    status_reason: str = ""
    partner_programme: str = ""
    cross_references: tuple[CrossReference, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.administration, Administration):
            raise _fail("administration", "must be an Administration")
        eu = self.administration is Administration.EU
        check_text(self.holder_name, "holder_name", MAX_NAME)
        if not isinstance(self.address, Address):
            raise _fail("address", "must be an Address")
        if eu:
            check_eori(self.holder_id)
        elif not isinstance(self.holder_id, str) or not _PARTNER_ID.fullmatch(self.holder_id):
            raise _fail(
                "holder_id",
                f"{self.holder_id!r}: a partner identifier is 1 to 35 letters, digits, '.', '/', -",
            )
        if self.aeo_type is not None and not isinstance(self.aeo_type, AeoType):
            raise _fail("aeo_type", f"{self.aeo_type!r} is not an AeoType", AEO_UNKNOWN_TYPE)
        if eu:
            if self.aeo_type is None:
                raise _fail(
                    "aeo_type",
                    "an EU authorisation has a type (AEOC, AEOS, AEOF)",
                    AEO_UNKNOWN_TYPE,
                )
            if self.issuing_country not in EORI_COUNTRIES:
                raise _fail(
                    "issuing_country",
                    f"{self.issuing_country!r} is not an EU member state code or XI",
                )
            check_authorisation_number(
                self.authorisation_number, self.aeo_type, self.issuing_country
            )
        else:
            check_country(self.issuing_country, "issuing_country")
            if not isinstance(self.authorisation_number, str) or not _PARTNER_ID.fullmatch(
                self.authorisation_number
            ):
                raise _fail(
                    "authorisation_number",
                    f"{self.authorisation_number!r}: a partner authorisation number is 1 to 35 "
                    "letters, digits, '.', '/', '-'",
                    AEO_AUTHORISATION_NUMBER_INVALID,
                )
            if self.aeo_type is None and not self.partner_programme:
                raise _fail(
                    "partner_programme",
                    "a partner record names its programme or an EU-equivalent type",
                )
        if self.partner_programme and not _PROGRAMME.fullmatch(self.partner_programme):
            raise _fail(
                "partner_programme",
                f"{self.partner_programme!r} is not a programme code (A-Z, 0-9, '_', '-', <= 32)",
            )
        check_text(self.competent_authority, "competent_authority", MAX_AUTHORITY)
        if not isinstance(self.status, AeoStatus):
            raise _fail("status", f"{self.status!r} is not an AeoStatus", AEO_UNKNOWN_STATUS)
        _check_date(self.authorised_since, "authorised_since")
        _check_date(self.status_effective, "status_effective")
        if self.status_effective < self.authorised_since:
            raise _fail(
                "status_effective",
                f"status effective {self.status_effective.isoformat()} is before the "
                f"authorisation took effect ({self.authorised_since.isoformat()})",
            )
        check_text(self.status_reason, "status_reason", MAX_REASON, required=False)
        if not isinstance(self.consent, bool):
            raise _fail("consent", "must be true or false")
        if self.consent_date is not None:
            _check_date(self.consent_date, "consent_date")
        if self.consent and self.consent_date is None:
            raise _fail(
                "consent_date", "consent given needs the date it was given (rule CONSENT-1)"
            )
        if self.status is AeoStatus.CONSENT_WITHDRAWN and self.consent:
            raise _fail(
                "consent",
                "status CONSENT_WITHDRAWN contradicts consent = true (rule CONSENT-2)",
            )
        if (
            not isinstance(self.version, int)
            or isinstance(self.version, bool)
            or not 1 <= self.version <= MAX_VERSION
        ):
            raise _fail("version", f"version {self.version!r} must be an integer from 1 to 2^63-1")
        refs = tuple(self.cross_references)
        for ref in refs:
            if not isinstance(ref, CrossReference):
                raise _fail("cross_references", "must be CrossReference values")
        ordered = tuple(sorted(set(refs)))
        if len(ordered) != len(refs):
            raise _fail("cross_references", "the same cross reference is listed twice")
        # One canonical order, so equal records are equal and digest alike whatever the source.
        object.__setattr__(self, "cross_references", ordered)

    @property
    def is_aeo(self) -> bool:
        """Whether the operator enjoys AEO status now (granted; suspended ones do not)."""
        return self.status is AeoStatus.GRANTED

    def references(self, scheme: str) -> tuple[str, ...]:
        return tuple(ref.value for ref in self.cross_references if ref.scheme == scheme)

    def to_json_dict(self) -> dict[str, object]:
        """The exchanged fields as plain JSON values (the input of the reconciliation digest)."""
        return {
            "administration": self.administration.value,
            "holder_id": self.holder_id,
            "holder_name": self.holder_name,
            "address": {
                "street": self.address.street,
                "postcode": self.address.postcode,
                "city": self.address.city,
                "country": self.address.country,
            },
            "authorisation_number": self.authorisation_number,
            "aeo_type": self.aeo_type.value if self.aeo_type is not None else None,
            "partner_programme": self.partner_programme,
            "issuing_country": self.issuing_country,
            "competent_authority": self.competent_authority,
            "authorised_since": self.authorised_since.isoformat(),
            "status": self.status.value,
            "status_effective": self.status_effective.isoformat(),
            "status_reason": self.status_reason,
            "consent": self.consent,
            "consent_date": self.consent_date.isoformat() if self.consent_date else None,
            "cross_references": [[ref.scheme, ref.value] for ref in self.cross_references],
            "version": self.version,
        }


def canonical_bytes(record: AeoRecord) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of a record's exchanged fields.

    Both sides compute it from their decoded records, so it does not depend on the wire form.
    """
    return json.dumps(
        record.to_json_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _check_date(value: object, field_name: str) -> None:
    if not isinstance(value, date) or type(value) is not date:
        raise _fail(field_name, f"{field_name} must be a date (YYYY-MM-DD), not a datetime")


@dataclass(frozen=True)
class Problem:
    """One refused record or change: where (line, record or change index), field, rule."""

    where: str
    field: str
    code: str
    message: str

    def __str__(self) -> str:
        field_part = f" {self.field}:" if self.field else ""
        return f"{self.where}:{field_part} {self.code}: {self.message}"

    @classmethod
    def of(cls, where: str, error: AeoError) -> Problem:
        return cls(where, error.location or "", error.code, error.message)


class AeoRejected(AeoError):
    """Several records or changes refused together; nothing of the batch was accepted.

    ``problems`` lists every bad one (the message shows the first ``shown``), so an operator
    fixes a file in one round instead of one error per attempt.
    """

    def __init__(
        self,
        what: str,
        problems: list[Problem] | tuple[Problem, ...],
        *,
        code: str | None = None,
        location: str | None = None,
        shown: int = 50,
    ) -> None:
        lines = [str(problem) for problem in problems[:shown]]
        if len(problems) > shown:
            lines.append(f"... and {len(problems) - shown} more")
        message = f"{what}: {len(problems)} problem(s), nothing accepted\n  " + "\n  ".join(lines)
        super().__init__(message, code=code, location=location)
        self.problems = tuple(problems)
