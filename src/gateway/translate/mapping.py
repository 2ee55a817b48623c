"""The UB2 mapping engine: an EU message's XML into a canonical record, driven by a TOML spec.

The spec (adapters/mappings/*.toml, one per source message) is data a customs expert reviews;
this module only knows how to read it and run it. A spec has four kinds of rows:

- ``[[repeat]]``: a repeated source element (``GOOITEGDS``) that makes one entry of a list in
  the record (``goods_items[]``) per occurrence; the rows below it are read inside each one;
- ``[[field]]``: a source value (path of element steps from the message root, optionally ending
  in ``@attribute``; a step may carry one predicate ``[Child='v']``, ``[Child]`` or
  ``[not(Child)]``) into a record field path (``goods_items[].packages[].kind``,
  ``parties[CONSIGNOR].address.country``), with its value type and WCO ID;
- ``[[dropped]]``: a source element (and all inside it) deliberately not carried, with the
  reason; a row may say when dropping it would change what the record means, and the message
  is then refused (UB2_VALUE_INVALID at the element): ``only = ["KGM"]`` (dropped while its
  value is one of these: a unit the record implies) or ``in_order = true`` (an order number
  dropped because the record keeps document order: refused unless the repetitions are numbered
  in document order). The checks run in ``translate.dropped_checks``.

Specs are checked against the record's dataclasses when loaded (unknown keys, unknown targets, a
type that does not fit the field, a row with neither WCO ID nor note: UB2_MAPPING_INVALID
naming file:row), then compiled once into a trie of element steps, and the trie written out
as generated Python source (one function per element step, ``MappingSpec.generated_source``).
A translation is a single pass over the message's elements (no XPath per value): the hot path
of the UB2 benchmark. The walker that interprets the trie (``walk_spec``) is kept as the
reference: it reports every refusal, and the tests compare the two. Every carried value
records the XPath it came from (1-based positions, prefixed by the message's base path), so a
later finding points into the received document.
"""

from __future__ import annotations

import linecache
import re
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import Any

from lxml import etree

from gateway.errors import UB2_MAPPING_INVALID, UB2_VALUE_INVALID, TransactionError
from gateway.model.consignment import Consignment, SourceMessage

__all__ = [
    "VALUE_TYPES",
    "DroppedRow",
    "FieldRow",
    "MappingSpec",
    "RepeatRow",
    "compile_spec",
    "element_paths",
    "parse_mapping_spec",
    "run_spec",
    "strip_predicates",
    "unmapped",
    "walk_spec",
]

VALUE_TYPES = ("text", "int", "decimal", "datetime")
_SPEC_KEYS = {"name", "source", "version", "description", "namespace", "prefix", "root", "schema"}
_FIELD_KEYS = {"source", "target", "type", "format", "wco_id", "note"}
_REPEAT_KEYS = {"source", "target", "wco_id", "note"}
_DROPPED_KEYS = {"source", "reason", "only", "in_order"}
_WCO_ID = re.compile(r"[0-9]{3}|[A-Z][0-9]{3}|[0-9]{2}[A-Z]")
_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_STEP = re.compile(
    rf"(?P<name>(?:[A-Za-z_][A-Za-z0-9_-]*:)?{_NAME})"
    rf"(?:\[(?:(?P<child>{_NAME})(?:='(?P<value>[^']*)')?|not\((?P<absent>{_NAME})\))\])?"
)
_ATTR = re.compile(rf"@(?P<name>{_NAME})")
_SEGMENT = re.compile(r"(?P<name>[a-z_][a-z0-9_]*)(?:\[(?P<key>[A-Z_]*)\])?")
_PREDICATE = re.compile(r"\[[^\]]*\]|(?<![^/])[A-Za-z_][A-Za-z0-9_-]*:")
_XSI = "http://www.w3.org/2001/XMLSchema-instance"


# --- the spec as data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldRow:
    """One carried value: where it is in the message, where it goes, what it is in WCO DM."""

    source: str
    target: str
    type: str
    wco_id: str
    note: str
    format: str = ""
    row: str = ""  # "field[3]": where the row is in its spec file


@dataclass(frozen=True)
class RepeatRow:
    """A repeated source element that makes one entry of a record list per occurrence."""

    source: str
    target: str
    wco_id: str
    note: str
    row: str = ""


@dataclass(frozen=True)
class DroppedRow:
    """A source element deliberately not carried (with everything inside it), and why; with
    the condition under which dropping it keeps the record faithful, if there is one."""

    source: str
    reason: str
    row: str = ""
    only: tuple[str, ...] = ()  # dropped while its value is one of these; else refused
    in_order: bool = False  # an order number: refused unless numbered in document order


@dataclass(frozen=True)
class MappingSpec:
    """One source message's mapping, checked and compiled (``plan`` is what runs)."""

    name: str
    source: SourceMessage
    version: str
    description: str
    namespace: str  # namespace of the element steps ("" = unqualified, as in ICS messages)
    prefix: str  # prefix written in recorded XPaths for that namespace ("" when unqualified)
    root: str  # local name of the message element (CC315A, Declaration)
    schema: str  # the source schema, relative to its schema pack directory (for coverage)
    repeats: tuple[RepeatRow, ...]
    fields: tuple[FieldRow, ...]
    dropped: tuple[DroppedRow, ...]
    path: str = ""  # the file it was read from (errors, reports)
    # Other namespaces a step may name as prefix:Local (DEC-DMS data types put DateTimeString in
    # the Declaration_DS namespace), from the spec's [namespaces] table.
    namespaces: tuple[tuple[str, str], ...] = ()
    plan: _Plan | None = field(default=None, compare=False, repr=False)

    @property
    def generated_source(self) -> str:
        """The Python source of this spec's generated translator (for review and tracebacks)."""
        return self.plan.source if self.plan is not None else ""

    def qname(self, local: str) -> str:
        prefix, _, name = local.rpartition(":")
        if prefix:
            return f"{{{dict(self.namespaces)[prefix]}}}{name}"
        return f"{{{self.namespace}}}{local}" if self.namespace else local


def _spec_error(source: str, where: str, message: str) -> TransactionError:
    location = f"{source}:{where}" if where else source
    return TransactionError(message, code=UB2_MAPPING_INVALID, location=location)


def _text(table: Mapping[str, Any], key: str, source: str, where: str, *, required: bool) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise _spec_error(source, f"{where}.{key}", "must be a string")
    if required and not value.strip():
        raise _spec_error(source, f"{where}.{key}", "required, a non-empty string")
    return value


def _rows(data: Mapping[str, Any], table: str, keys: set[str], source: str) -> list[Any]:
    rows = data.get(table, [])
    if not isinstance(rows, list):
        raise _spec_error(source, table, f"[[{table}]] must be an array of tables")
    for index, row in enumerate(rows):
        where = f"{table}[{index}]"
        if not isinstance(row, dict):
            raise _spec_error(source, where, "must be a table")
        for key in sorted(set(row) - keys):
            raise _spec_error(source, f"{where}.{key}", f"unknown key (allowed: {sorted(keys)})")
    return rows


