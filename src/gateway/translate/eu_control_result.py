"""A UB2 control result for the EU side, as a WCO DEC-DMS Response notification. Pure, no I/O.

EU declaration systems already tell declarants what a control found with a WCO DM 3.6 DMS
*Response* (``urn:wco:datamodel:WCO:RES-DMS:2``, WCO_RES_2_DMS.xsd): function code ``07``
(DMSRES, "results of a customs control") names the declaration by its functional reference and
reports findings as additional information with pointers into the declaration. A partner's
control result fits that shape, so `to_dms_notification` produces one that validates against
the official schema (tested against ../shared/data when present), rather than a format of ours.

Mapping (WCO IDs in brackets):

==========================  ==================================================================
ControlResult               Response
==========================  ==================================================================
(the message)               FunctionCode ``07`` (017)
reference                   FunctionalReferenceID (D026)
controlled_at               IssueDateTime/DateTimeString formatCode 304 ``YYYYMMDDHHMMSSZ``
                            (D029)
transaction_reference       Declaration/FunctionalReferenceID (D026): the LRN it concerns
controlling_administration  AdditionalInformation: StatementTypeCode ``ADM``, StatementCode
transaction_message_id      AdditionalInformation ``TMI``, StatementDescription (225)
office                      AdditionalInformation ``OFF``, StatementCode
outcome                     AdditionalInformation ``OUT``, StatementCode ``SATISFACTORY``,
                            ``DISCREPANCIES`` or ``NOT_CONTROLLED`` (an..17 cannot hold
                            DISCREPANCIES_FOUND)
control_types (each)        AdditionalInformation ``CTY``, StatementCode = the type
seals (each)                AdditionalInformation ``SEL``, StatementCode ``INTACT``/``BROKEN``,
                            StatementDescription "seal S1 on container C", Pointer 44B/165
discrepancies (each)        AdditionalInformation ``DIS``, StatementCode = the kind,
                            StatementDescription = description, Pointers 42A > 67A > 68A
                            (SequenceNumeric = goods item) with TagID = the WCO ID of the
                            contradicted element (126 gross mass, 145 commodity code, ...);
                            declared and found values follow as ``DDV`` / ``DFV`` statements
                            with the same pointers (each an..512)
remarks                     AdditionalInformation ``REM``, split into an..512 pieces in order
==========================  ==================================================================

The statement type codes (ADM, TMI, OFF, OUT, CTY, SEL, DIS, DDV, DFV, REM) are this gateway's:
the WCO DM leaves StatementTypeCode lists to each administration and has no code list for
control results. What is lost: only the sub-second part of ``controlled_at`` (format 304 has
whole seconds). Everything else is carried, as codes where the schema has a code element and
as text where it does not.
"""

from __future__ import annotations

from lxml import etree

from gateway.model.control_result import ControlOutcome, ControlResult, DiscrepancyKind

__all__ = ["FUNCTION_CODE", "NAMESPACE", "to_dms_notification"]

NAMESPACE = "urn:wco:datamodel:WCO:RES-DMS:2"
FUNCTION_CODE = "07"  # DMSRES: results of a customs control
_NS = f"{{{NAMESPACE}}}"
DS_NAMESPACE = "urn:wco:datamodel:WCO:Response_DS:DMS:2"  # DateTimeString is declared there
_TEXT_MAX = 512  # an..512: StatementDescription (225)
_OUTCOME_CODES = {
    ControlOutcome.SATISFACTORY: "SATISFACTORY",
    ControlOutcome.DISCREPANCIES_FOUND: "DISCREPANCIES",
    ControlOutcome.NOT_CONTROLLED: "NOT_CONTROLLED",
}
# The WCO ID (TagID) of the declaration element a discrepancy contradicts, at item level and at
# consignment level; None where no single element is meant (quantity, party, other).
_TAGS: dict[DiscrepancyKind, tuple[str | None, str | None]] = {
    DiscrepancyKind.DESCRIPTION: ("137", "137"),
    DiscrepancyKind.COMMODITY_CODE: ("145", "145"),
    DiscrepancyKind.QUANTITY: ("130", None),
    DiscrepancyKind.GROSS_MASS: ("126", "131"),
    DiscrepancyKind.PACKAGES: ("144", "146"),
    DiscrepancyKind.CONTAINER: ("159", "159"),
    DiscrepancyKind.SEAL: ("165", "165"),
    DiscrepancyKind.PARTY: (None, None),
    DiscrepancyKind.OTHER: (None, None),
}

