"""The UB1 online AEO query in the tamper-evident message log, on real gateways on loopback
(gRPC and XML): the answering side logs one RECEIVED row before the signed answer leaves (and
gives no answer when it cannot), the asking side one SENT row; digests are those of the bytes
on the wire, receipts the exact signed answers, and both logs verify."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aeo_gateways import (
    EU,
    US,
    US_PROFILE,
    Gateway,
    mapping_spec,
    running_eu_and_us,
    start_gateway,
    write_config,
)
from loopback_gateways import free_port
from store_engines import fresh_postgres_database

from gateway import testpki
from gateway.cli import main
from gateway.envelope.intake import DEFAULT_LIMITS, open_any
from gateway.envelope.opened import Binding
from gateway.errors import (
    AEO_NO_AGREEMENT,
    AEO_TYPE_NOT_ELIGIBLE,
    AeoError,
    DeliveryError,
    GatewayError,
    TransportError,
)
from gateway.model.aeo import AeoType
from gateway.partners.profile import eligible_for
from gateway.services.aeo import ask_partner, build_query, decode_payload
from gateway.store.database import open_database
from gateway.store.log_chain import verify_log
from gateway.store.message_log import Direction, LogEntry, LogOutcome, SqliteMessageLog
from gateway.translate.aeo_exchange import QueryRefused
from gateway.translate.sample_aeo import generate_eos_export
from gateway.transport import inquiry


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("query-log-pki"), ("EU", "US"))


@pytest.fixture(params=["grpc", "xml"])
def pair(
    request: pytest.FixtureRequest, module_pki: testpki.TestPki, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    with running_eu_and_us(tmp_path, module_pki, binding=request.param) as (eu, us):
        eu.service.import_export(generate_eos_export(60, 9, "xml", spec=mapping_spec()))
        yield eu, us


@dataclass
class Wire:
    """What the asking client put on the wire and got back (before any `alter`)."""

    sent: list[bytes] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)
    alter: Callable[[bytes], bytes] | None = None  # a man in the middle changing the answer


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    """Taps the inquiry client that ask_partner opens (it imports it at call time)."""
    real = inquiry.open_inquiry_client
    tap = Wire()

    class Tapped:
        def __init__(self, client: inquiry.InquiryClient) -> None:
            self.client = client

        def ask(self, raw: bytes) -> bytes:
            tap.sent.append(raw)
            answer = self.client.ask(raw)
            tap.answers.append(answer)
            return tap.alter(answer) if tap.alter is not None else answer

        def close(self) -> None:
            self.client.close()

    def tapping(*args: Any, **kwargs: Any) -> inquiry.InquiryClient:
        return Tapped(real(*args, **kwargs))

    monkeypatch.setattr(inquiry, "open_inquiry_client", tapping)
    return tap


def _log(gateway: Gateway) -> SqliteMessageLog:
    assert gateway.node.message_log is not None
    return gateway.node.message_log


def _rows(gateway: Gateway) -> list[LogEntry]:
    return _log(gateway).entries()


def _binding(gateway: Gateway) -> Binding:
    return Binding.PROTOBUF if gateway.config.partners[0].binding.value == "grpc" else Binding.XML


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _verifies(gateway: Gateway) -> int:
    """verify_log over the gateway's log (checkpoints signed by its own key); rows verified."""
    own = gateway.config.signing_identity.certificate

    def check(administration: str, chain: Any, at: Any) -> None:
        assert administration == gateway.config.administration.value and chain[0] == own

    log = _log(gateway)
    log.checkpoint()
    return verify_log(log, check).entries


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_answered_query_is_one_row_on_each_side(
    pair: tuple[Gateway, Gateway], wire: Wire
) -> None:
    eu, us = pair
    binding = _binding(us)
    profile = eu.service.partner(US).profile
    own = list(eu.store.records(EU))
    aeo = next(r for r in own if eligible_for(profile, r) and r.is_aeo)
    aeoc = next(r for r in own if r.aeo_type is AeoType.AEOC and r.consent)
    # an AEO, someone unknown, and a refusal under the agreement: all three are answers
    identifiers = [aeo.holder_id, "NL000000000000", aeoc.authorisation_number]
    answers = [ask_partner(us.config, EU, i, message_log=_log(us)) for i in identifiers]
    assert answers[0].answer.is_aeo and not answers[1].answer.found
    assert answers[2].answer.refusal_code == AEO_TYPE_NOT_ELIGIBLE

    received, sent = _rows(eu), _rows(us)
    assert len(received) == len(sent) == len(identifiers) == len(wire.sent)
    for verified, raw, answer, at_eu, at_us in zip(
        answers, wire.sent, wire.answers, received, sent, strict=True
    ):
        query_id = verified.header.correlation_id
        assert answer == verified.raw  # the asker got the exact signed bytes
        assert at_eu.direction is Direction.RECEIVED and at_us.direction is Direction.SENT
        assert at_eu.partner == "US" and at_us.partner == "EU"
        for row in (at_eu, at_us):
            assert row.message_id == query_id
            assert (row.utility_block, row.message_type) == ("UB1", "AeoQuery")
            assert row.binding is binding
            assert row.envelope_sha256 == _sha(raw)  # the request as it travelled
            assert row.receipt == answer  # the answer exactly as signed
            assert (row.outcome, row.code) == (LogOutcome.ACCEPTED, "")
    assert _verifies(eu) == _verifies(us) == len(identifiers)