def _dropped_row(row: Mapping[str, Any], source: str, where: str) -> DroppedRow:
    only = row.get("only", [])
    in_order = row.get("in_order", False)
    if not isinstance(only, list) or not all(isinstance(v, str) and v for v in only):
        raise _spec_error(source, f"{where}.only", "must be a list of values")
    if not isinstance(in_order, bool):
        raise _spec_error(source, f"{where}.in_order", "must be true or false")
    path = _text(row, "source", source, where, required=True)
    if (only or in_order) and "[" in path:
        raise _spec_error(source, f"{where}.source", "a checked row names a plain path")
    if only and in_order:
        raise _spec_error(source, where, "give `only` or `in_order`, not both")
    if in_order and (path.count("/") < 1 or "@" in path):
        raise _spec_error(
            source, f"{where}.source", "`in_order` names the order number inside a repetition"
        )
    return DroppedRow(
        source=path,
        reason=_text(row, "reason", source, where, required=True),
        row=where,
        only=tuple(only),
        in_order=in_order,
    )


def parse_mapping_spec(text: str | bytes, source: str) -> MappingSpec:
    """Read, check and compile a spec. ``source`` names the file in errors (file:row)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _spec_error(source, "", f"not UTF-8: {exc.reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _spec_error(source, "", f"not valid TOML: {exc}") from None
    for key in sorted(set(data) - {"spec", "namespaces", "repeat", "field", "dropped"}):
        raise _spec_error(
            source, key, "unknown table (expected spec, namespaces, repeat, field, dropped)"
        )
    namespaces = data.get("namespaces", {})
    if not isinstance(namespaces, dict) or not all(
        isinstance(v, str) and v for v in namespaces.values()
    ):
        raise _spec_error(source, "namespaces", 'a table of prefix = "namespace URI"')
    head = data.get("spec")
    if not isinstance(head, dict):
        raise _spec_error(source, "spec", "the [spec] table is required")
    for key in sorted(set(head) - _SPEC_KEYS):
        raise _spec_error(source, f"spec.{key}", "unknown key")
    values = {
        key: _text(head, key, source, "spec", required=key not in ("namespace", "prefix"))
        for key in sorted(_SPEC_KEYS)
    }
    try:
        message = SourceMessage(values["source"])
    except ValueError:
        known = ", ".join(m.value for m in SourceMessage)
        raise _spec_error(
            source, "spec.source", f"unknown source message (one of {known})"
        ) from None
    repeats = tuple(
        RepeatRow(
            source=_text(row, "source", source, f"repeat[{i}]", required=True),
            target=_text(row, "target", source, f"repeat[{i}]", required=True),
            wco_id=_text(row, "wco_id", source, f"repeat[{i}]", required=False),
            note=_text(row, "note", source, f"repeat[{i}]", required=False),
            row=f"repeat[{i}]",
        )
        for i, row in enumerate(_rows(data, "repeat", _REPEAT_KEYS, source))
    )
    field_rows = tuple(
        FieldRow(
            source=_text(row, "source", source, f"field[{i}]", required=True),
            target=_text(row, "target", source, f"field[{i}]", required=True),
            type=_text(row, "type", source, f"field[{i}]", required=True),
            format=_text(row, "format", source, f"field[{i}]", required=False),
            wco_id=_text(row, "wco_id", source, f"field[{i}]", required=False),
            note=_text(row, "note", source, f"field[{i}]", required=False),
            row=f"field[{i}]",
        )
        for i, row in enumerate(_rows(data, "field", _FIELD_KEYS, source))
    )
    dropped = tuple(
        _dropped_row(row, source, f"dropped[{i}]")
        for i, row in enumerate(_rows(data, "dropped", _DROPPED_KEYS, source))
    )
    if not field_rows:
        raise _spec_error(source, "field", "at least one [[field]] row is required")
    checked: tuple[RepeatRow | FieldRow, ...] = (*repeats, *field_rows)
    for row in checked:
        if row.wco_id and not _WCO_ID.fullmatch(row.wco_id):
            raise _spec_error(source, f"{row.row}.wco_id", f"not a WCO ID: {row.wco_id!r}")
        if not row.wco_id and not row.note.strip():
            raise _spec_error(source, row.row, "a row needs a WCO ID or a note saying why none")
    spec = MappingSpec(
        name=values["name"],
        source=message,
        version=values["version"],
        description=values["description"],
        namespace=values["namespace"],
        prefix=values["prefix"],
        root=values["root"],
        schema=values["schema"],
        repeats=repeats,
        fields=field_rows,
        dropped=dropped,
        path=source,
        namespaces=tuple(sorted(namespaces.items())),
    )
    named: tuple[RepeatRow | FieldRow | DroppedRow, ...] = (*repeats, *field_rows, *dropped)
    for any_row in named:
        for prefix in re.findall(r"(?:^|/|\[|\()([A-Za-z_][A-Za-z0-9_-]*):", any_row.source):
            if prefix not in namespaces:
                raise _spec_error(source, f"{any_row.row}.source", f"unknown prefix {prefix!r}")
    return compile_spec(spec)


# --- the record's shape (what a target may name) -----------------------------------------------
@dataclass(frozen=True)
class _Slot:
    """One field of a record dataclass, as the engine sees it."""

    name: str
    kind: str  # "scalar" | "scalars" (tuple of values) | "object" | "objects" (tuple of records)
    value: type  # the scalar type, or the record class
    key_field: str = ""  # objects: the enum field a [KEY] sets (role)
    key_enum: type[Enum] | None = None


@dataclass(frozen=True)
class _Shape:
    cls: type
    slots: Mapping[str, _Slot]
    required: tuple[str, ...]
    defaults: Mapping[str, Any]  # field -> default value (factories: called per record)
    factories: Mapping[str, Callable[[], Any]]
    plain: bool  # no __post_init__: records can be made without running __init__


_SHAPES: dict[type, _Shape] = {}


def _unwrap_optional(hint: Any) -> Any:
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        if len(args) == 1:
            return args[0]
    return hint


def _shape(cls: type) -> _Shape:
    """The slots of a record dataclass, from its type hints (cached)."""
    known = _SHAPES.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    slots: dict[str, _Slot] = {}
    required = []
    for f in fields(cls):
        if f.name == "source_paths":
            continue
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
        hint = _unwrap_optional(hints[f.name])
        if typing.get_origin(hint) is tuple:
            inner = typing.get_args(hint)[0]
            if is_dataclass(inner):
                assert isinstance(inner, type)
                inner_hints = typing.get_type_hints(inner)
                key_field, key_enum = "", None
                for g in fields(inner):
                    g_hint = _unwrap_optional(inner_hints[g.name])
                    if isinstance(g_hint, type) and issubclass(g_hint, Enum):
                        key_field, key_enum = g.name, g_hint
                        break
                slots[f.name] = _Slot(f.name, "objects", inner, key_field, key_enum)
            else:
                slots[f.name] = _Slot(f.name, "scalars", inner)
        elif is_dataclass(hint):
            assert isinstance(hint, type)
            slots[f.name] = _Slot(f.name, "object", hint)
        elif isinstance(hint, type):
            slots[f.name] = _Slot(f.name, "scalar", hint)
    defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    factories: dict[str, Callable[[], Any]] = {
        f.name: f.default_factory for f in fields(cls) if f.default_factory is not MISSING
    }
    plain = not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
    shape = _Shape(
        cls,
        MappingProxyType(slots),
        tuple(required),
        MappingProxyType(defaults),
        MappingProxyType(factories),
        plain,
    )
    _SHAPES[cls] = shape
    return shape


# --- value conversion ---------------------------------------------------------------------------
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INT = re.compile(r"[+-]?[0-9]+")
_DATE_TOKENS = {"yyyy": 4, "MM": 2, "dd": 2, "HH": 2, "mm": 2, "ss": 2}
_DATE_TOKEN = re.compile(r"yyyy|MM|dd|HH|mm|ss|X$|'[^']*'")
_ZONE = re.compile(r"Z|([+-])([0-9]{2}):?([0-9]{2})?")
_SCALAR_OF_TYPE: dict[str, type] = {
    "text": str, "int": int, "decimal": Decimal, "datetime": datetime,
}  # fmt: skip
Converter = Callable[[str], Any]


class _Invalid(Exception):
    """A value that does not convert; turned into UB2_VALUE_INVALID with its XPath."""


def _to_int(text: str) -> int:
    text = text.strip()
    if not _INT.fullmatch(text):
        raise _Invalid(f"{text!r} is not a whole number")
    return int(text)


def _to_decimal(text: str) -> Decimal:
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        raise _Invalid(f"{text!r} is not a decimal number (digits, one '.' as separator)")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise _Invalid(f"{text!r} is not a decimal number") from None


def _datetime_converter(pattern: str, source: str, where: str) -> Converter:
    """A parser for a fixed-width date/time pattern such as ``yyyyMMddHHmm``.

    Patterns use the tokens yyyy MM dd HH mm ss, quoted literals, and a final X for a zone
    (``Z``, ``+01``, ``-0530``, ``+05:30``: DEC-DMS format 304), kept as declared. Without X
    the value is read as UTC: ICS messages carry no zone.
    """
    parts: list[tuple[str, int, int]] = []  # (token, start, end)
    zoned = False
    literals: list[tuple[str, int]] = []
    at = 0
    pos = 0
    for m in _DATE_TOKEN.finditer(pattern):
        if m.start() != pos:
            raise _spec_error(source, f"{where}.format", f"unknown pattern part {pattern!r}")
        token = m.group(0)
        if token == "X":
            zoned = True
        elif token.startswith("'"):
            literals.append((token[1:-1], at))
            at += len(token) - 2
        else:
            parts.append((token, at, at + _DATE_TOKENS[token]))
            at += _DATE_TOKENS[token]
        pos = m.end()
    tokens = [p[0] for p in parts]
    if pos != len(pattern) or not {"yyyy", "MM", "dd"} <= set(tokens):
        raise _spec_error(source, f"{where}.format", f"not a date pattern: {pattern!r}")
    width = at

    def convert(text: str) -> datetime:
        text = text.strip()
        zone = UTC
        if zoned:
            m = _ZONE.fullmatch(text[width:])
            if m is None:
                raise _Invalid(f"{text!r} does not have the format {pattern} (zone Z or +HH)")
            if m.group(1):
                minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
                zone = timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))
            text = text[:width]
        if len(text) != width or any(text[i : i + len(lit)] != lit for lit, i in literals):
            raise _Invalid(f"{text!r} does not have the format {pattern}")
        numbers = {}
        for token, start, end in parts:
            chunk = text[start:end]
            if not chunk.isdigit() or not chunk.isascii():
                raise _Invalid(f"{text!r} does not have the format {pattern}")
            numbers[token] = int(chunk)
        try:
            return datetime(
                numbers["yyyy"],
                numbers["MM"],
                numbers["dd"],
                numbers.get("HH", 0),
                numbers.get("mm", 0),
                numbers.get("ss", 0),
                tzinfo=zone,
            )
        except ValueError as exc:
            raise _Invalid(f"{text!r} is not a real date/time ({exc})") from None

    return convert


def _converter(row: FieldRow, source: str) -> Converter:
    if row.type == "text":
        if row.format:
            raise _spec_error(source, f"{row.row}.format", "only datetime rows take a format")
        return str
    if row.type == "int":
        return _to_int
    if row.type == "decimal":
        return _to_decimal
    if row.type == "datetime":
        if not row.format:
            raise _spec_error(source, f"{row.row}.format", "a datetime row needs its format")
        return _datetime_converter(row.format, source, row.row)
    raise _spec_error(source, f"{row.row}.type", f"unknown type (one of {', '.join(VALUE_TYPES)})")


# --- compiling: targets into operations, sources into a trie ------------------------------------
@dataclass(frozen=True)
class _Segment:
    name: str
    key: str | None  # None: plain field; "": "[]" (each occurrence); "KEY": the entry of that key

    def __str__(self) -> str:
        return self.name if self.key is None else f"{self.name}[{self.key}]"


def _segments(target: str, source: str, where: str) -> tuple[_Segment, ...]:
    out = []
    for text in target.split("."):
        m = _SEGMENT.fullmatch(text)
        if m is None:
            raise _spec_error(source, f"{where}.target", f"malformed target segment {text!r}")
        out.append(_Segment(m.group("name"), m.group("key")))
    return tuple(out)


@dataclass(frozen=True)
class _Step:
    local: str
    child: str = ""  # predicate: the child element tested
    value: str | None = None  # [child='value']
    absent: bool = False  # [not(child)]

    @property
    def predicate(self) -> tuple[str, str | None, bool] | None:
        return (self.child, self.value, self.absent) if self.child else None


def _steps(path: str, source: str, where: str) -> tuple[tuple[_Step, ...], str]:
    """Element steps of a source path and its final attribute ("" when none)."""
    texts = path.split("/")
    attribute = ""
    if texts and texts[-1].startswith("@"):
        m = _ATTR.fullmatch(texts[-1])
        if m is None:
            raise _spec_error(source, f"{where}.source", f"malformed attribute in {path!r}")
        attribute = m.group("name")
        texts = texts[:-1]
    steps = []
    for text in texts:
        m = _STEP.fullmatch(text)
        if m is None:
            raise _spec_error(source, f"{where}.source", f"malformed step {text!r} in {path!r}")
        child = m.group("child") or m.group("absent") or ""
        steps.append(_Step(m.group("name"), child, m.group("value"), bool(m.group("absent"))))
    if not steps and not attribute:
        raise _spec_error(source, f"{where}.source", "empty source path")
    return tuple(steps), attribute


def strip_predicates(path: str) -> str:
    """``a[b='c']/ds:d`` -> ``a/d``: the schema path (local names) a source row names."""
    return _PREDICATE.sub("", path)


class _Obj:
    """A record being built: its values, its field path, and the XPath it was read from."""

    __slots__ = ("cache", "key", "path", "repeated", "values", "xpath")

    def __init__(
        self, path: str, xpath: Any, key: Any = None, values: dict[str, Any] | None = None
    ) -> None:
        self.path = path  # field path in the record ("" for the root, "goods_items[0]", ...)
        self.xpath = xpath
        self.key = key
        self.values: dict[str, Any] = {} if values is None else values
        self.repeated = False  # an entry of a [[repeat]] (never reused by a keyed single row)
        self.cache: dict[int, _Obj] = {}  # navigation results, by operation list


# An operation list navigates from an object to the object a value or a new entry belongs to.
# ("object", name) | ("keyed", name, key_field, enum member)
_Nav = tuple[tuple[Any, ...], ...]


@dataclass
class _Action:
    """Set or append one converted value (a field row, compiled)."""

    nav: _Nav
    name: str
    append: bool
    convert: Converter
    row: FieldRow


@dataclass
class _Enter:
    """Start a new entry of a record list (a repeat row, compiled)."""

    nav: _Nav
    name: str
    key_field: str
    key: Any
    row: RepeatRow


@dataclass
class _Node:
    """One element step of the trie: what to do with an element reached by this path."""

    local: str
    display: str  # the step as written in recorded XPaths (prefix:local or local)
    children: dict[str, list[tuple[tuple[str, str | None, bool] | None, _Node]]] = field(
        default_factory=dict
    )
    actions: list[_Action] = field(default_factory=list)
    attributes: dict[str, list[_Action]] = field(default_factory=dict)
    enter: _Enter | None = None
    dropped: str | None = None
    fast: tuple[_Nav, str, Converter | None] | None = None  # one value: (nav, field, converter)
    descend: bool = False  # has children or attributes to read
    simple: dict[str, _Node] = field(default_factory=dict)  # children without predicate
    predicated: dict[str, list[tuple[Any, _Node]]] = field(default_factory=dict)


def _finish(node: _Node) -> None:
    """Precompute the walking shortcuts of every node (after all rows are in)."""
    node.descend = bool(node.children or node.attributes)
    if len(node.actions) == 1 and not node.actions[0].append:
        action = node.actions[0]
        node.fast = (action.nav, action.name, None if action.convert is str else action.convert)
    for tag, entries in node.children.items():
        for predicate, child in entries:
            _finish(child)
            if child.dropped is not None:
                continue  # only `unmapped` looks at dropped elements
            if predicate is None:
                node.simple[tag] = child
            else:
                node.predicated.setdefault(tag, []).append((predicate, child))


@dataclass
class _Plan:
    root: _Node
    namespace: str
    source: str = ""  # the generated translator's Python source (see _Codegen)
    run: _GeneratedRun | None = field(default=None, repr=False)


def _navigation(
    shape: _Shape, segments: tuple[_Segment, ...], source: str, where: str
) -> tuple[_Nav, _Shape]:
    """Operations that walk ``segments`` (all but the last) from an object of ``shape``."""
    nav: list[tuple[Any, ...]] = []
    for segment in segments:
        slot = shape.slots.get(segment.name)
        if slot is None:
            raise _spec_error(
                source, f"{where}.target", f"{shape.cls.__name__} has no field {segment.name!r}"
            )
        if slot.kind == "object" and segment.key is None:
            nav.append(("object", slot.name))
        elif slot.kind == "objects" and segment.key:
            nav.append(("keyed", slot.name, slot.key_field, _member(slot, segment, source, where)))
        else:
            raise _spec_error(
                source,
                f"{where}.target",
                f"{segment} cannot be walked through ({slot.kind}; a keyed list needs [KEY], "
                "a list of each occurrence needs a [[repeat]] row)",
            )
        shape = _shape(slot.value)
    return tuple(nav), shape


def _member(slot: _Slot, segment: _Segment, source: str, where: str) -> Enum:
    if slot.key_enum is None:
        raise _spec_error(source, f"{where}.target", f"{slot.name} entries have no key field")
    try:
        return slot.key_enum[segment.key or ""]
    except KeyError:
        keys = ", ".join(m.name for m in slot.key_enum)
        raise _spec_error(
            source, f"{where}.target", f"unknown key {segment.key!r} for {slot.name} ({keys})"
        ) from None


def _starts_with(whole: tuple[Any, ...], prefix: tuple[Any, ...]) -> bool:
    return len(whole) >= len(prefix) and whole[: len(prefix)] == prefix


def compile_spec(spec: MappingSpec) -> MappingSpec:
    """Check every target against the record's dataclasses and build the walking trie."""
    source = spec.path or spec.name
    root = _Node(spec.root, _display(spec, spec.root))
    # Repeats, outermost first; each belongs to the longest enclosing repeat.
    compiled: list[tuple[tuple[_Segment, ...], tuple[_Step, ...], _Node, _Shape]] = []
    repeat_rows = sorted(spec.repeats, key=lambda r: r.target.count("."))
    targets_seen: set[str] = set()
    for row in repeat_rows:
        segments = _segments(row.target, source, row.row)
        steps, attribute = _steps(row.source, source, row.row)
        if attribute:
            raise _spec_error(source, f"{row.row}.source", "a repeat names an element")
        if row.target in targets_seen:
            raise _spec_error(source, f"{row.row}.target", "two repeats fill the same list")
        targets_seen.add(row.target)
        if segments[-1].key is None:
            raise _spec_error(source, f"{row.row}.target", "a repeat target ends in [] or [KEY]")
        parent_segments, parent_steps, parent_node, parent_shape = _enclosing(
            compiled, segments, steps, root
        )
        rel_segments = segments[len(parent_segments) :]
        rel_steps = steps[len(parent_steps) :]
        if not rel_steps:
            raise _spec_error(source, f"{row.row}.source", "repeat source inside no new element")
        nav, shape = _navigation(parent_shape, rel_segments[:-1], source, row.row)
        last = rel_segments[-1]
        slot = shape.slots.get(last.name)
        if slot is None or slot.kind != "objects":
            raise _spec_error(
                source, f"{row.row}.target", f"{last.name!r} is not a list of records here"
            )
        key = _member(slot, last, source, row.row) if last.key else None
        node = _node_for(spec, parent_node, rel_steps)
        if node.enter is not None:
            raise _spec_error(source, f"{row.row}.source", "two repeats on one source element")
        node.enter = _Enter(nav, slot.name, slot.key_field, key, row)
        compiled.append((segments, steps, node, _shape(slot.value)))
    for frow in spec.fields:
        segments = _segments(frow.target, source, frow.row)
        steps, attribute = _steps(frow.source, source, frow.row)
        parent_segments, parent_steps, parent_node, parent_shape = _enclosing(
            compiled, segments, steps, root
        )
        rel_segments = segments[len(parent_segments) :]
        rel_steps = steps[len(parent_steps) :]
        if not rel_segments:
            raise _spec_error(source, f"{frow.row}.target", "a field row names a field, not a list")
        for segment in rel_segments:
            if segment.key == "" and segment is not rel_segments[-1]:
                raise _spec_error(
                    source,
                    f"{frow.row}.target",
                    f"{segment} has no [[repeat]] row (with a source above {frow.source})",
                )
        nav, shape = _navigation(parent_shape, rel_segments[:-1], source, frow.row)
        last = rel_segments[-1]
        slot = shape.slots.get(last.name)
        if slot is None:
            raise _spec_error(
                source, f"{frow.row}.target", f"{shape.cls.__name__} has no field {last.name!r}"
            )
        append = last.key == ""
        if last.key is not None and not append:
            raise _spec_error(source, f"{frow.row}.target", f"{last} is not a value field")
        wanted = "scalars" if append else "scalar"
        if slot.kind != wanted:
            hint = "end the target in []" if slot.kind == "scalars" else "name a value field"
            raise _spec_error(source, f"{frow.row}.target", f"{last.name} is {slot.kind}: {hint}")
        expected = _SCALAR_OF_TYPE.get(frow.type)
        convert = _converter(frow, source)
        if expected is not slot.value:
            raise _spec_error(
                source,
                f"{frow.row}.type",
                f"{frow.type} does not fit {last.name} ({slot.value.__name__})",
            )
        action = _Action(nav, slot.name, append, convert, frow)
        if attribute:
            node = _node_for(spec, parent_node, rel_steps) if rel_steps else parent_node
            node.attributes.setdefault(attribute, []).append(action)
        else:
            if not rel_steps:
                raise _spec_error(source, f"{frow.row}.source", "a value row names its element")
            _node_for(spec, parent_node, rel_steps).actions.append(action)
    for drow in spec.dropped:
        steps, attribute = _steps(drow.source, source, drow.row)
        if attribute:
            node = _node_for(spec, root, steps) if steps else root
            node.attributes.setdefault(attribute, [])  # known, carried nowhere
            continue
        node = _node_for(spec, root, steps)
        if node.actions or node.enter or node.children:
            raise _spec_error(source, drow.row, f"{drow.source} is carried by another row")
        node.dropped = drow.reason
    _finish(root)
    generated, run = _generate(spec, root)
    return replace(spec, plan=_Plan(root, spec.namespace, generated, run))


