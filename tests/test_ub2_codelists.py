"""UB2 code lists (model/codelists.py): each list's valid and invalid values, and the findings of
a whole consignment record, located in the source message."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from ub2_strategies import consignments

from gateway.errors import TransactionError
from gateway.model import codelists
from gateway.model.codelists import (
    check_commodity_code,
    check_container_number,
    check_country,
    check_customs_office,
    check_location_code,
    check_package_kind,
    check_transport_mode,
    consignment_findings,
)
from gateway.model.consignment import (
    Address,
    Consignment,
    CustomsOffice,
    GoodsItem,
    OfficeRole,
    Package,
    Party,
    PartyRole,
    SourceMessage,
    TransportMeans,
    TransportRole,
)


def _refused(check: Callable[[object, str], str], value: object, code: str) -> TransactionError:
    with pytest.raises(TransactionError) as caught:
        check(value, "here/there")
    assert caught.value.code == code
    assert caught.value.location == "here/there"
    return caught.value


@pytest.mark.parametrize("value", ["DE", "CN", "MD", "UA", "GB", "XI", "XK", "ZG", "ZU"])
def test_countries_ok(value: str) -> None:
    assert check_country(value, "c") == value


@pytest.mark.parametrize("value", ["EN", "XX", "QQ", "gb", "G", "GBR", "", " DE", 49, None])
def test_countries_bad(value: object) -> None:
    _refused(check_country, value, "UB2_COUNTRY_INVALID")


def test_customs_codes_can_be_left_out() -> None:
    """UB1 and UB3 hold plain ISO 3166-1: the customs user-assigned codes are opt-in."""
    with pytest.raises(TransactionError):
        check_country("XI", "c", customs_codes=False)
    assert check_country("IE", "c", customs_codes=False) == "IE"


@pytest.mark.parametrize(
    ("value", "compact"),
    [
        ("CSQU3054383", "CSQU3054383"),
        ("MSKU9070323", "MSKU9070323"),
        ("CSQU 305438 3", "CSQU3054383"),
        ("TASU 117000-0", "TASU1170000"),
        ("CONU1234567", None),  # the DEC-DMS samples' placeholder: wrong check digit
    ],
)
def test_container_numbers(value: str, compact: str | None) -> None:
    if compact is None:
        error = _refused(check_container_number, value, "UB2_CONTAINER_INVALID")
        assert "check digit" in error.message
    else:
        assert check_container_number(value, "c") == compact


@pytest.mark.parametrize(
    "value",
    ["CSQU3054384", "CSQX3054383", "CSQU305438", "csqu3054383", "Container 1", "ABC123", "", 7],
)
def test_container_numbers_bad(value: object) -> None:
    _refused(check_container_number, value, "UB2_CONTAINER_INVALID")


def test_every_wrong_check_digit_is_caught() -> None:
    head = "CSQU305438"
    good = codelists.container_check_digit(head)
    assert good == 3
    for digit in range(10):
        value = f"{head}{digit}"
        if digit == good:
            assert check_container_number(value, "c") == value
        else:
            _refused(check_container_number, value, "UB2_CONTAINER_INVALID")


def test_exact_form_for_records_that_store_what_they_check() -> None:
    with pytest.raises(TransactionError):
        check_container_number("CSQU 305438 3", "c", exact=True)


@pytest.mark.parametrize("value", ["0101", "6402", "640299", "64029910", "6402991000", "9701"])
def test_commodity_codes_ok(value: str) -> None:
    assert check_commodity_code(value, "c") == value


@pytest.mark.parametrize(
    "value", ["770000", "7700", "0000", "9800", "12345", "1234567", "comco", "6402 99", "64029A"]
)
def test_commodity_codes_bad(value: str) -> None:
    _refused(check_commodity_code, value, "UB2_COMMODITY_INVALID")


@pytest.mark.parametrize(
    "value", ["CT", "PK", "BX", "PX", "CN", "NE", "VR", "VQ", "VY", "VO", "4C"]
)
def test_package_kinds_ok(value: str) -> None:
    assert check_package_kind(value, "p") == value


@pytest.mark.parametrize("value", ["A1", "ab", "ct", "XX", "", "BOX", None])
def test_package_kinds_bad(value: object) -> None:
    """The ENS samples' "A1" and "ab" are placeholders, not Rec 21 codes."""
    _refused(check_package_kind, value, "UB2_PACKAGE_KIND_INVALID")


def test_package_kind_list_is_the_shipped_data() -> None:
    kinds = codelists.package_kinds()
    assert len(kinds) > 300
    assert kinds["CT"] == "Carton"
    assert all(len(code) == 2 and code == code.upper() for code in kinds)


@pytest.mark.parametrize("value", list("0123456789"))
def test_transport_modes_ok(value: str) -> None:
    assert check_transport_mode(value, "m") == value


