"""The online AEO query on loopback: US asks EU over gRPC (gnc.v1.Inquiry/Ask) and over XML
(POST /gnc/v1/inquiries); EU answers from its own list under the US agreement and signs the
answer; US verifies signature, signer, addressing and correlation. Refusals are signed too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aeo_gateways import EU, US, Gateway, mapping_spec, running_eu_and_us

from gateway import testpki
from gateway.envelope.intake import DEFAULT_LIMITS, open_any
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    AEO_ANSWER_MISMATCH,
    AEO_NO_AGREEMENT,
    AEO_NO_CONSENT,
    AEO_PAYLOAD_MALFORMED,
    AEO_TYPE_NOT_ELIGIBLE,
    AeoError,
    GatewayError,
)
from gateway.model.aeo import AeoType
from gateway.model.codes import Administration, UtilityBlock
from gateway.node import seal_envelope
from gateway.partners.profile import eligible_for
from gateway.services.aeo import ask_partner, build_query, decode_payload, verify_answer
from gateway.translate import aeo_exchange
from gateway.translate.aeo_exchange import CONTENT_TYPES, PayloadForm, QueryRefused, StatusChanges
from gateway.translate.sample_aeo import generate_eos_export


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.TestPki:
    return testpki.init_test_pki(tmp_path_factory.mktemp("query-pki"), ("EU", "US", "CN"))


@pytest.fixture(params=["grpc", "xml"])
def pair(
    request: pytest.FixtureRequest, module_pki: testpki.TestPki, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    with running_eu_and_us(tmp_path, module_pki, binding=request.param) as (eu, us):
        eu.service.import_export(generate_eos_export(60, 9, "xml", spec=mapping_spec()))
        yield eu, us


def test_a_query_is_answered_signed_and_verified(pair: tuple[Gateway, Gateway]) -> None:
    eu, us = pair
    profile = eu.service.partner(US).profile
    record = next(r for r in eu.store.records(EU) if eligible_for(profile, r) and r.is_aeo)
    for identifier in (
        record.holder_id,
        record.authorisation_number,
        record.references("US-MID")[0],
    ):
        verified = ask_partner(us.config, EU, identifier, message_log=us.node.message_log)
        answer = verified.answer
        assert answer.identifier == identifier and answer.is_aeo
        assert answer.since == record.authorised_since
        assert answer.record is not None and answer.record.partner_programme == "CTPAT-MRA"
        assert verified.header.sender is EU and verified.header.receiver is US
        assert verified.signer.administration is EU

    unknown = ask_partner(us.config, EU, "NL000000000000", message_log=us.node.message_log)
    assert not unknown.answer.found and unknown.answer.refusal_code == ""


def test_refusals_under_the_agreement(pair: tuple[Gateway, Gateway]) -> None:
    eu, us = pair
    own = list(eu.store.records(EU))
    aeoc = next(r for r in own if r.aeo_type is AeoType.AEOC and r.consent)
    no_consent = next(r for r in own if not r.consent)
    answer = ask_partner(
        us.config, EU, aeoc.authorisation_number, message_log=us.node.message_log
    ).answer
    assert answer.refusal_code == AEO_TYPE_NOT_ELIGIBLE and answer.record is None
    answer = ask_partner(
        us.config, EU, no_consent.holder_id, message_log=us.node.message_log
    ).answer
    assert answer.refusal_code == AEO_NO_CONSENT and answer.record is None


def test_a_query_without_agreement_is_refused_with_a_signed_answer(
    pair: tuple[Gateway, Gateway],
) -> None:
    eu, _ = pair
    # the US gateway has no UB1 profile for EU: EU's query is refused, signed by US
    with pytest.raises(AeoError) as caught:
        ask_partner(eu.config, US, "US12345", message_log=eu.node.message_log)
    assert caught.value.code == AEO_NO_AGREEMENT


def test_the_asker_checks_the_answer(pair: tuple[Gateway, Gateway]) -> None:
    eu, us = pair
    binding = Binding.PROTOBUF if us.config.partners[0].binding.value == "grpc" else Binding.XML
    header, raw, query = build_query(us.config.signing_identity, EU, binding, "DE1234")
    answer = eu.responder.respond(raw, binding, US)
    verified = verify_answer(answer, binding, request=header, query=query, trust=us.config.trust)
    assert verified.header.correlation_id == header.message_id
    # the answer to another query does not answer this one
    other_header, _, other_query = build_query(us.config.signing_identity, EU, binding, "DE1234")
    with pytest.raises(AeoError) as caught:
        verify_answer(
            answer, binding, request=other_header, query=other_query, trust=us.config.trust
        )
    assert caught.value.code == AEO_ANSWER_MISMATCH
    # an answer altered on the way does not verify
    altered = bytearray(answer)
    index = answer.find(b"DE1234")
    altered[index : index + 6] = b"DE9999"
    with pytest.raises(GatewayError) as caught_altered:
        verify_answer(bytes(altered), binding, request=header, query=query, trust=us.config.trust)
    assert caught_altered.value.code != AEO_ANSWER_MISMATCH
    # a request that is not a query is refused with a signed answer carrying its code
    form = PayloadForm.PROTOBUF if binding is Binding.PROTOBUF else PayloadForm.XML
    data = aeo_exchange.encode(StatusChanges(US, ()), form)
    not_a_query = new_header(
        payload=data,
        utility_block=UtilityBlock.UB1,
        message_type="AeoStatusChanges",
        sender=US,
        receiver=EU,
        payload_content_type=CONTENT_TYPES[form],
    )
    raw_bad = seal_envelope(binding, not_a_query, data, us.config.signing_identity)
    refused = eu.responder.respond(raw_bad, binding, US)
    with pytest.raises(AeoError) as caught_bad:
        verify_answer(refused, binding, request=not_a_query, query=query, trust=us.config.trust)
    assert caught_bad.value.code == AEO_PAYLOAD_MALFORMED
    # a request whose TLS peer is not its signed sender
    refused = eu.responder.respond(raw, binding, Administration.CN)
    opened = open_any(refused, binding, DEFAULT_LIMITS)
    assert opened.header.receiver is Administration.CN  # answered to the proven TLS peer
    assert opened.header.correlation_id == header.message_id
    payload = decode_payload(opened.header, opened.payload, 1 << 20)
    assert isinstance(payload, QueryRefused) and payload.code == "TRUST_WRONG_PARTNER"


def test_a_refusal_with_a_code_unknown_here_is_reported_as_query_refused(
    pair: tuple[Gateway, Gateway],
) -> None:
    eu, us = pair
    binding = Binding.PROTOBUF if us.config.partners[0].binding.value == "grpc" else Binding.XML
    header, _, query = build_query(us.config.signing_identity, EU, binding, "DE1234")
    form = PayloadForm.PROTOBUF if binding is Binding.PROTOBUF else PayloadForm.XML
    data = aeo_exchange.encode(QueryRefused("XYZ_FROM_A_NEWER_PARTNER", "new rule"), form)
    answer_header = new_header(
        payload=data,
        utility_block=UtilityBlock.UB1,
        message_type="AeoQueryRefused",
        sender=EU,
        receiver=US,
        payload_content_type=CONTENT_TYPES[form],
        correlation_id=header.message_id,
    )
    answer = seal_envelope(binding, answer_header, data, eu.config.signing_identity)
    with pytest.raises(AeoError) as caught:
        verify_answer(answer, binding, request=header, query=query, trust=us.config.trust)
    assert caught.value.code == "AEO_QUERY_REFUSED"
    assert "XYZ_FROM_A_NEWER_PARTNER" in caught.value.message
