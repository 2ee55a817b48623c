"""Hypothesis strategies for UB1 AEO records, shared by the AEO test modules."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pycountry
from hypothesis import strategies as st

from gateway.model.aeo import (
    EORI_COUNTRIES,
    Address,
    AeoRecord,
    AeoStatus,
    AeoType,
    CrossReference,
)
from gateway.model.codes import Administration
from gateway.translate.eos_aeo import MappingSpec, load_mapping_spec

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(__file__).resolve().parent / "vectors" / "aeo"
SPEC_PATH = ROOT / "adapters" / "mappings" / "eos-aeo.toml"
PARTNERS_DIR = ROOT / "adapters" / "partners"


def load_spec() -> MappingSpec:
    return load_mapping_spec(SPEC_PATH.read_bytes(), SPEC_PATH.name)


_COUNTRIES = sorted(c.alpha_2 for c in pycountry.countries)
_LETTER = {AeoType.AEOC: "C", AeoType.AEOS: "S", AeoType.AEOF: "F"}


def texts(max_size: int, *, min_size: int = 1) -> st.SearchStrategy[str]:
    """Any printable text the model accepts (no control characters, surrogates, U+FFFE/F)."""
    chars = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff")
    strategy = st.text(chars, min_size=min_size, max_size=max_size)
    return strategy.filter(lambda s: bool(s.strip())) if min_size else strategy


def regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


addresses = st.builds(
    Address,
    street=texts(256),
    postcode=texts(17, min_size=0),
    city=texts(35),
    country=st.sampled_from(_COUNTRIES),
)
cross_references = st.lists(
    st.builds(
        CrossReference,
        scheme=regex(r"[A-Z]{2}-[A-Z0-9]{2,16}"),
        value=regex(r"[A-Za-z0-9][A-Za-z0-9./-]{0,34}"),
    ),
    max_size=4,
    unique=True,
)
_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31))


@st.composite
def records(draw: st.DrawFn, *, eu: bool | None = None) -> AeoRecord:
    """A valid AEO record: an EU one (EORI, EU number) or a partner's."""
    is_eu = draw(st.booleans()) if eu is None else eu
    status = draw(st.sampled_from(AeoStatus))
    since = draw(_dates)
    effective = draw(st.dates(min_value=since, max_value=date(2045, 1, 1)))
    consent = False if status is AeoStatus.CONSENT_WITHDRAWN else draw(st.booleans())
    consent_date = draw(_dates) if consent else draw(st.none() | _dates)
    if is_eu:
        country = draw(st.sampled_from(sorted(EORI_COUNTRIES)))
        aeo_type: AeoType | None = draw(st.sampled_from(AeoType))
        assert aeo_type is not None
        administration = Administration.EU
        holder_id = country + draw(regex(r"[A-Z0-9]{1,15}"))
        number = f"{country}AEO{_LETTER[aeo_type]}" + draw(regex(r"[0-9]{1,29}"))
        programme = draw(st.just("") | regex(r"[A-Z0-9][A-Z0-9_-]{0,31}"))
    else:
        administration = draw(st.sampled_from([a for a in Administration if a.value != "EU"]))
        country = draw(st.sampled_from(_COUNTRIES))
        aeo_type = draw(st.none() | st.sampled_from(AeoType))
        holder_id = draw(regex(r"[A-Za-z0-9][A-Za-z0-9./-]{0,34}"))
        number = draw(regex(r"[A-Za-z0-9][A-Za-z0-9./-]{0,34}"))
        programme = draw(regex(r"[A-Z0-9][A-Z0-9_-]{0,31}"))
    return AeoRecord(
        administration=administration,
        holder_id=holder_id,
        holder_name=draw(texts(512)),
        address=draw(addresses),
        authorisation_number=number,
        aeo_type=aeo_type,
        issuing_country=country,
        competent_authority=draw(texts(256)),
        authorised_since=since,
        status=status,
        status_effective=effective,
        consent=consent,
        consent_date=consent_date,
        version=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        status_reason=draw(texts(512, min_size=0)),
        partner_programme=programme,
        cross_references=tuple(draw(cross_references)),
    )


def distinct_records(**kwargs: bool | None) -> st.SearchStrategy[list[AeoRecord]]:
    """Lists of records with distinct authorisation numbers (a valid full list)."""
    return st.lists(records(**kwargs), max_size=6, unique_by=lambda r: r.authorisation_number)
