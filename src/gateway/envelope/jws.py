"""Detached JWS (RFC 7515, compact serialisation, appendix F) with ES256 and PS256.

The signer's certificate chain travels in the protected `x5c` header; whether that chain is
trusted is for `gateway.trust` to decide. Verification works on the exact bytes received and
never on a re-serialisation.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.envelope.keys import KeyKind, PublicKey, SigningIdentity, key_kind
from gateway.errors import (
    SIG_ALGORITHM,
    SIG_KEY_MISMATCH,
    SIG_MALFORMED,
    SIG_MISSING,
    SignatureError,
)

ALGORITHMS = {KeyKind.EC_P256: "ES256", KeyKind.RSA: "PS256"}
_KIND_OF_ALG = {alg: kind for kind, alg in ALGORITHMS.items()}
MAX_CHAIN = 4
MAX_JWS_LENGTH = 16 * 1024
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_SHA256 = hashes.SHA256()


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(text: bytes) -> bytes:
    if b"=" in text:
        raise ValueError("padding is not allowed in base64url")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


@lru_cache(maxsize=1024)
def _protected_for(chain_der: tuple[bytes, ...], alg: str, typ: str) -> bytes:
    header = {
        "alg": alg,
        "typ": typ,
        "x5c": [base64.b64encode(der).decode("ascii") for der in chain_der],
    }
    return b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


@lru_cache(maxsize=1024)
def _certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


# The encoded protected header of each (identity, typ): the identity is immutable, so its chain's
# DER and the header built from it never change. Keyed by object identity; the entry holds the
# identity, so an id cannot be reused while its entry lives.
_PROTECTED_MEMO: dict[tuple[int, str], tuple[SigningIdentity, bytes]] = {}
_PROTECTED_MEMO_MAX = 256


def _protected_of(identity: SigningIdentity, typ: str) -> bytes:
    entry = _PROTECTED_MEMO.get((id(identity), typ))
    if entry is not None and entry[0] is identity:
        return entry[1]
    chain_der = tuple(c.public_bytes(Encoding.DER) for c in identity.chain)
    protected = _protected_for(chain_der, ALGORITHMS[identity.kind], typ)
    if len(_PROTECTED_MEMO) >= _PROTECTED_MEMO_MAX:
        _PROTECTED_MEMO.clear()
    _PROTECTED_MEMO[(id(identity), typ)] = (identity, protected)
    return protected


def sign_detached(payload: bytes, identity: SigningIdentity, typ: str) -> str:
    """Compact detached JWS over `payload`: 'protected..signature'."""
    protected = _protected_of(identity, typ)
    signing_input = protected + b"." + b64url(payload)
    key = identity.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, _ECDSA_SHA256))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input, _PSS, _SHA256)
    return (protected + b".." + b64url(signature)).decode("ascii")


@dataclass(frozen=True)
class VerifiedJws:
    algorithm: str
    chain: tuple[x509.Certificate, ...]  # leaf first, as the signer sent it


def _malformed(why: str) -> SignatureError:
    return SignatureError(f"JWS: {why}", code=SIG_MALFORMED, location="jws")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose member names are unique. RFC 7515 section 4 lets a parser take the
    last of duplicates instead, but another verifier may take the first: refuse rather than
    read one header two ways."""
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"duplicate header parameter(s) {twice}")
    return dict(pairs)


@lru_cache(maxsize=1024)
def _read_protected(
    protected_b64: bytes, typ: str
) -> tuple[str, tuple[x509.Certificate, ...], PublicKey]:
    """Decode and check a protected header: its algorithm, x5c chain and the leaf's key.

    A pure function of the exact header bytes, so it is cached: a partner's header is the same
    for every message it signs with one key. Refusals raise and are not cached.
    """
    try:
        header = json.loads(b64url_decode(protected_b64), object_pairs_hook=_unique_members)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _malformed(f"cannot decode ({exc})") from None
    if not isinstance(header, dict):
        raise _malformed("protected header is not a JSON object")
    unknown = set(header) - {"alg", "typ", "x5c"}
    if unknown:
        # 'crit', 'b64', 'jku', 'x5u', 'jwk', 'kid' ...: nothing outside the profile is honoured.
        raise _malformed(f"header parameters outside the profile: {sorted(unknown)}")
    alg = header.get("alg")
    if alg not in _KIND_OF_ALG:
        raise SignatureError(
            f"JWS algorithm {alg!r} is not allowed (ES256, PS256)",
            code=SIG_ALGORITHM,
            location="jws",
        )
    if header.get("typ") != typ:
        raise _malformed(f"typ must be {typ!r}")
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not 1 <= len(x5c) <= MAX_CHAIN:
        raise _malformed(f"x5c must list 1 to {MAX_CHAIN} certificates")
    try:
        chain = tuple(_certificate(base64.b64decode(c, validate=True)) for c in x5c)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise _malformed(f"x5c certificate cannot be read ({exc})") from None
    public_key = chain[0].public_key()
    if key_kind(public_key) != _KIND_OF_ALG[alg]:
        raise SignatureError(
            f"{alg} does not fit the certificate's key", code=SIG_KEY_MISMATCH, location="jws"
        )
    return alg, chain, public_key  # type: ignore[return-value]


def verify_detached(jws: str, payload: bytes, typ: str) -> VerifiedJws:
    """Check the JWS signature over `payload` with the key of its x5c leaf; raise if it fails."""
    if not jws:
        raise SignatureError("the envelope carries no JWS", code=SIG_MISSING, location="jws")
    if len(jws) > MAX_JWS_LENGTH:
        raise _malformed("too long")
    parts = jws.encode("ascii", errors="replace").split(b".")
    if len(parts) != 3 or parts[1] != b"":
        raise _malformed("not a detached compact serialisation (protected..signature)")
    protected_b64, _, signature_b64 = parts
    try:
        signature = b64url_decode(signature_b64)
    except (ValueError, binascii.Error) as exc:
        raise _malformed(f"cannot decode ({exc})") from None
    alg, chain, public_key = _read_protected(protected_b64, typ)
    signing_input = protected_b64 + b"." + b64url(payload)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                raise InvalidSignature
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            public_key.verify(der, signing_input, _ECDSA_SHA256)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signing_input, _PSS, _SHA256)
    except InvalidSignature:
        raise SignatureError("the JWS signature does not verify", location="jws") from None
    return VerifiedJws(alg, chain)
