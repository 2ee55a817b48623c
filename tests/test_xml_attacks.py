"""Attacks on the XML path: hostile parser input (tests/vectors/xml/) and signature attacks.

Signature attacks are generated from a freshly sealed envelope (see tests/vectors/xml/README.md):
MUTATIONS change a signed document without re-signing; RESIGNED build a cryptographically valid
signature that lies outside the profile, so the refusal is shown to come from the profile rules.
Every attack must be refused by `open_envelope` with its own stable code.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.envelope import xml_binding as xb
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import new_header
from gateway.envelope.xmldsig import (
    DS_NS,
    ECDSA_SHA256,
    ENVELOPED,
    EXC_C14N,
    RSA_SHA256,
    SHA256,
)
from gateway.envelope.xmlsafe import parse_xml
from gateway.errors import GatewayError
from gateway.model.codes import Administration, UtilityBlock
from gateway.testpki import TestPki

VECTORS = Path(__file__).parent / "vectors" / "xml"
EXPECTED = tomllib.loads((VECTORS / "intake.toml").read_text())
PAYLOAD = b'<AEOChange xmlns="urn:example"><Status>GRANTED</Status></AEOChange>'

EXC_C14N_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
C14N_INCLUSIVE = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
ECDSA_SHA1 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
NSMAP = {"ds": DS_NS, "e": xb.NS}


def ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def env(name: str) -> str:
    return f"{{{xb.NS}}}{name}"


def refusal(raw: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        xb.open_envelope(raw)
    return caught.value


def dump(name: str, raw: bytes) -> None:
    """GNC_DUMP_VECTORS=DIR writes each generated vector out for inspection."""
    directory = os.environ.get("GNC_DUMP_VECTORS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.xml").write_bytes(raw)


# --- static parser vectors ---------------------------------------------------------------------


@pytest.fixture
def secret_url(tmp_path: Path) -> tuple[str, str]:
    secret = "GNC-SECRET-" + secrets.token_hex(12)
    path = tmp_path / "secret.txt"
    path.write_text(secret + "\n")
    return secret, path.as_uri()


def load_vector(name: str, url: str) -> bytes:
    return (VECTORS / name).read_bytes().replace(b"@SECRET_URL@", url.encode())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_intake_vector_is_refused_by_parse_xml(name: str, secret_url: tuple[str, str]) -> None:
    expected = EXPECTED[name]
    secret, url = secret_url
    data = load_vector(name, url)
    limits = {k: expected[k] for k in ("max_depth", "max_elements") if k in expected}
    if not expected["intake"]:
        root = parse_xml(data, max_bytes=1024 * 1024, **limits)
        assert secret not in etree.tostring(root).decode()
        assert secret not in "".join(root.itertext())
        return
    with pytest.raises(GatewayError) as caught:
        parse_xml(data, max_bytes=1024 * 1024, **limits)
    assert caught.value.code == expected["intake"], expected["what"]
    assert secret not in str(caught.value)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_intake_vector_is_refused_by_open_envelope(name: str, secret_url: tuple[str, str]) -> None:
    expected = EXPECTED[name]
    secret, url = secret_url
    error = refusal(load_vector(name, url))
    assert error.code == expected["envelope"], expected["what"]
    assert secret not in str(error)


def test_every_vector_file_has_an_expectation() -> None:
    files = {p.name for p in VECTORS.glob("*.xml")}
    assert files == set(EXPECTED)


def test_oversize_document_is_refused_before_parsing() -> None:
    oversize = b"<Envelope>" + b"A" * (1024 * 1024) + b"</Envelope>"
    with pytest.raises(GatewayError) as caught:
        parse_xml(oversize, max_bytes=1024 * 1024)
    assert caught.value.code == "XML_TOO_LARGE"
    with pytest.raises(GatewayError) as caught:
        xb.open_envelope(oversize, max_bytes=1024 * 1024)
    assert caught.value.code == "ENV_OVERSIZE"


# --- a fresh signed envelope and its parts -----------------------------------------------------


@pytest.fixture(scope="module")
def sealed(pki: TestPki) -> bytes:
    header = new_header(
        payload=PAYLOAD,
        utility_block=UtilityBlock.UB1,
        message_type="AEO.Delta",
        sender=Administration.EU,
        receiver=Administration.US,
        payload_content_type="application/xml",
    )
    raw = xb.seal(header, PAYLOAD, pki.identity("EU"))
    assert xb.open_envelope(raw).payload == PAYLOAD  # the control: unmodified, it opens
    return raw


def one(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=NSMAP)
    assert isinstance(found, list) and len(found) == 1, path
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


def forged_header(root: etree._Element) -> etree._Element:
    header = copy.deepcopy(one(root, "/e:Envelope/e:Header"))
    one(header, "e:Receiver").text = "CN"
    return header


Mutation = Callable[[etree._Element, TestPki], None]


def _set_algorithm(path: str, algorithm: str) -> Mutation:
    def mutate(root: etree._Element, pki: TestPki) -> None:
        one(root, path).set("Algorithm", algorithm)

    return mutate


def _transforms(*algorithms: str) -> Mutation:
    def mutate(root: etree._Element, pki: TestPki) -> None:
        transforms = one(root, "//ds:Transforms")
        for child in list(transforms):
            transforms.remove(child)
        for algorithm in algorithms:
            etree.SubElement(transforms, ds("Transform"), Algorithm=algorithm)

    return mutate


def _tamper_payload(root: etree._Element, pki: TestPki) -> None:
    one(root, "/e:Envelope/e:Payload").text = base64.b64encode(
        PAYLOAD.replace(b"GRANTED", b"REVOKED")
    ).decode()


def _tamper_receiver(root: etree._Element, pki: TestPki) -> None:
    one(root, "/e:Envelope/e:Header/e:Receiver").text = "CN"


def _remove_signature(root: etree._Element, pki: TestPki) -> None:
    root.remove(one(root, "/e:Envelope/ds:Signature"))


def _second_signature_appended(root: etree._Element, pki: TestPki) -> None:
    root.append(copy.deepcopy(one(root, "/e:Envelope/ds:Signature")))


def _second_signature_in_header(root: etree._Element, pki: TestPki) -> None:
    one(root, "/e:Envelope/e:Header").append(copy.deepcopy(one(root, "/e:Envelope/ds:Signature")))


def _second_signature_in_keyinfo(root: etree._Element, pki: TestPki) -> None:
    signature = one(root, "/e:Envelope/ds:Signature")
    one(signature, "ds:KeyInfo").append(copy.deepcopy(signature))


def _duplicated_header_first(root: etree._Element, pki: TestPki) -> None:
    root.insert(0, forged_header(root))


def _duplicated_header_before_signature(root: etree._Element, pki: TestPki) -> None:
    root.insert(2, forged_header(root))


def _object_wrapping_header(root: etree._Element, pki: TestPki) -> None:
    """The signed Header moves into ds:Object; a forged one takes its place."""
    original = one(root, "/e:Envelope/e:Header")
    forged = forged_header(root)
    root.replace(original, forged)
    obj = etree.SubElement(one(root, "/e:Envelope/ds:Signature"), ds("Object"))
    obj.append(original)


def _object_wrapping_document(root: etree._Element, pki: TestPki) -> None:
    """A copy of the whole signed document inside ds:Object, the visible one altered."""
    signature = one(root, "/e:Envelope/ds:Signature")
    obj = etree.SubElement(signature, ds("Object"))
    wrapped = etree.SubElement(obj, env("Envelope"))
    for child in root:
        if child is not signature:
            wrapped.append(copy.deepcopy(child))
    one(root, "/e:Envelope/e:Header/e:Receiver").text = "CN"


def _reference_to_id(root: etree._Element, pki: TestPki) -> None:
    one(root, "/e:Envelope/e:Header").set("Id", "signed")
    one(root, "//ds:Reference").set("URI", "#signed")


def _reference_without_uri(root: etree._Element, pki: TestPki) -> None:
    del one(root, "//ds:Reference").attrib["URI"]


def _reference_external(root: etree._Element, pki: TestPki) -> None:
    one(root, "//ds:Reference").set("URI", "http://127.0.0.1:9/envelope.xml")


def _two_references(root: etree._Element, pki: TestPki) -> None:
    reference = one(root, "//ds:Reference")
    reference.addnext(copy.deepcopy(reference))


def _signature_in_header(root: etree._Element, pki: TestPki) -> None:
    one(root, "/e:Envelope/e:Header").append(one(root, "/e:Envelope/ds:Signature"))


def _signature_not_last(root: etree._Element, pki: TestPki) -> None:
    one(root, "/e:Envelope/e:Payload").addprevious(one(root, "/e:Envelope/ds:Signature"))


def _xpath_in_enveloped_transform(root: etree._Element, pki: TestPki) -> None:
    transform = one(root, "//ds:Transform[1]")
    etree.SubElement(transform, ds("XPath")).text = "not(ancestor-or-self::e:Header)"


def _xpath_in_exc_transform(root: etree._Element, pki: TestPki) -> None:
    etree.SubElement(one(root, "//ds:Transform[2]"), ds("XPath")).text = "true()"


def _default_prefix_list(root: etree._Element, pki: TestPki) -> None:
    inclusive = etree.SubElement(
        one(root, "//ds:Transform[2]"),
        "{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces",
    )
    inclusive.set("PrefixList", "#default")


def _key_info_beside_x509(name: str) -> Mutation:
    def mutate(root: etree._Element, pki: TestPki) -> None:
        element = etree.Element(ds(name))
        if name == "RetrievalMethod":
            element.set("URI", "http://127.0.0.1:9/key.der")
        else:
            element.text = "EU gateway signing"
        one(root, "//ds:KeyInfo").insert(0, element)

    return mutate


def _key_info_only(name: str) -> Mutation:
    def mutate(root: etree._Element, pki: TestPki) -> None:
        key_info = one(root, "//ds:KeyInfo")
        key_info.remove(one(key_info, "ds:X509Data"))
        element = etree.SubElement(key_info, ds(name))
        if name == "RetrievalMethod":
            element.set("URI", "http://127.0.0.1:9/key.der")
        else:
            element.text = "EU gateway signing"

    return mutate


def _certificate(stem: str) -> Mutation:
    def mutate(root: etree._Element, pki: TestPki) -> None:
        der = pki.cert("EU", stem).public_bytes(Encoding.DER)
        one(root, "//ds:X509Certificate").text = base64.b64encode(der).decode()

    return mutate


def _garbage_certificate(root: etree._Element, pki: TestPki) -> None:
    one(root, "//ds:X509Certificate").text = base64.b64encode(b"not a certificate").decode()


def _flip_signature(root: etree._Element, pki: TestPki) -> None:
    element = one(root, "//ds:SignatureValue")
    value = bytearray(base64.b64decode(element.text or ""))
    value[10] ^= 0x01
    element.text = base64.b64encode(bytes(value)).decode()


def _garbage_digest(root: etree._Element, pki: TestPki) -> None:
    one(root, "//ds:DigestValue").text = "***"


MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "tampered_payload": (_tamper_payload, "SIG_DIGEST_MISMATCH"),
    "tampered_header_field": (_tamper_receiver, "SIG_DIGEST_MISMATCH"),
    "signature_removed": (_remove_signature, "SIG_MISSING"),
    "second_signature_appended": (_second_signature_appended, "SIG_MULTIPLE"),
    "second_signature_in_header": (_second_signature_in_header, "SIG_MULTIPLE"),
    "second_signature_inside_keyinfo": (_second_signature_in_keyinfo, "SIG_MULTIPLE"),
    "duplicated_header_forged_first": (_duplicated_header_first, "SIG_DIGEST_MISMATCH"),
    "duplicated_header_before_signature": (
        _duplicated_header_before_signature,
        "SIG_DIGEST_MISMATCH",
    ),
    "object_wrapping_moved_header": (_object_wrapping_header, "SIG_MALFORMED"),
    "object_wrapping_whole_document": (_object_wrapping_document, "SIG_MALFORMED"),
    "reference_uri_to_id": (_reference_to_id, "SIG_REFERENCE_NOT_ROOT"),
    "reference_without_uri": (_reference_without_uri, "SIG_REFERENCE_NOT_ROOT"),
    "reference_external_uri": (_reference_external, "SIG_REFERENCE_NOT_ROOT"),
    "two_references": (_two_references, "SIG_REFERENCE_NOT_ROOT"),
    "signature_inside_header": (_signature_in_header, "SIG_PLACEMENT"),
    "signature_not_last": (_signature_not_last, "SIG_PLACEMENT"),
    "xpath_transform_added": (_transforms(ENVELOPED, XPATH, EXC_C14N), "SIG_TRANSFORM_NOT_ALLOWED"),
    "xslt_transform": (_transforms(ENVELOPED, XSLT), "SIG_TRANSFORM_NOT_ALLOWED"),
    "base64_transform": (_transforms(ENVELOPED, BASE64, EXC_C14N), "SIG_TRANSFORM_NOT_ALLOWED"),
    "no_transforms": (_transforms(), "SIG_TRANSFORM_NOT_ALLOWED"),
    "enveloped_transform_missing": (_transforms(EXC_C14N), "SIG_TRANSFORM_NOT_ALLOWED"),
    "transforms_reversed": (_transforms(EXC_C14N, ENVELOPED), "SIG_TRANSFORM_NOT_ALLOWED"),
    "inclusive_c14n_transform": (
        _transforms(ENVELOPED, C14N_INCLUSIVE),
        "SIG_TRANSFORM_NOT_ALLOWED",
    ),
    "comments_c14n_transform": (
        _transforms(ENVELOPED, EXC_C14N_COMMENTS),
        "SIG_TRANSFORM_NOT_ALLOWED",
    ),
    "xpath_parameter_in_enveloped": (_xpath_in_enveloped_transform, "SIG_TRANSFORM_NOT_ALLOWED"),
    "xpath_parameter_in_exc_c14n": (_xpath_in_exc_transform, "SIG_TRANSFORM_NOT_ALLOWED"),
    "prefix_list_default": (_default_prefix_list, "SIG_TRANSFORM_NOT_ALLOWED"),
    "sha1_digest_method": (_set_algorithm("//ds:DigestMethod", SHA1), "SIG_ALGORITHM_NOT_ALLOWED"),
    "rsa_sha1_method": (
        _set_algorithm("//ds:SignatureMethod", RSA_SHA1),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "ecdsa_sha1_method": (
        _set_algorithm("//ds:SignatureMethod", ECDSA_SHA1),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "hmac_method": (
        _set_algorithm("//ds:SignatureMethod", HMAC_SHA256),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "comments_canonicalization": (
        _set_algorithm("//ds:CanonicalizationMethod", EXC_C14N_COMMENTS),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "inclusive_canonicalization": (
        _set_algorithm("//ds:CanonicalizationMethod", C14N_INCLUSIVE),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "keyinfo_retrieval_method_only": (_key_info_only("RetrievalMethod"), "SIG_MALFORMED"),
    "keyinfo_key_name_only": (_key_info_only("KeyName"), "SIG_MALFORMED"),
    "keyinfo_key_name_beside_x509": (_key_info_beside_x509("KeyName"), "SIG_MALFORMED"),
    "keyinfo_retrieval_beside_x509": (_key_info_beside_x509("RetrievalMethod"), "SIG_MALFORMED"),
    "certificate_swapped": (_certificate("signing-next"), "SIG_INVALID"),
    "certificate_of_other_key_type": (_certificate("signing-rsa"), "SIG_KEY_MISMATCH"),
    "certificate_garbage": (_garbage_certificate, "SIG_MALFORMED"),
    "signature_value_flipped": (_flip_signature, "SIG_INVALID"),
    "digest_value_garbage": (_garbage_digest, "SIG_MALFORMED"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutated_signed_envelope_is_refused(name: str, sealed: bytes, pki: TestPki) -> None:
    mutate, code = MUTATIONS[name]
    root = etree.fromstring(sealed)
    mutate(root, pki)
    raw = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert raw != sealed
    dump(name, raw)
    error = refusal(raw)
    assert error.code == code, str(error)
    assert error.location


def test_text_after_the_signature_is_covered(sealed: bytes) -> None:
    """The enveloped transform removes the Signature element, not the text that follows it."""
    tampered = sealed.replace(b"</ds:Signature></Envelope>", b"</ds:Signature>\n</Envelope>")
    assert tampered != sealed
    assert refusal(tampered).code == "SIG_DIGEST_MISMATCH"


def test_comment_inside_a_signed_field_cannot_truncate_it(sealed: bytes) -> None:
    """Comments are outside exclusive C14N, so inserting one keeps the digest; a reader that
    stopped at the comment would see 'AEO' (the SAML comment-truncation attack). We read the
    whole signed value."""
    with_comment = sealed.replace(b"<MessageType>AEO.Delta<", b"<MessageType>AEO<!-- -->.Delta<")
    assert with_comment != sealed
    assert xb.open_envelope(with_comment).header.message_type == "AEO.Delta"


# --- re-signed: valid signatures outside the profile -------------------------------------------


@dataclass
class Forge:
    """How to sign; the defaults are the profile, each attack changes one thing."""

    stem: str = "signing"
    c14n: str = EXC_C14N
    method: str = ECDSA_SHA256
    uri: str = ""
    transforms: tuple[str, ...] = (ENVELOPED, EXC_C14N)
    digest: tuple[str, str] = ("sha256", SHA256)
    extra_reference: str | None = None
    id_on_header: bool = False
    object_with_header: bool = False
    hmac_key_from_cert: bool = False


def _hash_for(method: str) -> hashes.HashAlgorithm:
    return hashes.SHA1() if method.endswith("sha1") else hashes.SHA256()


def _c14n(node: etree._Element | etree._ElementTree, with_comments: bool) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=with_comments)


def forge_signed(sealed: bytes, pki: TestPki, forge: Forge) -> bytes:
    root = etree.fromstring(sealed)
    root.remove(one(root, "/e:Envelope/ds:Signature"))
    identity: SigningIdentity = pki.identity("EU", forge.stem)
    header = one(root, "/e:Envelope/e:Header")
    if forge.id_on_header:
        header.set("Id", "h")

    def digest_of(uri: str) -> str:
        with_comments = forge.transforms[-1].endswith("WithComments")
        if uri == "":
            data = _c14n(root.getroottree(), with_comments)
        else:
            data = _c14n(one(root, f"//*[@Id='{uri[1:]}']"), with_comments)
        return base64.b64encode(hashlib.new(forge.digest[0], data).digest()).decode()

    signature = etree.SubElement(root, ds("Signature"), nsmap={"ds": DS_NS})
    signed_info = etree.SubElement(signature, ds("SignedInfo"))
    etree.SubElement(signed_info, ds("CanonicalizationMethod"), Algorithm=forge.c14n)
    etree.SubElement(signed_info, ds("SignatureMethod"), Algorithm=forge.method)
    for uri in (forge.uri, forge.extra_reference):
        if uri is None:
            continue
        reference = etree.SubElement(signed_info, ds("Reference"), URI=uri)
        transforms = etree.SubElement(reference, ds("Transforms"))
        for algorithm in forge.transforms:
            etree.SubElement(transforms, ds("Transform"), Algorithm=algorithm)
        etree.SubElement(reference, ds("DigestMethod"), Algorithm=forge.digest[1])
        etree.SubElement(reference, ds("DigestValue")).text = "" if uri == "" else digest_of(uri)
    value = etree.SubElement(signature, ds("SignatureValue"))
    x509_data = etree.SubElement(etree.SubElement(signature, ds("KeyInfo")), ds("X509Data"))
    cert_der = identity.certificate.public_bytes(Encoding.DER)
    etree.SubElement(x509_data, ds("X509Certificate")).text = base64.b64encode(cert_der).decode()
    if forge.object_with_header:
        obj = etree.SubElement(signature, ds("Object"))
        obj.append(copy.deepcopy(header))
        header.set("Id", "decoy")
        one(header, "e:Receiver").text = "CN"
    # The whole-document digest is over the document without the Signature (enveloped).
    for reference in signed_info.iterfind(ds("Reference")):
        if reference.get("URI") == "":
            root.remove(signature)
            one(reference, "ds:DigestValue").text = digest_of("")
            root.append(signature)

    data = _c14n(signed_info, forge.c14n.endswith("WithComments"))
    key = identity.private_key
    if forge.hmac_key_from_cert:
        raw_value = hmac.new(cert_der, data, hashlib.sha256).digest()
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_hash_for(forge.method))))
        raw_value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        raw_value = key.sign(data, padding.PKCS1v15(), _hash_for(forge.method))
    value.text = base64.b64encode(raw_value).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("stem", ["signing", "signing-rsa"])
def test_forge_control_with_the_profile_opens(sealed: bytes, pki: TestPki, stem: str) -> None:
    """The forger is honest: with the profile's choices its signatures verify."""
    method = ECDSA_SHA256 if stem == "signing" else RSA_SHA256
    raw = forge_signed(sealed, pki, Forge(stem=stem, method=method))
    assert xb.open_envelope(raw).payload == PAYLOAD


