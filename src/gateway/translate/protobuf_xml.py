"""Reading a UB payload's XML form into its protobuf message, by the message's own descriptor.

The UB2 and UB3 XML forms are the protobuf messages written as elements (one per field, in
field order, names from the field names); their XSDs are checked before this runs, so an element
the descriptor does not know is a bug in an XSD or here, not bad input. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from lxml import etree

__all__ = ["read_into"]

_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
    }
)


@cache
def _fields_by_element(
    descriptor: Any, namespace: str, element_name: Callable[[Any], str]
) -> dict[str, FieldDescriptor]:
    return {f"{{{namespace}}}{element_name(f)}": f for f in descriptor.fields}


def read_into(
    element: etree._Element,
    msg: Any,
    *,
    namespace: str,
    element_name: Callable[[Any], str],
    malformed: Callable[[str, str], Exception],
) -> None:
    """Fill `msg` from the children of `element` (recursively for message fields)."""
    fields = _fields_by_element(msg.DESCRIPTOR, namespace, element_name)
    for child in element:
        field = fields.get(str(child.tag))
        if field is None:  # the XSD has been checked, so this is a bug in it or here
            raise malformed(f"unexpected element {child.tag!s}", f"line {child.sourceline}")
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            target = (
                getattr(msg, field.name).add() if field.is_repeated else getattr(msg, field.name)
            )
            target.SetInParent()
            read_into(
                child, target, namespace=namespace, element_name=element_name, malformed=malformed
            )
            continue
        text = child.text or ""
        value: Any
        if field.type == FieldDescriptor.TYPE_BOOL:
            value = text.strip() in ("true", "1")
        elif field.type in _INTEGERS:
            value = int(text)
        else:
            value = text
        if field.is_repeated:
            getattr(msg, field.name).append(value)
        else:
            setattr(msg, field.name, value)
