"""The generated translators against the interpreters they replace on the hot path.

mapping.py writes each spec out as Python source (``MappingSpec.generated_source``) and
ub2_exchange.py writes its XML plans out the same way; the walker and the plan interpreter stay
as the reference. Here both are run on every sample in ../shared/data, on generated CC315A
documents and on generated records: the same records, the same source paths (in the same order),
the same bytes, and the same error (code, message, location) where the reference refuses. The
generated code must also do the work itself on ordinary input (not hand everything back to the
reference, which would make the comparison hollow).
"""

from __future__ import annotations

import copy
import linecache
import traceback
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from ub2_data import shared_data
from ub2_strategies import consignments, control_results

from gateway.errors import UB2_VALUE_INVALID, TransactionError
from gateway.model.consignment import Address, Consignment, Party, PartyRole, SourceMessage
from gateway.translate import ub2_exchange
from gateway.translate.eu_messages import EuMessage, SchemaPacks, load_schema_packs, read_eu_message
from gateway.translate.mapping import MappingSpec, read_spec_file, run_spec, walk_spec
from gateway.translate.ub2_exchange import PayloadForm, Ub2Record, encode
from gateway.translate.ub2_translate import load_mapping_specs

MAPPINGS = Path(__file__).resolve().parents[1] / "adapters" / "mappings"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def specs() -> dict[SourceMessage, MappingSpec]:
    return load_mapping_specs(MAPPINGS)


@cache
def packs() -> SchemaPacks:
    data = shared_data()
    return load_schema_packs(data / "ics-ens" / "xsds", data / "wco-dm-cds" / "schemas")


def messages() -> list[tuple[str, EuMessage]]:
    """Every sample the intake reads (schema-invalid ones too: translation does not need
    validity), as (file name, message)."""
    data = shared_data()
    paths = sorted((data / "ics-ens" / "examples").glob("*.xml"))
    paths += sorted(p for p in (data / "wco-dm-cds" / "examples").rglob("*") if p.suffix == ".xml")
    out = []
    for path in paths:
        try:
            out.append((path.name, read_eu_message(path.read_bytes(), packs(), validate=False)))
        except TransactionError:
            continue  # responses, notifications, amendments: not translated
    return out


def outcome(run: Callable[[], Consignment]) -> tuple[str, Any]:
    try:
        record = run()
    except TransactionError as exc:
        return "refused", (exc.code, exc.message, exc.location)
    return "record", (record, list(record.source_paths.items()))


def assert_same(spec: MappingSpec, root: etree._Element, base_path: str) -> tuple[str, Any]:
    walked = outcome(lambda: walk_spec(spec, root, base_path))
    generated = outcome(lambda: run_spec(spec, root, base_path))
    assert generated == walked
    return walked


# --- the mapping specs ---------------------------------------------------------------------------
@pytest.mark.shared_data
def test_every_sample_translates_the_same_and_by_the_generated_code() -> None:
    found = messages()
    assert len(found) >= 20
    translated = 0
    for _, message in found:
        spec = specs()[message.source]
        kind, _ = assert_same(spec, message.root, message.base_path)
        if kind == "record":
            assert spec.plan is not None and spec.plan.run is not None
            spec.plan.run(message.root, message.base_path, {})  # no fallback: it did the work
            translated += 1
    assert translated >= 20, "most samples translate"


@cache
def cc315a() -> etree._Element:
    path = shared_data() / "ics-ens" / "examples" / "CC315A-schemaValidSample-v11-2.xml"
    return etree.parse(str(path)).getroot()


def translate_cc315a(root: etree._Element) -> tuple[str, Any]:
    message = read_eu_message(etree.tostring(root), packs(), validate=False)
    return assert_same(specs()[SourceMessage.CC315A], message.root, message.base_path)


_CHANGES = st.sampled_from(
    [
        ("GOOITEGDS", "copy"),  # a second goods item
        ("GOOITEGDS/PACGS2", "copy"),  # a second package
        ("GOOITEGDS/CONNR2", "copy"),
        ("HEAHEA/RefNumHEA4", "copy"),  # a second value for a single field: refused
        ("GOOITEGDS/IteNumGDS7", "remove"),  # a required value missing: refused
        ("GOOITEGDS/GroMasGDS46", "text:3,14"),  # does not convert: refused
        ("HEAHEA/DecDatTimHEA114", "text:200302301234"),  # 30 February: refused
        ("HEAHEA/TotNumOfPacHEA306", "text: 12 "),  # converts, with spaces around
        ("HEAHEA/TotNumOfPacHEA306", "text:+12"),
        ("TRACONCO1/NamCO17", "text:"),  # empty: not carried
        ("TRACONCO1/NamCO17", "text:Smith & <Sons>"),
        ("TRACONCO1", "remove"),
        ("TRACONCO1/NamCO17", "pi"),  # a processing instruction inside a value
        ("HEAHEA", "pi-before"),  # and one between elements
        ("SEAID529", "copy"),
        ("ITI", "copy"),
    ]
)


