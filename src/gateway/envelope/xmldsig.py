"""A strict XML-DSig profile: one enveloped signature over the whole document, nothing else.

Profile (what `sign_enveloped` writes and the only thing `verify_enveloped` accepts):

- exactly one ds:Signature in the document, the last child of the document element;
- SignedInfo = CanonicalizationMethod exc-c14n (without comments), SignatureMethod ecdsa-sha256
  (value is raw r||s, RFC 4050 / RFC 6931) or rsa-sha256 (PKCS#1 v1.5), exactly one Reference;
- the Reference has URI="" (the whole document), Transforms exactly [enveloped-signature,
  exc-c14n], DigestMethod sha256;
- KeyInfo holds exactly one X509Data with 1..4 X509Certificate, leaf first (intermediates after;
  a chain sent in another order is put leaf first, since KeyInfo is not signed);
- no Object, Manifest, RetrievalMethod, KeyName, KeyValue, XPath/XSLT/base64 transform, SHA-1,
  HMAC or comment-preserving canonicalisation: each is refused with a stable code.

An exc-c14n InclusiveNamespaces PrefixList (on the CanonicalizationMethod or on the exc-c14n
Transform) is honoured, because it only decides which namespace declarations are rendered; the
token '#default' is refused (SIG_TRANSFORM_NOT_ALLOWED) because libxml2's C14N cannot apply it,
and a digest we cannot compute faithfully must not be trusted.

Because the single Reference covers the whole document (minus the Signature itself, which is
the enveloped-signature transform), and the Signature may contain nothing but SignedInfo,
SignatureValue and KeyInfo, every element the caller reads afterwards from the same tree is
covered by the signature: there is no place left to hide a wrapped copy. Trust in the carried
certificate chain is decided elsewhere (gateway.trust).

Canonicalisation uses lxml (libxml2) exclusive C14N and the crypto uses `cryptography`. A
SignedInfo whose canonical form is byte-for-byte the one we (and signxml) write is recognised by
one regular expression instead of an element-by-element walk; any other form gets the walk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.envelope.keys import KeyKind, PublicKey, SigningIdentity, key_kind
from gateway.errors import (
    SIG_ALGORITHM,
    SIG_DIGEST,
    SIG_KEY_MISMATCH,
    SIG_MALFORMED,
    SIG_MISSING,
    SIG_MULTIPLE,
    SIG_PLACEMENT,
    SIG_REFERENCE,
    SIG_TRANSFORM,
    SignatureError,
)

__all__ = [
    "DS_NS",
    "ECDSA_SHA256",
    "ENVELOPED",
    "EXC_C14N",
    "MAX_CHAIN",
    "RSA_SHA256",
    "SHA256",
    "SIGNATURE_TAG",
    "canonicalize",
    "sign_enveloped",
    "verify_enveloped",
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EC_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
MAX_CHAIN = 4

SIGNATURE_TAG = f"{{{DS_NS}}}Signature"
_INCLUSIVE_TAG = f"{{{EC_NS}}}InclusiveNamespaces"
_ALGORITHM_OF_KIND = {KeyKind.EC_P256: ECDSA_SHA256, KeyKind.RSA: RSA_SHA256}
_KIND_OF_ALGORITHM = {alg: kind for kind, alg in _ALGORITHM_OF_KIND.items()}
_WHITESPACE = " \t\r\n"
_SIG_PATH = "ds:Signature"
_NCNAME = re.compile(r"^[^\W\d][\w.\-]*$")


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


# --- canonicalisation ---------------------------------------------------------------------------


def canonicalize(
    node: etree._Element | etree._ElementTree, prefixes: tuple[str, ...] = ()
) -> bytes:
    """Exclusive XML C14N 1.0 without comments; `prefixes` is an InclusiveNamespaces PrefixList."""
    return etree.tostring(
        node,
        method="c14n",
        exclusive=True,
        with_comments=False,
        inclusive_ns_prefixes=list(prefixes) if prefixes else None,
    )


def _enveloped_c14n(
    root: etree._Element, signature: etree._Element, prefixes: tuple[str, ...]
) -> bytes:
    """The whole document without the Signature element: enveloped-signature, then exc-c14n.

    Detaches the Signature (its last child) instead of copying the tree. lxml moves an element's
    tail with it, but the transform removes only the element, so the tail text stays behind,
    appended to whatever precedes it. Everything is put back before returning.
    """
    tail = signature.tail
    previous = signature.getprevious()
    saved = root.text if previous is None else previous.tail
    root.remove(signature)
    try:
        if tail:
            if previous is None:
                root.text = (saved or "") + tail
            else:
                previous.tail = (saved or "") + tail
        return canonicalize(root.getroottree(), prefixes)
    finally:
        if previous is None:
            root.text = saved
        else:
            previous.tail = saved
        root.append(signature)
        signature.tail = tail


# --- signing ------------------------------------------------------------------------------------

_SIGNED_INFO_BODY = (
    f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"></ds:CanonicalizationMethod>'
    '<ds:SignatureMethod Algorithm="{method}"></ds:SignatureMethod>'
    '<ds:Reference URI=""><ds:Transforms>'
    f'<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform>'
    f'<ds:Transform Algorithm="{EXC_C14N}"></ds:Transform>'
    f'</ds:Transforms><ds:DigestMethod Algorithm="{SHA256}"></ds:DigestMethod>'
    "<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>"
)
_SIGNATURE_TEMPLATE = (
    f'<ds:Signature xmlns:ds="{DS_NS}"><ds:SignedInfo>{_SIGNED_INFO_BODY}</ds:SignedInfo>'
    "<ds:SignatureValue></ds:SignatureValue>"
    "<ds:KeyInfo><ds:X509Data>{certificates}</ds:X509Data></ds:KeyInfo></ds:Signature>"
)
# The canonical form of the profile's SignedInfo as we (and signxml) write it: when a received
# SignedInfo canonicalises to exactly this, its structure is the profile's and the element-by-
# element checks can be skipped. Anything else (other prefix, whitespace, Id attributes,
# InclusiveNamespaces) takes the full checks.
_PROFILE_SIGNED_INFO = re.compile(
    re.escape(
        f'<ds:SignedInfo xmlns:ds="{DS_NS}">'
        + _SIGNED_INFO_BODY.format(method="@METHOD@", digest="@DIGEST@")
        + "</ds:SignedInfo>"
    )
    .replace("@METHOD@", f"({re.escape(ECDSA_SHA256)}|{re.escape(RSA_SHA256)})")
    .replace("@DIGEST@", "([A-Za-z0-9+/]{43}=)")
    .encode("ascii")
)
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_TEMPLATE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def algorithm_for(identity: SigningIdentity) -> str:
    """The SignatureMethod URI that the identity's key signs with."""
    return _ALGORITHM_OF_KIND[identity.kind]


