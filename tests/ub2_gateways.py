"""UB2 test material: consignment records built directly, and real gateways on loopback.

Gateways (``eu_cn``): EU links the shipped CN profile (adapters/partners/cn.toml, gRPC), the MD
profile (md.toml, XML; MD is configured but never reached) and US without a profile; EUX is a
second EU gateway reaching CN over XML/HTTPS with a copy of cn.toml whose transport says xml; CN
links no profile (profiles describe the EU's partners). Each gateway has real SQLite, real gRPC
and HTTPS listeners with mutual TLS, and a delivery worker driven by the test (``deliver``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import loopback_gateways as loopback
from loopback_gateways import PartnerEntry, free_port, write_config

from gateway import testpki
from gateway.model.codes import Administration
from gateway.model.consignment import (
    Address,
    Consignment,
    CustomsOffice,
    GoodsItem,
    OfficeRole,
    Package,
    Party,
    PartyRole,
    SourceMessage,
    TransportMeans,
    TransportRole,
)
from gateway.partners.profile import PartnerProfile, load_profile
from gateway.services.transactions import TransactionService, service_for

ROOT = Path(__file__).resolve().parent.parent
PARTNERS = ROOT / "adapters" / "partners"
EU, CN, MD, UA, US = (
    Administration.EU, Administration.CN, Administration.MD, Administration.UA, Administration.US,
)  # fmt: skip

# Operators of the shipped CN lane Rotterdam-Shanghai (cn.toml).
NL_EXPORTER = "NL810000001"
CN_IMPORTER = "91310115MA1K3YJ20B"
# Where the test consignments' values came from in a (fictitious) DEC-DMS export declaration.
SOURCE_PATHS = {
    "place_of_loading": "/Declaration/Consignment/LoadingLocation/ID",
    "place_of_unloading": "/Declaration/Consignment/UnloadingLocation/ID",
    "parties[0].identifier": "/Declaration/Exporter/ID",
    "parties[1].identifier": "/Declaration/Consignment/Consignee/ID",
    "parties[1].address.country": "/Declaration/Consignment/Consignee/Address/CountryCode",
    "goods_items[0].containers[0]": (
        "/Declaration/GoodsShipment/Consignment/TransportEquipment[1]/ID"
    ),
}


def profile(code: str) -> PartnerProfile:
    path = PARTNERS / f"{code.lower()}.toml"
    return load_profile(path.read_text(encoding="utf-8"), path.name)


def sstl_consignment(
    reference: str = "NL25EX0000000001",
    *,
    loading: str = "NLRTM",
    unloading: str = "CNSHA",
    exporter: str = NL_EXPORTER,
    consignee: str = CN_IMPORTER,
    consignee_country: str = "CN",
    container: str = "CSQU3054383",
) -> Consignment:
    """An EU export on the Rotterdam-Shanghai lane: every coded value valid."""
    return Consignment(
        source=SourceMessage.DEC_DMS_EXPORT,
        reference=reference,
        mrn="25NLEX00000000012",
        declaration_type="EX",
        function_code="9",
        transport_document="MAEU250000123",
        parties=(
            Party(
                PartyRole.EXPORTER,
                "Van Dijk Machinery BV",
                exporter,
                Address("Waalhaven 1", "Rotterdam", "3089 JH", "NL"),
            ),
            Party(
                PartyRole.CONSIGNEE,
                "Shanghai Pudong Import Co Ltd",
                consignee,
                Address("88 Century Avenue", "Shanghai", "200120", consignee_country),
            ),
        ),
        transports=(
            TransportMeans(TransportRole.BORDER, mode="1", identifier="9811000", nationality="DK"),
        ),
        offices=(CustomsOffice(OfficeRole.EXPORT, "NL000396"),),
        place_of_loading=loading,
        place_of_unloading=unloading,
        export_country="NL",
        destination_country="CN",
        total_items=1,
        total_packages=12,
        total_gross_mass=Decimal("8450.5"),
        goods_items=(
            GoodsItem(
                sequence=1,
                description="Hydraulic presses for metal working",
                commodity_code="846230",
                gross_mass=Decimal("8450.5"),
                net_mass=Decimal("8100"),
                packages=(Package(kind="CS", quantity=12, marks="VDM-SH-2025"),),
                containers=(container,),
                origin_country="NL",
            ),
        ),
        source_paths=SOURCE_PATHS,
    )


def tir_consignment(
    reference: str = "RO25EX0000000007",
    *,
    exit_office: str = "ROVS0800",
    entry_office: str | None = "MD100110",
    holder: str = "MDA/001/000456",
) -> Consignment:
    """An EU export leaving by road for Moldova under a TIR carnet (Albita-Leuseni)."""
    offices = [CustomsOffice(OfficeRole.EXIT, exit_office)]
    if entry_office is not None:
        offices.append(CustomsOffice(OfficeRole.FIRST_ENTRY, entry_office))
    return Consignment(
        source=SourceMessage.DEC_DMS_EXPORT,
        reference=reference,
        declaration_type="EX",
        parties=(
            Party(PartyRole.EXPORTER, "Agro Vaslui SRL", "RO12345678"),
            Party(PartyRole.CONSIGNEE, "Agrofirma Chisinau SRL", "1003600012345"),
            Party(PartyRole.CARRIER, "Trans-Prut SRL", holder),
        ),
        transports=(TransportMeans(TransportRole.BORDER, mode="3", identifier="CHS123"),),
        offices=tuple(offices),
        export_country="RO",
        destination_country="MD",
        goods_items=(
            GoodsItem(
                sequence=1,
                description="Sunflower seed oil, refined",
                commodity_code="151219",
                gross_mass=Decimal("20000"),
                packages=(Package(kind="DR", quantity=100),),
            ),
        ),
    )


def with_party(c: Consignment, index: int, **changes: object) -> Consignment:
    parties = list(c.parties)
    parties[index] = replace(parties[index], **changes)  # type: ignore[arg-type]
    return replace(c, parties=tuple(parties))


# --- real gateways ------------------------------------------------------------------------------
Gateway = loopback.Gateway[TransactionService]


def start_gateway(config_path: Path) -> Gateway:
    return loopback.start_gateway(config_path, service_for, outbox_of=lambda s: s.outbox)


def _profile(path: Path) -> dict[str, Path]:
    return {"profile": path}


def xml_profile(base: Path, endpoint: str) -> Path:
    """The shipped CN profile with its transport switched to the XML binding."""
    text = (PARTNERS / "cn.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^binding = "grpc"$', 'binding = "xml"', text)
    text = re.sub(r'(?m)^endpoint = ".*"$', f'endpoint = "{endpoint}"', text)
    path = base / "cn.toml"
    path.write_text(text, encoding="utf-8")
    return path


def eu_cn(base: Path, pki: testpki.TestPki) -> dict[str, Gateway]:
    """EU (CN over gRPC), EUX (CN over XML) and CN, keyed "EU", "EUX", "CN"."""
    ports = {name: (free_port(), free_port()) for name in ("EU", "EUX", "CN")}

    def grpc(name: str) -> str:
        return f"127.0.0.1:{ports[name][0]}"

    def xml(name: str) -> str:
        return f"https://127.0.0.1:{ports[name][1]}/gnc/v1/envelopes"

    profiles = base / "xml-profiles"
    profiles.mkdir()
    configs = {
        "EU": write_config(base / "eu.toml", pki, "EU", ports["EU"], [
            PartnerEntry("CN", "grpc", grpc("CN"), _profile(PARTNERS / "cn.toml")),
            PartnerEntry("MD", "xml", f"https://127.0.0.1:{free_port()}/gnc/v1/envelopes",
                         _profile(PARTNERS / "md.toml")),
            PartnerEntry("US", "grpc", f"127.0.0.1:{free_port()}"),
        ]),
        "EUX": write_config(base / "eux.toml", pki, "EU", ports["EUX"], [
            PartnerEntry("CN", "xml", xml("CN"), _profile(xml_profile(profiles, xml("CN")))),
        ]),
        "CN": write_config(base / "cn.toml", pki, "CN", ports["CN"], [
            PartnerEntry("EU", "grpc", grpc("EU")),
        ]),
    }  # fmt: skip
    return loopback.start_all(configs, start_gateway)
