"""The hardened parser's fast path (xmlsafe._parse_at_once): a document whose length bounds its
element count is parsed in one piece and checked afterwards. It must refuse every attack the
pull parser refuses, with the same code, message and location, and accept exactly the same
documents into the same tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from ub2_data import shared_data

from gateway.envelope import xmlsafe
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import XmlIntakeError

MB = 1024 * 1024
VECTORS = Path(__file__).parent / "vectors" / "xml"
EXPECTED = tomllib.loads((VECTORS / "intake.toml").read_text())

# Attacks and faults small enough for the fast path under the default limits, with options.
ATTACKS: list[tuple[bytes, dict[str, int | bool]]] = [
    (b"<!DOCTYPE a><a/>", {}),
    (b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', {}),
    (
        b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;&c;&c;&c;</l>',
        {},
    ),
    ("<!DOCTYPE a><a/>".encode("utf-16"), {}),
    (b"<a>&nbsp;</a>", {}),
    (b"<a>&e;&e;</a>", {}),
    (b"<a>" * 65 + b"</a>" * 65, {}),
    (b"<r>" + b"<a>" * 8 + b"</a>" * 8 + b"<b>" * 12 + b"</b>" * 12 + b"</r>", {"max_depth": 10}),
    (b"<a>" * 300 + b"</a>" * 300, {"max_depth": 10_000}),  # libxml2's own ceiling
    (b"<r>\n" + b"<a>" * 20 + b"</a>" * 20 + b"\n<b>\n</r>", {"max_depth": 10}),  # deep, then bad
    (b"<r>\n<b>\n</r>" + b"<a>" * 20, {"max_depth": 10}),  # bad, then deep
    (b"<?pi x?><a/>", {}),
    (b"<a><?pi x?></a>", {}),
    (b"<a/><?pi x?>", {}),
    (b"<r>\n<?pi x?>\n" + b"<a>" * 20 + b"</a>" * 20 + b"</r>", {"max_depth": 10}),  # PI first
    (b"<r>\n" + b"<a>" * 20 + b"</a>" * 20 + b"\n<?pi x?></r>", {"max_depth": 10}),  # deep first
    (b"<a><b></a>", {}),
    (b"<a/><b/>", {}),
    (b"", {}),
    (b"<p:a/>", {}),
    (b'<?xml version="1.0" encoding="UTF-7"?><a/>', {}),
]


def outcome(parse: object, data: bytes, options: dict[str, int | bool]) -> tuple[str, ...]:
    """What a parse does with ``data``: the error's code, message and location, or the tree."""
    try:
        root = parse(data, **options)  # type: ignore[operator]
    except XmlIntakeError as exc:
        return ("refused", exc.code, exc.message, str(exc.location))
    return ("parsed", etree.tostring(root.getroottree()).decode())


def pulled(data: bytes, **options: int | bool) -> etree._Element:
    """The pull parser alone, after the same size and prolog checks (the reference)."""
    limits: dict[str, int | bool] = {
        "max_depth": 64,
        "max_elements": 100_000,
        "allow_processing_instructions": False,
        "remove_comments": False,
    }
    limits.update(options)
    xmlsafe._check_prolog(data)
    return xmlsafe._parse_pulled(data, **limits)  # type: ignore[arg-type]


def fast(data: bytes, **options: int | bool) -> etree._Element:
    return parse_xml(data, max_bytes=MB, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "options"), ATTACKS)
def test_attacks_are_refused_as_the_pull_parser_refuses_them(
    data: bytes, options: dict[str, int | bool]
) -> None:
    assert len(data) <= 4 * 100_000  # within the fast path's reach
    got = outcome(fast, data, options)
    assert got[0] == "refused"
    assert got == outcome(pulled, data, options)


@pytest.mark.parametrize(("data", "options"), ATTACKS)
def test_the_fast_path_itself_never_accepts_an_attack(
    data: bytes, options: dict[str, int | bool]
) -> None:
    try:
        xmlsafe._check_prolog(data)
        accepted = xmlsafe._parse_at_once(
            data,
            max_depth=int(options.get("max_depth", 64)),
            allow_processing_instructions=False,
            remove_comments=False,
        )
    except XmlIntakeError:
        return
    assert accepted is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_intake_vectors_same_outcome_both_ways(name: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("GNC-SECRET\n")
    data = (VECTORS / name).read_bytes().replace(b"@SECRET_URL@", secret.as_uri().encode())
    expected = EXPECTED[name]
    options = {k: expected[k] for k in ("max_depth", "max_elements") if k in expected}
    got = outcome(fast, data, options)
    assert got == outcome(pulled, data, options)
    assert got[1] == (expected["intake"] or etree.tostring(etree.fromstring(data)).decode())


def test_documents_that_pass_give_the_same_tree() -> None:
    documents = [
        b'<?xml version="1.0" encoding="UTF-8"?>\n<a xmlns="urn:x"><b k="v">t\xc3\xa9xt</b></a>',
        b"<?pi x?><a>AEO<!-- cut -->.Delta<?pj y?><![CDATA[<x>]]></a><!-- after -->",
        "<?xml version='1.0' encoding='UTF-16'?><a>\u4e2d</a>".encode("utf-16"),
        b"<a>" * 64 + b"</a>" * 64,
    ]
    for data in documents:
        choices: list[dict[str, int | bool]] = [
            {"allow_processing_instructions": True},
            {"allow_processing_instructions": True, "remove_comments": True},
        ]
        for options in choices:
            got = outcome(fast, data, options)
            assert got[0] == "parsed"
            assert got == outcome(pulled, data, options)


def test_real_ics_samples_parse_to_the_same_tree() -> None:
    folder = shared_data() / "ics-ens" / "examples"
    samples = sorted(folder.glob("*.xml"))
    assert samples
    options: dict[str, int | bool] = {
        "allow_processing_instructions": True,
        "remove_comments": True,
    }
    for path in samples:
        data = path.read_bytes()
        assert outcome(fast, data, options) == outcome(pulled, data, options), path.name


def test_beyond_the_byte_bound_the_pull_parser_counts() -> None:
    # 101 elements in 4 * 101 + 3 bytes: over the bound for max_elements=100, so counted.
    flood = b"<r>" + b"<x/>" * 100 + b"</r>"
    with pytest.raises(XmlIntakeError) as caught:
        parse_xml(flood, max_bytes=MB, max_elements=100)
    assert caught.value.code == "XML_TOO_MANY_ELEMENTS"
    assert len(parse_xml(flood, max_bytes=MB, max_elements=101)) == 100


names = st.sampled_from(["a", "b", "p:c"])


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(names)
    children = draw(st.lists(trees(depth + 1), max_size=3)) if depth < 4 else []
    space = draw(st.sampled_from(["", " "]))
    if not children and draw(st.booleans()):
        return f"<{name}{space}/>"
    return f"<{name}{space}>{''.join(children)}</{name}>"


@settings(max_examples=80, deadline=None)
@given(trees(), st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_an_element_takes_at_least_four_bytes(tree: str, encoding: str) -> None:
    """The fast path's premise: no document holds more elements than a quarter of its bytes
    (entities being refused, every element is markup in the bytes themselves)."""
    text = f'<w xmlns:p="urn:p">{tree}</w>'
    data = text.encode(encoding)
    root = etree.fromstring(data)
    assert 4 * sum(1 for _ in root.iter(etree.Element)) <= len(data)
