"""Hardened XML intake: the only way untrusted XML bytes become an lxml tree in the gateway.

Partners and EU systems send documents we must parse before we know whether to believe them, so
the parser is locked down in layers:

1. the size is checked before any parsing;
2. a cheap scan of the prolog refuses any DOCTYPE (even a harmless internal one) and any
   encoding outside a short allow-list, before libxml2 sees a byte of a DTD;
3. libxml2 runs with entity substitution off, no DTD loading, no network, no huge-tree mode,
   and ID collection left at its default (lxml's ``collect_ids=False`` makes libxml2 load an
   external DTD subset: never set it);
4. the document is fed in chunks through a pull parser that counts elements and depth as they
   arrive, so an element flood is stopped after the limit, not after building the whole tree;
5. after the parse, the DOCTYPE check is repeated on what libxml2 actually saw.

Processing instructions are refused unless the caller allows them; comments can be dropped at
parse time (the exclusive C14N used by signatures ignores them, so dropping them changes no
digest, and readers then never see text split by a comment).
"""

from __future__ import annotations

import re
from typing import Literal

from lxml import etree

from gateway.errors import (
    XML_DTD,
    XML_ENTITY,
    XML_PROCESSING,
    XML_TOO_DEEP,
    XML_TOO_LARGE,
    XML_TOO_MANY,
    XmlIntakeError,
)

__all__ = ["ALLOWED_ENCODINGS", "parse_xml"]

# Encodings in which a DOCTYPE can only be spelled the way the prolog scan looks for it.
ALLOWED_ENCODINGS = frozenset(
    {"utf-8", "utf8", "us-ascii", "ascii", "utf-16", "utf-16le", "utf-16be"}
    | {f"iso-8859-{n}" for n in (*range(1, 11), 13, 14, 15, 16)}
    | {f"windows-{n}" for n in range(1250, 1259)}
)
_CHUNK = 64 * 1024
_XML_SPACE = b" \t\r\n"
_ENCODING_DECL = re.compile(rb"""\bencoding\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_ENTITY_PROBLEM = re.compile(r"entity '[^']*' not defined|amplification|entity reference loop")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32"),  # before utf-16le: same first two bytes
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _new_parser(*, remove_comments: bool) -> etree.XMLParser:
    """A one-shot, locked-down parser (used to name the error of a refused document)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=False,
        strip_cdata=True,
    )


def _new_pull_parser(*, remove_comments: bool, pis_allowed: bool) -> etree.XMLPullParser:
    """The same settings as _new_parser, reporting start/end (and PI) events as it goes."""
    events: tuple[Literal["start", "end", "pi"], ...] = (
        ("start", "end") if pis_allowed else ("start", "end", "pi")
    )
    return etree.XMLPullParser(
        events=events,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=False,
        strip_cdata=True,
    )


