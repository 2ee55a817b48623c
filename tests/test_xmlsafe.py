"""Hardened XML intake: limits, refusals and what a well-behaved document looks like after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.envelope import xmlsafe
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import XmlIntakeError

MB = 1024 * 1024


def refused(data: bytes, **limits: int | bool) -> XmlIntakeError:
    options: dict[str, int | bool] = {"max_bytes": MB, **limits}
    with pytest.raises(XmlIntakeError) as caught:
        parse_xml(data, **options)  # type: ignore[arg-type]
    return caught.value


def test_plain_document_parses_with_namespaces_and_text() -> None:
    root = parse_xml(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<a xmlns="urn:x"><b k="v">t\xc3\xa9xt</b></a>',
        max_bytes=MB,
    )
    assert root.tag == "{urn:x}a"
    assert root[0].get("k") == "v"
    assert root[0].text == "t\u00e9xt"


def test_size_is_checked_before_parsing() -> None:
    # Not even well-formed: the size rule answers first, so nothing was parsed.
    error = refused(b"<" * 101, max_bytes=100)
    assert error.code == "XML_TOO_LARGE"
    assert "101" in error.message and "100" in error.message
    assert parse_xml(b"<a>" + b"x" * 93 + b"</a>", max_bytes=100).text == "x" * 93


@pytest.mark.parametrize(
    "document",
    [
        b"<!DOCTYPE a><a/>",
        b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ELEMENT a ANY>]>\n<a/>',
        b"\xef\xbb\xbf<!DOCTYPE a><a/>",  # UTF-8 BOM
        "<!DOCTYPE a><a/>".encode("utf-16"),  # UTF-16 with BOM
        "<!DOCTYPE a><a/>".encode("utf-16-le"),  # UTF-16 without BOM
        "<!DOCTYPE a><a/>".encode("utf-16-be"),
        b"<!-- <a/> --><?x y?>\n<!DOCTYPE a><a/>",
    ],
)
def test_any_doctype_is_refused(document: bytes) -> None:
    assert refused(document).code == "XML_DTD_FORBIDDEN"


def test_the_word_doctype_in_content_is_not_a_doctype() -> None:
    root = parse_xml(
        b"<a><![CDATA[<!DOCTYPE x>]]>&lt;!DOCTYPE y&gt;<!-- <!DOCTYPE z> --></a>", max_bytes=MB
    )
    assert root.text == "<!DOCTYPE x><!DOCTYPE y>"


def test_parser_settings_alone_never_read_external_entities(tmp_path: Path) -> None:
    """Defence in depth: even with the prolog scan bypassed, libxml2 as configured here neither
    loads an external DTD nor expands an external entity."""
    secret = "s3cr3t-" + "9f1c0e"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    url = path.as_uri()
    for document in (
        f'<!DOCTYPE a [<!ENTITY e SYSTEM "{url}">]><a>&e;</a>',
        f'<!DOCTYPE a SYSTEM "{url}"><a/>',
        f'<!DOCTYPE a [<!ENTITY % p SYSTEM "{url}"> %p;]><a/>',
    ):
        try:
            root = etree.fromstring(document.encode(), xmlsafe._new_parser(remove_comments=False))
        except etree.XMLSyntaxError as exc:
            assert secret not in str(exc)
            continue
        assert secret not in etree.tostring(root).decode()
        assert secret not in "".join(root.itertext())


def test_undeclared_entity_is_refused_but_predefined_and_char_refs_are_fine() -> None:
    error = refused(b"<a>&nbsp;</a>")
    assert error.code == "XML_ENTITY_FORBIDDEN"
    assert error.location is not None and error.location.startswith("line 1, column")
    assert "nbsp" in error.message
    assert parse_xml(b"<a>&amp;&lt;&#65;&#x42;</a>", max_bytes=MB).text == "&<AB"


@pytest.mark.parametrize("limit", [1, 5, 64])
def test_depth_limit_is_exact(limit: int) -> None:
    deep = b"<a>" * limit + b"</a>" * limit
    assert parse_xml(deep, max_bytes=MB, max_depth=limit) is not None
    error = refused(b"<a>" * (limit + 1) + b"</a>" * (limit + 1), max_depth=limit)
    assert error.code == "XML_TOO_DEEP"


def test_libxml2_depth_ceiling_maps_to_too_deep() -> None:
    assert refused(b"<a>" * 3000 + b"</a>" * 3000, max_depth=10_000).code == "XML_TOO_DEEP"


def test_element_count_limit_is_exact_and_stops_at_the_first_element_over() -> None:
    lines = b"<r>\n" + b"<x/>\n" * 99 + b"</r>"  # 100 elements, the root on line 1
    assert len(parse_xml(lines, max_bytes=MB, max_elements=100)) == 99
    error = refused(lines, max_elements=50)
    assert error.code == "XML_TOO_MANY_ELEMENTS"
    assert error.location == "line 51"  # element 51 is on line 51: counting ran during the parse


def test_element_flood_is_stopped_early() -> None:
    # 3 MB of elements; the parser is stopped after the first 64 KB chunk beyond the limit.
    flood = b"<r>" + b"<x/>" * 750_000 + b"</r>"
    error = refused(flood, max_bytes=4 * MB, max_elements=1000)
    assert error.code == "XML_TOO_MANY_ELEMENTS"


@pytest.mark.parametrize(
    "document",
    [b"<?pi x?><a/>", b"<a><?pi x?></a>", b"<a/><?pi x?>"],
)
def test_processing_instructions_are_refused_by_default(document: bytes) -> None:
    error = refused(document)
    assert error.code == "XML_PROCESSING_INSTRUCTION"
    assert "pi" in error.message


def test_processing_instructions_can_be_allowed() -> None:
    root = parse_xml(b"<?pi x?><a><?pj y?></a>", max_bytes=MB, allow_processing_instructions=True)
    inner = root[0]
    assert isinstance(inner, etree._ProcessingInstruction) and inner.target == "pj"
    before = list(root.itersiblings(preceding=True))
    assert [p.target for p in before if isinstance(p, etree._ProcessingInstruction)] == ["pi"]


def test_xml_declaration_is_not_a_processing_instruction() -> None:
    assert parse_xml(b'<?xml version="1.0" encoding="utf-8"?><a/>', max_bytes=MB).tag == "a"


def test_comments_kept_by_default_and_dropped_on_request_without_splitting_text() -> None:
    document = b"<a>AEO<!-- cut here -->.Delta</a>"
    kept = parse_xml(document, max_bytes=MB)
    assert kept.text == "AEO" and len(kept) == 1
    dropped = parse_xml(document, max_bytes=MB, remove_comments=True)
    assert dropped.text == "AEO.Delta" and len(dropped) == 0


@pytest.mark.parametrize("encoding", ["UTF-7", "EBCDIC-US", "UTF-32", "x-unknown"])
def test_encodings_outside_the_allow_list_are_refused(encoding: str) -> None:
    error = refused(f'<?xml version="1.0" encoding="{encoding}"?><a/>'.encode())
    assert error.code == "XML_NOT_WELL_FORMED"
    assert encoding.lower() in error.message


def test_utf32_and_ebcdic_byte_orders_are_refused() -> None:
    assert "UTF-32" in refused("<a/>".encode("utf-32")).message
    assert "EBCDIC" in refused(b"\x4c\x6f\xa7\x94\x93").message


def test_latin1_and_utf16_documents_parse() -> None:
    latin = '<?xml version="1.0" encoding="ISO-8859-1"?><a>d\u00e9j\u00e0</a>'.encode("latin-1")
    assert parse_xml(latin, max_bytes=MB).text == "d\u00e9j\u00e0"
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><a>\u4e2d</a>'.encode("utf-16")
    assert parse_xml(utf16, max_bytes=MB).text == "\u4e2d"


def test_multibyte_characters_across_chunk_boundaries() -> None:
    text = "\u00e9\u4e2d\U0001f600" * 40_000  # ~360 KB of UTF-8: many 64 KB chunk edges
    root = parse_xml(f"<a>{text}</a>".encode(), max_bytes=MB)
    assert root.text == text


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (b"<a><b></a>", "mismatch"),
        (b"<a/><b/>", "Extra content"),
        (b"", "empty"),
        (b"<a", "Couldn't find end of Start Tag"),
        (b"<a>&</a>", "EntityRef"),
        (b"<p:a/>", "Namespace prefix p"),
    ],
)
def test_malformed_documents_name_the_problem(document: bytes, fragment: str) -> None:
    error = refused(document)
    assert error.code == "XML_NOT_WELL_FORMED"
    assert fragment.lower() in error.message.lower()


def test_error_location_points_at_the_fault() -> None:
    error = refused(b"<a>\n<b>\n</c></a>")
    assert error.location is not None and error.location.startswith("line 3")


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(XmlIntakeError):
        parse_xml("<a/>", max_bytes=MB)  # type: ignore[arg-type]