def test_a_refused_query_is_rejected_with_its_code_on_both_sides(
    pair: tuple[Gateway, Gateway], wire: Wire
) -> None:
    eu, us = pair
    # US holds no UB1 agreement for EU: US answers with a signed AeoQueryRefused
    with pytest.raises(AeoError) as caught:
        ask_partner(eu.config, US, "US12345", message_log=_log(eu))
    assert caught.value.code == AEO_NO_AGREEMENT
    (at_us,) = _rows(us)
    (at_eu,) = _rows(eu)
    (raw,), (answer,) = wire.sent, wire.answers
    opened = open_any(answer, _binding(eu), DEFAULT_LIMITS)
    refusal = decode_payload(opened.header, opened.payload, 1 << 20)
    assert isinstance(refusal, QueryRefused) and refusal.code == AEO_NO_AGREEMENT
    assert (at_us.direction, at_us.partner) == (Direction.RECEIVED, "EU")
    assert (at_eu.direction, at_eu.partner) == (Direction.SENT, "US")
    for row in (at_us, at_eu):
        assert row.message_id == opened.header.correlation_id
        assert row.message_type == "AeoQuery"
        assert row.envelope_sha256 == _sha(raw) and row.receipt == answer
        assert (row.outcome, row.code) == (LogOutcome.REJECTED, AEO_NO_AGREEMENT)
    assert _verifies(eu) == _verifies(us) == 1


def test_a_tampered_query_is_logged_rejected(pair: tuple[Gateway, Gateway]) -> None:
    eu, us = pair
    binding = _binding(us)
    header, raw, _ = build_query(us.config.signing_identity, EU, binding, "DE1234")
    tampered = raw.replace(header.message_id.encode(), str(uuid.uuid4()).encode())
    assert tampered != raw
    settings = us.config.partner(EU)
    client = inquiry.open_inquiry_client(binding, settings.endpoint, us.config.client_tls(EU))
    try:
        answer = client.ask(tampered)
    finally:
        client.close()
    opened = open_any(answer, binding, DEFAULT_LIMITS)
    refusal = decode_payload(opened.header, opened.payload, 1 << 20)
    assert isinstance(refusal, QueryRefused) and refusal.code.startswith(("SIG_", "ENV_"))
    (row,) = _rows(eu)
    assert (row.direction, row.partner) == (Direction.RECEIVED, "US")  # the TLS peer
    assert row.message_id == ""  # nothing of an envelope that does not verify is trusted
    assert row.envelope_sha256 == _sha(tampered) and row.receipt == answer
    assert (row.outcome, row.code) == (LogOutcome.REJECTED, refusal.code)
    assert _verifies(eu) == 1


def test_no_answer_is_given_when_the_log_cannot_be_written(
    pair: tuple[Gateway, Gateway], wire: Wire
) -> None:
    eu, us = pair
    binding = _binding(us)
    eu.node.inbox.close()  # the store is down: the log cannot be appended to
    with pytest.raises(TransportError) as caught:
        ask_partner(us.config, EU, "NL000000000000", message_log=_log(us))
    assert wire.answers == [] and len(wire.sent) == 1  # an error came back, not an answer
    assert "DLV_STORE_UNAVAILABLE" in caught.value.message  # gRPC UNAVAILABLE, XML 503
    if binding is Binding.XML:
        assert "503" in caught.value.message
    assert _rows(eu) == []
    (row,) = _rows(us)
    assert (row.direction, row.outcome, row.code) == (
        Direction.SENT,
        LogOutcome.FAILED,
        caught.value.code,
    )
    assert row.receipt is None and row.envelope_sha256 == _sha(wire.sent[0])
    # the responder itself: the store's error, never the signed answer
    _, raw, _ = build_query(us.config.signing_identity, EU, binding, "NL000000000000")
    with pytest.raises(DeliveryError):
        eu.responder.respond(raw, binding, US)


def test_no_answer_when_only_the_log_store_is_down(
    pair: tuple[Gateway, Gateway], tmp_path: Path
) -> None:
    eu, us = pair
    database = open_database(f"sqlite:///{tmp_path / 'log-only.db'}")
    eu.responder.message_log = SqliteMessageLog(database)
    database.close()  # the log's writes raise; the AEO store still reads
    with pytest.raises(TransportError):
        ask_partner(us.config, EU, "NL000000000000", message_log=None)
    assert _rows(eu) == []


