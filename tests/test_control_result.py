"""UB2 control results (model/control_result.py): field rules and outcome coherence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from ub2_strategies import control_results

from gateway.errors import TransactionError
from gateway.model.codes import Administration
from gateway.model.control_result import (
    ControlOutcome,
    ControlResult,
    ControlType,
    Discrepancy,
    DiscrepancyKind,
    SealCheck,
)

AT = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def _result(**changes: Any) -> ControlResult:
    base: dict[str, Any] = {
        "reference": "CR-2025-000123",
        "transaction_reference": "refnum",
        "transaction_message_id": "6f1c1d2e-8a53-4b8e-9a4e-3c3c3c3c3c3c",
        "controlling_administration": Administration.CN,
        "controlled_at": AT,
        "control_types": (ControlType.DOCUMENTARY, ControlType.SEAL_CHECK),
        "outcome": ControlOutcome.SATISFACTORY,
        "office": "CNSHA001",
        "seals": (SealCheck("SEAL123", True, "CSQU3054383"),),
    }
    base.update(changes)
    return ControlResult(**base)


def _refused(code: str = "UB2_CONTROL_RESULT_INVALID", **changes: Any) -> str | None:
    with pytest.raises(TransactionError) as caught:
        _result(**changes)
    assert caught.value.code == code
    return caught.value.location


def test_a_satisfactory_result() -> None:
    result = _result()
    assert result.broken_seals == ()


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"reference": ""}, "reference"),
        ({"reference": "cr-1"}, "reference"),
        ({"reference": "A" * 36}, "reference"),
        ({"transaction_reference": ""}, "transaction_reference"),
        ({"transaction_reference": " refnum"}, "transaction_reference"),
        ({"transaction_reference": "x" * 36}, "transaction_reference"),
        (
            {"transaction_message_id": "6F1C1D2E-8A53-4B8E-9A4E-3C3C3C3C3C3C"},
            "transaction_message_id",
        ),
        ({"transaction_message_id": "not-a-uuid"}, "transaction_message_id"),
        ({"controlling_administration": "CN"}, "controlling_administration"),
        ({"controlled_at": datetime(2025, 3, 14, 9, 30)}, "controlled_at"),
        ({"controlled_at": AT.astimezone(timezone(timedelta(hours=8)))}, "controlled_at"),
        ({"controlled_at": "2025-03-14T09:30:00Z"}, "controlled_at"),
        ({"control_types": ()}, "control_types"),
        ({"control_types": ("PHYSICAL",)}, "control_types[0]"),
        (
            {"control_types": (ControlType.SEAL_CHECK, ControlType.SEAL_CHECK)},
            "control_types[1]",
        ),
        ({"outcome": "SATISFACTORY"}, "outcome"),
        ({"remarks": ""}, "remarks"),
        ({"remarks": "bad \x00 byte"}, "remarks"),
        ({"remarks": "x" * 4001}, "remarks"),
        ({"seals": [SealCheck("S1", True)]}, "seals"),
        ({"seals": (SealCheck("S1", True), SealCheck("S1", True))}, "seals[1].seal_id"),
    ],
)
def test_field_rules(changes: dict[str, Any], location: str) -> None:
    assert _refused(**changes) == location


def test_office_must_be_a_customs_office_number() -> None:
    assert _refused("UB2_LOCATION_INVALID", office="Shanghai") == "office"


@pytest.mark.parametrize(
    ("kwargs", "code", "location"),
    [
        ({"seal_id": "", "intact": True}, "UB2_CONTROL_RESULT_INVALID", "seal_id"),
        ({"seal_id": "S\n1", "intact": True}, "UB2_CONTROL_RESULT_INVALID", "seal_id"),
        ({"seal_id": "S1", "intact": "yes"}, "UB2_CONTROL_RESULT_INVALID", "intact"),
        (
            {"seal_id": "S1", "intact": True, "container": "CSQU3054384"},
            "UB2_CONTAINER_INVALID",
            "container",
        ),
        (
            {"seal_id": "S1", "intact": True, "container": "CSQU 305438 3"},
            "UB2_CONTROL_RESULT_INVALID",
            "container",
        ),
    ],
)
def test_seal_rules(kwargs: dict[str, Any], code: str, location: str) -> None:
    with pytest.raises(TransactionError) as caught:
        SealCheck(**kwargs)
    assert (caught.value.code, caught.value.location) == (code, location)


@pytest.mark.parametrize(
    ("kwargs", "location"),
    [
        ({"kind": "GROSS_MASS", "description": "x"}, "kind"),
        ({"kind": DiscrepancyKind.GROSS_MASS, "description": ""}, "description"),
        ({"kind": DiscrepancyKind.GROSS_MASS, "description": "x", "goods_item": 0}, "goods_item"),
        (
            {"kind": DiscrepancyKind.GROSS_MASS, "description": "x", "goods_item": True},
            "goods_item",
        ),
        ({"kind": DiscrepancyKind.OTHER, "description": "x", "declared": ""}, "declared"),
        ({"kind": DiscrepancyKind.OTHER, "description": "x", "found": "a\tb"}, "found"),
    ],
)
def test_discrepancy_rules(kwargs: dict[str, Any], location: str) -> None:
    with pytest.raises(TransactionError) as caught:
        Discrepancy(**kwargs)
    assert caught.value.location == location


_MASS = Discrepancy(DiscrepancyKind.GROSS_MASS, "heavier", 1, "1000.5", "1250")


def test_outcome_coherence() -> None:
    broken = (SealCheck("SEAL123", False, "CSQU3054383"),)
    assert _refused(discrepancies=(_MASS,)) == "discrepancies[0]"
    assert _refused(seals=broken) == "seals[0].intact"
    found = ControlOutcome.DISCREPANCIES_FOUND
    assert _refused(outcome=found) == "discrepancies"
    assert _result(outcome=found, seals=broken).broken_seals == broken
    assert _result(outcome=found, discrepancies=(_MASS,)).discrepancies == (_MASS,)
    # seals only with a seal check, and a seal check lists its seals
    physical = (ControlType.PHYSICAL,)
    assert _refused(control_types=physical) == "seals"
    assert _refused(control_types=(ControlType.SEAL_CHECK,), seals=()) == "seals"
    assert _result(control_types=physical, seals=()).seals == ()


def test_not_controlled() -> None:
    nc = ControlOutcome.NOT_CONTROLLED
    assert _refused(outcome=nc, seals=()) == "remarks"
    assert _refused(outcome=nc, remarks="goods not presented") == "seals"
    assert (
        _refused(outcome=nc, seals=(), discrepancies=(_MASS,), remarks="not presented")
        == "discrepancies"
    )
    result = _result(outcome=nc, seals=(), remarks="goods not presented")
    assert result.outcome is nc


@settings(max_examples=50, deadline=None)
@given(control_results())
def test_strategy_results_are_valid_and_rebuild(result: ControlResult) -> None:
    assert replace(result) == result