def _enclosing(
    compiled: list[tuple[tuple[_Segment, ...], tuple[_Step, ...], _Node, _Shape]],
    segments: tuple[_Segment, ...],
    steps: tuple[_Step, ...],
    root: _Node,
) -> tuple[tuple[_Segment, ...], tuple[_Step, ...], _Node, _Shape]:
    best: tuple[tuple[_Segment, ...], tuple[_Step, ...], _Node, _Shape] = (
        (),
        (),
        root,
        _shape(Consignment),
    )
    for candidate in compiled:
        c_segments, c_steps = candidate[0], candidate[1]
        if (
            len(c_segments) < len(segments)
            and _starts_with(segments, c_segments)
            and _starts_with(steps, c_steps)
            and len(c_segments) > len(best[0])
        ):
            best = candidate
    return best


def _display(spec: MappingSpec, local: str) -> str:
    return _display_tag(spec, spec.qname(local))


def _display_tag(spec: MappingSpec, tag: str) -> str:
    """An element step as recorded XPaths write it: ``dec:Name`` for the spec's namespace
    (the prefixes of eu_messages.location_namespaces), a namespace-uri test for any other."""
    qname = etree.QName(tag)
    if (qname.namespace or "") == spec.namespace:
        return f"{spec.prefix}:{qname.localname}" if spec.prefix else qname.localname
    return f"*[local-name()='{qname.localname}'][namespace-uri()='{qname.namespace or ''}']"