RESIGNED: dict[str, tuple[Forge, str]] = {
    "valid_sha1_digest": (Forge(digest=("sha1", SHA1)), "SIG_ALGORITHM_NOT_ALLOWED"),
    "valid_rsa_sha1_signature": (
        Forge(stem="signing-rsa", method=RSA_SHA1),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "valid_ecdsa_sha1_signature": (Forge(method=ECDSA_SHA1), "SIG_ALGORITHM_NOT_ALLOWED"),
    "valid_hmac_keyed_with_public_certificate": (
        Forge(method=HMAC_SHA256, hmac_key_from_cert=True),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "valid_comments_canonicalization": (
        Forge(c14n=EXC_C14N_COMMENTS),
        "SIG_ALGORITHM_NOT_ALLOWED",
    ),
    "valid_comments_c14n_transform": (
        Forge(transforms=(ENVELOPED, EXC_C14N_COMMENTS)),
        "SIG_TRANSFORM_NOT_ALLOWED",
    ),
    "valid_reference_to_id": (
        Forge(uri="#h", transforms=(EXC_C14N,), id_on_header=True),
        "SIG_REFERENCE_NOT_ROOT",
    ),
    "valid_two_references": (
        Forge(extra_reference="#h", id_on_header=True),
        "SIG_REFERENCE_NOT_ROOT",
    ),
    "valid_object_wrapping": (
        Forge(uri="#h", transforms=(EXC_C14N,), object_with_header=True, id_on_header=True),
        "SIG_MALFORMED",
    ),
    "valid_ecdsa_method_with_rsa_key": (
        Forge(stem="signing-rsa", method=ECDSA_SHA256),
        "SIG_KEY_MISMATCH",
    ),
}


@pytest.mark.parametrize("name", sorted(RESIGNED))
def test_validly_signed_but_outside_the_profile_is_refused(
    name: str, sealed: bytes, pki: TestPki
) -> None:
    forge, code = RESIGNED[name]
    raw = forge_signed(sealed, pki, forge)
    dump(name, raw)
    error = refusal(raw)
    assert error.code == code, str(error)


@pytest.mark.parametrize("stem", ["signing", "signing-rsa"])
def test_fast_profile_match_and_full_checks_agree(pki: TestPki, stem: str) -> None:
    """verify_enveloped recognises our own SignedInfo by its canonical form; the element-by-
    element checks must reach the same algorithm and digest on it."""
    from gateway.envelope import xmldsig

    header = new_header(
        payload=PAYLOAD,
        utility_block=UtilityBlock.UB3,
        message_type="RiskInfo",
        sender=Administration.EU,
        receiver=Administration.JP,
        payload_content_type="application/xml",
    )
    root = etree.fromstring(xb.seal(header, PAYLOAD, pki.identity("EU", stem)))
    signed_info = one(root, "//ds:SignedInfo")
    fast = xmldsig._PROFILE_SIGNED_INFO.fullmatch(xmldsig.canonicalize(signed_info))
    assert fast is not None
    algorithm, digest, info_prefixes, reference_prefixes = xmldsig._check_signed_info(signed_info)
    assert (algorithm, digest) == (fast.group(1).decode(), base64.b64decode(fast.group(2)))
    assert info_prefixes == reference_prefixes == ()
    # Pretty-printing the SignedInfo leaves the fast path and must still verify the same way.
    signed_info.text = "\n"
    with pytest.raises(GatewayError) as caught:
        xmldsig.verify_enveloped(root)
    assert caught.value.code == "SIG_INVALID"  # SignedInfo changed: its signature no longer fits
