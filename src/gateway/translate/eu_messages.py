"""EU message intake for UB2: official schema packs, and CC315A / CC313A / DEC-DMS messages in.

EU systems send their messages exactly as their own schemas define them, so the gateway checks
them against those schemas, not against a copy of its own: the operator points it at
directories of official schemas (*schema packs*, docs/ub2.md). ``load_schema_packs`` checks at
start-up that each pack holds every file the gateway needs and that the root schemas compile,
with imports resolved only inside the pack (never the network, never elsewhere on disk).

``read_eu_message`` takes the bytes received and returns an ``EuMessage``: the message element
itself (``ie:CC315A``, ``ie:CC313A`` or the DEC-DMS ``Declaration``), found bare or inside a
SOAP 1.2 envelope, a DEC-DMS ``md:MetaData`` or HMRC's ``submitDeclarationRequest``, after the
hardened parse (envelope.xmlsafe) and libxml2 validation. Sans-I/O: it reads no file.

Every location is an XPath into the document *as received* (so through the wrappers), written
with fixed prefixes (``location_namespaces``): ``soap`` SOAP 1.2, ``ie`` the ICS message's own
namespace, ``md`` DEC-DMS MetaData, ``dec`` DEC-DMS, ``hmrc`` HMRC's request wrapper; elements of
any other namespace are written ``*[local-name()=...][namespace-uri()=...]``.

``SchemaPacks.diagnose`` reruns validation with the ``xmlschema`` library for a report of every
error (about 70x slower than libxml2: for error reports and ``gncgw validate``, never the hot
path).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lxml import etree

from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import (
    UB2_NOT_XML,
    UB2_SCHEMA_INVALID,
    UB2_SCHEMA_PACK_INVALID,
    UB2_SCHEMA_PACK_MISSING,
    UB2_SOAP_INVALID,
    UB2_UNKNOWN_MESSAGE,
    UB2_WRONG_NAMESPACE,
    TransactionError,
    XmlIntakeError,
)
from gateway.model.consignment import SourceMessage

__all__ = [
    "CC313A_NS",
    "CC315A_NS",
    "DEC_DMS_NS",
    "HMRC_REQUEST_NS",
    "MAX_MESSAGE_BYTES",
    "METADATA_NS",
    "PACK_FILES",
    "SOAP12_NS",
    "EuMessage",
    "PackKind",
    "SchemaFinding",
    "SchemaPacks",
    "element_path",
    "load_schema_packs",
    "location_namespaces",
    "read_eu_message",
]

SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
CC315A_NS = "http://ics.dgtaxud.ec/CC315A"
CC313A_NS = "http://ics.dgtaxud.ec/CC313A"
ICS_NS_PREFIX = "http://ics.dgtaxud.ec/"
DEC_DMS_NS = "urn:wco:datamodel:WCO:DEC-DMS:2"
METADATA_NS = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"
HMRC_REQUEST_NS = "http://uk/gov/hmrc/mdg/declarationmanagement/submitdeclaration/request/schema/v1"

# Limits of the hardened parse. A CC315A of 999 goods items is about 1 MB, a DEC-DMS declaration
# of 999 items a few MB; nesting is under 15 levels even inside the HMRC and SOAP wrappers.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_ELEMENTS = 500_000


class PackKind(StrEnum):
    """The two kinds of schema pack, named as in the configuration and in errors."""

    ICS_ENS = "ics-ens"  # ICS2-era ICS: CC315A / CC313A v11.2
    WCO_DM = "wco-dm"  # WCO DM 3.6 DEC-DMS as used by the EU's UCC systems (HMRC CDS set)


# Every file each pack must hold: the root schemas and everything they import, so a pack that
# lacks one is refused by name at start-up rather than failing on the first message.
PACK_FILES: Mapping[PackKind, tuple[str, ...]] = {
    PackKind.ICS_ENS: (
        "CC315A-v11-2.xsd",
        "CC313A-v11-2.xsd",
        "complex_types_ics-v11-2.xsd",
        "simple_types-v11-2.xsd",
        "tcl-v11-2.xsd",
        "doc-v11-2.xsd",
    ),
    PackKind.WCO_DM: (
        "declaration/WCO_DEC_2_DMS.xsd",
        "declaration/DocumentMetaData_2_DMS.xsd",
        "declaration/WCO_DS/WCO_DEC_DS_2_DMS.xsd",
        "declaration/WCO_DS/WCO_METADATA_2_DMS.xsd",
        "declaration/UNECE/UnqualifiedDataType_6_DMS.xsd",
        "declaration/UNECE/ISO_ISO3AlphaCurrencyCode_2012-08-31.xsd",
        "declaration/UNECE/UNECE_AgencyIdentificationCode_D12B.xsd",
    ),
}

# One compiled schema per message family. DEC-DMS is a small driver importing both the MetaData
# and the declaration schema: MetaData's content is `xs:any processContents="strict"` in the
# DEC-DMS namespace, so validating an md:MetaData also validates the Declaration inside it.
_ICS_ROOTS = {"CC315A": "CC315A-v11-2.xsd", "CC313A": "CC313A-v11-2.xsd"}
_DEC_DMS = "DEC-DMS"
_DEC_DRIVER_NAME = "gnc-gateway-dec-dms-driver.xsd"  # virtual: only its base URL is used
_DEC_DRIVER = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:import namespace="{METADATA_NS}" schemaLocation="declaration/DocumentMetaData_2_DMS.xsd"/>
  <xs:import namespace="{DEC_DMS_NS}" schemaLocation="declaration/WCO_DEC_2_DMS.xsd"/>
</xs:schema>""".encode()
_FAMILY_PACK = {"CC315A": PackKind.ICS_ENS, "CC313A": PackKind.ICS_ENS, _DEC_DMS: PackKind.WCO_DM}
_ICS_SOURCES = {
    CC315A_NS: ("CC315A", SourceMessage.CC315A),
    CC313A_NS: ("CC313A", SourceMessage.CC313A),
}