@lru_cache(maxsize=256)
def _x509_certificates(chain: tuple[x509.Certificate, ...]) -> str:
    """The X509Certificate elements for a chain (cached: DER export costs as much as C14N)."""
    return "".join(
        "<ds:X509Certificate>"
        + base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")
        + "</ds:X509Certificate>"
        for cert in chain
    )


def _sign_bytes(identity: SigningIdentity, data: bytes) -> bytes:
    key = identity.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def sign_enveloped(root: etree._Element, identity: SigningIdentity) -> None:
    """Append the profile's enveloped ds:Signature to `root`, the document element.

    Everything in the document at this moment is covered; nothing may be added after.
    """
    if root.getparent() is not None:
        raise SignatureError(
            "only the document element can carry the enveloped signature",
            code=SIG_PLACEMENT,
            location=str(root.tag),
        )
    if next(root.iter(SIGNATURE_TAG), None) is not None:
        raise SignatureError(
            "the document is already signed", code=SIG_MULTIPLE, location=_SIG_PATH
        )
    digest = hashlib.sha256(canonicalize(root.getroottree())).digest()
    # Parsing one string of our own is several times faster than building 16 elements.
    signature = etree.fromstring(
        _SIGNATURE_TEMPLATE.format(
            method=algorithm_for(identity),
            digest=base64.b64encode(digest).decode("ascii"),
            certificates=_x509_certificates(identity.chain),
        ),
        _TEMPLATE_PARSER,
    )
    root.append(signature)
    signature_value = _sign_bytes(identity, canonicalize(signature[0]))
    signature[1].text = base64.b64encode(signature_value).decode("ascii")


