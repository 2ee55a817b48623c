"""The protobuf binding: detached JWS over the exact header bytes, payload digest, refusals."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.envelope import protobuf_binding as binding
from gateway.envelope import receipts
from gateway.envelope.jws import b64url, b64url_decode
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import new_header
from gateway.errors import GatewayError
from gateway.model.codes import Administration, UtilityBlock
from gateway.testpki import FOREIGN, TestPki

PAYLOAD = b"<AEOStatusChange>suspended</AEOStatusChange>"


def _header(payload: bytes = PAYLOAD, **overrides: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = dict(
        payload=payload,
        utility_block=UtilityBlock.UB1,
        message_type="AEO_STATUS_CHANGE",
        sender=Administration.EU,
        receiver=Administration.US,
        payload_content_type="application/xml",
    )
    fields.update(overrides)
    return new_header(**fields)  # type: ignore[arg-type]


def _code(excinfo: pytest.ExceptionInfo[GatewayError]) -> str:
    return excinfo.value.code


@pytest.mark.parametrize("stem", ["signing", "signing-rsa"])
def test_seal_then_open_returns_the_signed_header_payload_and_signer(
    pki: TestPki, stem: str
) -> None:
    identity = pki.identity("EU", stem)
    header = _header()
    raw = binding.seal(header, PAYLOAD, identity)
    opened = binding.open_envelope(raw)
    assert opened.header == header
    assert opened.payload == PAYLOAD
    assert opened.signer_chain[0] == identity.certificate
    assert opened.received_sha256 == hashlib.sha256(raw).digest()
    alg = json.loads(b64url_decode(pb.SignedEnvelope.FromString(raw).jws.split(".")[0].encode()))[
        "alg"
    ]
    assert alg == ("ES256" if stem == "signing" else "PS256")


def test_tampered_payload_is_refused_with_digest_mismatch(pki: TestPki) -> None:
    raw = binding.seal(_header(), PAYLOAD, pki.identity("EU"))
    envelope = pb.SignedEnvelope.FromString(raw)
    envelope.payload = PAYLOAD.replace(b"suspended", b"granted__")
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(envelope.SerializeToString())
    assert _code(excinfo) == "ENV_PAYLOAD_DIGEST_MISMATCH"


def test_tampered_header_bytes_are_refused_as_bad_signature(pki: TestPki) -> None:
    raw = binding.seal(_header(), PAYLOAD, pki.identity("EU"))
    envelope = pb.SignedEnvelope.FromString(raw)
    header = pb.EnvelopeHeader.FromString(envelope.header)
    header.receiver = "CN"
    envelope.header = header.SerializeToString()
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(envelope.SerializeToString())
    assert _code(excinfo) == "SIG_INVALID"


def test_missing_signature_is_refused(pki: TestPki) -> None:
    envelope = pb.SignedEnvelope.FromString(binding.seal(_header(), PAYLOAD, pki.identity("EU")))
    envelope.jws = ""
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(envelope.SerializeToString())
    assert _code(excinfo) == "SIG_MISSING"


def _with_protected(raw: bytes, change: dict[str, object]) -> bytes:
    envelope = pb.SignedEnvelope.FromString(raw)
    protected_b64, _, signature = envelope.jws.split(".")
    protected = json.loads(b64url_decode(protected_b64.encode()))
    protected.update(change)
    new_protected = b64url(json.dumps(protected).encode()).decode()
    envelope.jws = f"{new_protected}..{signature}"
    return envelope.SerializeToString()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"alg": "none"}, "SIG_ALGORITHM_NOT_ALLOWED"),
        ({"alg": "HS256"}, "SIG_ALGORITHM_NOT_ALLOWED"),
        ({"alg": "RS256"}, "SIG_ALGORITHM_NOT_ALLOWED"),
        ({"alg": "PS256"}, "SIG_KEY_MISMATCH"),
        ({"crit": ["exp"]}, "SIG_MALFORMED"),
        ({"b64": False}, "SIG_MALFORMED"),
        ({"jku": "https://attacker.example/keys"}, "SIG_MALFORMED"),
        ({"x5c": []}, "SIG_MALFORMED"),
        ({"typ": "gnc-receipt+jws"}, "SIG_MALFORMED"),
    ],
)
def test_protected_header_outside_the_profile_is_refused(
    pki: TestPki, change: dict[str, object], code: str
) -> None:
    raw = binding.seal(_header(), PAYLOAD, pki.identity("EU"))
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(_with_protected(raw, change))
    assert _code(excinfo) == code


def test_a_header_parameter_named_twice_is_refused_even_when_signed(pki: TestPki) -> None:
    """Two x5c members, a CN certificate first and the signer's last, signed by the signer: a
    last-wins parser trusts EU, a first-wins one would see CN. Read no header two ways."""
    raw = binding.seal(_header(), PAYLOAD, pki.identity("EU"))
    envelope = pb.SignedEnvelope.FromString(raw)
    identity = pki.identity("EU")
    der = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in identity.chain]
    cn = base64.b64encode(pki.cert("CN", "signing").public_bytes(Encoding.DER)).decode()
    text = (
        f'{{"alg":"ES256","typ":{json.dumps(_typ_of(envelope))},'
        f'"x5c":{json.dumps([cn])},"x5c":{json.dumps(der)}}}'
    )
    protected = b64url(text.encode())
    key = identity.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(
        key.sign(protected + b"." + b64url(envelope.header), ec.ECDSA(hashes.SHA256()))
    )
    signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    envelope.jws = f"{protected.decode()}..{signature.decode()}"
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(envelope.SerializeToString())
    assert _code(excinfo) == "SIG_MALFORMED"
    assert "duplicate header parameter(s) ['x5c']" in str(excinfo.value)


def _typ_of(envelope: pb.SignedEnvelope) -> str:
    protected = envelope.jws.split(".")[0]
    return str(json.loads(b64url_decode(protected.encode()))["typ"])


def test_signature_by_another_key_than_the_x5c_certificate_is_refused(pki: TestPki) -> None:
    """Swapping x5c for another certificate must not let the signature pass."""
    raw = binding.seal(_header(), PAYLOAD, pki.identity("EU"))
    other = pki.identity("EU", "signing-next").certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    swapped = _with_protected(
        raw, {"x5c": [base64.b64encode(other.public_bytes(Encoding.DER)).decode()]}
    )
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(swapped)
    assert _code(excinfo) == "SIG_INVALID"


def test_attached_payload_serialisation_is_refused(pki: TestPki) -> None:
    envelope = pb.SignedEnvelope.FromString(binding.seal(_header(), PAYLOAD, pki.identity("EU")))
    protected, _, signature = envelope.jws.split(".")
    envelope.jws = f"{protected}.{b64url(envelope.header).decode()}.{signature}"
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(envelope.SerializeToString())
    assert _code(excinfo) == "SIG_MALFORMED"


def test_oversize_envelope_is_refused_before_decoding(pki: TestPki) -> None:
    raw = binding.seal(
        _header(b"x" * 5000, payload_content_type="text/plain"), b"x" * 5000, pki.identity("EU")
    )
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(raw, max_bytes=4096)
    assert _code(excinfo) == "ENV_OVERSIZE"


def test_garbage_is_refused_as_malformed() -> None:
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(b"\xff\xff\xff not protobuf")
    assert _code(excinfo) == "ENV_MALFORMED"


def test_sealing_refuses_a_sender_other_than_the_signer(pki: TestPki) -> None:
    with pytest.raises(GatewayError) as excinfo:
        binding.seal(_header(sender=Administration.CN), PAYLOAD, pki.identity("EU"))
    assert _code(excinfo) == "ENV_HEADER_INVALID"


def test_impostor_signature_verifies_cryptographically_but_names_its_foreign_issuer(
    pki: TestPki,
) -> None:
    """The binding only proves who holds the key; trust (tests/test_trust.py) refuses the issuer."""
    impostor = pki.identity(FOREIGN, "EU-impostor")
    opened = binding.open_envelope(binding.seal(_header(), PAYLOAD, impostor))
    assert opened.signer_chain[0].issuer == pki.ca(FOREIGN).subject


def test_header_fields_are_validated_on_decode(pki: TestPki) -> None:
    """A correctly signed header with a bad field value is still refused, naming the field."""
    identity = pki.identity("EU")
    header = binding.header_to_proto(_header())
    header.message_id = "not-a-uuid"
    header_bytes = header.SerializeToString()
    from gateway.envelope.jws import sign_detached

    jws = sign_detached(header_bytes, identity, binding.ENVELOPE_JWS_TYPE)
    raw = pb.SignedEnvelope(header=header_bytes, payload=PAYLOAD, jws=jws).SerializeToString()
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(raw)
    assert _code(excinfo) == "ENV_HEADER_INVALID"
    assert excinfo.value.location == "header.message_id"


def test_receipt_roundtrip_and_sender_side_checks(pki: TestPki) -> None:
    raw = binding.seal(_header(), PAYLOAD, pki.identity("EU"))
    opened = binding.open_envelope(raw)
    receipt = receipts.accepted_receipt(opened, Administration.US)
    signed = receipts.seal_receipt(receipt, pki.identity("US"))
    back = receipts.open_receipt(signed)
    assert back.receipt == receipt
    assert back.signer_chain[0] == pki.identity("US").certificate
    receipts.check_receipt_matches(back.receipt, opened.header.message_id, raw)
    with pytest.raises(GatewayError) as excinfo:
        receipts.check_receipt_matches(back.receipt, opened.header.message_id, raw + b"\x00")
    assert _code(excinfo) == "DLV_RECEIPT_MISMATCH"
    # A refusal naming a code this gateway does not know: a receipt problem, not a store outage.
    unknown = replace(back.receipt, outcome=receipts.Outcome.REJECTED, error_code="NO_SUCH_CODE")
    with pytest.raises(GatewayError) as excinfo:
        receipts.check_receipt_matches(unknown, opened.header.message_id, raw)
    assert _code(excinfo) == "DLV_RECEIPT_MISMATCH"
    assert excinfo.value.location == "receipt.error_code"
    tampered = pb.SignedReceipt.FromString(signed)
    body = pb.Receipt.FromString(tampered.receipt)
    body.outcome = pb.REJECTED
    tampered.receipt = body.SerializeToString()
    with pytest.raises(GatewayError) as excinfo:
        receipts.open_receipt(tampered.SerializeToString())
    assert _code(excinfo) == "SIG_INVALID"


def test_created_at_keeps_microseconds_and_refuses_sub_microsecond() -> None:
    moment = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    header = _header(created_at=moment)
    assert binding.header_from_proto(binding.header_to_proto(header)).created_at == moment
    message = binding.header_to_proto(header)
    message.created_at.nanos += 1
    with pytest.raises(GatewayError):
        binding.header_from_proto(message)
    assert binding.datetime_from_parts(
        *binding.datetime_to_parts(moment - timedelta(days=20000))
    ) == (moment - timedelta(days=20000))


@pytest.mark.parametrize("field", ["message_type", "schema_version", "payload_content_type"])
def test_header_patterns_refuse_a_trailing_newline(field: str) -> None:
    """`$` in a Python regex matches before a final newline; the rules must hold to the end."""
    value = {"message_type": "PING", "schema_version": "1.0", "payload_content_type": "text/plain"}[
        field
    ]
    with pytest.raises(GatewayError) as excinfo:
        _header(**{field: value + "\n"})
    assert excinfo.value.location == f"header.{field}"


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 2049, 4094, 4095, 10_000, 300_000])
def test_sha256_helper_is_hashlib_sha256(size: int) -> None:
    """The GIL-holding digest (pieces below hashlib's release threshold) is the same digest."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert binding.sha256(data) == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    "value",
    [
        "123e4567-e89b-12d3-a456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000",
        "{123e4567-e89b-12d3-a456-426614174000}",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
        "123e4567e89b12d3a456426614174000",
        "123e4567-e89b-12d3-a456-426614174000\n",
        " 123e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-42661417400",
        "123e4567-e89b-12d3-a456-42661417400g",
        "\uff11\uff12\uff13e4567-e89b-12d3-a456-426614174000",
        "",
    ],
)
def test_uuid_fast_path_accepts_exactly_the_canonical_form(value: str) -> None:
    import uuid

    from gateway.model.header import parse_uuid

    try:
        canonical = str(uuid.UUID(value)) == value
    except ValueError:
        canonical = False
    if canonical:
        assert parse_uuid(value, "message_id") == value
    else:
        with pytest.raises(GatewayError) as excinfo:
            parse_uuid(value, "message_id")
        assert excinfo.value.location == "header.message_id"