_FIXED_PREFIXES: Mapping[str, str] = {
    SOAP12_NS: "soap",
    METADATA_NS: "md",
    DEC_DMS_NS: "dec",
    HMRC_REQUEST_NS: "hmrc",
}
_CLARK = re.compile(r"\{([^}]*)\}")


def location_namespaces(source: SourceMessage | None = None) -> dict[str, str]:
    """The prefixes locations are written with, for resolving one with ``xpath()``.

    ``ie`` is the ICS message's own namespace, so it is bound only for CC315A / CC313A.
    """
    namespaces = {prefix: uri for uri, prefix in _FIXED_PREFIXES.items()}
    if source is SourceMessage.CC315A:
        namespaces["ie"] = CC315A_NS
    elif source is SourceMessage.CC313A:
        namespaces["ie"] = CC313A_NS
    return namespaces


def _ie_namespace(element: etree._Element) -> str | None:
    """The namespace ``ie`` stands for in this document: that of its ICS message, if any."""
    for node in element.iterancestors():
        element = node
    top = etree.QName(element).namespace
    if top in _ICS_SOURCES:
        return top
    if top == SOAP12_NS:
        for body in element.iterchildren(f"{{{SOAP12_NS}}}Body"):
            for child in body.iterchildren("{*}*"):
                namespace = etree.QName(child).namespace
                if namespace in _ICS_SOURCES:
                    return namespace
    return None


def _step(element: etree._Element, ie_namespace: str | None) -> str:
    qname = etree.QName(element)
    namespace, local = qname.namespace, qname.localname
    if namespace is None:
        name = local
    elif namespace == ie_namespace:
        name = f"ie:{local}"
    elif namespace in _FIXED_PREFIXES:
        name = f"{_FIXED_PREFIXES[namespace]}:{local}"
    else:
        name = f"*[local-name()='{local}'][namespace-uri()='{namespace}']"
    parent = element.getparent()
    if parent is None:
        return name
    same = list(parent.iterchildren(qname.text))
    if len(same) == 1:
        return name
    return f"{name}[{same.index(element) + 1}]"