# --- verification -------------------------------------------------------------------------------


def _error(code: str, why: str, where: str) -> SignatureError:
    return SignatureError(why, code=code, location=where)


def _malformed(why: str, where: str) -> SignatureError:
    return _error(SIG_MALFORMED, why, where)


_DS_PREFIX = f"{{{DS_NS}}}"
_EC_PREFIX = f"{{{EC_NS}}}"


def _local(element: etree._Element) -> str:
    """'ds:Name' / 'ec:Name' for the two signature namespaces, Clark notation otherwise."""
    tag = element.tag
    if not isinstance(tag, str):
        return "comment or processing instruction"
    if tag.startswith(_DS_PREFIX):
        return "ds:" + tag[len(_DS_PREFIX) :]
    if tag.startswith(_EC_PREFIX):
        return "ec:" + tag[len(_EC_PREFIX) :]
    return tag


def _children(parent: etree._Element, where: str) -> list[etree._Element]:
    """Element children of a Signature part; text content or PIs there are outside the profile."""
    if parent.text and parent.text.strip(_WHITESPACE):
        raise _malformed(f"unexpected text in {_local(parent)}", where)
    found: list[etree._Element] = []
    for child in parent:
        if child.tail and child.tail.strip(_WHITESPACE):
            raise _malformed(f"unexpected text in {_local(parent)}", where)
        if isinstance(child.tag, str):
            found.append(child)
        elif isinstance(child, etree._ProcessingInstruction):
            raise _malformed(f"processing instruction inside {_local(parent)}", where)
        # comments are not part of exclusive C14N without comments: ignored
    return found


def _expect(children: list[etree._Element], names: tuple[str, ...], where: str) -> None:
    got = tuple(_local(c) for c in children)
    if got != names:
        raise _malformed(f"expected {', '.join(names)}; found {', '.join(got) or 'nothing'}", where)


def _attributes(element: etree._Element, allowed: frozenset[str], where: str) -> None:
    unknown = set(element.attrib) - allowed
    if unknown:
        raise _malformed(
            f"attributes outside the profile on {_local(element)}: {sorted(unknown)}", where
        )


def _algorithm(element: etree._Element, where: str) -> str:
    _attributes(element, frozenset({"Algorithm"}), where)
    algorithm = element.get("Algorithm")
    if not algorithm:
        raise _malformed(f"{_local(element)} has no Algorithm", where)
    return algorithm