def _node_for(spec: MappingSpec, node: _Node, steps: tuple[_Step, ...]) -> _Node:
    for step in steps:
        tag = spec.qname(step.local)
        entries = node.children.setdefault(tag, [])
        predicate = step.predicate
        if predicate is not None:
            predicate = (spec.qname(predicate[0]), predicate[1], predicate[2])
        for known, child in entries:
            if known == predicate:
                node = child
                break
        else:
            child = _Node(step.local, _display(spec, step.local))
            entries.append((predicate, child))
            node = child
    return node


# --- running ------------------------------------------------------------------------------------
def _matches(element: etree._Element, predicate: tuple[str, str | None, bool] | None) -> bool:
    if predicate is None:
        return True
    child, value, absent = predicate
    found = element.find(child)
    if absent:
        return found is None
    if found is None:
        return False
    return value is None or (found.text or "").strip() == value


def _leaf_text(element: etree._Element) -> str | None:
    if len(element) == 0:
        return element.text
    # Comments or processing instructions inside a value: its text is the text around them.
    return (element.text or "") + "".join(child.tail or "" for child in element)


# Where a value came from, kept as a chain (parent, step, element or position) while walking and
# written out as an XPath only when asked for: most translations never read most of their paths,
# and counting an element's position among its siblings is only done then.
_Where = tuple[Any, str, Any]


