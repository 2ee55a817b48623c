"""The real UB2 material in ../shared/data, for the UB2 tests (no tests here).

The schemas and samples are never copied into the repository: tests read them from the shared
folder beside it and skip when it is absent, except on CI (``CI=true``), which must have it and
fails instead. The sample lists are built from the files themselves (their root element), not
from names kept here, so a sample added to the folder is tested without a change.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Samples the DATA README names as not valid against the v11.2 schemas as shipped.
ICS_INVALID_NAMES = frozenset(
    {"CC315A_full.xml", "CC315A_reduced.xml", "CC313A_reduced.xml", "315AllOptional.xml"}
)
_ICS_RESPONSES = frozenset({"errorResponse.xml", "validResponse.xml"})  # their own schemas
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)[\s/>]")
_RESPONSE = re.compile(rb"<(?:[\w.-]+:)?Response[\s>]")


def shared_data() -> Path:
    """../shared/data; skip without it (fail on CI, which must have it)."""
    if not SHARED_DATA.is_dir():
        reason = f"the shared UB2 data is missing: {SHARED_DATA} (../shared/data beside the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must have it")
        pytest.skip(reason)
    return SHARED_DATA


def ics_pack() -> Path:
    return shared_data() / "ics-ens" / "xsds"


def wco_dm_pack() -> Path:
    return shared_data() / "wco-dm-cds" / "schemas"


def ics_samples() -> list[Path]:
    """Every CC315A / CC313A sample in ics-ens/examples (bare or in a SOAP envelope)."""
    folder = shared_data() / "ics-ens" / "examples"
    return sorted(p for p in folder.glob("*.xml") if p.name not in _ICS_RESPONSES)


def ics_valid_samples() -> list[Path]:
    """The samples the DATA README says validate (including the *WithEnvelope* ones)."""
    return [p for p in ics_samples() if not is_ics_invalid(p)]


def ics_invalid_samples() -> list[Path]:
    """``*schemaInvalidSample*`` and the four files the README names as not valid."""
    return [p for p in ics_samples() if is_ics_invalid(p)]


def is_ics_invalid(path: Path) -> bool:
    return "schemaInvalidSample" in path.name or path.name in ICS_INVALID_NAMES


def ics_response_samples() -> list[Path]:
    folder = shared_data() / "ics-ens" / "examples"
    return sorted(folder / name for name in _ICS_RESPONSES if (folder / name).is_file())


def cc313a_schema_cases() -> list[Path]:
    """The X.xml of each case in schema-cases-cc313a (its expected error is in X.ctl)."""
    return sorted((shared_data() / "ics-ens" / "schema-cases-cc313a").glob("*.xml"))


def _cds_files() -> list[Path]:
    folder = shared_data() / "wco-dm-cds" / "examples" / "annotated_XML_samples"
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".xml" and p.is_file())


def _root_tag(data: bytes) -> str:
    """The first start tag's name, read from the bytes (comments and PIs skipped)."""
    text = re.sub(rb"<!--.*?-->|<\?.*?\?>", b"", data, flags=re.S)
    match = _ROOT_TAG.search(text)
    return match.group(1).decode("ascii", "replace") if match else ""


def cds_declaration_samples() -> list[Path]:
    """DEC-DMS declaration samples: the root is a MetaData, a Declaration or HMRC's
    submitDeclarationRequest (any prefix, even a damaged one) and there is no Response in it."""
    found = []
    for path in _cds_files():
        data = path.read_bytes()
        tag = _root_tag(data)
        if tag.endswith(("MetaData", "Declaration", "submitDeclarationRequest")) and not (
            _RESPONSE.search(data)
        ):
            found.append(path)
    return found


def cds_notification_samples() -> list[Path]:
    """DMS notifications: a MetaData root holding a Response."""
    return [
        p
        for p in _cds_files()
        if _root_tag(p.read_bytes()).endswith("MetaData") and _RESPONSE.search(p.read_bytes())
    ]


def cds_other_samples() -> list[Path]:
    """Everything else in the CDS samples (inventory linking, DIS reports, queries)."""
    taken = set(cds_declaration_samples()) | set(cds_notification_samples())
    return [p for p in _cds_files() if p not in taken]
