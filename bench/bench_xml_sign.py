"""XML signing benchmark: our strict XML-DSig profile against signxml and the bare primitives.

One ~4 KB envelope document (ECDSA P-256 key from the test PKI), measured in the same run:

  ours     parse the unsigned document, gateway.envelope.xmldsig.sign_enveloped, serialise;
           then hardened parse (xmlsafe.parse_xml) and verify_enveloped of the signed bytes
  signxml  parse, signxml XMLSigner.sign (enveloped, exc-c14n, ecdsa-sha256, sha256),
           serialise; then XMLVerifier.verify of the signed bytes, same key and certificate
  bare     the floor: parse + exclusive C14N + ECDSA sign, then parse + exclusive C14N + ECDSA
           verify, with lxml and cryptography and nothing else
  envelope (for information) xml_binding.seal + open_envelope: the above plus building the
           document, the XSD validation and the header/payload extraction

Each figure is sign+verify pairs per CPU-second of one core, the best of 12 short slices taken
round-robin (robust against other load on the machine). The issue asks for ours/signxml >= 1.5;
run as a script, the exit status is 1 when it is not met.

    .venv/bin/python bench/bench_xml_sign.py       (bench/run_all.py calls main())

signxml gets the key and certificate as loaded objects, so it does not pay for PEM parsing.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
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
from gateway.envelope.xmldsig import sign_enveloped, verify_enveloped
from gateway.envelope.xmlsafe import parse_xml
from gateway.model.codes import Administration, UtilityBlock
from gateway.model.header import EnvelopeHeader
from gateway.testpki import init_test_pki

TARGET_BYTES = 4096
SLICE_SECONDS = 0.25
ROUNDS = 12  # 4 contenders x 12 slices x 0.25 s: about 12 s
REQUIRED_RATIO = 1.5


def _rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per CPU-second of this process over about `seconds` of wall time.

    CPU time, not wall time: on a shared machine other processes take the core away, and that
    must not count against whichever contender happened to be running.
    """
    count = 0
    start_cpu = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(5):
            operation()
        count += 5
    return count / max(time.process_time() - start_cpu, 1e-9)


def _payload_for(size: int) -> bytes:
    return (
        b"<Operator><EORI>DE123456789012345</EORI><Status>GRANTED</Status></Operator>"
        * (size // 70 + 1)
    )[:size]


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        pki = init_test_pki(Path(directory), ("EU", "US"))
        identity = pki.identity("EU")
        certificate = pki.cert("EU", "signing")
    key = identity.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    public_key = key.public_key()

    def header_and_payload(size: int) -> tuple[EnvelopeHeader, bytes]:
        payload = _payload_for(size)
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock.UB1,
            message_type="AEO.Delta",
            sender=Administration.EU,
            receiver=Administration.US,
            payload_content_type="application/xml",
        )
        return header, payload

    header, payload = header_and_payload(0)
    base = len(xb.seal(header, payload, identity))
    header, payload = header_and_payload(max(0, (TARGET_BYTES - base) * 3 // 4))
    signed_size = len(xb.seal(header, payload, identity))
    unsigned = etree.tostring(xb.envelope_document(header, payload))
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def ours() -> None:
        root = etree.fromstring(unsigned, parser)
        sign_enveloped(root, identity)
        signed = etree.tostring(root)
        received = parse_xml(
            signed,
            max_bytes=1 << 20,
            max_depth=xb.MAX_DEPTH,
            max_elements=xb.MAX_ELEMENTS,
            remove_comments=True,
        )
        verify_enveloped(received)

    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    config = SignatureConfiguration(
        signature_methods=frozenset({SignatureMethod.ECDSA_SHA256}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )

    def with_signxml() -> None:
        root = etree.fromstring(unsigned, parser)
        signed = etree.tostring(signer.sign(root, key=key, cert=[certificate]))
        XMLVerifier().verify(signed, x509_cert=certificate, expect_config=config)

    def bare() -> None:
        data = etree.tostring(etree.fromstring(unsigned, parser), method="c14n", exclusive=True)
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        again = etree.tostring(etree.fromstring(unsigned, parser), method="c14n", exclusive=True)
        public_key.verify(signature, again, ec.ECDSA(hashes.SHA256()))

    def envelope() -> None:
        xb.open_envelope(xb.seal(header, payload, identity))

    # Sanity (and warm-up): every contender really signs and verifies this document.
    ours()
    with_signxml()
    bare()
    envelope()

    contenders = {"ours": ours, "signxml": with_signxml, "bare": bare, "envelope": envelope}
    best = dict.fromkeys(contenders, 0.0)
    # Short slices, round-robin, best slice per contender: a burst of load elsewhere on the
    # machine hits one slice of one contender, not a whole measurement.
    for _ in range(ROUNDS):
        for name, operation in contenders.items():
            best[name] = max(best[name], _rate(operation, SLICE_SECONDS))
    return {
        "document_bytes": float(signed_size),
        "ours_per_s": best["ours"],
        "signxml_per_s": best["signxml"],
        "bare_per_s": best["bare"],
        "envelope_per_s": best["envelope"],
        "ours_vs_signxml": best["ours"] / best["signxml"],
        "ours_vs_bare": best["ours"] / best["bare"],
    }


def report(figures: dict[str, float]) -> str:
    ratio = figures["ours_vs_signxml"]
    verdict = "ok" if ratio >= REQUIRED_RATIO else f"BELOW the required {REQUIRED_RATIO}"
    return "\n".join(
        [
            f"XML sign+verify of a {figures['document_bytes']:.0f}-byte envelope, ECDSA P-256 "
            "(pairs per second)",
            f"  ours (xmldsig profile)         {figures['ours_per_s']:9.0f}",
            f"  signxml                        {figures['signxml_per_s']:9.0f}",
            f"  bare primitives (limit)        {figures['bare_per_s']:9.0f}",
            f"  seal + open_envelope (info)    {figures['envelope_per_s']:9.0f}",
            f"  ours / signxml                 {ratio:9.2f}   "
            f"(required >= {REQUIRED_RATIO}: {verdict})",
            f"  ours / bare primitives         {figures['ours_vs_bare']:9.2f}",
        ]
    )


if __name__ == "__main__":
    result = main()
    print(report(result))
    sys.exit(0 if result["ours_vs_signxml"] >= REQUIRED_RATIO else 1)