def _position(element: etree._Element) -> int:
    tag = str(element.tag)
    return 1 + len(list(element.itersiblings(tag, preceding=True)))


def _xpath(where: _Where | str) -> str:
    steps = []
    while not isinstance(where, str):
        parent, step, at = where
        if isinstance(at, int):
            steps.append(f"{step}[{at}]" if at else step)
        else:
            steps.append(f"{step}[{_position(at)}]")
        where = parent
    steps.append(where)
    return "/".join(reversed(steps))


# (record, field, index in a list or -1, where), or from a generated leaf (record, field, index,
# where of the parent, step, element): the where of that element, unmade until asked for. The
# generated translator names the record by its field path (a str), not by its _Obj, so the
# records being built are freed once built, not kept as long as the consignment's source paths.
_Provenance = list[tuple[Any, ...]]


class SourcePaths(Mapping[str, str]):
    """Record field path -> XPath in the received message, written out on first access."""

    __slots__ = ("_done", "_raw", "_record")

    def __init__(self, record: _Provenance) -> None:
        self._record = record
        self._raw: dict[str, Any] | None = None
        self._done: dict[str, str] = {}

    def _paths(self) -> dict[str, Any]:
        if self._raw is None:
            raw: dict[str, Any] = {}
            for entry in self._record:
                holder, name, index = entry[0], entry[1], entry[2]
                path = holder if isinstance(holder, str) else holder.path
                key = f"{path}.{name}" if path else name
                # (obj, name, index, where) or, from a generated leaf, (..., where, step, element)
                raw[f"{key}[{index}]" if index >= 0 else key] = (
                    entry[3] if len(entry) == 4 else entry[3:]
                )
            self._raw = raw
        return self._raw

    def __getitem__(self, key: str) -> str:
        done = self._done.get(key)
        if done is None:
            done = self._done[key] = _xpath(self._paths()[key])
        return done

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths())

    def __len__(self) -> int:
        return len(self._paths())

    def __repr__(self) -> str:
        return f"SourcePaths({len(self._record)} paths)"


def _navigate(obj: _Obj, nav: _Nav, where: _Where | str) -> _Obj:
    known = obj.cache.get(id(nav))
    if known is not None:
        return known
    start = obj
    for op in nav:
        if op[0] == "object":
            child = obj.values.get(op[1])
            if child is None:
                child = _Obj(f"{obj.path}.{op[1]}" if obj.path else op[1], where)
                obj.values[op[1]] = child
            obj = child
        else:
            _, name, key_field, key = op
            entries = obj.values.setdefault(name, [])
            for entry in entries:
                if entry.key is key and not entry.repeated:
                    obj = entry
                    break
            else:
                prefix = f"{obj.path}.{name}" if obj.path else name
                entry = _Obj(f"{prefix}[{len(entries)}]", where, key, {key_field: key})
                entries.append(entry)
                obj = entry
    start.cache[id(nav)] = obj
    return obj


def _refuse(action: _Action, exc: Exception, where: _Where | str) -> TransactionError:
    return TransactionError(
        f"{action.row.target} ({action.row.type}): {exc}",
        code=UB2_VALUE_INVALID,
        location=_xpath(where),
    )


def _apply(
    actions: list[_Action], obj: _Obj, text: str, where: _Where | str, record: _Provenance
) -> None:
    for action in actions:
        try:
            value = action.convert(text)
        except _Invalid as exc:
            raise _refuse(action, exc, where) from None
        target = _navigate(obj, action.nav, where) if action.nav else obj
        name = action.name
        values = target.values
        if action.append:
            found = values.get(name)
            if found is None:
                found = values[name] = []
            record.append((target, name, len(found), where))
            found.append(value)
        else:
            if name in values:
                first = next(w for o, n, _, w in record if o is target and n == name)
                field_path = f"{target.path}.{name}" if target.path else name
                raise TransactionError(
                    f"a second value for {field_path}, which holds one (first at {_xpath(first)})",
                    code=UB2_VALUE_INVALID,
                    location=_xpath(where),
                )
            values[name] = value
            record.append((target, name, -1, where))


