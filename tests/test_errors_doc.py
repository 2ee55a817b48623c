"""docs/errors.md is the published list of error codes: it must match the registry exactly."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_errors_doc.py"
DOC = ROOT / "docs" / "errors.md"
REGENERATE = "run: .venv/bin/python scripts/gen_errors_doc.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_errors_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def codes(gen: ModuleType) -> dict[str, str]:
    collected: dict[str, str] = gen.collect_codes()
    return collected


def test_every_registered_code_is_documented(codes: dict[str, str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z0-9]+_[A-Z0-9_]+)` \|", text, re.M))
    missing = sorted(set(codes) - documented)
    stale = sorted(documented - set(codes))
    assert not missing, f"codes missing from docs/errors.md: {missing}; {REGENERATE}"
    assert not stale, f"docs/errors.md lists codes that are not registered: {stale}; {REGENERATE}"


def test_errors_doc_is_exactly_what_the_generator_writes(
    gen: ModuleType, codes: dict[str, str]
) -> None:
    assert DOC.read_text(encoding="utf-8") == gen.render(codes), (
        f"docs/errors.md is out of step with gateway.errors; {REGENERATE}"
    )


def test_codes_are_well_formed_and_advice_names_only_real_codes(
    gen: ModuleType, codes: dict[str, str]
) -> None:
    for code, summary in codes.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", code), code
        assert summary.strip(), f"{code} has no summary"
    unknown_advice = sorted(set(gen.ADVICE) - set(codes))
    assert not unknown_advice, (
        f"ADVICE in scripts/gen_errors_doc.py names no code: {unknown_advice}"
    )


def test_render_groups_by_prefix_and_escapes_table_cells(gen: ModuleType) -> None:
    text = gen.render(
        {
            "TRUST_B": "b | with a bar",
            "TRUST_A": "a",
            "ENV_X": "x",
            "ZZZ_NEW": "a prefix nobody planned for",
        }
    )
    assert text.index("## ENV") < text.index("## TRUST") < text.index("## ZZZ")
    assert text.index("`TRUST_A`") < text.index("`TRUST_B`")
    assert "b \\| with a bar" in text
    assert "## SIG" not in text  # empty groups are left out
