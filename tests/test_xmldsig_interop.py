"""Our XML-DSig profile against two independent implementations, in both directions.

xmlsec1 (the Debian package, libxmlsec1 with OpenSSL) and signxml (pure Python on lxml and
cryptography) each verify what the gateway signs, and the gateway verifies what each of them
signs with the same profile: enveloped, exclusive C14N, ECDSA-SHA256 or RSA-SHA256, SHA-256,
the certificate in X509Data.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import signxml.exceptions
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from gateway.envelope import xml_binding as xb
from gateway.envelope.opened import new_header
from gateway.envelope.xmldsig import ECDSA_SHA256, RSA_SHA256
from gateway.errors import GatewayError
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import EnvelopeHeader
from gateway.testpki import TestPki

XMLSEC1 = "/usr/bin/xmlsec1"
PAYLOAD = b'<ControlResult xmlns="urn:example"><Outcome>NO_FINDINGS</Outcome></ControlResult>'
KEYS = {"ecdsa": ("signing", ECDSA_SHA256), "rsa": ("signing-rsa", RSA_SHA256)}
SIGNXML_METHOD = {"ecdsa": SignatureMethod.ECDSA_SHA256, "rsa": SignatureMethod.RSA_SHA256}


@pytest.fixture(scope="module")
def xmlsec1() -> str:
    if os.path.exists(XMLSEC1):
        return XMLSEC1
    if os.environ.get("CI") == "true":
        pytest.fail(f"{XMLSEC1} is missing in CI: `make setup` installs the Debian package xmlsec1")
    pytest.skip(f"{XMLSEC1} is not installed (apt-get install xmlsec1, or `make setup`)")


def header() -> EnvelopeHeader:
    return new_header(
        payload=PAYLOAD,
        utility_block=UtilityBlock.UB2,
        message_type="ControlResult",
        sender=Administration.EU,
        receiver=Administration.CN,
        payload_content_type="application/xml",
    )


def xmlsec1_verify(
    xmlsec1: str, document: bytes, ca: Path, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "to-verify.xml"
    path.write_bytes(document)
    return subprocess.run(
        [
            xmlsec1,
            "--verify",
            "--trusted-pem",
            str(ca),
            "--enabled-key-data",
            "x509",
            "--enabled-reference-uris",
            "empty",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ds:SignedInfo>
    <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
    <ds:SignatureMethod Algorithm="{method}"/>
    <ds:Reference URI="">
      <ds:Transforms>
        <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
        <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#">{inclusive}</ds:Transform>
      </ds:Transforms>
      <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
      <ds:DigestValue/>
    </ds:Reference>
  </ds:SignedInfo>
  <ds:SignatureValue/>
  <ds:KeyInfo>
    <ds:X509Data><ds:X509Certificate/></ds:X509Data>
  </ds:KeyInfo>
</ds:Signature>"""
INCLUSIVE = (
    '<ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="cus"/>'
)