def _visit(
    child: etree._Element, sub: _Node, obj: _Obj, where: _Where | str, record: _Provenance
) -> None:
    here = (where, sub.display, child)
    target = obj
    enter = sub.enter
    if enter is not None:
        parent = _navigate(obj, enter.nav, here) if enter.nav else obj
        entries = parent.values.setdefault(enter.name, [])
        prefix = f"{parent.path}.{enter.name}" if parent.path else enter.name
        target = _Obj(f"{prefix}[{len(entries)}]", here, enter.key)
        if enter.key is not None:
            target.values[enter.key_field] = enter.key
            target.repeated = True
        entries.append(target)
        record.append((parent, enter.name, len(entries) - 1, here))
    fast = sub.fast
    if fast is not None:
        text = child.text if len(child) == 0 else _leaf_text(child)
        if text:
            nav, name, convert = fast
            holder = _navigate(target, nav, here) if nav else target
            values = holder.values
            if name in values:
                _apply(sub.actions, target, text, here, record)  # reports the second value
            if convert is None:
                values[name] = text
            else:
                try:
                    values[name] = convert(text)
                except _Invalid as exc:
                    raise _refuse(sub.actions[0], exc, here) from None
            record.append((holder, name, -1, here))
    elif sub.actions:
        text = child.text if len(child) == 0 else _leaf_text(child)
        if text:
            _apply(sub.actions, target, text, here, record)
    if sub.descend:
        _walk(child, sub, target, here, record)


def _walk(
    element: etree._Element, node: _Node, obj: _Obj, where: _Where | str, record: _Provenance
) -> None:
    if node.attributes:
        for name, actions in node.attributes.items():
            value = element.get(name)
            if value is not None and actions:
                _apply(actions, obj, value, (where, "@" + name, 0), record)
    simple = node.simple
    predicated = node.predicated
    for child in element.iterchildren(etree.Element):
        sub = simple.get(child.tag)  # type: ignore[arg-type]
        if sub is not None:
            _visit(child, sub, obj, where, record)
        if predicated:
            for predicate, psub in predicated.get(child.tag, ()):  # type: ignore[arg-type]
                if _matches(child, predicate):
                    _visit(child, psub, obj, where, record)


def _build(shape: _Shape, obj: _Obj) -> Any:
    kwargs: dict[str, Any] = {}
    slots = shape.slots
    for name, value in obj.values.items():
        slot = slots[name]
        kind = slot.kind
        if kind == "scalar":
            kwargs[name] = value
        elif kind == "objects":
            inner = _shape(slot.value)
            kwargs[name] = tuple([_build(inner, entry) for entry in value])
        elif kind == "scalars":
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = _build(_shape(slot.value), value)
    for required in shape.required:  # a loop: a generator per record costs more than this
        if required in kwargs:
            continue
        missing = [name for name in shape.required if name not in kwargs]
        where = obj.path or "the record"
        raise TransactionError(
            f"{where} ({shape.cls.__name__}) lacks {', '.join(missing)}: the message carries no "
            "value for it",
            code=UB2_VALUE_INVALID,
            location=_xpath(obj.xpath),
        )
    if not shape.plain:
        return shape.cls(**kwargs)
    # Frozen dataclasses set each field through object.__setattr__: for the ~30 records of a
    # translation that is most of the build time. These classes have no __post_init__, so
    # filling __dict__ makes exactly what __init__ would.
    made: Any = object.__new__(shape.cls)
    state = made.__dict__
    state.update(shape.defaults)
    for name, factory in shape.factories.items():
        if name not in kwargs:
            state[name] = factory()
    state.update(kwargs)
    return made


def run_spec(spec: MappingSpec, root: etree._Element, base_path: str, **fixed: Any) -> Consignment:
    """Translate the message element ``root`` by ``spec`` (``fixed``: values set by the caller).

    Runs the spec's generated translator; where that gives up (a message the walker refuses),
    the walker runs and reports the error.
    """
    plan = spec.plan
    if plan is None:  # pragma: no cover - parse_mapping_spec always compiles
        raise _spec_error(spec.path, "", "spec not compiled")
    if plan.run is not None:
        try:
            consignment, record = plan.run(root, base_path, fixed)
        except (_Fallback, _Invalid, TransactionError):
            pass
        else:
            object.__setattr__(consignment, "source_paths", SourcePaths(record))
            return consignment  # type: ignore[no-any-return]
    return walk_spec(spec, root, base_path, **fixed)


def walk_spec(spec: MappingSpec, root: etree._Element, base_path: str, **fixed: Any) -> Consignment:
    """``run_spec`` by the walker that interprets the trie: the generated translator's oracle."""
    plan = spec.plan
    if plan is None:  # pragma: no cover - parse_mapping_spec always compiles
        raise _spec_error(spec.path, "", "spec not compiled")
    record: _Provenance = []
    top = _Obj("", base_path, None, {"source": spec.source, **fixed})
    _walk(root, plan.root, top, base_path, record)
    consignment: Consignment = _build(_shape(Consignment), top)
    # source_paths is provenance, not data (compare=False): set on the frozen record once.
    object.__setattr__(consignment, "source_paths", SourcePaths(record))
    return consignment


# --- the generated translator -------------------------------------------------------------------
# The trie above is run two ways. ``_walk`` interprets it (a dictionary look-up and a few
# attribute reads per element: the reference, kept as the oracle of the tests); the code below
# writes it out once, at load time, as Python source specialised to the spec: one function per
# element step with the child tags tested in place, the values set through local variables, and
# one builder per record class that knows which of its fields the spec can fill. The spec stays
# the single source of truth: the source is generated from the compiled rows, deterministically
# (``MappingSpec.generated_source``), and registered with linecache so tracebacks show it.
#
# The generated code only ever *succeeds* on its own: anything the walker would refuse (a value
# that does not convert, a second value for a single field, a record lacking a required field)
# makes it give up (_Fallback), and the walker then runs on the same element and reports the
# error exactly as it always has. A successful run produces the same records and source paths
# as the walker (tests/test_mapping_codegen.py checks both ways on every sample).
class _Fallback(Exception):
    """The generated translator met what the walker refuses: let the walker report it."""


_GeneratedRun = Callable[[etree._Element, str, dict[str, Any]], tuple[Any, "_Provenance"]]