def element_path(element: etree._Element, ie_namespace: str | None = None) -> str:
    """The XPath of an element in its document, with the prefixes of ``location_namespaces``.

    ``ie_namespace`` defaults to the namespace of the document's ICS message, if it has one.
    """
    if ie_namespace is None:
        ie_namespace = _ie_namespace(element)
    steps = [_step(element, ie_namespace)]
    steps.extend(_step(node, ie_namespace) for node in element.iterancestors())
    return "/" + "/".join(reversed(steps))


def _readable(text: str, ie_namespace: str | None) -> str:
    """Clark names in a validator's message, written with the location prefixes."""

    def prefixed(match: re.Match[str]) -> str:
        namespace = match.group(1)
        if namespace == ie_namespace:
            return "ie:"
        prefix = _FIXED_PREFIXES.get(namespace)
        return f"{prefix}:" if prefix else match.group(0)

    return _CLARK.sub(prefixed, text)


# --- the message ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EuMessage:
    """An EU message taken in: what it is, its element, and where that stands in what was sent.

    ``root`` is the message element itself (``ie:CC315A``, ``ie:CC313A`` or the DEC-DMS
    ``Declaration``); ``base_path`` is its XPath in the document received, so a translator's
    source paths and errors point into that document; ``wrapped`` names the outermost wrapper
    removed: None (bare), ``"soap12"``, ``"hmrc-request"`` or ``"metadata"``.
    """

    source: SourceMessage
    root: etree._Element
    base_path: str
    wrapped: str | None = None

    @property
    def namespaces(self) -> dict[str, str]:
        """Prefixes for resolving ``base_path`` and locations in the received document."""
        return location_namespaces(self.source)

    def path_of(self, element: etree._Element) -> str:
        """The XPath of an element of this message in the received document."""
        return element_path(element, _ie_of(self))


@dataclass(frozen=True)
class SchemaFinding:
    """One schema error of a full diagnosis (``SchemaPacks.diagnose``)."""

    path: str  # XPath of the offending element (or attribute) in the received document
    reason: str
    expected: str | None = None  # what the schema would have accepted there, where it says
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        hint = f" (expected: {self.expected})" if self.expected else ""
        return f"{where}{self.path}: {self.reason}{hint}"


# --- schema packs --------------------------------------------------------------------------------


def _pack_error(kind: PackKind, directory: Path, message: str, location: str) -> TransactionError:
    return TransactionError(
        f"schema pack {kind} ({directory}): {message}",
        code=UB2_SCHEMA_PACK_INVALID,
        location=location,
    )


def _url_path(url: str) -> Path:
    """A local schema URL as a normalised absolute path (``..`` folded lexically, so a
    symlinked pack keeps working while ``../`` cannot climb out of it)."""
    raw = unquote(urlparse(url).path) if url.startswith("file:") else url
    return Path(os.path.normpath(os.path.abspath(raw)))