def _b64(element: etree._Element, where: str) -> bytes:
    if len(element):
        raise _malformed(f"{_local(element)} must hold only base64 text", where)
    text = "".join((element.text or "").split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{_local(element)} is not valid base64", where) from None


def _inclusive_prefixes(method: etree._Element, code: str, where: str) -> tuple[str, ...]:
    """The PrefixList of an exc-c14n method, or () when it has none."""
    children = _children(method, where)
    if not children:
        return ()
    if len(children) != 1 or children[0].tag != _INCLUSIVE_TAG:
        raise _error(
            code,
            f"exc-c14n takes only an InclusiveNamespaces parameter, not {_local(children[0])}",
            where,
        )
    inclusive = children[0]
    _attributes(inclusive, frozenset({"PrefixList"}), where)
    if _children(inclusive, where):
        raise _malformed("InclusiveNamespaces must be empty", where)
    prefixes = tuple((inclusive.get("PrefixList") or "").split())
    if "#default" in prefixes:
        raise _error(code, "InclusiveNamespaces '#default' is not supported", where)
    for prefix in prefixes:
        if not _NCNAME.match(prefix):
            raise _malformed(f"InclusiveNamespaces prefix {prefix!r} is not an NCName", where)
    return prefixes


def _refuse_algorithm(kind: str, algorithm: str, allowed: str, where: str) -> SignatureError:
    lowered = algorithm.lower()
    why = ""
    if "sha1" in lowered or "sha-1" in lowered:
        why = " (SHA-1 is refused)"
    elif "hmac" in lowered:
        why = " (HMAC is refused: signatures must be by a certified key)"
    elif "comments" in lowered:
        why = " (comment-preserving canonicalisation is refused)"
    return _error(
        SIG_ALGORITHM, f"{kind} {algorithm!r} is not allowed{why}; allowed: {allowed}", where
    )


@lru_cache(maxsize=256)
def _certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@lru_cache(maxsize=256)
def _public_key(certificate: x509.Certificate) -> PublicKey:
    """The certificate's key, refused unless it is a profile key (P-256, RSA >= 2048)."""
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise _error(
            SIG_KEY_MISMATCH,
            f"certificate key type {type(key).__name__} is not allowed",
            _SIG_PATH + "/ds:KeyInfo",
        )
    return key


def _find_signature(root: etree._Element) -> etree._Element:
    if root.getparent() is not None:
        raise _error(SIG_PLACEMENT, "verification starts at the document element", _SIG_PATH)
    if root.tag == SIGNATURE_TAG:
        raise _error(SIG_PLACEMENT, "the document element itself is a Signature", _SIG_PATH)
    found = root.iter(SIGNATURE_TAG)
    signature = next(found, None)
    if signature is None:
        raise _error(SIG_MISSING, "the document carries no ds:Signature", _SIG_PATH)
    second = next(found, None)
    if second is not None:
        raise _error(
            SIG_MULTIPLE,
            "more than one ds:Signature in the document; exactly one is allowed",
            f"line {second.sourceline}" if second.sourceline else _SIG_PATH,
        )
    if signature.getparent() is not root:
        raise _error(
            SIG_PLACEMENT,
            "the ds:Signature must be a child of the document element",
            f"line {signature.sourceline}" if signature.sourceline else _SIG_PATH,
        )
    if signature.getnext() is not None:
        raise _error(
            SIG_PLACEMENT,
            "the ds:Signature must be the last child of the document element",
            _SIG_PATH,
        )
    return signature


_SIGNED_INFO_WHERE = _SIG_PATH + "/ds:SignedInfo"
_METHOD_WHERE = _SIGNED_INFO_WHERE + "/ds:SignatureMethod"
_REFERENCE_WHERE = _SIGNED_INFO_WHERE + "/ds:Reference"
_VALUE_WHERE = _SIG_PATH + "/ds:SignatureValue"


def verify_enveloped(root: etree._Element) -> tuple[x509.Certificate, ...]:
    """Verify the profile's enveloped signature on the document element `root`.

    Returns the certificate chain carried in KeyInfo (leaf first), whose key verified the
    signature; whether that chain is trusted is for gateway.trust. Raises SignatureError with
    a stable code for anything outside the profile or any mismatch. Read the signed content
    afterwards from this same `root`: that is exactly the tree whose canonical form was digested.
    """
    signature = _find_signature(root)
    _attributes(signature, frozenset({"Id"}), _SIG_PATH)
    parts = _children(signature, _SIG_PATH)
    if any(_local(p) == "ds:Object" for p in parts):
        raise _malformed(
            "ds:Object is not allowed in the profile (nothing outside the document is signed)",
            _SIG_PATH + "/ds:Object",
        )
    _expect(parts, ("ds:SignedInfo", "ds:SignatureValue", "ds:KeyInfo"), _SIG_PATH)
    signed_info, signature_value_element, key_info = parts

    signed_info_c14n = canonicalize(signed_info)
    profile = _PROFILE_SIGNED_INFO.fullmatch(signed_info_c14n)
    reference_prefixes: tuple[str, ...] = ()
    if profile is not None:  # exactly the profile, as we and signxml write it
        signature_algorithm = profile.group(1).decode("ascii")
        expected_digest = base64.b64decode(profile.group(2))
    else:
        signature_algorithm, expected_digest, info_prefixes, reference_prefixes = (
            _check_signed_info(signed_info)
        )
        if info_prefixes:
            signed_info_c14n = canonicalize(signed_info, info_prefixes)

    _attributes(signature_value_element, frozenset({"Id"}), _VALUE_WHERE)
    signature_value = _b64(signature_value_element, _VALUE_WHERE)
    chain = _key_info_chain(key_info)
    public_key = _public_key(chain[0])
    if key_kind(public_key) != _KIND_OF_ALGORITHM[signature_algorithm]:
        raise _error(
            SIG_KEY_MISMATCH,
            f"SignatureMethod {signature_algorithm} does not fit the certificate's key",
            _METHOD_WHERE,
        )

    actual_digest = hashlib.sha256(_enveloped_c14n(root, signature, reference_prefixes)).digest()
    if not hmac.compare_digest(actual_digest, expected_digest):
        raise _error(
            SIG_DIGEST, "the document was altered after signing (digest mismatch)", _REFERENCE_WHERE
        )
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if len(signature_value) != 64:
                raise InvalidSignature
            der = encode_dss_signature(
                int.from_bytes(signature_value[:32], "big"),
                int.from_bytes(signature_value[32:], "big"),
            )
            public_key.verify(der, signed_info_c14n, _ECDSA_SHA256)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature_value, signed_info_c14n, padding.PKCS1v15(), hashes.SHA256()
            )
    except InvalidSignature:
        raise SignatureError("the signature value does not verify", location=_VALUE_WHERE) from None
    return chain