def test_a_cached_protected_header_does_not_vouch_for_another_signature(pki: TestPki) -> None:
    """The decoded protected header is cached; the signature is still checked every time."""
    header = _header()
    raw = binding.seal(header, PAYLOAD, pki.identity("EU"))
    assert binding.open_envelope(raw).header == header  # header now cached
    signed = pb.SignedEnvelope.FromString(raw)
    protected, _, signature = signed.jws.split(".")
    flipped = bytearray(b64url_decode(signature.encode()))
    flipped[5] ^= 1
    signed.jws = f"{protected}..{b64url(bytes(flipped)).decode()}"
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(signed.SerializeToString())
    assert _code(excinfo) == "SIG_INVALID"
    other = pb.SignedEnvelope.FromString(raw)
    other.header = binding.header_to_proto(_header()).SerializeToString(deterministic=True)
    with pytest.raises(GatewayError) as excinfo:
        binding.open_envelope(other.SerializeToString())
    assert _code(excinfo) == "SIG_INVALID"
    assert binding.open_envelope(raw).header == header


def test_receipts_of_one_identity_reuse_its_protected_header(pki: TestPki) -> None:
    identity = pki.identity("US")
    first = pb.SignedReceipt.FromString(_a_sealed_receipt(identity)).jws.split(".")[0]
    second = pb.SignedReceipt.FromString(_a_sealed_receipt(identity)).jws.split(".")[0]
    assert first == second
    header = json.loads(b64url_decode(first.encode()))
    assert header["typ"] == receipts.RECEIPT_JWS_TYPE
    assert (
        header["x5c"][0]
        == base64.b64encode(identity.certificate.public_bytes(Encoding.DER)).decode()
    )


def _a_sealed_receipt(identity: SigningIdentity) -> bytes:
    error = GatewayError("refused for the test")
    receipt = receipts.rejection_receipt(b"x", error, Administration.US)
    return receipts.seal_receipt(receipt, identity)