class _PackResolver(etree.Resolver):
    """Resolves schema imports to files inside the pack directory; refuses anything else.

    Refusals are recorded, not raised (lxml would re-raise an exception from a resolver at the
    next unrelated parse): the caller checks ``refused`` after compiling.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.refused: list[str] = []

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        url = system_url or ""
        scheme = urlparse(url).scheme
        path = _url_path(url) if scheme in ("", "file") else None
        if path is None or not path.is_relative_to(self.directory) or not path.is_file():
            self.refused.append(url)
            return self.resolve_string(b"<refused/>", context)
        return self.resolve_filename(str(path), context)


def _compile(kind: PackKind, directory: Path, family: str) -> etree.XMLSchema:
    """Compile one family's schema from the pack, with a fresh parser and resolver."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    resolver = _PackResolver(directory)
    parser.resolvers.add(resolver)
    name = _DEC_DRIVER_NAME if family == _DEC_DMS else _ICS_ROOTS[family]
    try:
        source = _DEC_DRIVER if family == _DEC_DMS else (directory / name).read_bytes()
        document = etree.fromstring(source, parser, base_url=str(directory / name))
        schema = etree.XMLSchema(document.getroottree())
    except OSError as exc:
        raise _pack_error(kind, directory, f"{name} cannot be read: {exc}", name) from None
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        if resolver.refused:
            raise _refused(kind, directory, resolver.refused[0]) from None
        log = getattr(exc, "error_log", None)
        first = log[0] if log else None
        where = f"{first.filename}:{first.line}" if first is not None else str(directory / name)
        raise _pack_error(kind, directory, f"{name} does not compile: {exc}", where) from None
    if resolver.refused:  # libxml2 may only warn about an import it could not load
        raise _refused(kind, directory, resolver.refused[0])
    return schema


def _refused(kind: PackKind, directory: Path, url: str) -> TransactionError:
    return _pack_error(
        kind,
        directory,
        f"a schema imports {url!r}, which is not a file inside the pack (only the pack "
        "directory is read, never the network)",
        url,
    )


class SchemaPacks:
    """The configured official schema sets, compiled; one validator per thread.

    Built by ``load_schema_packs``. lxml validators keep their error log on the instance, so
    each thread compiles its own (a few tens of milliseconds, once).
    """

    def __init__(self, ics_ens: Path | None, wco_dm: Path | None) -> None:
        self.ics_ens = ics_ens
        self.wco_dm = wco_dm
        self._local = threading.local()
        self._lock = threading.Lock()
        self._diagnosers: dict[str, Any] = {}

    def directory(self, kind: PackKind) -> Path | None:
        return self.ics_ens if kind is PackKind.ICS_ENS else self.wco_dm

    def _require(self, family: str) -> tuple[PackKind, Path]:
        kind = _FAMILY_PACK[family]
        directory = self.directory(kind)
        if directory is None:
            raise TransactionError(
                f"no {kind} schema pack is configured, so {family} messages are refused "
                f"(set ub2.schema_packs.{kind.replace('-', '_')})",
                code=UB2_SCHEMA_PACK_MISSING,
            )
        return kind, directory

    def _validator(self, family: str) -> etree.XMLSchema:
        cache: dict[str, etree.XMLSchema] | None = getattr(self._local, "schemas", None)
        if cache is None:
            cache = self._local.schemas = {}
        schema = cache.get(family)
        if schema is None:
            kind, directory = self._require(family)
            schema = cache[family] = _compile(kind, directory, family)
        return schema

    def _check(self) -> None:
        """Compile every family of every configured pack (start-up check)."""
        for family, kind in _FAMILY_PACK.items():
            if self.directory(kind) is not None:
                self._validator(family)

    def _validate(self, family: str, target: etree._Element, ie_namespace: str | None) -> None:
        self._require(family)
        schema = self._validator(family)
        if schema.validate(target):
            return
        errors = [e for e in schema.error_log if e.level >= etree.ErrorLevels.ERROR]
        first = errors[0] if errors else schema.error_log[0]
        element, attribute = _follow_libxml2_path(target, first.path)
        location = element_path(element, ie_namespace)
        if attribute:
            location += f"/@{attribute}"
        line = f"line {first.line}: " if first.line else ""
        raise TransactionError(
            f"not valid against the {family} schema: {line}"
            f"{_readable(first.message, ie_namespace)}",
            code=UB2_SCHEMA_INVALID,
            location=location,
        )

    def validate(self, message: EuMessage) -> None:
        """Validate a message read with ``validate=False``; UB2_SCHEMA_INVALID if it fails."""
        family, target = _family_of(message)
        self._validate(family, target, _ie_of(message))

    def diagnose(self, message: EuMessage) -> list[SchemaFinding]:
        """Every schema error of a message, with path, reason and what was expected.

        Uses the ``xmlschema`` library (built lazily, once, on first use): richer than
        libxml2's first error, and far slower, so for reports and ``gncgw validate`` only.
        """
        family, target = _family_of(message)
        schema = self._diagnoser(family)
        ie = _ie_of(message)
        findings: list[SchemaFinding] = []
        for error in schema.iter_errors(target):
            element = _error_element(error, target)
            reason = str(error.reason or error.message)
            expected = _expected_text(error)
            findings.append(
                SchemaFinding(
                    path=element_path(element, ie),
                    reason=_readable(reason, ie),
                    expected=_readable(expected, ie) if expected else None,
                    line=element.sourceline,
                )
            )
        return findings

    def _diagnoser(self, family: str) -> Any:
        with self._lock:
            schema = self._diagnosers.get(family)
            if schema is None:
                import xmlschema  # heavy: imported only when a diagnosis is asked for

                _, directory = self._require(family)
                if family == _DEC_DMS:
                    sources: Any = [
                        str(directory / "declaration" / "DocumentMetaData_2_DMS.xsd"),
                        str(directory / "declaration" / "WCO_DEC_2_DMS.xsd"),
                    ]
                else:
                    sources = str(directory / _ICS_ROOTS[family])
                # Local files only (the lxml check at start-up already confirmed every import
                # resolves inside the pack); defused parsing of the schema files.
                schema = xmlschema.XMLSchema(sources, allow="local", defuse="always")
                self._diagnosers[family] = schema
            return schema