@pytest.mark.parametrize("value", ["42", "10", "A", "", " 1", 1])
def test_transport_modes_bad(value: object) -> None:
    _refused(check_transport_mode, value, "UB2_TRANSPORT_MODE_INVALID")


@pytest.mark.parametrize(
    ("value", "normal"),
    [("CNSHA", "CNSHA"), ("CN SHA", "CNSHA"), ("NLRTM", "NLRTM"), ("GB000142", "GB000142")],
)
def test_location_codes_ok(value: str, normal: str) -> None:
    assert check_location_code(value, "l") == normal


@pytest.mark.parametrize(
    "value", ["EXAMPLE", "ABC123", "XXSHA", "ENSHA", "Place of loading", "CNSH", "CNSHA1", ""]
)
def test_location_codes_bad(value: str) -> None:
    _refused(check_location_code, value, "UB2_LOCATION_INVALID")


@pytest.mark.parametrize("value", ["AB3C4D5E", "offOfLog", "GB00014", "XX000142"])
def test_customs_offices_bad(value: str) -> None:
    _refused(check_customs_office, value, "UB2_LOCATION_INVALID")


# --- a whole record ------------------------------------------------------------------------------
def _doubtful_record() -> Consignment:
    return Consignment(
        source=SourceMessage.CC315A,
        reference="refnum",
        parties=(Party(PartyRole.CONSIGNOR, address=Address(country="EN")),),
        transports=(TransportMeans(TransportRole.BORDER, mode="42", nationality="GB"),),
        offices=(CustomsOffice(OfficeRole.FIRST_ENTRY, "AB3C4D5E"),),
        place_of_loading="EXAMPLE",
        routing_countries=("CN", "XX", "DE"),
        goods_items=(
            GoodsItem(
                sequence=1,
                commodity_code="770000",
                packages=(Package(kind="CT"), Package(kind="A1")),
                containers=("CSQU3054383", "CSQU3054384"),
                origin_country="CN",
            ),
            GoodsItem(sequence=2, commodity_code="12345", place_of_unloading="DEHAM"),
        ),
        source_paths=MappingProxyType(
            {
                "goods_items[0].containers[1]": "/ie:CC315A/GOOITEGDS[1]/CONNR2[2]/ConNumNR21",
                "transports[0].mode": "/ie:CC315A/HEAHEA/TraModAtBorHEA76",
            }
        ),
    )


def test_findings_report_every_bad_value_in_order() -> None:
    findings = consignment_findings(_doubtful_record())
    assert [(f.code, f.location) for f in findings] == [
        ("UB2_COUNTRY_INVALID", "parties[0].address.country"),
        ("UB2_TRANSPORT_MODE_INVALID", "/ie:CC315A/HEAHEA/TraModAtBorHEA76"),
        ("UB2_LOCATION_INVALID", "offices[0].identifier"),
        ("UB2_LOCATION_INVALID", "place_of_loading"),
        ("UB2_COUNTRY_INVALID", "routing_countries[1]"),
        ("UB2_COMMODITY_INVALID", "goods_items[0].commodity_code"),
        ("UB2_PACKAGE_KIND_INVALID", "goods_items[0].packages[1].kind"),
        ("UB2_CONTAINER_INVALID", "/ie:CC315A/GOOITEGDS[1]/CONNR2[2]/ConNumNR21"),
        ("UB2_COMMODITY_INVALID", "goods_items[1].commodity_code"),
    ]


def test_a_clean_record_has_no_findings() -> None:
    clean = Consignment(
        source=SourceMessage.DEC_DMS_EXPORT,
        reference="LRN1",
        transports=(TransportMeans(TransportRole.BORDER, mode="1", nationality="CN"),),
        offices=(CustomsOffice(OfficeRole.EXIT, "GB000142"),),
        place_of_loading="GBFXT",
        export_country="GB",
        destination_country="CN",
        invoice_currency="EUR",
        goods_items=(GoodsItem(1, commodity_code="64029910", containers=("MSKU9070323",)),),
    )
    assert consignment_findings(clean) == []


@settings(max_examples=30, deadline=None)
@given(consignments())
def test_realistic_records_have_no_findings(record: Consignment) -> None:
    assert consignment_findings(record) == []


@settings(max_examples=30, deadline=None)
@given(consignments(findings=True))
def test_findings_name_only_paths_that_hold_a_bad_value(record: Consignment) -> None:
    """Each finding's location is a field path whose value its check refuses; no bad value is
    missed: the count equals the number of coded values that fail their own check."""
    findings = consignment_findings(record)
    failing = []
    for path, value, check in codelists.coded_values(record):
        try:
            check(value, path)
        except TransactionError:
            failing.append(path)
    assert [f.location for f in findings] == failing
