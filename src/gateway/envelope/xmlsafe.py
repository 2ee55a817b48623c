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

Step 4 costs a Python loop over every element, several times libxml2's own parse, so a document
that *cannot* exceed the element limit takes a fast path (``_parse_at_once``): the same
locked-down parser run in one piece, then the depth limit and the PI ban checked on the finished
tree in C (XPath probes). Why this refuses exactly what the pull parser refuses:

- entities are never expanded (no DTD can be declared: steps 2 and 5, and libxml2 substitutes
  nothing), so every element of the tree is literal markup in the bytes, and the shortest
  element, ``<a/>``, takes 4 bytes (more in UTF-16; UTF-32 and EBCDIC are refused). A document
  of at most ``4 * max_elements`` bytes therefore holds at most ``max_elements`` elements: the
  count the pull parser checks cannot be exceeded, and the tree built is no bigger than the one
  the pull parser would have built;
- the fast path only ever *accepts*: on any syntax error, an element deeper than ``max_depth``
  or a refused processing instruction, the document is handed to the pull parser, which
  reports it exactly as before (same code, same location, same first error in document order);
- nesting is bounded in the meantime by libxml2 itself (256 levels without huge-tree mode).

Processing instructions are refused unless the caller allows them; comments can be dropped at
parse time (the exclusive C14N used by signatures ignores them, so dropping them changes no
digest, and readers then never see text split by a comment).
"""

from __future__ import annotations

import re
import threading
from functools import cache
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
    if len(data) <= 4 * max_elements:
        fast = _parse_at_once(
            data,
            max_depth=max_depth,
            allow_processing_instructions=allow_processing_instructions,
            remove_comments=remove_comments,
        )
        if fast is not None:
            return fast
    return _parse_pulled(
        data,
        max_depth=max_depth,
        max_elements=max_elements,
        allow_processing_instructions=allow_processing_instructions,
        remove_comments=remove_comments,
    )


def _parse_pulled(
    data: bytes,
    *,
    max_depth: int,
    max_elements: int,
    allow_processing_instructions: bool,
    remove_comments: bool,
) -> etree._Element:
    """The pull parser, counting elements and depth as they arrive (after the prolog check)."""
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


_PARSERS = threading.local()  # lxml parsers must not be shared between threads


def _shared_parser(*, remove_comments: bool) -> etree.XMLParser:
    parsers: dict[bool, etree.XMLParser] | None = getattr(_PARSERS, "parsers", None)
    if parsers is None:
        parsers = _PARSERS.parsers = {}
    parser = parsers.get(remove_comments)
    if parser is None:
        parser = parsers[remove_comments] = _new_parser(remove_comments=remove_comments)
    return parser


@cache
def _deeper_than(max_depth: int) -> etree.XPath:
    """True when some element stands at depth ``max_depth + 1`` (the root is depth 1)."""
    return etree.XPath("boolean(/*" + "/*" * max_depth + ")")


_ANY_PI = etree.XPath("boolean(//processing-instruction())")


def _parse_at_once(
    data: bytes, *, max_depth: int, allow_processing_instructions: bool, remove_comments: bool
) -> etree._Element | None:
    """The fast path (see the module docstring): the root, or None to take the pull parser.

    Only for documents whose length bounds their element count within the limit.
    """
    try:
        root = etree.fromstring(data, _shared_parser(remove_comments=remove_comments))
    except etree.XMLSyntaxError:
        return None
    _refuse_doctype(root)
    if _deeper_than(max_depth)(root):
        return None
    if not allow_processing_instructions and _ANY_PI(root):
        return None
    return root