def load_schema_packs(ics_ens: Path | None, wco_dm: Path | None) -> SchemaPacks:
    """Check and compile the configured packs; UB2_SCHEMA_PACK_INVALID names what is wrong.

    Either may be None: messages of that kind are then refused (UB2_SCHEMA_PACK_MISSING).
    """
    resolved: dict[PackKind, Path | None] = {}
    for kind, given in ((PackKind.ICS_ENS, ics_ens), (PackKind.WCO_DM, wco_dm)):
        if given is None:
            resolved[kind] = None
            continue
        directory = Path(os.path.normpath(os.path.abspath(given)))
        if not directory.is_dir():
            raise _pack_error(kind, directory, "is not a directory", str(directory))
        for name in PACK_FILES[kind]:
            if not (directory / name).is_file():
                raise _pack_error(
                    kind, directory, f"lacks {name}, which the gateway needs", str(directory / name)
                )
        resolved[kind] = directory
    packs = SchemaPacks(resolved[PackKind.ICS_ENS], resolved[PackKind.WCO_DM])
    packs._check()
    return packs


# --- where a validator's error points ------------------------------------------------------------

_LIBXML2_STEP = re.compile(r"(?:(?P<prefix>[^:\[\]]+):)?(?P<name>[^:\[\]]+)(?:\[(?P<index>\d+)\])?")


def _follow_libxml2_path(
    target: etree._Element, path: str | None
) -> tuple[etree._Element, str | None]:
    """The element (and attribute name) a libxml2 error path names, walked from ``target``.

    libxml2 writes ``/ie:CC315A/GOOITEGDS[2]/GroMasGDS46`` with the document's own prefixes and
    ``*[n]`` (n-th element child) for elements in a default namespace; its first step is the
    validated element itself. Anything that does not walk ends at the deepest element reached.
    """
    if not path or not path.startswith("/"):
        return target, None
    steps = path.split("/")[2:]
    element = target
    for number, step in enumerate(steps):
        if step.startswith("@"):
            return element, step[1:] if number == len(steps) - 1 else None
        match = _LIBXML2_STEP.fullmatch(step)
        if match is None:
            return element, None
        prefix, name, index = match.group("prefix"), match.group("name"), match.group("index")
        children = [c for c in element.iterchildren() if isinstance(c.tag, str)]
        if name != "*":
            children = [
                c
                for c in children
                if etree.QName(c).localname == name
                and (c.prefix == prefix if prefix else etree.QName(c).namespace is None)
            ]
        position = int(index) - 1 if index else 0
        if not 0 <= position < len(children):
            return element, None
        element = children[position]
    return element, None


