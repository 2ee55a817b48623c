"""Elements a mapping spec drops only while dropping them keeps the record's meaning. No I/O.

A mass's ``unitCode`` is dropped because UB2 masses are kilograms: a declaration in tonnes would
arrive as the same number of kilograms. An itinerary's ``SequenceNumeric`` is dropped because
the record keeps document order: numbered against that order, the route would arrive reversed.
Such ``[[dropped]]`` rows say so (``only``, ``in_order``; see translate.mapping), and a message
that breaks the condition is refused at the element (UB2_VALUE_INVALID) instead of being
translated into something it does not say.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from lxml import etree

from gateway.errors import UB2_VALUE_INVALID, TransactionError
from gateway.translate.eu_messages import element_path
from gateway.translate.mapping import DroppedRow, MappingSpec

__all__ = ["check_dropped"]


def check_dropped(spec: MappingSpec, root: etree._Element) -> None:
    """Raise UB2_VALUE_INVALID at the first dropped element whose condition the message breaks."""
    for row in spec.dropped:
        if row.only:
            _check_only(spec, row, root)
        elif row.in_order:
            _check_in_order(spec, row, root)


def _check_only(spec: MappingSpec, row: DroppedRow, root: etree._Element) -> None:
    for value, element, attribute in _values(spec, row.source, root):
        if value.strip() not in row.only:
            where = element_path(element) + (f"/@{attribute}" if attribute else "")
            raise TransactionError(
                f"{value!r} is not {' or '.join(row.only)}: it cannot be dropped here "
                f"({row.reason}), so the record would not say what the message says",
                code=UB2_VALUE_INVALID,
                location=where,
            )


def _check_in_order(spec: MappingSpec, row: DroppedRow, root: etree._Element) -> None:
    """The order numbers of each run of repetitions (siblings) must rise in document order."""
    last: dict[object, int] = {}
    for value, element, _ in _values(spec, row.source, root):
        holder = element.getparent()
        group = holder.getparent() if holder is not None else None
        try:
            number = int(value.strip())
        except ValueError:
            continue  # the schema types it; a translation refuses what does not convert
        before = last.get(group)
        if before is not None and number <= before:
            raise TransactionError(
                f"order number {number} follows {before}: the record keeps the repetitions in "
                f"document order ({row.reason}), so the declared order would be lost",
                code=UB2_VALUE_INVALID,
                location=element_path(element),
            )
        last[group] = number


def _values(
    spec: MappingSpec, source: str, root: etree._Element
) -> Iterator[tuple[str, etree._Element, str]]:
    """(value, element, attribute name or "") for every occurrence of `source` under root."""
    path, _, attribute = source.partition("@")
    for element in _xpath(spec, path.rstrip("/"))(root):
        if not isinstance(element, etree._Element):
            continue
        if attribute:
            value = element.get(attribute)
            if value is not None:
                yield value, element, attribute
        else:
            yield element.text or "", element, ""


@lru_cache(maxsize=256)
def _xpath(spec: MappingSpec, path: str) -> etree.XPath:
    """The row's path from the message element, its steps in the spec's namespace."""
    prefix, namespace = spec.prefix, spec.namespace
    steps = [s if ":" in s or not namespace else f"{prefix}:{s}" for s in path.split("/")]
    namespaces = dict(spec.namespaces)
    if namespace:
        namespaces[prefix] = namespace
    return etree.XPath("/".join(steps), namespaces=namespaces or None)
