"""UB3 records: model checks; lossless round trips through both bindings and the CRMS form.

Property tests generate valid records of every UB3 message and check that decoding what was
encoded gives an equal record, in protobuf and in XML (validated against ub3-risk.xsd), and that
the CRMS form written for a record reads back as the same record.
"""

from __future__ import annotations

from datetime import date, timedelta

import pycountry
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError, RiskError
from gateway.model.codes import Administration, HandlingLabel
from gateway.model.risk import (
    DetentionProcedure,
    Feedback,
    FeedbackOutcome,
    GoodsItem,
    Indicators,
    IprDetention,
    IprStatistics,
    Operator,
    OperatorRole,
    RecommendedAction,
    RightCategory,
    RiskArea,
    RiskInformation,
    StatisticsLine,
    TransportMode,
    UB3Record,
    check_commodity_code,
    check_container_id,
    container_check_digit,
)
from gateway.translate import ub3_exchange
from gateway.translate.crms_risk import parse_feedback_form, parse_form, write_form
from gateway.translate.ub3_exchange import PayloadForm

COUNTRIES = sorted(c.alpha_2 for c in pycountry.countries)
ADMINS = list(Administration)

# --- strategies ---------------------------------------------------------------------------------
reference = st.from_regex(r"[A-Z0-9][A-Z0-9/_.-]{0,34}", fullmatch=True)
country = st.sampled_from(COUNTRIES)
text_char = st.characters(
    blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Zs")
).filter(str.isprintable)
one_line = st.text(text_char, min_size=1, max_size=40).map(str.strip).filter(bool)
multi_line = st.lists(one_line, min_size=1, max_size=3).map("\n".join)
days = st.dates(min_value=date(2020, 1, 1), max_value=date(2098, 12, 31))


@st.composite
def commodity_codes(draw: st.DrawFn) -> str:
    chapter = draw(st.integers(1, 97).filter(lambda c: c != 77))
    length = draw(st.sampled_from([6, 8, 10]))
    rest = draw(st.from_regex(rf"[0-9]{{{length - 2}}}", fullmatch=True))
    return f"{chapter:02d}{rest}"


@st.composite
def container_ids(draw: st.DrawFn) -> str:
    owner = draw(st.from_regex(r"[A-Z]{3}", fullmatch=True))
    category = draw(st.sampled_from("UJZ"))
    serial = draw(st.from_regex(r"[0-9]{6}", fullmatch=True))
    head = owner + category + serial
    return head + str(container_check_digit(head))


@st.composite
def routes(draw: st.DrawFn, minimum: int = 2) -> tuple[str, ...]:
    items = draw(st.lists(country, min_size=minimum, max_size=5))
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    while len(out) < minimum:
        out.append("NL" if out[-1] != "NL" else "BE")
    return tuple(out)


operators = st.builds(
    Operator,
    role=st.sampled_from(list(OperatorRole)),
    identifier=st.from_regex(r"[A-Z0-9][A-Z0-9/_.-]{0,20}", fullmatch=True),
    name=st.one_of(st.just(""), one_line),
    country=st.one_of(st.just(""), country),
    natural_person=st.booleans(),
)


@st.composite
def indicators(draw: st.DrawFn) -> Indicators:
    return Indicators(
        commodity_codes=tuple(draw(st.lists(commodity_codes(), max_size=3, unique=True))),
        countries=tuple(draw(st.lists(country, max_size=3, unique=True))),
        routes=tuple(draw(st.lists(routes(), max_size=2))),
        transport_modes=tuple(
            draw(st.lists(st.sampled_from(list(TransportMode)), max_size=3, unique=True))
        ),
        operators=tuple(draw(st.lists(operators, max_size=3))),
        container_ids=tuple(draw(st.lists(container_ids(), min_size=1, max_size=2, unique=True))),
    )


@st.composite
def risk_information(draw: st.DrawFn) -> RiskInformation:
    start = draw(days)
    end = start + timedelta(days=draw(st.integers(0, 3000)))
    return RiskInformation(
        originator=draw(st.sampled_from(ADMINS)),
        reference=draw(reference),
        area=draw(st.sampled_from(list(RiskArea))),
        indicators=draw(indicators()),
        description=draw(multi_line),
        valid_from=start,
        valid_until=end,
        recommended_action=draw(st.sampled_from(list(RecommendedAction))),
        label=draw(st.sampled_from(list(HandlingLabel))),
        issued_on=start,
    )


