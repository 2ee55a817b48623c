"""Intake rules that depend on the sender: clock skew and the duplicate window per partner."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.envelope import protobuf_binding
from gateway.envelope.intake import IntakeLimits, check_envelope
from gateway.envelope.opened import Binding, new_header
from gateway.errors import GatewayError
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import utc_now
from gateway.testpki import TestPki
from gateway.trust.loading import trust_from_pki_files

EU, US, CN = Administration.EU, Administration.US, Administration.CN


def _trust(pki: TestPki):  # type: ignore[no-untyped-def]
    files = {
        admin: {name: (pki.root / admin / name).read_bytes() for name in ("ca.pem", "crl.pem")}
        for admin in ("EU", "US", "CN")
    }
    return trust_from_pki_files(files)


def _envelope(pki: TestPki, sender: Administration, created_offset: timedelta) -> bytes:
    payload = b"<Ping/>"
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="PING",
        sender=sender,
        receiver=EU,
        payload_content_type="application/xml",
        created_at=utc_now() + created_offset,
    )
    return protobuf_binding.seal(header, payload, pki.identity(sender.value))


def test_clock_skew_and_duplicate_window_follow_the_sender(pki: TestPki) -> None:
    trust = _trust(pki)
    limits = IntakeLimits(
        clock_skew_by_sender={US: timedelta(seconds=10)},
        max_age_by_sender={US: timedelta(hours=1)},
    )
    now = utc_now()

    def check(sender: Administration, offset: timedelta) -> None:
        raw = _envelope(pki, sender, offset)
        check_envelope(raw, Binding.PROTOBUF, trust=trust, own=EU, now=now, limits=limits)

    check(CN, timedelta(minutes=1))  # default tolerance: 5 minutes
    check(CN, -timedelta(days=2))  # default max age: 7 days
    with pytest.raises(GatewayError) as ahead:
        check(US, timedelta(minutes=1))
    assert ahead.value.code == "ENV_CLOCK_SKEW" and "US" in ahead.value.message
    with pytest.raises(GatewayError) as old:
        check(US, -timedelta(hours=2))
    assert old.value.code == "ENV_CLOCK_SKEW" and "duplicate window" in old.value.message
    check(US, timedelta(seconds=5))