@pytest.mark.shared_data
@SETTINGS
@given(st.lists(_CHANGES, max_size=5))
def test_changed_cc315a_documents_translate_the_same(changes: list[tuple[str, str]]) -> None:
    root = copy.deepcopy(cc315a())
    for path, change in changes:
        element = root.find(path)
        if element is None:
            continue
        if change == "copy":
            element.addnext(copy.deepcopy(element))
        elif change == "remove":
            parent = element.getparent()
            assert parent is not None
            parent.remove(element)
        elif change == "pi":
            element.append(etree.ProcessingInstruction("note", "x"))
            element[-1].tail = "tail"
        elif change == "pi-before":
            element.addprevious(etree.ProcessingInstruction("note", "x"))
        else:
            element.text = change.removeprefix("text:")
    translate_cc315a(root)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("path", "change"),
    [
        ("HEAHEA/RefNumHEA4", "copy"),
        ("GOOITEGDS/IteNumGDS7", "remove"),
        ("GOOITEGDS/GroMasGDS46", "x"),
    ],
)
def test_what_the_walker_refuses_is_refused_with_its_error(path: str, change: str) -> None:
    root = copy.deepcopy(cc315a())
    element = root.find(path)
    assert element is not None
    if change == "copy":
        element.addnext(copy.deepcopy(element))
    elif change == "remove":
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)
    else:
        element.text = change
    kind, (code, _, location) = translate_cc315a(root)
    assert kind == "refused"
    assert code == UB2_VALUE_INVALID and location


def test_the_generated_source_is_deterministic_and_shows_in_tracebacks() -> None:
    for path in sorted(MAPPINGS.glob("*.toml")):
        if path.name == "eos-aeo.toml":
            continue  # a UB1 spec
        first, second = read_spec_file(path), read_spec_file(path)
        assert first.generated_source == second.generated_source
        assert "def run(root, base_path, fixed):" in first.generated_source
    spec = specs()[SourceMessage.CC315A]
    assert spec.plan is not None and spec.plan.run is not None
    try:
        spec.plan.run(None, "/x", {})  # type: ignore[arg-type]
    except TypeError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        generated = [f for f in frames if f.filename.startswith("<mapping cc315a")]
        assert generated and generated[-1].line  # the line of generated source is shown
        assert linecache.getline(generated[-1].filename, generated[-1].lineno or 0).strip()
    else:  # pragma: no cover
        pytest.fail("iterating None must fail")


# --- the UB2 XML writer --------------------------------------------------------------------------
def interpreted(record: Ub2Record) -> bytes:
    """The XML binding by the plan interpreter alone (the generated writer's reference)."""
    kind = ub2_exchange.kind_of(record)
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        f'<{kind.value} xmlns="{ub2_exchange.NAMESPACE}">',
    ]
    ub2_exchange._write(ub2_exchange._ROOT_PLANS[kind], record, out, "")
    out.append(f"</{kind.value}>")
    return "".join(out).encode("utf-8")


def generated_plain(record: Ub2Record) -> str:
    """The plain generated writer alone (raises if it would hand the record over)."""
    out: list[str] = []
    texts: list[str] = []
    writer = ub2_exchange._PLAIN_WRITERS[ub2_exchange.kind_of(record).value]
    writer(record, out, out.append, texts.append)
    return "".join(out)


@SETTINGS
@given(consignments(findings=True) | control_results())
def test_the_generated_writer_writes_what_the_interpreter_writes(record: Ub2Record) -> None:
    assert encode(record, PayloadForm.XML) == interpreted(record)
    generated_plain(record)  # every well-formed record is written by the generated code


@SETTINGS
@given(consignments(), st.text(alphabet="ab&<>\r\n\t'\"é]", min_size=1))
def test_text_that_needs_escaping_is_written_as_the_interpreter_writes_it(
    record: Consignment, text: str
) -> None:
    record = replace(
        record,
        reference=text,
        parties=(Party(PartyRole.CONSIGNOR, name=text, address=Address(street=text)),),
    )
    assert encode(record, PayloadForm.XML) == interpreted(record)


@pytest.mark.shared_data
def test_every_translated_sample_is_written_as_the_interpreter_writes_it() -> None:
    written = 0
    for _, message in messages():
        try:
            record = run_spec(specs()[message.source], message.root, message.base_path)
        except TransactionError:
            continue
        assert encode(record, PayloadForm.XML) == interpreted(record)
        generated_plain(record)
        written += 1
    assert written >= 20


def test_values_the_generated_writer_does_not_write_go_to_the_interpreter() -> None:
    flag = Consignment(source=SourceMessage.CC315A, reference="R", total_items=True)
    with pytest.raises(ub2_exchange._Fallback):
        generated_plain(flag)
    assert encode(flag, PayloadForm.XML) == interpreted(flag)  # a bool is an int to it
    for record, location in [
        (Consignment(source=SourceMessage.CC315A, reference="R", mrn="a\x01"), "mrn"),
        (Consignment(source=SourceMessage.CC315A, reference="R", total_packages=2**63),
         "total_packages"),
    ]:  # fmt: skip
        with pytest.raises(TransactionError) as caught:
            encode(record, PayloadForm.XML)
        assert (caught.value.code, caught.value.location) == (UB2_VALUE_INVALID, location)