class _Writer:
    """Python source, line by line, with the constants it refers to by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {}
        self._names: dict[int, str] = {}

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def const(self, prefix: str, value: Any) -> str:
        """A global name for ``value`` in the generated module (one per object, numbered)."""
        known = self._names.get(id(value))
        if known is not None:
            return known
        name = f"{prefix}{len(self._names)}"
        self._names[id(value)] = name
        self.env[name] = value
        return name


class _Codegen:
    """Writes one spec's trie as a module of functions (see the comment above)."""

    def __init__(self, spec: MappingSpec, root: _Node) -> None:
        self.spec = spec
        self.root = root
        self.out = _Writer()
        self.walkers: dict[int, str] = {}  # id(node) -> its function name
        self.pending: list[tuple[_Node, str, _Shape]] = []
        self.filled: dict[type, dict[str, None]] = {}  # class -> fields the spec can fill
        self.navs: dict[_Nav, int] = {}  # navigation -> its cache key in _Obj.cache
        self.nav_lines: list[str] = []  # the _go_N functions
        self.here: str | None = None  # the element being visited: its `here` variable, if made
        self.display = ""  # and its step as recorded XPaths write it

    # -- what the spec fills, per record class ---------------------------------------------
    def _fill(self, shape: _Shape, name: str) -> None:
        self.filled.setdefault(shape.cls, {})[name] = None

    def _through(self, shape: _Shape, nav: _Nav) -> _Shape:
        for op in nav:
            self._fill(shape, op[1])
            shape = _shape(shape.slots[op[1]].value)
            if op[0] == "keyed":
                self._fill(shape, op[2])  # the entry is made with its key field set
        return shape

    # -- walkers -------------------------------------------------------------------------------
    def walker(self, node: _Node, shape: _Shape) -> str:
        name = self.walkers.get(id(node))
        if name is None:
            name = self.walkers[id(node)] = f"_walk_{len(self.walkers)}"
            self.pending.append((node, name, shape))
        return name

    def generate(self) -> tuple[str, dict[str, Any]]:
        out = self.out
        out.env.update(
            _Obj=_Obj,
            _Fallback=_Fallback,
            _apply=_apply,
            _matches=_matches,
            _leaf_text=_leaf_text,
            _new=object.__new__,
            _set_state=object.__setattr__,
        )
        top = _shape(Consignment)
        self._fill(top, "source")
        first = self.walker(self.root, top)
        out.line(0, "def run(root, base_path, fixed):")
        out.line(1, "record = []")
        source = out.const("SOURCE_", self.spec.source)
        out.line(1, f'top = _Obj("", base_path, None, {{"source": {source}, **fixed}})')
        out.line(1, f"{first}(root, top, base_path, record)")
        out.line(1, "return _build_Consignment(top), record")
        while self.pending:
            node, name, shape = self.pending.pop(0)
            self._walker_source(node, name, shape)
        built: set[type] = set()
        while len(built) < len(self.filled):  # a builder may name a class not yet built
            cls = next(c for c in self.filled if c not in built)
            built.add(cls)
            self._builder_source(_shape(cls))
        return "\n".join([*out.lines, *self.nav_lines]) + "\n", out.env

    def _walker_source(self, node: _Node, name: str, shape: _Shape) -> None:
        out = self.out
        out.line(0, "")
        out.line(0, f"def {name}(el, o, where, record):  # {node.display}")
        for attribute, actions in node.attributes.items():
            if not actions:
                continue
            for action in actions:
                self._fill(self._through(shape, action.nav), action.name)
            acts = out.const("ACTIONS_", actions)
            out.line(1, f"v = el.get({attribute!r})")
            out.line(1, "if v is not None:")
            out.line(2, f"_apply({acts}, o, v, (where, {'@' + attribute!r}, 0), record)")
        tags: dict[str, list[tuple[Any, _Node]]] = {}
        for tag, sub in node.simple.items():
            tags.setdefault(tag, []).append((None, sub))
        for tag, entries in node.predicated.items():
            tags.setdefault(tag, []).extend(entries)
        if not tags:
            out.line(1, "return")
            return
        out.line(1, "ov = o.values")
        out.line(1, "add = record.append")
        # Every child, not iterchildren(Element): a processing instruction's tag is a function,
        # which no test below matches (the walker skips it the same way).
        out.line(1, "for c in el:")
        ordered = list(tags.items())
        if len(ordered) <= 3:
            out.line(2, "t = c.tag")
            for index, (tag, entries) in enumerate(ordered):
                out.line(2, f"{'if' if index == 0 else 'elif'} t == {tag!r}:")
                self._visits(entries, shape, 3)
            return
        keys = out.const("TAGS_", {tag: index for index, (tag, _) in enumerate(ordered)})
        out.line(2, f"k = {keys}.get(c.tag)")
        out.line(2, "if k is None:")
        out.line(3, "continue")
        self._tree(ordered, 0, len(ordered), shape, 2)

    def _tree(
        self,
        ordered: list[tuple[str, list[tuple[Any, _Node]]]],
        low: int,
        high: int,
        shape: _Shape,
        depth: int,
    ) -> None:
        """A binary search over the tag numbers low..high-1 (k is known to be in range)."""
        line = self.out.line
        if high - low == 1:
            self._visits(ordered[low][1], shape, depth)
        elif high - low == 2:
            line(depth, f"if k == {low}:")
            self._visits(ordered[low][1], shape, depth + 1)
            line(depth, "else:")
            self._visits(ordered[low + 1][1], shape, depth + 1)
        else:
            middle = (low + high) // 2
            line(depth, f"if k < {middle}:")
            self._tree(ordered, low, middle, shape, depth + 1)
            line(depth, "else:")
            self._tree(ordered, middle, high, shape, depth + 1)

    def _visits(self, entries: list[tuple[Any, _Node]], shape: _Shape, depth: int) -> None:
        for predicate, sub in entries:
            if predicate is None:
                self._visit(sub, shape, depth)
            else:
                self.out.line(depth, f"if _matches(c, {self.out.const('PREDICATE_', predicate)}):")
                self._visit(sub, shape, depth + 1)

    def _nav(self, holder: str, nav: _Nav, into: str, depth: int) -> None:
        """``into`` = the object ``nav`` leads to from ``holder`` (made on first use)."""
        key = self._navigator(nav)
        self.out.line(depth, f"{into} = {holder}.cache.get({key})")
        self.out.line(depth, f"if {into} is None:")
        here = self.here or f"(where, {self.display!r}, c)"
        self.out.line(depth + 1, f"{into} = _go_{key}({holder}, {here})")

    def _navigator(self, nav: _Nav) -> int:
        """The number of a function doing ``_navigate`` for ``nav`` (equal navigations share
        it); it caches its result, and that of each shorter prefix, in ``_Obj.cache``."""
        key = self.navs.get(nav)
        if key is not None:
            return key
        prefix = self._navigator(nav[:-1]) if len(nav) > 1 else None
        key = self.navs[nav] = len(self.navs)
        lines = self.nav_lines
        lines.append("")
        lines.append(f"def _go_{key}(o, here):")
        if prefix is None:
            lines.append("    t = o")
        else:
            lines.append(f"    t = o.cache.get({prefix})")
            lines.append("    if t is None:")
            lines.append(f"        t = _go_{prefix}(o, here)")
        op = nav[-1]
        name = op[1]
        lines.append(f"    e = t.values.get({name!r})")
        lines.append("    pp = t.path")
        if op[0] == "object":
            lines.append("    if e is None:")
            path = f'f"{{pp}}.{name}" if pp else {name!r}'
            lines.append(f"        e = t.values[{name!r}] = _Obj({path}, here)")
        else:
            entry = self.out.const("KEY_", op[3])
            lines.append("    if e is None:")
            lines.append(f"        e = t.values[{name!r}] = []")
            lines.append("    for n in e:")
            lines.append(f"        if n.key is {entry} and not n.repeated:")
            lines.append("            e = n")
            lines.append("            break")
            lines.append("    else:")
            path = f'f"{{pp}}.{name}[{{len(e)}}]" if pp else f"{name}[{{len(e)}}]"'
            lines.append(f"        n = _Obj({path}, here, {entry}, {{{op[2]!r}: {entry}}})")
            lines.append("        e.append(n)")
            lines.append("        e = n")
        lines.append(f"    o.cache[{key}] = e")
        lines.append("    return e")
        return key

    def _visit(self, sub: _Node, shape: _Shape, depth: int) -> None:
        out = self.out
        line = out.line
        # A leaf's provenance is one tuple (holder, field, index, where, step, element), not a
        # `here` tuple and a record tuple: fewer allocations for the values most elements carry.
        self.here = "here" if sub.enter is not None or sub.descend else None
        self.display = sub.display
        if self.here:
            line(depth, f"here = (where, {sub.display!r}, c)")
        target = "o"
        inner = shape
        enter = sub.enter
        if enter is not None:
            parent = "o"
            if enter.nav:
                self._nav("o", enter.nav, "p", depth)
                parent = "p"
            parent_shape = self._through(shape, enter.nav)
            self._fill(parent_shape, enter.name)
            inner = _shape(parent_shape.slots[enter.name].value)
            line(depth, f"e = {_values(parent)}.get({enter.name!r})")
            line(depth, "if e is None:")
            line(depth + 1, f"e = {_values(parent)}[{enter.name!r}] = []")
            line(depth, "i = len(e)")
            line(depth, f"pp = {parent}.path")
            path = f'f"{{pp}}.{enter.name}[{{i}}]" if pp else f"{enter.name}[{{i}}]"'
            if enter.key is None:
                line(depth, f"n = _Obj({path}, here)")
            else:
                key = out.const("KEY_", enter.key)
                self._fill(inner, enter.key_field)
                line(depth, f"n = _Obj({path}, here, {key}, {{{enter.key_field!r}: {key}}})")
                line(depth, "n.repeated = True")
            line(depth, "e.append(n)")
            line(depth, f"add(({parent}.path, {enter.name!r}, i, here))")
            target = "n"
        if sub.actions:
            line(depth, "x = c.text if len(c) == 0 else _leaf_text(c)")
            line(depth, "if x:")
            for action in sub.actions:
                self._action(action, target, inner, depth + 1)
        if sub.descend:
            line(depth, f"{self.walker(sub, inner)}(c, {target}, here, record)")

    def _action(self, action: _Action, target: str, shape: _Shape, depth: int) -> None:
        out = self.out
        holder = target
        if action.nav:
            self._nav(target, action.nav, "h", depth)
            holder = "h"
        self._fill(self._through(shape, action.nav), action.name)
        value = "x" if action.convert is str else f"{out.const('CONVERT_', action.convert)}(x)"
        name = action.name
        if action.append:
            out.line(depth, f"vs = {_values(holder)}.get({name!r})")
            out.line(depth, "if vs is None:")
            out.line(depth + 1, f"vs = {_values(holder)}[{name!r}] = []")
            out.line(depth, f"add(({holder}.path, {name!r}, len(vs), {self._where()}))")
            out.line(depth, f"vs.append({value})")
        else:
            out.line(depth, f"if {name!r} in {_values(holder)}:")
            out.line(depth + 1, "raise _Fallback")
            out.line(depth, f"{_values(holder)}[{name!r}] = {value}")
            out.line(depth, f"add(({holder}.path, {name!r}, -1, {self._where()}))")

    def _where(self) -> str:
        """The tail of a provenance entry: ``here``, or where, step and element of a leaf."""
        return self.here or f"where, {self.display!r}, c"

    # -- builders ------------------------------------------------------------------------------
    def _builder_source(self, shape: _Shape) -> None:
        out = self.out
        cls = shape.cls
        filled = self.filled.get(cls, {})
        cls_name = out.const("CLASS_", cls)
        out.line(0, "")
        out.line(0, f"def _build_{cls.__name__}(o):")
        out.line(1, "v = o.values")
        for name in shape.required:
            if name not in filled:  # never filled: the walker reports the missing value
                out.line(1, "raise _Fallback")
                return
            out.line(1, f"if {name!r} not in v:")
            out.line(2, "raise _Fallback")
        defaults = out.const("DEFAULTS_", dict(shape.defaults))
        out.line(1, f"d = {{**{defaults}, **v}}" if shape.plain else "d = dict(v)")
        if shape.plain:
            for name, factory in shape.factories.items():
                out.line(1, f"if {name!r} not in v:")
                out.line(2, f"d[{name!r}] = {out.const('FACTORY_', factory)}()")
        for name in filled:
            slot = shape.slots[name]
            if slot.kind == "scalar":
                continue
            out.line(1, f"x = v.get({name!r})")
            out.line(1, "if x is not None:")
            if slot.kind == "scalars":
                out.line(2, f"d[{name!r}] = tuple(x)")
                continue
            if slot.kind == "objects":
                out.line(2, f"d[{name!r}] = tuple([_build_{slot.value.__name__}(e) for e in x])")
            else:
                out.line(2, f"d[{name!r}] = _build_{slot.value.__name__}(x)")
            self.filled.setdefault(slot.value, {})
        if not shape.plain:
            out.line(1, f"return {cls_name}(**d)")
            return
        # The classes have no __post_init__: filling __dict__ makes exactly what __init__ would,
        # without a frozen dataclass's object.__setattr__ per field.
        out.line(1, f"m = _new({cls_name})")
        out.line(1, "_set_state(m, '__dict__', d)")
        out.line(1, "return m")