def _check_signed_info(
    signed_info: etree._Element,
) -> tuple[str, bytes, tuple[str, ...], tuple[str, ...]]:
    """Element-by-element profile check of a SignedInfo not written exactly as we write it.

    Returns the signature algorithm, the expected digest, and the InclusiveNamespaces prefixes
    of the CanonicalizationMethod and of the Reference's exc-c14n transform.
    """
    where = _SIGNED_INFO_WHERE
    _attributes(signed_info, frozenset({"Id"}), where)
    info_parts = _children(signed_info, where)
    references = [p for p in info_parts if p.tag == _ds("Reference")]
    if len(references) != 1:
        raise _error(
            SIG_REFERENCE,
            f"SignedInfo has {len(references)} References; exactly one is allowed",
            where,
        )
    _expect(info_parts, ("ds:CanonicalizationMethod", "ds:SignatureMethod", "ds:Reference"), where)
    c14n_method, signature_method, reference = info_parts

    c14n_where = where + "/ds:CanonicalizationMethod"
    c14n_algorithm = _algorithm(c14n_method, c14n_where)
    if c14n_algorithm != EXC_C14N:
        raise _refuse_algorithm("CanonicalizationMethod", c14n_algorithm, EXC_C14N, c14n_where)
    info_prefixes = _inclusive_prefixes(c14n_method, SIG_ALGORITHM, c14n_where)

    method_where = where + "/ds:SignatureMethod"
    signature_algorithm = _algorithm(signature_method, method_where)
    if signature_algorithm not in _KIND_OF_ALGORITHM:
        raise _refuse_algorithm(
            "SignatureMethod", signature_algorithm, f"{ECDSA_SHA256}, {RSA_SHA256}", method_where
        )
    if _children(signature_method, method_where):
        raise _malformed("SignatureMethod takes no parameters", method_where)

    # Reference ----------------------------------------------------------------------------
    ref_where = where + "/ds:Reference"
    _attributes(reference, frozenset({"URI", "Id", "Type"}), ref_where)
    uri = reference.get("URI")
    if uri != "":
        shown = "no URI" if uri is None else f"URI={uri!r}"
        raise _error(SIG_REFERENCE, f'the Reference has {shown}; only URI="" is allowed', ref_where)
    ref_parts = _children(reference, ref_where)
    if not ref_parts or _local(ref_parts[0]) != "ds:Transforms":
        raise _error(SIG_TRANSFORM, "the Reference has no Transforms", ref_where)
    _expect(ref_parts, ("ds:Transforms", "ds:DigestMethod", "ds:DigestValue"), ref_where)
    transforms_element, digest_method, digest_value_element = ref_parts

    transforms_where = ref_where + "/ds:Transforms"
    _attributes(transforms_element, frozenset(), transforms_where)
    transforms = _children(transforms_element, transforms_where)
    if any(t.tag != _ds("Transform") for t in transforms):
        raise _malformed("Transforms may contain only Transform elements", transforms_where)
    algorithms = [_algorithm(t, transforms_where) for t in transforms]
    if algorithms != [ENVELOPED, EXC_C14N]:
        raise _error(
            SIG_TRANSFORM,
            f"Transforms are {algorithms}; exactly [{ENVELOPED}, {EXC_C14N}] is allowed",
            transforms_where,
        )
    if _children(transforms[0], transforms_where):
        raise _error(
            SIG_TRANSFORM, "the enveloped-signature Transform takes no parameters", transforms_where
        )
    reference_prefixes = _inclusive_prefixes(transforms[1], SIG_TRANSFORM, transforms_where)

    digest_where = ref_where + "/ds:DigestMethod"
    digest_algorithm = _algorithm(digest_method, digest_where)
    if digest_algorithm != SHA256:
        raise _refuse_algorithm("DigestMethod", digest_algorithm, SHA256, digest_where)
    if _children(digest_method, digest_where):
        raise _malformed("DigestMethod takes no parameters", digest_where)
    _attributes(digest_value_element, frozenset(), ref_where + "/ds:DigestValue")
    expected_digest = _b64(digest_value_element, ref_where + "/ds:DigestValue")
    if len(expected_digest) != 32:
        raise _malformed("DigestValue is not 32 bytes (SHA-256)", ref_where + "/ds:DigestValue")

    return signature_algorithm, expected_digest, info_prefixes, reference_prefixes