def _scan_text(data: bytes) -> bytes:
    """The document as ASCII-compatible bytes for the prolog scan (UTF-16 is transcoded)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            if encoding == "utf-32":
                raise XmlIntakeError("UTF-32 documents are not accepted", location="line 1")
            if encoding == "utf-8":
                return data[len(bom) :]
            return _transcode(data[len(bom) :], encoding)
    if data.startswith(b"<\x00"):
        return _transcode(data, "utf-16-le")
    if data.startswith(b"\x00<"):
        return _transcode(data, "utf-16-be")
    if data[:4] == b"\x4c\x6f\xa7\x94":
        raise XmlIntakeError("EBCDIC documents are not accepted", location="line 1")
    return data


def _transcode(data: bytes, encoding: str) -> bytes:
    try:
        return data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlIntakeError(f"cannot decode the document as {encoding}: {exc.reason}") from None


def _check_prolog(data: bytes) -> None:
    """Refuse a DOCTYPE or a foreign encoding before the parser starts.

    The prolog is XMLDecl? (Comment | PI | S)* (doctypedecl Misc*)? and ends where the root
    element starts; only there can a DOCTYPE stand, spelled exactly '<!DOCTYPE'.
    """
    text = _scan_text(data)
    pos = 0
    end = len(text)
    while pos < end:
        if text[pos] in _XML_SPACE:
            pos += 1
            continue
        if text.startswith(b"<?", pos):
            close = text.find(b"?>", pos + 2)
            if close < 0:
                return  # the parser reports the truncated PI or declaration
            if text.startswith(b"<?xml", pos) and text[pos + 5 : pos + 6] in (
                b" ",
                b"\t",
                b"\r",
                b"\n",
            ):
                _check_encoding(text[pos:close])
            pos = close + 2
            continue
        if text.startswith(b"<!--", pos):
            close = text.find(b"-->", pos + 4)
            if close < 0:
                return
            pos = close + 3
            continue
        if text.startswith(b"<!", pos):
            line = text.count(b"\n", 0, pos) + 1
            raise XmlIntakeError(
                "a DOCTYPE declaration is not accepted (no DTDs, no entities)",
                code=XML_DTD,
                location=f"line {line}",
            )
        return  # the root element (or garbage the parser will name)


def _check_encoding(declaration: bytes) -> None:
    match = _ENCODING_DECL.search(declaration)
    if match is None:
        return
    name = (match.group(1) or match.group(2) or b"").decode("ascii", "replace").lower()
    if name not in ALLOWED_ENCODINGS:
        raise XmlIntakeError(
            f"encoding {name!r} is not accepted (use UTF-8)", location="XML declaration"
        )


def _syntax_error(
    data: bytes, *, remove_comments: bool, fallback: etree.XMLSyntaxError
) -> XmlIntakeError:
    """Name the first well-formedness error.

    lxml's pull parser sometimes reports a later symptom ('no element found') instead of the
    cause, so the document is parsed once more with the same locked-down settings, in one
    piece, for an accurate message. This only happens for documents being refused anyway.
    """
    error = fallback
    try:
        etree.fromstring(data, _new_parser(remove_comments=remove_comments))
    except etree.XMLSyntaxError as exc:
        error = exc
    message = error.msg or "not well-formed"
    message = re.sub(r", line \d+, column \d+$", "", message)
    line, column = error.position if error.position else (0, 0)
    location = f"line {line}, column {column}" if line else None
    lowered = message.lower()
    if _ENTITY_PROBLEM.search(lowered):
        return XmlIntakeError(
            f"entity reference refused: {message}", code=XML_ENTITY, location=location
        )
    if "excessive depth" in lowered:
        return XmlIntakeError(message, code=XML_TOO_DEEP, location=location)
    if "huge" in lowered:
        return XmlIntakeError(
            f"{message} (a text node exceeds libxml2's 10 MB limit)",
            code=XML_TOO_LARGE,
            location=location,
        )
    return XmlIntakeError(f"not well-formed XML: {message}", location=location)


def _where(element: etree._Element) -> str:
    line = element.sourceline
    return f"line {line}" if line else "document"


def parse_xml(
    data: bytes,
    *,
    max_bytes: int,
    max_depth: int = 64,
    max_elements: int = 100_000,
    allow_processing_instructions: bool = False,
    remove_comments: bool = False,
) -> etree._Element:
    """Parse untrusted XML bytes into the root element, or raise an XmlIntakeError.

    Codes: XML_TOO_LARGE, XML_DTD_FORBIDDEN, XML_ENTITY_FORBIDDEN, XML_TOO_DEEP,
    XML_TOO_MANY_ELEMENTS, XML_PROCESSING_INSTRUCTION, XML_NOT_WELL_FORMED.
    """
    if not isinstance(data, bytes):
        raise XmlIntakeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise XmlIntakeError(
            f"document of {len(data)} bytes exceeds the limit of {max_bytes}", code=XML_TOO_LARGE
        )
    _check_prolog(data)
    parser = _new_pull_parser(
        remove_comments=remove_comments, pis_allowed=allow_processing_instructions
    )
    depth = 0
    count = 0
    checked_doctype = False
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(data[offset : offset + _CHUNK])
            for event, node in parser.read_events():
                if event == "start":
                    depth += 1
                    count += 1
                    if not checked_doctype:
                        _refuse_doctype(node)
                        checked_doctype = True
                    if depth > max_depth:
                        raise XmlIntakeError(
                            f"elements nest deeper than {max_depth}",
                            code=XML_TOO_DEEP,
                            location=_where(node),
                        )
                    if count > max_elements:
                        raise XmlIntakeError(
                            f"more than {max_elements} elements",
                            code=XML_TOO_MANY,
                            location=_where(node),
                        )
                elif event == "end":
                    depth -= 1
                else:  # "pi", only requested when PIs are refused
                    target = node.target if isinstance(node, etree._ProcessingInstruction) else "?"
                    raise XmlIntakeError(
                        f"processing instruction <?{target} ...?> is not accepted",
                        code=XML_PROCESSING,
                        location=_where(node),
                    )
        root: etree._Element = parser.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(data, remove_comments=remove_comments, fallback=exc) from None
    _refuse_doctype(root)
    return root


def _refuse_doctype(element: etree._Element) -> None:
    """Second line of defence: what libxml2 itself recorded as the document type."""
    docinfo = element.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url:
        raise XmlIntakeError(
            "a DOCTYPE declaration is not accepted (no DTDs, no entities)",
            code=XML_DTD,
            location="prolog",
        )
