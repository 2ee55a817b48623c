"""Helpers for the conformance tests (no tests here): the project's own gateway started as a
partner's target on loopback, and the paths of the suites and the shared TAR schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aeo_gateways import Gateway, free_port, start_gateway
from lxml import etree

from gateway import testpki

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "conformance"
SHARED_DATA = ROOT.parent / "shared" / "data"
GITB_TR = SHARED_DATA / "gitb" / "gitb_tr.xsd"
TARGET_MAX_ENVELOPE = 256 * 1024  # the self-test target's intake limit (keeps oversize fast)


def gitb_schema() -> etree.XMLSchema:
    """The EU Test Bed's TAR schema from ../shared/data; skip without it (fail on CI)."""
    if not GITB_TR.is_file():
        reason = f"the GITB TAR schema is missing: {GITB_TR} (../shared/data beside the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must have it")
        pytest.skip(reason)
    return etree.XMLSchema(etree.parse(str(GITB_TR)))


def write_target_config(
    path: Path,
    pki: testpki.TestPki,
    own: str,
    partners: tuple[str, ...],
    *,
    clock_skew: int = 300,
    max_age: int = 604800,
    endpoint_of: dict[str, str] | None = None,
    max_envelope: int = TARGET_MAX_ENVELOPE,
) -> Path:
    """A gateway of ``own`` trusting ``partners``, with both listeners on free loopback ports."""
    blocks = []
    for partner in partners:
        endpoint = (endpoint_of or {}).get(partner, "127.0.0.1:9")
        binding = "xml" if endpoint.startswith("https://") else "grpc"
        blocks.append(
            f"""[[partners]]
administration = "{partner}"
binding = "{binding}"
endpoint = "{endpoint}"
ca = "{pki.path(partner, "ca")}"
crl = "{pki.path(partner, "crl")}"
"""
        )
    path.write_text(
        f"""{pki.gateway_table(own)}

[store]
url = "sqlite:///{own.lower()}-target.db"

[listen]
grpc = "127.0.0.1:{free_port()}"
xml = "127.0.0.1:{free_port()}"

[intake]
max_envelope_bytes = {max_envelope}
clock_skew_seconds = {clock_skew}
max_age_seconds = {max_age}

"""
        + "\n".join(blocks)
    )
    return path


def start_target(
    base: Path,
    pki: testpki.TestPki,
    own: str,
    *,
    clock_skew: int = 300,
    max_age: int = 604800,
    max_envelope: int = TARGET_MAX_ENVELOPE,
) -> Gateway:
    """The project's own gateway playing ``own``: trusts EU (the tester) and a third partner."""
    third = "US" if own == "JP" else "JP"  # as runner.alternates_from_pki chooses
    base.mkdir(parents=True, exist_ok=True)
    config = write_target_config(
        base / f"{own.lower()}-target.toml",
        pki,
        own,
        ("EU", third),
        clock_skew=clock_skew,
        max_age=max_age,
        max_envelope=max_envelope,
    )
    return start_gateway(config)


def grpc_target(gateway: Gateway) -> str:
    assert gateway.config.listen.grpc is not None
    return f"grpc://127.0.0.1:{gateway.config.listen.grpc[1]}"


def xml_target(gateway: Gateway) -> str:
    assert gateway.config.listen.xml is not None
    return f"https://127.0.0.1:{gateway.config.listen.xml[1]}/gnc/v1/envelopes"