def _error_element(error: Any, target: etree._Element) -> etree._Element:
    """The element an xmlschema error is about (the unexpected child, where it names one)."""
    element = error.elem if isinstance(error.elem, etree._Element) else target
    index = getattr(error, "index", None)
    if isinstance(index, int):
        children = [c for c in element.iterchildren() if isinstance(c.tag, str)]
        if 0 <= index < len(children):
            return children[index]
    return element


def _expected_text(error: Any) -> str | None:
    expected = getattr(error, "expected", None)
    if not expected:
        return None
    names = []
    for item in expected if isinstance(expected, list | tuple) else [expected]:
        name = getattr(item, "name", None) or str(item)
        names.append(str(name))
    return ", ".join(names)


def _family_of(message: EuMessage) -> tuple[str, etree._Element]:
    """The schema family of a message and the element validated (MetaData when present)."""
    if message.source is SourceMessage.CC315A:
        return "CC315A", message.root
    if message.source is SourceMessage.CC313A:
        return "CC313A", message.root
    parent = message.root.getparent()
    if parent is not None and parent.tag == f"{{{METADATA_NS}}}MetaData":
        return _DEC_DMS, parent
    return _DEC_DMS, message.root


def _ie_of(message: EuMessage) -> str | None:
    return {SourceMessage.CC315A: CC315A_NS, SourceMessage.CC313A: CC313A_NS}.get(message.source)


# --- intake --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    family: str  # "CC315A", "CC313A" or "DEC-DMS"
    root: etree._Element  # the message element
    target: etree._Element  # the element validated (md:MetaData around a Declaration)
    wrapped: str | None


def _elements(element: etree._Element) -> list[etree._Element]:
    return [child for child in element.iterchildren() if isinstance(child.tag, str)]


def _name(element: etree._Element) -> str:
    qname = etree.QName(element)
    return f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname


def _soap_error(message: str, element: etree._Element) -> TransactionError:
    return TransactionError(message, code=UB2_SOAP_INVALID, location=element_path(element))


def _unwrap_soap(envelope: etree._Element) -> etree._Element:
    """The one message in a SOAP 1.2 Body (Header blocks are ignored unless mustUnderstand)."""
    children = _elements(envelope)
    header = f"{{{SOAP12_NS}}}Header"
    body_tag = f"{{{SOAP12_NS}}}Body"
    names = [child.tag for child in children]
    if names not in ([body_tag], [header, body_tag]):
        raise _soap_error(
            "a SOAP 1.2 Envelope must hold an optional Header and then a Body, nothing else "
            f"(found {', '.join(_name(c) for c in children) or 'nothing'})",
            envelope,
        )
    if names[0] == header:
        for block in _elements(children[0]):
            if (block.get(f"{{{SOAP12_NS}}}mustUnderstand") or "").strip() in ("true", "1"):
                raise _soap_error(
                    f"SOAP header block {_name(block)} must be understood, and the gateway "
                    "does not understand it",
                    block,
                )
    body = children[-1]
    messages = _elements(body)
    text = (body.text or "") + "".join(child.tail or "" for child in body.iterchildren())
    if text.strip():
        raise _soap_error("the SOAP Body holds text besides the message", body)
    if not messages:
        raise _soap_error("the SOAP Body holds no message", body)
    if messages[0].tag == f"{{{SOAP12_NS}}}Fault":
        reason = " ".join(" ".join(messages[0].itertext()).split())
        raise _soap_error(f"the SOAP Body holds a Fault, not a message: {reason}", messages[0])
    if len(messages) > 1:
        raise _soap_error(
            f"the SOAP Body holds {len(messages)} elements; exactly one message is accepted",
            messages[1],
        )
    return messages[0]