@st.composite
def feedback(draw: st.DrawFn) -> Feedback:
    originator, reporter = draw(st.lists(st.sampled_from(ADMINS), min_size=2, max_size=2,
                                         unique=True))  # fmt: skip
    outcome = draw(st.sampled_from(list(FeedbackOutcome)))
    controls = 0 if outcome is FeedbackOutcome.NOT_CONTROLLED else draw(st.integers(1, 50))
    hits = {
        FeedbackOutcome.NO_FINDINGS: 0,
        FeedbackOutcome.NOT_CONTROLLED: 0,
    }.get(outcome, draw(st.integers(1, controls or 1)))
    seizures = draw(st.integers(1, hits)) if outcome is FeedbackOutcome.SEIZURE else 0
    return Feedback(
        originator, draw(reference), reporter, draw(days), outcome, controls, hits, seizures,
        draw(st.one_of(st.just(""), multi_line)), draw(st.sampled_from(list(HandlingLabel))),
    )  # fmt: skip


goods = st.builds(
    GoodsItem,
    description=one_line,
    quantity=st.integers(1, 2**32 - 1),
    unit=st.from_regex(r"[A-Z0-9]{2,3}", fullmatch=True),
    commodity_code=st.one_of(st.just(""), commodity_codes()),
)


@st.composite
def detentions(draw: st.DrawFn) -> IprDetention:
    return IprDetention(
        originator=draw(st.sampled_from(ADMINS)),
        reference=draw(reference),
        detained_on=draw(days),
        procedure=draw(st.sampled_from(list(DetentionProcedure))),
        right_category=draw(st.sampled_from(list(RightCategory))),
        goods=tuple(draw(st.lists(goods, min_size=1, max_size=3))),
        route=draw(st.one_of(st.just(()), routes(1))),
        transport_mode=draw(st.one_of(st.none(), st.sampled_from(list(TransportMode)))),
        operators=tuple(draw(st.lists(operators, max_size=2))),
        label=draw(st.sampled_from(list(HandlingLabel))),
    )


@st.composite
def statistics(draw: st.DrawFn) -> IprStatistics:
    start = draw(days)
    keys = draw(st.lists(
        st.tuples(st.sampled_from(list(RightCategory)),
                  st.from_regex(r"[0-9]{2}|[0-9]{4}|[0-9]{6}", fullmatch=True), country),
        max_size=4, unique=True,
    ))  # fmt: skip
    lines = tuple(
        StatisticsLine(cat, product, origin, draw(st.integers(1, 1000)),
                       draw(st.integers(0, 10**6)))
        for cat, product, origin in keys
    )  # fmt: skip
    return IprStatistics(
        draw(st.sampled_from(ADMINS)), draw(reference), start,
        start + timedelta(days=draw(st.integers(0, 400))), lines,
        draw(st.sampled_from(list(HandlingLabel))),
    )  # fmt: skip


records = st.one_of(risk_information(), feedback(), detentions(), statistics())
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- round trips --------------------------------------------------------------------------------
@FAST
@given(records, st.sampled_from(list(PayloadForm)))
def test_both_bindings_round_trip(record: UB3Record, form: PayloadForm) -> None:
    data = ub3_exchange.encode(record, form)
    assert ub3_exchange.decode(data, record.kind, form) == record


@FAST
@given(records)
def test_both_bindings_carry_the_same_tree(record: UB3Record) -> None:
    pb = ub3_exchange.decode(ub3_exchange.encode(record, PayloadForm.XML), record.kind,
                             PayloadForm.XML)  # fmt: skip
    assert ub3_exchange.to_message(pb) == ub3_exchange.to_message(record)


@FAST
@given(records)
def test_crms_form_round_trip(record: UB3Record) -> None:
    data = write_form(record)
    if isinstance(record, Feedback):
        assert parse_feedback_form(data, record.originator, record.reference) == record
    else:
        assert parse_form(data) == record


# --- refusals on decoding -----------------------------------------------------------------------
def _sample() -> RiskInformation:
    record = parse_form(
        (__import__("pathlib").Path(__file__).parent / "vectors/risk/ipr-shoes.xml").read_bytes()
    )
    assert isinstance(record, RiskInformation)
    return record


@pytest.mark.parametrize("form", list(PayloadForm))
def test_unknown_area_on_the_wire(form: PayloadForm) -> None:
    if form is PayloadForm.PROTOBUF:
        msg = ub3_exchange.to_message(_sample())
        msg.area = "XYZ"  # type: ignore[attr-defined]
        bad = msg.SerializeToString()
    else:
        bad = ub3_exchange.encode(_sample(), form).replace(b"<Area>IPR", b"<Area>XYZ")
    with pytest.raises(RiskError) as caught:
        ub3_exchange.decode(bad, "RiskInformation", form)
    assert caught.value.code == "RISK_UNKNOWN_AREA"