def _values(holder: str) -> str:
    """The generated expression for an object's values (``o``'s are a local of its walker)."""
    return "ov" if holder == "o" else f"{holder}.values"


def _generate(spec: MappingSpec, root: _Node) -> tuple[str, _GeneratedRun]:
    """The generated translator of a compiled trie: its source, and its ``run`` function."""
    source, env = _Codegen(spec, root).generate()
    filename = f"<mapping {spec.name} {spec.source}>"
    code = compile(source, filename, "exec")
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = dict(env)
    exec(code, namespace)  # our own source, generated from a checked spec
    run: _GeneratedRun = namespace["run"]
    return source, run


# --- checking a message against a spec: what no row names ---------------------------------------
def unmapped(spec: MappingSpec, root: etree._Element, base_path: str = "") -> list[str]:
    """XPaths of elements and attributes in ``root`` that no row carries and none drops.

    Used by tests over every sample and by operators checking a new message variant: a value
    the gateway would silently leave behind is a mapping bug.
    """
    plan = spec.plan
    if plan is None:  # pragma: no cover
        raise _spec_error(spec.path, "", "spec not compiled")
    out: list[str] = []
    _unmapped(root, [plan.root], base_path or f"/{_display(spec, spec.root)}", out, spec)
    return out


def _unmapped(
    element: etree._Element, nodes: list[_Node], xpath: str, out: list[str], spec: MappingSpec
) -> None:
    for name in element.attrib:
        if name.startswith(f"{{{_XSI}}}") or any(name in node.attributes for node in nodes):
            continue
        out.append(f"{xpath}/@{name}")
    counts: dict[str, int] = {}
    for child in element.iterchildren(etree.Element):
        tag = str(child.tag)
        position = counts[tag] = counts.get(tag, 0) + 1
        child_xpath = f"{xpath}/{_display_tag(spec, tag)}[{position}]"
        matched = [
            sub
            for node in nodes
            for predicate, sub in node.children.get(tag, ())
            if _matches(child, predicate)
        ]
        if not matched:
            out.append(child_xpath)
        elif not any(sub.dropped is not None for sub in matched):
            text = (_leaf_text(child) or "").strip()
            if text and not any(sub.actions for sub in matched):
                out.append(child_xpath)
            _unmapped(child, matched, child_xpath, out, spec)


def element_paths(root: etree._Element) -> Iterator[str]:
    """Every element path (local names from below ``root``, no positions) and attribute path."""
    stack: list[tuple[etree._Element, str]] = [(root, "")]
    while stack:
        element, path = stack.pop()
        for name in element.attrib:
            if not name.startswith(f"{{{_XSI}}}"):
                yield f"{path}/@{etree.QName(name).localname}" if path else f"@{name}"
        for child in element.iterchildren(etree.Element):
            local = etree.QName(child).localname
            child_path = f"{path}/{local}" if path else local
            yield child_path
            stack.append((child, child_path))


def read_spec_file(path: Path) -> MappingSpec:
    """Read one spec file (errors name the file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _spec_error(str(path), "", f"cannot read the mapping spec: {exc.strerror}") from None
    return parse_mapping_spec(data, str(path))