def _unknown(element: etree._Element, what: str) -> TransactionError:
    return TransactionError(
        f"{what} is not a message the gateway translates (CC315A, CC313A, or a DEC-DMS "
        "export or import declaration)",
        code=UB2_UNKNOWN_MESSAGE,
        location=element_path(element),
    )


def _wrong_namespace(element: etree._Element, expected: str) -> TransactionError:
    found = etree.QName(element).namespace
    where = repr(found) if found else "no namespace"
    return TransactionError(
        f"{etree.QName(element).localname} is in {where}; its schema declares {expected!r}",
        code=UB2_WRONG_NAMESPACE,
        location=element_path(element),
    )


def _from_metadata(metadata: etree._Element, wrapped: str) -> _Found:
    """The Declaration inside a DEC-DMS MetaData (a Response there is a notification)."""
    content = _elements(metadata)
    declarations = [c for c in content if c.tag == f"{{{DEC_DMS_NS}}}Declaration"]
    if len(declarations) > 1:
        raise TransactionError(
            "an md:MetaData holds more than one Declaration",
            code=UB2_SCHEMA_INVALID,
            location=element_path(declarations[1]),
        )
    if declarations:
        return _Found(_DEC_DMS, declarations[0], metadata, wrapped)
    for child in content:
        local = etree.QName(child).localname
        if local == "Response":
            raise _unknown(child, "a DEC-DMS notification (MetaData with a Response)")
        if local == "Declaration":
            raise _wrong_namespace(child, DEC_DMS_NS)
    raise _unknown(metadata, "an md:MetaData without a Declaration")


def _detect(element: etree._Element, wrapped: str | None) -> _Found:
    """What the (unwrapped) element is; wrappers recurse with the outermost wrapper kept."""
    qname = etree.QName(element)
    namespace, local = qname.namespace, qname.localname
    if namespace in _ICS_SOURCES and local == _ICS_SOURCES[namespace][0]:
        return _Found(local, element, element, wrapped)
    if namespace == DEC_DMS_NS and local == "Declaration":
        return _Found(_DEC_DMS, element, element, wrapped)
    if namespace == METADATA_NS and local == "MetaData":
        return _from_metadata(element, wrapped or "metadata")
    if namespace == HMRC_REQUEST_NS and local == "submitDeclarationRequest":
        details = [c for c in _elements(element) if etree.QName(c).localname == "requestDetail"]
        inner = _elements(details[0]) if len(details) == 1 else []
        if len(inner) != 1:
            raise _unknown(
                element, "a submitDeclarationRequest without one MetaData in its requestDetail"
            )
        if inner[0].tag != f"{{{METADATA_NS}}}MetaData":
            if etree.QName(inner[0]).localname == "MetaData":
                raise _wrong_namespace(inner[0], METADATA_NS)
            raise _unknown(inner[0], f"{_name(inner[0])} in a submitDeclarationRequest")
        return _from_metadata(inner[0], wrapped or "hmrc-request")
    if namespace == SOAP12_NS and local == "Envelope":
        if wrapped is not None:
            raise _soap_error("a SOAP envelope inside another wrapper is not accepted", element)
        return _detect(_unwrap_soap(element), "soap12")
    # Known names in the wrong namespace.
    if local in ("CC315A", "CC313A"):
        raise _wrong_namespace(element, f"{ICS_NS_PREFIX}{local}")
    if local == "Declaration":
        raise _wrong_namespace(element, DEC_DMS_NS)
    if local == "Envelope":
        if namespace == SOAP11_NS:
            raise _wrong_namespace(element, SOAP12_NS + " (SOAP 1.2; SOAP 1.1 is not accepted)")
        raise _wrong_namespace(element, SOAP12_NS)
    if local == "submitDeclarationRequest":
        raise _wrong_namespace(element, HMRC_REQUEST_NS)
    if local == "MetaData":
        children = _elements(element)
        if any(etree.QName(c).localname == "Response" for c in children):
            raise _unknown(element, "a DEC-DMS notification (MetaData with a Response)")
        if any(etree.QName(c).localname == "Declaration" for c in children):
            raise _wrong_namespace(element, METADATA_NS)
    if namespace and namespace.startswith(ICS_NS_PREFIX):
        raise _unknown(element, f"the ICS message {local}")
    raise _unknown(element, f"an element {_name(element)}")