def test_malformed_payloads() -> None:
    with pytest.raises(RiskError) as caught:
        ub3_exchange.decode(b"\xff\xff\xff", "RiskInformation", PayloadForm.PROTOBUF)
    assert caught.value.code == "RISK_PAYLOAD_MALFORMED"
    with pytest.raises(RiskError) as caught:
        ub3_exchange.decode(b"", "Gossip", PayloadForm.PROTOBUF)
    assert caught.value.code == "RISK_PAYLOAD_MALFORMED"
    xml = ub3_exchange.encode(_sample(), PayloadForm.XML).replace(b"<Area>", b"<Zone>", 1)
    with pytest.raises(GatewayError) as caught_any:
        ub3_exchange.decode(xml, "RiskInformation", PayloadForm.XML)
    assert caught_any.value.code in {"RISK_PAYLOAD_MALFORMED", "XML_NOT_WELL_FORMED"}
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><RiskInformation/>'
    with pytest.raises(GatewayError) as caught_any:
        ub3_exchange.decode(doctype, "RiskInformation", PayloadForm.XML)
    assert caught_any.value.code == "XML_DTD_FORBIDDEN"


# --- model checks -------------------------------------------------------------------------------
def test_container_check_digit() -> None:
    assert check_container_id("CSQU3054383") == "CSQU3054383"
    assert check_container_id("MSKU9070323") == "MSKU9070323"
    for bad in ("CSQU3054384", "CSQX3054383", "CSQU305438", "csqu3054383"):
        with pytest.raises(RiskError) as caught:
            check_container_id(bad)
        assert caught.value.code == "RISK_CONTAINER_ID_INVALID"


@pytest.mark.parametrize("code", ["640299", "64029910", "6402991000", "970110"])
def test_commodity_codes_ok(code: str) -> None:
    assert check_commodity_code(code) == code


@pytest.mark.parametrize("code", ["6402", "6402991", "000000", "770000", "980000", "64029A"])
def test_commodity_codes_bad(code: str) -> None:
    with pytest.raises(RiskError) as caught:
        check_commodity_code(code)
    assert caught.value.code == "RISK_COMMODITY_CODE_INVALID"


def test_indicator_checks() -> None:
    with pytest.raises(RiskError) as caught:
        Indicators(countries=("XX",))
    assert caught.value.code == "RISK_COUNTRY_INVALID"
    with pytest.raises(RiskError) as caught:
        Indicators(routes=(("CN", "CN"),))
    assert caught.value.code == "RISK_COUNTRY_INVALID"
    with pytest.raises(RiskError) as caught:
        Indicators(transport_modes=("1",))  # type: ignore[arg-type]
    assert caught.value.code == "RISK_TRANSPORT_MODE_INVALID"


def test_risk_information_rules() -> None:
    record = _sample()
    with pytest.raises(RiskError, match="at least one indicator"):
        RiskInformation(**{**record.__dict__, "indicators": Indicators()})
    with pytest.raises(RiskError, match="before valid_from"):
        RiskInformation(**{**record.__dict__, "valid_until": record.valid_from - timedelta(1)})
    with pytest.raises(RiskError) as caught:
        record.check_valid_on(record.valid_until + timedelta(days=1))
    assert caught.value.code == "RISK_VALIDITY_EXPIRED"
    record.check_valid_on(record.valid_until)  # the last day is still valid


def test_feedback_consistency() -> None:
    eu, cn, day = Administration.EU, Administration.CN, date(2025, 1, 1)
    Feedback(eu, "R1", cn, day, FeedbackOutcome.SEIZURE, 3, 2, 1)
    for outcome, counts in [
        (FeedbackOutcome.NO_FINDINGS, (2, 1, 0)),
        (FeedbackOutcome.HIT, (0, 0, 0)),
        (FeedbackOutcome.SEIZURE, (2, 2, 0)),
        (FeedbackOutcome.NOT_CONTROLLED, (1, 0, 0)),
    ]:
        with pytest.raises(RiskError):
            Feedback(eu, "R1", cn, day, outcome, *counts)
    with pytest.raises(RiskError, match="hits from"):
        Feedback(eu, "R1", cn, day, FeedbackOutcome.HIT, 1, 2, 0)
    with pytest.raises(RiskError, match="to itself"):
        Feedback(eu, "R1", eu, day, FeedbackOutcome.NOT_CONTROLLED)


def test_area_families() -> None:
    assert RiskArea.HEALTH_FOOD.family is RiskArea.HEALTH
    assert RiskArea.DRUG_PRECURSORS.family is RiskArea.DRUGS
    assert RiskArea.CASH.family is RiskArea.CASH


def test_a_missing_required_field_is_a_record_error() -> None:
    from dataclasses import replace

    with pytest.raises(RiskError) as caught:
        replace(_sample(), description="")
    assert caught.value.code == "RISK_RECORD_INVALID"
    assert caught.value.location == "description"
