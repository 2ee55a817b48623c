"""UB2 canonical consignment record: one shape for CC315A, CC313A and WCO DEC-DMS declarations.

Pure values (no I/O). Translators (translate/ub2_*.py, driven by the mapping specs in
adapters/mappings/) build a `Consignment` from an EU message; the UB2 bindings
(translate/ub2_exchange.py) carry it to the partner and back. The record carries values as the
source declared them: code lists (countries, container numbers, package kinds, ...) are checked
separately (model/codelists.py), so a schema-valid message always translates and every doubtful
value is *reported* with its source path, never silently dropped or "corrected".

`source_paths` maps a field path of the record (``goods_items[0].containers[1]``) to the XPath
of the source element it came from, so an error found on the record points at the EU message.
It is provenance, not data: it takes no part in equality and does not travel to the partner.

The WCO ID of each field, as the WCO DM 3.6 DEC-DMS schema annotations give it (several where the
role selects the WCO class), is in translate/schemas/ub2-transaction.xsd, the one place it is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "Address",
    "Consignment",
    "CustomsOffice",
    "Document",
    "GoodsItem",
    "OfficeRole",
    "Package",
    "Party",
    "PartyRole",
    "SourceMessage",
    "TransportMeans",
    "TransportRole",
]

_NO_PATHS: Mapping[str, str] = MappingProxyType({})


class SourceMessage(StrEnum):
    """The EU message a consignment record was translated from."""

    CC315A = "CC315A"  # ICS entry summary declaration
    CC313A = "CC313A"  # ICS entry summary declaration amendment
    DEC_DMS_EXPORT = "DEC-DMS-EX"  # UCC export declaration in WCO DM XML
    DEC_DMS_IMPORT = "DEC-DMS-IM"  # UCC import declaration in WCO DM XML


class PartyRole(StrEnum):
    CONSIGNOR = "CONSIGNOR"
    CONSIGNEE = "CONSIGNEE"
    NOTIFY_PARTY = "NOTIFY_PARTY"
    CARRIER = "CARRIER"
    DECLARANT = "DECLARANT"
    REPRESENTATIVE = "REPRESENTATIVE"  # the agent in WCO DM terms
    EXPORTER = "EXPORTER"
    IMPORTER = "IMPORTER"
    PERSON_LODGING = "PERSON_LODGING"  # ENS lodger (submitter)
    BUYER = "BUYER"
    SELLER = "SELLER"
    AUTHORISATION_HOLDER = "AUTHORISATION_HOLDER"
    AEO_MUTUAL_RECOGNITION = "AEO_MUTUAL_RECOGNITION"  # role code as category


class TransportRole(StrEnum):
    BORDER = "BORDER"  # active means crossing the border: mode, id, nationality
    DEPARTURE = "DEPARTURE"  # means at departure/arrival: mode, id
    ARRIVAL = "ARRIVAL"
    ITEM = "ITEM"  # means named on one goods item (ENS)


class OfficeRole(StrEnum):
    FIRST_ENTRY = "FIRST_ENTRY"  # ENS office of first entry
    SUBSEQUENT_ENTRY = "SUBSEQUENT_ENTRY"
    LODGEMENT = "LODGEMENT"  # office of lodgement
    EXIT = "EXIT"  # export office of exit
    EXPORT = "EXPORT"  # office where the export declaration is lodged
    SUPERVISING = "SUPERVISING"
    PRESENTATION = "PRESENTATION"


@dataclass(frozen=True)
class Address:
    street: str | None = None  # street and number
    city: str | None = None
    postcode: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2 as declared


@dataclass(frozen=True)
class Party:
    role: PartyRole
    name: str | None = None
    identifier: str | None = None  # EORI, TIN, ...
    address: Address | None = None
    category: str | None = None  # e.g. authorisation type, representative status


@dataclass(frozen=True)
class Package:
    kind: str | None = None  # UN/ECE Rec 21 package type
    quantity: int | None = None  # number of packages
    pieces: int | None = None  # number of pieces (ENS)
    marks: str | None = None  # shipping marks


@dataclass(frozen=True)
class Document:
    type_code: str | None = None  # document type
    reference: str | None = None  # reference number
    category: str | None = None  # DEC-DMS additional document category
    name: str | None = None
    line: int | None = None  # line number in a previous document (DEC-DMS)


@dataclass(frozen=True)
class TransportMeans:
    role: TransportRole
    mode: str | None = None  # UN/ECE Recommendation 19
    identifier: str | None = None
    identification_type: str | None = None
    nationality: str | None = None  # ISO 3166-1 alpha-2
    conveyance_reference: str | None = None  # journey / conveyance reference


@dataclass(frozen=True)
class CustomsOffice:
    role: OfficeRole
    identifier: str  # COL reference number, e.g. GB000142


@dataclass(frozen=True)
class GoodsItem:
    sequence: int  # goods item number
    description: str | None = None
    commodity_code: str | None = None  # HS/CN/TARIC as declared
    gross_mass: Decimal | None = None  # kg
    net_mass: Decimal | None = None  # kg
    packages: tuple[Package, ...] = ()
    containers: tuple[str, ...] = ()  # equipment identification (ISO 6346 where a container)
    dangerous_goods_code: str | None = None  # UN dangerous goods number
    documents: tuple[Document, ...] = ()
    parties: tuple[Party, ...] = ()  # parties named on this item only
    transports: tuple[TransportMeans, ...] = ()
    place_of_loading: str | None = None  # UN/LOCODE or free text as declared
    place_of_unloading: str | None = None
    origin_country: str | None = None  # DEC-DMS: non-preferential origin, DE 5/15
    procedure: str | None = None  # DEC-DMS requested + previous procedure (G...)
    statistical_value: Decimal | None = None
    additional_codes: tuple[str, ...] = ()  # special mentions / additional information codes
    commercial_reference: str | None = None  # ENS item commercial reference (UCR of the item)
    transport_charges_payment: str | None = None  # method of payment for transport charges
    previous_documents: tuple[Document, ...] = ()  # DEC-DMS previous documents
    previous_procedure: str | None = None  # previous procedure (with `procedure`: DE 1/10)
    additional_procedures: tuple[str, ...] = ()  # additional procedure codes (DE 1/11)
    statistical_value_currency: str | None = None  # currency of `statistical_value`
    export_country: str | None = None  # on the item (DEC-DMS import)
    destination_country: str | None = None  # on the item (DEC-DMS export)
    preferential_origin_country: str | None = None  # of the preferential origin (DE 5/16)


@dataclass(frozen=True)
class Consignment:
    """One transaction: what the partner needs to assess the consignment before arrival."""

    source: SourceMessage
    reference: str  # LRN / functional reference; the transaction's key on both sides
    mrn: str | None = None  # movement reference number, when the EU side has issued one
    declaration_type: str | None = None  # type code (EX, IM, ...; ENS: entry summary)
    function_code: str | None = None  # 9 original, 13 request, ... / ENS amendment
    declared_at: datetime | None = None  # date/time the declarant gave
    specific_circumstance: str | None = None  # ENS specific circumstance indicator
    commercial_reference: str | None = None  # UCR / commercial reference
    transport_document: str | None = None  # e.g. bill of lading
    parties: tuple[Party, ...] = ()
    transports: tuple[TransportMeans, ...] = ()
    offices: tuple[CustomsOffice, ...] = ()
    place_of_loading: str | None = None
    place_of_unloading: str | None = None
    goods_location: str | None = None
    export_country: str | None = None  # country of dispatch/export
    destination_country: str | None = None
    routing_countries: tuple[str, ...] = ()  # itinerary
    seals: tuple[str, ...] = ()  # seal numbers
    total_items: int | None = None  # as declared
    total_packages: int | None = None  # as declared
    total_gross_mass: Decimal | None = None  # as declared
    invoice_amount: Decimal | None = None
    invoice_currency: str | None = None
    goods_items: tuple[GoodsItem, ...] = ()
    # Added for the mapping specs (adapters/mappings): values EU messages carry that had no home.
    declaration_place: str | None = None  # ENS place of declaration / of amendment (as declared)
    accepted_at: datetime | None = None  # acceptance date (DEC-DMS)
    expected_arrival: datetime | None = None  # ENS expected date of arrival at first entry
    transport_charges_payment: str | None = None  # method of payment for transport charges
    containers: tuple[str, ...] = ()  # equipment named for the whole consignment (DEC-DMS)
    documents: tuple[Document, ...] = ()  # declaration-level additional documents
    previous_documents: tuple[Document, ...] = ()  # declaration-level previous documents
    additional_codes: tuple[str, ...] = ()  # declaration-level additional information codes
    source_paths: Mapping[str, str] = field(
        default_factory=lambda: _NO_PATHS, compare=False, repr=False
    )

    def source_path(self, record_path: str) -> str:
        """The XPath in the source message of a record field, or the field path if unknown."""
        return self.source_paths.get(record_path, record_path)

    # Key figures: what faithfulness tests compare and operators see in `gncgw translate`.
    @property
    def item_count(self) -> int:
        return len(self.goods_items)

    @property
    def package_count(self) -> int:
        return sum(p.quantity or 0 for item in self.goods_items for p in item.packages)

    @property
    def item_gross_mass(self) -> Decimal:
        return sum((item.gross_mass or Decimal(0) for item in self.goods_items), Decimal(0))

    @property
    def container_ids(self) -> tuple[str, ...]:
        seen: dict[str, None] = dict.fromkeys(self.containers)
        for item in self.goods_items:
            for container in item.containers:
                seen.setdefault(container, None)
        return tuple(seen)
