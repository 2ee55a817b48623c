"""Code lists and identifiers of UB2 records: one implementation of each rule for the gateway.

Each ``check_*`` function is pure: it returns the value in its normalised form or raises a
`TransactionError` with the UB2_* code of the list and the ``location`` it was given. UB1 and
UB3 use the same rules with their own error types and codes (``error=`` / ``code=``), so the
gateway has one idea of what a country or a container number is.

- countries: ISO 3166-1 alpha-2 as pycountry holds it, plus the few user-assigned codes customs
  declarations use (data/customs-country-codes.toml: XI, XK, continental shelves, ...);
- container numbers: ISO 6346 with its check digit (python-stdnum ``iso6346``); the printed
  form ``CSQU 305438 3`` is accepted and normalised to ``CSQU3054383``;
- commodity codes: HS (4 or 6 digits), CN (8), TARIC (10), chapter 01-97 but not 77;
- package kinds: UN/ECE Recommendation 21 two-character codes (data/rec21-package-types.toml);
- transport modes: UN/ECE Recommendation 19, one digit 0-9;
- location codes: a UN/LOCODE (country + 3 of A-Z 2-9, ``CNSHA``, printed ``CN SHA``) or a
  customs office reference number (country + 6 of A-Z 0-9, ``GB000142``).

A `Consignment` holds values *as declared*: `consignment_findings` walks every coded field and
reports each bad value (never stopping at the first), located by the record's provenance.

Field paths name a record field as Python would reach it, zero-based::

    place_of_loading, export_country, routing_countries[2], offices[0].identifier, containers[0],
    parties[1].address.country, transports[0].mode, transports[0].nationality,
    goods_items[0].commodity_code, goods_items[0].packages[1].kind,
    goods_items[0].containers[1], goods_items[0].origin_country, goods_items[0].export_country,
    goods_items[0].parties[0].address.country, goods_items[0].transports[0].mode

Translators key `Consignment.source_paths` by these paths; a finding's location is
``c.source_path(field_path)``: the XPath in the EU message where known, else the field path.
Not checked, because no list applies: ``goods_location`` (L010 holds national goods-location
identifiers, e.g. the UK's ``BELBELBEL``), ``declaration_place`` (free text in the ENS), document
type, procedure and additional codes and transport charges payment methods (national or
message-specific lists), free text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources

import pycountry
from stdnum import iso6346

from gateway.errors import (
    UB2_COMMODITY_INVALID,
    UB2_CONTAINER_INVALID,
    UB2_COUNTRY_INVALID,
    UB2_LOCATION_INVALID,
    UB2_PACKAGE_KIND_INVALID,
    UB2_TRANSPORT_MODE_INVALID,
    UB2_VALUE_INVALID,
    GatewayError,
    TransactionError,
)
from gateway.model.consignment import Consignment, GoodsItem, Party, TransportMeans

__all__ = [
    "COMMODITY_CODE_LENGTHS",
    "TRANSPORT_MODES",
    "check_commodity_code",
    "check_container_number",
    "check_country",
    "check_currency",
    "check_customs_office",
    "check_location_code",
    "check_package_kind",
    "check_transport_mode",
    "coded_values",
    "consignment_findings",
    "container_check_digit",
    "package_kinds",
]

ErrorType = type[GatewayError]

COMMODITY_CODE_LENGTHS = (4, 6, 8, 10)  # HS heading, HS subheading, CN, TARIC
TRANSPORT_MODES = {
    "0": "Mode not specified",
    "1": "Maritime transport",
    "2": "Rail transport",
    "3": "Road transport",
    "4": "Air transport",
    "5": "Mail",
    "6": "Multimodal transport",
    "7": "Fixed transport installation",
    "8": "Inland water transport",
    "9": "Transport mode not applicable",
}
_CONTAINER = re.compile(r"[A-Z]{3}[UJZR][0-9]{7}")  # owner, category, serial, check digit
_CONTAINER_PRINTED = re.compile(r"([A-Z]{3}[UJZR])[ -]?([0-9]{6})[ -]?([0-9])")
_LOCODE = re.compile(r"([A-Z]{2}) ?([A-Z2-9]{3})")
_OFFICE = re.compile(r"([A-Z]{2})([A-Z0-9]{6})")


def _fail(message: str, location: str, error: ErrorType, code: str | None) -> GatewayError:
    return error(message, code=code, location=location)


@cache
def _data(name: str) -> dict[str, str]:
    text = (resources.files("gateway.model") / "data" / name).read_text(encoding="utf-8")
    codes: dict[str, str] = tomllib.loads(text)["codes"]
    return codes


@cache
def _countries(extended: bool) -> frozenset[str]:
    iso = frozenset(c.alpha_2 for c in pycountry.countries)
    return iso | frozenset(_data("customs-country-codes.toml")) if extended else iso


def check_country(
    value: object,
    location: str,
    *,
    customs_codes: bool = True,
    error: ErrorType = TransactionError,
    code: str | None = UB2_COUNTRY_INVALID,
) -> str:
    """An ISO 3166-1 alpha-2 code that exists (upper case, as every EU schema writes it).

    ``customs_codes`` also admits the user-assigned codes customs declarations use (XI, XK,
    continental shelves); UB1 and UB3 records hold plain ISO 3166-1 and pass False.
    """
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value):
        raise _fail(f"{value!r} is not a two-letter upper-case country code", location, error, code)
    if value not in _countries(customs_codes):
        raise _fail(f"{value!r} is not an ISO 3166-1 alpha-2 country code", location, error, code)
    return value


def container_check_digit(first_ten: str) -> int:
    """ISO 6346 check digit of owner code + category + 6-digit serial (python-stdnum)."""
    return int(iso6346.calc_check_digit(first_ten))


def check_container_number(
    value: object,
    location: str,
    *,
    exact: bool = False,
    error: ErrorType = TransactionError,
    code: str | None = UB2_CONTAINER_INVALID,
) -> str:
    """An ISO 6346 container number with a correct check digit, in its compact form.

    Owner code (3 letters), category (U, J, Z or R), 6-digit serial, check digit. The printed
    form with spaces or hyphens is accepted and returned compact unless ``exact`` (UB3 stores
    what it checks, so it asks for the compact form itself).
    """
    if not isinstance(value, str):
        raise _fail(f"{value!r} is not a container number", location, error, code)
    if exact:
        compact = value if _CONTAINER.fullmatch(value) else None
    else:
        printed = _CONTAINER_PRINTED.fullmatch(value.strip())
        compact = "".join(printed.groups()) if printed else None
    if compact is None:
        raise _fail(
            f"{value!r} is not an ISO 6346 container number (e.g. CSQU3054383)",
            location,
            error,
            code,
        )
    try:
        return iso6346.validate(compact)
    except iso6346.ValidationError:
        expected = container_check_digit(compact[:10])
        raise _fail(
            f"{value!r}: check digit {compact[10]} is wrong (ISO 6346 gives {expected})",
            location,
            error,
            code,
        ) from None


def check_commodity_code(
    value: object,
    location: str,
    *,
    lengths: tuple[int, ...] = COMMODITY_CODE_LENGTHS,
    error: ErrorType = TransactionError,
    code: str | None = UB2_COMMODITY_INVALID,
) -> str:
    """An HS / CN / TARIC code: digits only, one of ``lengths``, an HS chapter that exists.

    HS chapters run 01 to 97; chapter 77 is reserved for future use and has no goods.
    """
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise _fail(f"{value!r} is not a commodity code (digits only)", location, error, code)
    if len(value) not in lengths:
        allowed = ", ".join(map(str, lengths[:-1])) + f" or {lengths[-1]}"
        raise _fail(f"{value!r} is not a commodity code of {allowed} digits", location, error, code)
    chapter = int(value[:2])
    if not 1 <= chapter <= 97 or chapter == 77:
        raise _fail(f"{value!r}: HS chapter {value[:2]} does not exist", location, error, code)
    return value


def package_kinds() -> dict[str, str]:
    """The UN/ECE Recommendation 21 package type codes the gateway knows, with their names."""
    return dict(_data("rec21-package-types.toml"))


def check_package_kind(value: object, location: str) -> str:
    """A UN/ECE Recommendation 21 package type code (two characters, upper case: CT, PX, VR)."""
    if not isinstance(value, str) or value not in _data("rec21-package-types.toml"):
        raise TransactionError(
            f"{value!r} is not a UN/ECE Recommendation 21 package type code",
            code=UB2_PACKAGE_KIND_INVALID,
            location=location,
        )
    return value


def check_transport_mode(
    value: object,
    location: str,
    *,
    error: ErrorType = TransactionError,
    code: str | None = UB2_TRANSPORT_MODE_INVALID,
) -> str:
    """A UN/ECE Recommendation 19 transport mode code: one digit 0-9."""
    if not isinstance(value, str) or value not in TRANSPORT_MODES:
        raise _fail(
            f"{value!r} is not a UN/ECE Recommendation 19 transport mode (0-9)",
            location,
            error,
            code,
        )
    return value


def _country_part(value: str, country: str, location: str) -> None:
    if country not in _countries(True):
        raise TransactionError(
            f"{value!r} starts with {country!r}, which is not a country code",
            code=UB2_LOCATION_INVALID,
            location=location,
        )


def check_customs_office(value: object, location: str) -> str:
    """A customs office reference number: country + 6 of A-Z 0-9 (``GB000142``)."""
    match = _OFFICE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise TransactionError(
            f"{value!r} is not a customs office reference number (country + 6 characters)",
            code=UB2_LOCATION_INVALID,
            location=location,
        )
    _country_part(match[0], match[1], location)
    return match[0]


def check_location_code(value: object, location: str) -> str:
    """A UN/LOCODE (``CNSHA``; ``CN SHA`` is returned as ``CNSHA``) or a customs office number."""
    if isinstance(value, str):
        office = _OFFICE.fullmatch(value)
        if office is not None:
            _country_part(value, office[1], location)
            return value
        locode = _LOCODE.fullmatch(value)
        if locode is not None:
            _country_part(value, locode[1], location)
            return locode[1] + locode[2]
    raise TransactionError(
        f"{value!r} is not a UN/LOCODE (country + 3 characters) or a customs office reference "
        "number (country + 6 characters)",
        code=UB2_LOCATION_INVALID,
        location=location,
    )


def check_currency(value: object, location: str) -> str:
    """An ISO 4217 currency code (pycountry)."""
    if not isinstance(value, str) or pycountry.currencies.get(alpha_3=value) is None:
        raise TransactionError(
            f"{value!r} is not an ISO 4217 currency code",
            code=UB2_VALUE_INVALID,
            location=location,
        )
    return value


# --- a whole record -----------------------------------------------------------------------------
_Check = Callable[[object, str], str]


def _party_values(parties: tuple[Party, ...], prefix: str) -> Iterator[tuple[str, str, _Check]]:
    for i, party in enumerate(parties):
        if party.address is not None and party.address.country is not None:
            yield f"{prefix}parties[{i}].address.country", party.address.country, check_country


def _transport_values(
    transports: tuple[TransportMeans, ...], prefix: str
) -> Iterator[tuple[str, str, _Check]]:
    for i, means in enumerate(transports):
        if means.mode is not None:
            yield f"{prefix}transports[{i}].mode", means.mode, check_transport_mode
        if means.nationality is not None:
            yield f"{prefix}transports[{i}].nationality", means.nationality, check_country


def _item_values(item: GoodsItem, prefix: str) -> Iterator[tuple[str, str, _Check]]:
    if item.commodity_code is not None:
        yield f"{prefix}commodity_code", item.commodity_code, check_commodity_code
    for j, package in enumerate(item.packages):
        if package.kind is not None:
            yield f"{prefix}packages[{j}].kind", package.kind, check_package_kind
    for j, container in enumerate(item.containers):
        yield f"{prefix}containers[{j}]", container, check_container_number
    yield from _party_values(item.parties, prefix)
    yield from _transport_values(item.transports, prefix)
    if item.place_of_loading is not None:
        yield f"{prefix}place_of_loading", item.place_of_loading, check_location_code
    if item.place_of_unloading is not None:
        yield f"{prefix}place_of_unloading", item.place_of_unloading, check_location_code
    names = ("origin_country", "preferential_origin_country", "export_country")
    for name in (*names, "destination_country"):
        value = getattr(item, name)
        if value is not None:
            yield f"{prefix}{name}", value, check_country
    if item.statistical_value_currency is not None:
        yield (
            f"{prefix}statistical_value_currency",
            item.statistical_value_currency,
            check_currency,
        )


def coded_values(c: Consignment) -> Iterator[tuple[str, str, _Check]]:
    """Every coded value of a record: (field path, value, the check that applies), in order."""
    yield from _party_values(c.parties, "")
    yield from _transport_values(c.transports, "")
    for i, office in enumerate(c.offices):
        yield f"offices[{i}].identifier", office.identifier, check_customs_office
    for name in ("place_of_loading", "place_of_unloading"):
        value = getattr(c, name)
        if value is not None:
            yield name, value, check_location_code
    for name in ("export_country", "destination_country"):
        value = getattr(c, name)
        if value is not None:
            yield name, value, check_country
    for i, country in enumerate(c.routing_countries):
        yield f"routing_countries[{i}]", country, check_country
    if c.invoice_currency is not None:
        yield "invoice_currency", c.invoice_currency, check_currency
    for i, container in enumerate(c.containers):
        yield f"containers[{i}]", container, check_container_number
    for i, item in enumerate(c.goods_items):
        yield from _item_values(item, f"goods_items[{i}].")


def consignment_findings(c: Consignment) -> list[TransactionError]:
    """Each coded value of the record that breaks its list, located in the source message.

    The record is not changed and the walk never stops at the first finding: the caller decides
    what to do with them (report, refuse to send), and sees all of them at once.
    """
    findings: list[TransactionError] = []
    for path, value, check in coded_values(c):
        location = c.source_path(path)
        try:
            check(value, location)
        except TransactionError as exc:
            findings.append(exc)
    return findings