def _key_info_chain(key_info: etree._Element) -> tuple[x509.Certificate, ...]:
    where = _SIG_PATH + "/ds:KeyInfo"
    _attributes(key_info, frozenset({"Id"}), where)
    items = _children(key_info, where)
    if [_local(i) for i in items] != ["ds:X509Data"]:
        found = ", ".join(_local(i) for i in items) or "nothing"
        raise _malformed(f"KeyInfo must hold exactly one X509Data (found {found})", where)
    data_where = where + "/ds:X509Data"
    _attributes(items[0], frozenset(), data_where)
    certificates = _children(items[0], data_where)
    if not 1 <= len(certificates) <= MAX_CHAIN or any(
        c.tag != _ds("X509Certificate") for c in certificates
    ):
        raise _malformed(
            f"X509Data must hold 1 to {MAX_CHAIN} X509Certificate elements and nothing else",
            data_where,
        )
    chain: list[x509.Certificate] = []
    for element in certificates:
        _attributes(element, frozenset(), data_where)
        der = _b64(element, data_where + "/ds:X509Certificate")
        try:
            chain.append(_certificate(der))
        except ValueError as exc:
            raise _malformed(f"X509Certificate cannot be read ({exc})", data_where) from None
    return _leaf_first(tuple(chain))


def _leaf_first(chain: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
    """Put the end-entity certificate first, whatever order the signer wrote X509Data in.

    The profile says leaf first, but X509Data is a set in XML-DSig and KeyInfo is not covered
    by the signature, so the order is not evidence of anything. The leaf is the one certificate
    that issued none of the others; if that is ambiguous the order is kept as sent.
    """
    if len(chain) == 1:
        return chain
    leaves = [
        cert
        for cert in chain
        if not any(other is not cert and other.issuer == cert.subject for other in chain)
    ]
    if len(leaves) != 1:
        return chain
    return (leaves[0], *(cert for cert in chain if cert is not leaves[0]))
