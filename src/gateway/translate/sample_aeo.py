"""Realistic sample EU AEO exports for the demo, tests and benchmarks. Deterministic, no I/O.

The records look like what EOS holds: operators across member states with EORIs in each state's
usual national form, AEOC/AEOS/AEOF mixed (AEOF most common), some operators without consent to
the exchange, a few suspended, revoked or withdrawn, and US MID numbers linked for some security
AEOs (derived the way MIDs are: country, name letters, street number, city letters). Output goes
through the real writers, so a sample is valid by construction and reads back with the importer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Literal

from gateway.model.aeo import Address, AeoRecord, AeoStatus, AeoType, CrossReference
from gateway.model.codes import Administration
from gateway.translate.eos_aeo import ExportKind, MappingSpec, write_eos_csv, write_eos_xml

__all__ = ["generate_change_feed", "generate_eos_export", "generate_records"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _ten_digits(rng: random.Random) -> str:
    return _digits(rng, 10)


# national part of an EORI, by member state (the usual forms: VAT, SIREN/SIRET, RSIN, ...)
_EORI_FORMS: dict[str, Callable[[random.Random], str]] = {
    "DE": lambda r: _digits(r, r.choice((7, 12, 15))),
    "FR": lambda r: _digits(r, 14),
    "NL": lambda r: _digits(r, 9),
    "BE": lambda r: "0" + _digits(r, 9),
    "IT": lambda r: _digits(r, 11),
    "ES": lambda r: r.choice("ABCDEFGHJ") + _digits(r, 8),
    "PL": lambda r: _digits(r, 10) + "00000",
    "AT": lambda r: "EOS" + _digits(r, 10),
    "IE": lambda r: _digits(r, 7) + r.choice("ABCDEFGHW"),
    "XI": lambda r: _digits(r, 12),
}

# state: (weight, customs authority, legal forms, [(city, postcode pattern)], street words)
_STATES: dict[str, tuple[int, str, Sequence[str], Sequence[tuple[str, str]], Sequence[str]]] = {
    "DE": (
        20,
        "Generalzolldirektion",
        ("GmbH", "AG", "GmbH & Co. KG"),
        (
            ("Hamburg", "2####"),
            ("Bremen", "28###"),
            ("Frankfurt am Main", "60###"),
            ("Duisburg", "47###"),
            ("München", "80###"),
        ),
        ("Hafenstraße", "Industriestraße", "Am Kai", "Lagerweg"),
    ),
    "NL": (
        12,
        "Belastingdienst/Douane",
        ("B.V.", "N.V."),
        (("Rotterdam", "30## AB"), ("Amsterdam", "10## CD"), ("Venlo", "59## EF")),
        ("Havenweg", "Waalhaven Zuidzijde", "Industrieweg"),
    ),
    "BE": (
        8,
        "Algemene Administratie van de Douane en Accijnzen",
        ("NV", "BV", "SA"),
        (("Antwerpen", "2###"), ("Zeebrugge", "8380"), ("Liège", "4###")),
        ("Haven", "Kaai", "Rue du Port"),
    ),
    "FR": (
        12,
        "Direction générale des douanes et droits indirects",
        ("SAS", "SA", "SARL"),
        (("Le Havre", "76###"), ("Marseille", "13###"), ("Lyon", "69###"), ("Roissy", "95700")),
        ("Quai de l'Europe", "Rue du Commerce", "Boulevard Jules Durand"),
    ),
    "IT": (
        10,
        "Agenzia delle Dogane e dei Monopoli",
        ("S.p.A.", "S.r.l."),
        (("Genova", "161##"), ("Milano", "201##"), ("Trieste", "341##")),
        ("Via del Porto", "Via Industria", "Calata Sanità"),
    ),
    "ES": (
        8,
        "Agencia Estatal de Administración Tributaria",
        ("S.A.", "S.L."),
        (("Valencia", "46###"), ("Barcelona", "08###"), ("Algeciras", "11###")),
        ("Muelle", "Calle de la Industria", "Avenida del Puerto"),
    ),
    "PL": (
        6,
        "Krajowa Administracja Skarbowa",
        ("Sp. z o.o.", "S.A."),
        (("Gdańsk", "80-###"), ("Poznań", "60-###"), ("Łódź", "90-###")),
        ("ul. Portowa", "ul. Przemysłowa", "ul. Logistyczna"),
    ),
    "AT": (
        4,
        "Zollamt Österreich",
        ("GmbH", "AG"),
        (("Wien", "1###"), ("Linz", "40##"), ("Graz", "80##")),
        ("Hafenstraße", "Gewerbepark", "Industriezeile"),
    ),
    "IE": (
        3,
        "Revenue Commissioners",
        ("Limited", "DAC"),
        (("Dublin", "D0# ####"), ("Cork", "T12 ####")),
        ("Dock Road", "North Wall Quay", "Industrial Estate"),
    ),
    "SE": (
        4,
        "Tullverket",
        ("AB",),
        (("Göteborg", "41# ##"), ("Malmö", "21# ##")),
        ("Hamngatan", "Industrivägen"),
    ),
    "DK": (
        3,
        "Toldstyrelsen",
        ("A/S", "ApS"),
        (("Aarhus", "8###"), ("København", "2###")),
        ("Havnegade", "Industrivej"),
    ),
    "FI": (
        2,
        "Tulli",
        ("Oy", "Oyj"),
        (("Helsinki", "00###"), ("Kotka", "48###")),
        ("Satamatie", "Teollisuuskatu"),
    ),
    "CZ": (
        2,
        "Generální ředitelství cel",
        ("s.r.o.", "a.s."),
        (("Praha", "1## ##"),),
        ("Průmyslová", "Logistická"),
    ),
    "XI": (
        1,
        "HM Revenue & Customs",
        ("Ltd", "plc"),
        (("Belfast", "BT# #AA"),),
        ("Harbour Road", "Duncrue Street"),
    ),
}
_NAME_CORES = (
    "Nordsee Logistik",
    "Rhein Cargo",
    "Atlantic Freight",
    "Mediterranean Shipping Services",
    "Baltic Forwarding",
    "Euro Components",
    "Alpine Machinery",
    "Delta Chemicals",
    "Continental Foods",
    "Orion Electronics",
    "Meridian Textiles",
    "Polar Pharma",
    "Vega Automotive",
    "Helios Solar",
    "Boreal Paper",
    "Aurora Tools",
    "Stellar Steel",
    "Harbour Terminals",
    "Central Warehousing",
    "Blue Line Carriers",
)
_TYPES = (AeoType.AEOF, AeoType.AEOF, AeoType.AEOF, AeoType.AEOC, AeoType.AEOC, AeoType.AEOS)
_LETTER = {AeoType.AEOC: "C", AeoType.AEOS: "S", AeoType.AEOF: "F"}


def _pattern(rng: random.Random, pattern: str) -> str:
    return "".join(
        rng.choice("0123456789")
        if ch == "#"
        else rng.choice("ABCDEFGHJKLMNPRSTVWXY")
        if ch == "A" and pattern.startswith("BT")
        else ch
        for ch in pattern
    )


def _mid(state: str, name: str, street_number: str, city: str) -> str:
    """A US Manufacturer ID the CBP way: ISO country, first 3 letters of the first two words of
    the name, up to 4 digits of the street number, first 3 letters of the city (max 15)."""
    country = "GB" if state == "XI" else state
    words = [
        w
        for w in (
            ("".join(c for c in w if c.isascii() and c.isalpha())).upper() for w in name.split()
        )
        if w
    ]
    letters = "".join(w[:3] for w in words[:2])
    city_letters = "".join(c for c in city.upper() if c.isascii() and c.isalpha())[:3]
    return (country + letters + street_number[:4] + city_letters)[:15]


def _random_date(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def generate_records(n: int, seed: int, *, today: date = date(2026, 1, 15)) -> Iterator[AeoRecord]:
    """``n`` distinct, valid EU AEO records (streamed: a million fit in little memory)."""
    rng = random.Random(seed)
    states = list(_STATES)
    weights = [_STATES[s][0] for s in states]
    for index in range(n):
        state = rng.choices(states, weights)[0]
        _, authority, forms, cities, streets = _STATES[state]
        issuing = state
        form = _EORI_FORMS.get(state, _ten_digits)
        # an index-derived tail keeps EORIs unique across a million records
        national = form(rng)
        eori = state + (national[: max(1, 15 - 7)] + f"{index:07d}")[-15:]
        name = f"{rng.choice(_NAME_CORES)} {rng.choice(forms)}"
        city, postcode_pattern = rng.choice(cities)
        number = str(rng.randint(1, 250))
        address = Address(
            f"{rng.choice(streets)} {number}",
            _pattern(rng, postcode_pattern),
            city,
            "GB" if state == "XI" else state,
        )
        aeo_type = rng.choice(_TYPES)
        since = _random_date(rng, date(2009, 1, 1), today - timedelta(days=30))
        roll = rng.random()
        consent = roll > 0.12
        status, effective, reason, version = AeoStatus.GRANTED, since, "", 1
        consent_date: date | None = _random_date(rng, since, today) if consent else None
        if roll > 0.97:
            status, reason = AeoStatus.SUSPENDED, "Suspended pending re-assessment (UCC Art. 16)"
            effective, version = _random_date(rng, since, today), 2
        elif roll > 0.95:
            status, reason = AeoStatus.REVOKED, "Criteria of UCC Art. 39 no longer met"
            effective, version = _random_date(rng, since, today), 3
        elif 0.10 < roll <= 0.12:
            status, reason = AeoStatus.CONSENT_WITHDRAWN, "Operator withdrew consent"
            effective, version = _random_date(rng, since, today), 2
            consent_date = effective
        refs: list[CrossReference] = []
        if consent and aeo_type is not AeoType.AEOC and rng.random() < 0.6:
            refs.append(CrossReference("US-MID", _mid(state, name, number, city)))
            if rng.random() < 0.25:
                refs.append(
                    CrossReference("US-MID", _mid(state, name, str(rng.randint(251, 9999)), city))
                )
        yield AeoRecord(
            administration=Administration.EU,
            holder_id=eori,
            holder_name=name,
            address=address,
            authorisation_number=f"{issuing}AEO{_LETTER[aeo_type]}{index + 1:08d}",
            aeo_type=aeo_type,
            issuing_country=issuing,
            competent_authority=authority,
            authorised_since=since,
            status=status,
            status_effective=effective,
            consent=consent,
            consent_date=consent_date,
            version=version,
            status_reason=reason,
            cross_references=tuple(refs),
        )


def generate_eos_export(
    n: int, seed: int, kind: Literal["xml", "csv"], *, spec: MappingSpec
) -> bytes:
    """A full EOS export of ``n`` AEOs as XML or CSV bytes (the spec names fields and columns;
    callers read it from adapters/mappings/eos-aeo.toml)."""
    records = generate_records(n, seed)
    if kind == "xml":
        return write_eos_xml(records, ExportKind.FULL, spec)
    if kind == "csv":
        return write_eos_csv(records, spec)
    raise ValueError(f"kind must be 'xml' or 'csv', not {kind!r}")


_FEED_CYCLE = ("suspend", "withdraw", "amend", "suspend", "revoke")


def generate_change_feed(
    records: Sequence[AeoRecord], count: int, seed: int, *, on: date = date(2026, 2, 1)
) -> list[AeoRecord]:
    """``count`` legal next states for randomly picked granted records, cycling through
    suspension, consent withdrawal, address amendment, suspension and revocation (so even a
    short feed has each), one version up, effective ``on``."""
    rng = random.Random(seed)
    granted = [r for r in records if r.status is AeoStatus.GRANTED]
    picked = rng.sample(granted, min(count, len(granted)))
    out = []
    for index, record in enumerate(picked):
        action = _FEED_CYCLE[index % len(_FEED_CYCLE)]
        effective = max(on, record.status_effective)
        if action == "suspend":
            new = replace(
                record,
                status=AeoStatus.SUSPENDED,
                status_effective=effective,
                status_reason="Suspended pending re-assessment (UCC Art. 16)",
            )
        elif action == "withdraw":
            new = replace(
                record,
                status=AeoStatus.CONSENT_WITHDRAWN,
                consent=False,
                consent_date=effective,
                status_effective=effective,
                status_reason="Operator withdrew consent",
            )
        elif action == "revoke":
            new = replace(
                record,
                status=AeoStatus.REVOKED,
                status_effective=effective,
                status_reason="Criteria of UCC Art. 39 no longer met",
            )
        else:
            street = f"{record.address.street} (Hall 2)"[:256]
            new = replace(record, address=replace(record.address, street=street))
        out.append(replace(new, version=record.version + 1))
    return out