def xmlsec1_sign(
    xmlsec1: str, pki: TestPki, tmp_path: Path, kind: str, *, prefix_list: bool = False
) -> bytes:
    """An envelope template with our profile, signed by `xmlsec1 --sign`."""
    stem, method = KEYS[kind]
    root = xb.envelope_document(header(), PAYLOAD)
    if prefix_list:
        # A namespace declared on the root and used nowhere: rendered only through PrefixList.
        root = etree.fromstring(
            etree.tostring(root).replace(
                b'<Envelope xmlns="urn:gnc-gateway:envelope:1"',
                b'<Envelope xmlns="urn:gnc-gateway:envelope:1" xmlns:cus="urn:example:customs"',
            )
        )
    signature = etree.fromstring(
        TEMPLATE.format(method=method, inclusive=INCLUSIVE if prefix_list else "")
    )
    signature.tail = "\n"  # text after the Signature: kept by the enveloped transform
    root.append(signature)
    template = tmp_path / f"template-{kind}.xml"
    template.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    signed = tmp_path / f"signed-{kind}.xml"
    result = subprocess.run(
        [
            xmlsec1,
            "--sign",
            "--privkey-pem",
            f"{pki.key_path('EU', stem)},{pki.path('EU', stem)}",
            "--output",
            str(signed),
            str(template),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return signed.read_bytes()


# --- xmlsec1 ---------------------------------------------------------------------------------


@pytest.mark.xmlsec1
@pytest.mark.parametrize("kind", sorted(KEYS))
def test_xmlsec1_verifies_what_we_sign(
    xmlsec1: str, pki: TestPki, tmp_path: Path, kind: str
) -> None:
    raw = xb.seal(header(), PAYLOAD, pki.identity("EU", KEYS[kind][0]))
    result = xmlsec1_verify(xmlsec1, raw, pki.path("EU", "ca"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout + result.stderr
    # Control: xmlsec1 does check what it is given.
    tampered = raw.replace(b"<Receiver>CN<", b"<Receiver>JP<")
    assert xmlsec1_verify(xmlsec1, tampered, pki.path("EU", "ca"), tmp_path).returncode != 0
    other_ca = xmlsec1_verify(xmlsec1, raw, pki.path("US", "ca"), tmp_path)
    assert other_ca.returncode != 0


@pytest.mark.xmlsec1
def test_xmlsec1_verifies_our_receipt(xmlsec1: str, pki: TestPki, tmp_path: Path) -> None:
    from gateway.envelope.receipts import accepted_receipt

    opened = xb.open_envelope(xb.seal(header(), PAYLOAD, pki.identity("EU")))
    receipt = xb.seal_receipt(accepted_receipt(opened, Administration.CN), pki.identity("CN"))
    result = xmlsec1_verify(xmlsec1, receipt, pki.path("CN", "ca"), tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.xmlsec1
@pytest.mark.parametrize("kind", sorted(KEYS))
def test_we_verify_what_xmlsec1_signs(
    xmlsec1: str, pki: TestPki, tmp_path: Path, kind: str
) -> None:
    signed = xmlsec1_sign(xmlsec1, pki, tmp_path, kind)
    opened = xb.open_envelope(signed)
    assert opened.payload == PAYLOAD
    assert opened.header.receiver is Administration.CN
    assert opened.signer_chain[0] == pki.cert("EU", KEYS[kind][0])
    # Control: the same document with one header field changed is refused.
    with pytest.raises(GatewayError) as caught:
        xb.open_envelope(signed.replace(b"<Receiver>CN<", b"<Receiver>JP<"))
    assert caught.value.code == "SIG_DIGEST_MISMATCH"


@pytest.mark.xmlsec1
def test_we_honour_an_inclusive_prefix_list_as_xmlsec1_does(
    xmlsec1: str, pki: TestPki, tmp_path: Path
) -> None:
    signed = xmlsec1_sign(xmlsec1, pki, tmp_path, "ecdsa", prefix_list=True)
    assert b'PrefixList="cus"' in signed
    assert xb.open_envelope(signed).payload == PAYLOAD
    # Without the PrefixList the unused declaration is not rendered: the digest must differ.
    stripped = etree.fromstring(signed)
    inclusive = stripped.find(".//{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces")
    assert inclusive is not None
    inclusive.getparent().remove(inclusive)  # type: ignore[union-attr]
    with pytest.raises(GatewayError) as caught:
        xb.open_envelope(etree.tostring(stripped, xml_declaration=True, encoding="UTF-8"))
    assert caught.value.code == "SIG_DIGEST_MISMATCH"


@pytest.mark.xmlsec1
def test_xmlsec1_agrees_that_text_after_the_signature_is_signed(
    xmlsec1: str, pki: TestPki, tmp_path: Path
) -> None:
    raw = xb.seal(header(), PAYLOAD, pki.identity("EU"))
    tampered = raw.replace(b"</ds:Signature></Envelope>", b"</ds:Signature>\n</Envelope>")
    assert tampered != raw
    assert xmlsec1_verify(xmlsec1, tampered, pki.path("EU", "ca"), tmp_path).returncode != 0
    with pytest.raises(GatewayError) as caught:
        xb.open_envelope(tampered)
    assert caught.value.code == "SIG_DIGEST_MISMATCH"


# --- signxml ---------------------------------------------------------------------------------


def signxml_config(kind: str) -> SignatureConfiguration:
    return SignatureConfiguration(
        signature_methods=frozenset({SIGNXML_METHOD[kind]}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_signxml_verifies_what_we_sign(pki: TestPki, kind: str) -> None:
    stem = KEYS[kind][0]
    h = header()
    raw = xb.seal(h, PAYLOAD, pki.identity("EU", stem))
    cert_pem = pki.cert("EU", stem).public_bytes(Encoding.PEM).decode()
    result = XMLVerifier().verify(raw, x509_cert=cert_pem, expect_config=signxml_config(kind))
    assert not isinstance(result, list)
    assert h.message_id.encode() in result.signed_data
    # Control: signxml refuses a tampered copy.
    with pytest.raises(signxml.exceptions.InvalidSignature):
        XMLVerifier().verify(
            raw.replace(b"<Receiver>CN<", b"<Receiver>JP<"),
            x509_cert=cert_pem,
            expect_config=signxml_config(kind),
        )


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_we_verify_what_signxml_signs(pki: TestPki, kind: str) -> None:
    stem = KEYS[kind][0]
    h = header()
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SIGNXML_METHOD[kind],
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(
        xb.envelope_document(h, PAYLOAD),
        key=pki.key_path("EU", stem).read_bytes(),
        cert=pki.path("EU", stem).read_text(),
    )
    raw = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    opened = xb.open_envelope(raw)
    assert opened.header == h
    assert opened.payload == PAYLOAD
    assert opened.signer_chain[0] == pki.cert("EU", stem)