def test_the_asker_logs_failed_when_the_answer_does_not_verify(
    pair: tuple[Gateway, Gateway], wire: Wire
) -> None:
    eu, us = pair

    def forge(answer: bytes) -> bytes:  # the correlation id is in the signed header
        header = open_any(answer, _binding(us), DEFAULT_LIMITS).header
        assert header.correlation_id is not None
        return answer.replace(header.correlation_id.encode(), str(uuid.uuid4()).encode())

    wire.alter = forge
    with pytest.raises(GatewayError) as caught:
        ask_partner(us.config, EU, "NL000000000000", message_log=_log(us))
    (sent,) = _rows(us)
    assert (sent.direction, sent.outcome, sent.code) == (
        Direction.SENT,
        LogOutcome.FAILED,
        caught.value.code,
    )
    assert sent.receipt is None and sent.envelope_sha256 == _sha(wire.sent[0])
    (received,) = _rows(eu)  # EU did answer, and says so
    assert received.outcome is LogOutcome.ACCEPTED and received.receipt == wire.answers[0]
    assert _verifies(us) == _verifies(eu) == 1


def test_log_list_and_verify_show_the_query_rows(
    pair: tuple[Gateway, Gateway], capsys: pytest.CaptureFixture[str]
) -> None:
    eu, us = pair
    eu_toml, us_toml = str(eu.config.path), str(us.config.path)
    code, out, err = _run(capsys, "aeo", "query", "--partner", "EU", "NL000000000000",
                          "--config", us_toml)  # fmt: skip
    assert code == 3 and "NOT FOUND" in out, err  # not an AEO: exit 3, as before
    (row,) = _rows(us)
    assert row.direction is Direction.SENT and row.outcome is LogOutcome.ACCEPTED
    for toml, direction in ((us_toml, "sent"), (eu_toml, "received")):
        code, out, _ = _run(capsys, "log", "list", "--config", toml)
        assert code == 0
        (line,) = out.splitlines()
        assert direction in line and row.message_id in line
        assert "UB1/AeoQuery" in line and "ACCEPTED" in line and "no receipt" not in line
        assert _run(capsys, "log", "checkpoint", "--config", toml)[0] == 0
        code, out, _ = _run(capsys, "log", "verify", "--config", toml)
        assert code == 0 and "OK, 1 entries, 1 checkpoint(s)" in out


def test_query_rows_on_postgresql(module_pki: testpki.TestPki, tmp_path: Path, wire: Wire) -> None:
    """The same rows when both stores are PostgreSQL (appends deferred to the batch's commit)."""
    ports = {name: free_port() for name in ("eu-grpc", "eu-xml", "us-grpc", "us-xml")}
    with fresh_postgres_database() as eu_url, fresh_postgres_database() as us_url:
        eu_toml = write_config(
            tmp_path / "eu.toml", module_pki, "EU", "US",
            grpc_port=ports["eu-grpc"], xml_port=ports["eu-xml"],
            partner_endpoint=f"127.0.0.1:{ports['us-grpc']}", profile=US_PROFILE,
        )  # fmt: skip
        us_toml = write_config(
            tmp_path / "us.toml", module_pki, "US", "EU",
            grpc_port=ports["us-grpc"], xml_port=ports["us-xml"],
            partner_endpoint=f"127.0.0.1:{ports['eu-grpc']}",
        )  # fmt: skip
        for toml, url in ((eu_toml, eu_url), (us_toml, us_url)):
            text = toml.read_text()
            toml.write_text(text.replace(f'url = "sqlite:///{toml.stem}.db"', f'url = "{url}"'))
        us = start_gateway(us_toml)
        eu = start_gateway(eu_toml)
        try:
            verified = ask_partner(us.config, EU, "NL000000000000", message_log=_log(us))
            with pytest.raises(AeoError):
                ask_partner(eu.config, US, "US12345", message_log=_log(eu))
            (answered, refused) = _rows(eu)
            (asked, refused_at_us) = _rows(us)
            assert (answered.direction, answered.outcome) == (
                Direction.RECEIVED,
                LogOutcome.ACCEPTED,
            )
            assert (asked.direction, asked.outcome) == (Direction.SENT, LogOutcome.ACCEPTED)
            assert answered.message_id == asked.message_id == verified.header.correlation_id
            assert answered.envelope_sha256 == asked.envelope_sha256 == _sha(wire.sent[0])
            assert answered.receipt == asked.receipt == verified.raw
            assert (refused.direction, refused.outcome, refused.code) == (
                Direction.SENT,
                LogOutcome.REJECTED,
                AEO_NO_AGREEMENT,
            )
            assert (refused_at_us.direction, refused_at_us.outcome) == (
                Direction.RECEIVED,
                LogOutcome.REJECTED,
            )
            assert _verifies(eu) == _verifies(us) == 2
        finally:
            eu.close()
            us.close()