_Pointer = tuple[int | None, str, str | None]  # SequenceNumeric, DocumentSectionCode, TagID


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _NS + name)
    if text is not None:
        element.text = text
    return element


def _statement(
    response: etree._Element,
    type_code: str,
    *,
    code: str | None = None,
    description: str | None = None,
    pointers: tuple[_Pointer, ...] = (),
) -> None:
    info = _sub(response, "AdditionalInformation")
    if code is not None:
        _sub(info, "StatementCode", code)
    if description is not None:
        _sub(info, "StatementDescription", description)
    _sub(info, "StatementTypeCode", type_code)
    for sequence, section, tag in pointers:
        pointer = _sub(info, "Pointer")
        if sequence is not None:
            _sub(pointer, "SequenceNumeric", str(sequence))
        _sub(pointer, "DocumentSectionCode", section)
        if tag is not None:
            _sub(pointer, "TagID", tag)


def _pieces(text: str) -> list[str]:
    return [text[i : i + _TEXT_MAX] for i in range(0, len(text), _TEXT_MAX)]


def _discrepancy_pointers(kind: DiscrepancyKind, goods_item: int | None) -> tuple[_Pointer, ...]:
    item_tag, consignment_tag = _TAGS[kind]
    if goods_item is None:
        return ((None, "42A", None), (None, "67A", consignment_tag))
    return ((None, "42A", None), (None, "67A", None), (goods_item, "68A", item_tag))


def to_dms_notification(result: ControlResult) -> bytes:
    """The control result as a DMS Response (function code 07), UTF-8 XML bytes."""
    response = etree.Element(_NS + "Response", nsmap={None: NAMESPACE, "ds": DS_NAMESPACE})
    _sub(response, "FunctionCode", FUNCTION_CODE)
    _sub(response, "FunctionalReferenceID", result.reference)
    issued = _sub(response, "IssueDateTime")
    stamp = etree.SubElement(issued, f"{{{DS_NAMESPACE}}}DateTimeString")
    stamp.text = result.controlled_at.strftime("%Y%m%d%H%M%SZ")
    stamp.set("formatCode", "304")

    _statement(response, "ADM", code=result.controlling_administration.value)
    if result.transaction_message_id is not None:
        _statement(response, "TMI", description=result.transaction_message_id)
    if result.office is not None:
        _statement(response, "OFF", code=result.office)
    _statement(response, "OUT", code=_OUTCOME_CODES[result.outcome])
    for control_type in result.control_types:
        _statement(response, "CTY", code=control_type.value)
    for seal in result.seals:
        where = f" on container {seal.container}" if seal.container else ""
        _statement(
            response,
            "SEL",
            code="INTACT" if seal.intact else "BROKEN",
            description=f"seal {seal.seal_id}{where}",
            pointers=((None, "44B", "165"),),
        )
    for d in result.discrepancies:
        pointers = _discrepancy_pointers(d.kind, d.goods_item)
        _statement(response, "DIS", code=d.kind.value, description=d.description, pointers=pointers)
        if d.declared is not None:
            _statement(response, "DDV", description=d.declared, pointers=pointers)
        if d.found is not None:
            _statement(response, "DFV", description=d.found, pointers=pointers)
    for piece in _pieces(result.remarks or ""):
        _statement(response, "REM", description=piece)

    declaration = _sub(response, "Declaration")
    _sub(declaration, "FunctionalReferenceID", result.transaction_reference)
    return bytes(etree.tostring(response, xml_declaration=True, encoding="UTF-8"))