# DE 1/1 (first two letters of the declaration type): EX export, IM import; EU (EFTA trade) and
# CO (special fiscal territories) exist on both sides, so for them the direction comes from the
# declaration itself: an exit office, or an export requested procedure (DE 1/10), means export.
_EXPORT_PROCEDURES = frozenset({"10", "11", "21", "22", "23", "31"})
_DEC = f"{{{DEC_DMS_NS}}}"


def _dec_direction(declaration: etree._Element) -> SourceMessage:
    type_code = (declaration.findtext(f"{_DEC}TypeCode") or "").strip()
    function_code = (declaration.findtext(f"{_DEC}FunctionCode") or "").strip()
    if function_code != "9":
        raise _unknown(
            declaration,
            f"a DEC-DMS request of type {type_code or '?'} with function code "
            f"{function_code or '?'} (amendment, invalidation or goods presentation; only "
            "original declarations, function code 9, carry the transaction data)",
        )
    kind = type_code[:2]
    if kind == "EX":
        return SourceMessage.DEC_DMS_EXPORT
    if kind == "IM":
        return SourceMessage.DEC_DMS_IMPORT
    if kind in ("EU", "CO"):
        if declaration.find(f"{_DEC}ExitOffice") is not None:
            return SourceMessage.DEC_DMS_EXPORT
        for code in declaration.iterfind(f".//{_DEC}GovernmentProcedure/{_DEC}CurrentCode"):
            text = (code.text or "").strip()
            if len(text) == 2 and text.isdigit():
                if text in _EXPORT_PROCEDURES:
                    return SourceMessage.DEC_DMS_EXPORT
                break
        return SourceMessage.DEC_DMS_IMPORT
    raise _unknown(declaration, f"a DEC-DMS declaration of type {type_code or '(none)'}")


def read_eu_message(data: bytes, packs: SchemaPacks | None, *, validate: bool = True) -> EuMessage:
    """Parse (hardened), unwrap, detect and validate one EU message received as bytes.

    Raises TransactionError: UB2_NOT_XML (with the XML intake code and line), UB2_SOAP_INVALID,
    UB2_UNKNOWN_MESSAGE, UB2_WRONG_NAMESPACE, UB2_SCHEMA_PACK_MISSING, UB2_SCHEMA_INVALID; each
    with the XPath of the offending element in ``data`` as its location. ``validate=False``
    skips the schema check (for messages already validated; ``packs`` may then be None).
    """
    try:
        document = parse_xml(
            data,
            max_bytes=MAX_MESSAGE_BYTES,
            max_depth=MAX_DEPTH,
            max_elements=MAX_ELEMENTS,
            # EU test files carry <?xml-stylesheet?>; a PI is inert (never acted upon).
            allow_processing_instructions=True,
            remove_comments=True,
        )
    except XmlIntakeError as exc:
        raise TransactionError(
            f"{exc.code}: {exc.message}", code=UB2_NOT_XML, location=exc.location
        ) from exc
    found = _detect(document, None)
    ie = etree.QName(found.root).namespace if found.family != _DEC_DMS else None
    if validate:
        if packs is None:
            raise TransactionError(
                f"no schema packs are configured, so {found.family} messages are refused",
                code=UB2_SCHEMA_PACK_MISSING,
            )
        packs._validate(found.family, found.target, ie)
    if found.family == _DEC_DMS:
        source = _dec_direction(found.root)
    else:
        source = _ICS_SOURCES[etree.QName(found.root).namespace or ""][1]
    return EuMessage(
        source=source,
        root=found.root,
        base_path=element_path(found.root, ie),
        wrapped=found.wrapped,
    )
