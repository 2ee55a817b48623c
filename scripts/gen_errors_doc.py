#!/usr/bin/env python3
"""Write docs/errors.md from the error-code registry, so the published list cannot drift.

    .venv/bin/python scripts/gen_errors_doc.py          # rewrite docs/errors.md
    .venv/bin/python scripts/gen_errors_doc.py --check  # exit 1 if it is out of date

Codes come from `gateway.errors.registry()` after importing every gateway module (a module may
register its own codes). The "what to do" column comes from ADVICE below; a code without an
entry gets its group's general advice, so add one when you add a code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "errors.md"

# Prefix, title, and the advice for a code of that group that has none of its own.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("ENV", "Envelope and header", "Fix the sending side's envelope construction and resend."),
    ("SIG", "Signatures", "Sign with the profile in docs (ES256/PS256, XML-DSig as specified)."),
    ("TRUST", "Trust in the signer", "Compare the signer's certificate with the partner trust."),
    ("XML", "XML intake", "Send a plain, schema-valid XML document within the limits."),
    ("DLV", "Delivery and receipts", "Check the message store and the message log."),
    ("CFG", "Configuration", "Correct the configuration file or the file it names."),
    ("TRN", "Transport", "Check the endpoint, TLS material and the partner's profile."),
    (
        "AEO",
        "UB1 AEO mutual recognition",
        "Correct the record at its source (the EU AEO export or the partner's list) as the "
        "message says, and send it again.",
    ),
    ("PRF", "Partner profiles", "Correct the partner profile file and key the message names."),
    (
        "RISK",
        "UB3 risk information",
        "Correct the record or form as the message says; a partner not cleared for it must "
        "not receive it.",
    ),
    (
        "UB2",
        "UB2 transaction data and control results",
        "Correct the EU message or record at the element the location names and submit it "
        "again; nothing of a refused message was sent.",
    ),
    ("HDL", "Handling rules", "Correct the handling-rules file and key the message names."),
    (
        "CNF",
        "Conformance suites",
        "Correct the suite file at the line named, or run the suite again until it passes.",
    ),
    ("GNC", "General", "Report it with the message id and the log excerpt."),
)

ADVICE: dict[str, str] = {
    "GNC_INTERNAL": "A bug, not bad input: nothing was accepted. Send the message id and log "
    "excerpt to the gateway's operators; resending is safe.",
    # envelope
    "ENV_MALFORMED": "The bytes are not an envelope of the binding used (protobuf `Envelope` or "
    "the XML envelope schema). Check the binding in the partner profile and that nothing "
    "re-encodes the message on the way.",
    "ENV_HEADER_INVALID": "The message names the field (location) and its rule; fix the header "
    "the sender builds (UUID ids, UTC times, known UB and label).",
    "ENV_UNKNOWN_ADMINISTRATION": "Use a code from the list in the header specification (`EU`, "
    "`US`, `CN`, `JP`, `CH`, `NO`, `AD`, `CA`, `MD`, `UA`, `HK`).",
    "ENV_PAYLOAD_DIGEST_MISMATCH": "The payload was changed after the header was signed, or the "
    "digest was computed over other bytes: compute SHA-256 over exactly the payload bytes sent.",
    "ENV_WRONG_RECEIVER": "Send it to the gateway of the administration named as receiver, or "
    "correct the receiver code.",
    "ENV_CLOCK_SKEW": "Synchronise the sender's clock (NTP); an old message must be re-created "
    "with a fresh created-at, not replayed.",
    "ENV_OVERSIZE": "Split the exchange into smaller messages (deltas or batches on the stream), "
    "or agree a larger limit in the partner profile.",
    # signatures
    "SIG_INVALID": "The signature does not match the content: the message was altered after "
    "signing or signed over other bytes. Sign the exact bytes sent; never re-serialise.",
    "SIG_MISSING": "Sign every envelope before sending; unsigned messages are never accepted.",
    "SIG_MULTIPLE": "Send exactly one signature per envelope.",
    "SIG_MALFORMED": "Produce the signature with the profile's structure (compact detached JWS "
    "with `x5c`; one XML-DSig `Signature` with `X509Data`).",
    "SIG_ALGORITHM_NOT_ALLOWED": "Use ES256 or PS256 (JWS), ecdsa-sha256 or rsa-sha256 with "
    "SHA-256 digests (XML-DSig); SHA-1 and others are refused.",
    "SIG_REFERENCE_NOT_ROOT": 'Sign the whole envelope: one `Reference` with `URI=""`.',
    "SIG_TRANSFORM_NOT_ALLOWED": "Use exactly the enveloped-signature transform followed by "
    "exclusive C14N.",
    "SIG_PLACEMENT": "Put the `Signature` element as the last child of the envelope root.",
    "SIG_DIGEST_MISMATCH": "The signed XML was altered after signing (often by pretty-printing "
    "or re-encoding): send the bytes as signed.",
    "SIG_KEY_MISMATCH": "Use ES256/ecdsa-sha256 with a P-256 key and PS256/rsa-sha256 with an "
    "RSA key of at least 2048 bits.",
    # trust
    "TRUST_UNTRUSTED": "The signer's certificate does not chain (by signature) to any CA "
    "configured for a partner, or its chain breaks a CA rule. Sign with a certificate issued by "
    "the CA exchanged with the receiving administration, and send any intermediate CAs along.",
    "TRUST_WRONG_PARTNER": "The certificate is valid but belongs to another administration than "
    "the sender header names: sign with your own administration's key, or correct the sender.",
    "TRUST_EXPIRED": "Renew the certificate (or the CA) named in the message, and give the "
    "receiving side the new one before the old expires; check both clocks.",
    "TRUST_REVOKED": "The certificate's CA has revoked it: sign with a replacement certificate "
    "and tell the receiving administration.",
    "TRUST_CERT_NOT_ALLOWED": "The receiver pins the certificates each partner may sign with. "
    "Ask them to add the certificate (rotation), or sign with the one still allowed; the old key "
    "stops verifying when its rotation window closes.",
    "TRUST_KEY_USAGE": "Sign with a dedicated signing certificate: an end-entity certificate "
    "with KeyUsage digitalSignature, not a CA certificate and not a TLS-only certificate "
    "(for mutual TLS: a certificate for TLS client authentication).",
    "TRUST_CRL_INVALID": "The receiver's copy of the partner CA's CRL is missing, stale (next "
    "update passed) or not signed by that CA: the receiving operator installs the current CRL, "
    "or configures `require_crl = false` for a partner that publishes none.",
    "TRUST_UNKNOWN_PARTNER": "The receiving gateway has no trust configured for the sender "
    "administration: exchange CA certificates and add the partner to the configuration.",
    # XML intake
    "XML_NOT_WELL_FORMED": "Send well-formed UTF-8 XML; the message gives line and column.",
    "XML_DTD_FORBIDDEN": "Remove the DOCTYPE: envelopes never carry DTDs.",
    "XML_ENTITY_FORBIDDEN": "Write characters directly or as numeric references; named entities "
    "are refused.",
    "XML_TOO_LARGE": "Split the document or agree a larger limit in the partner profile.",
    "XML_TOO_DEEP": "Flatten the document below the depth limit.",
    "XML_TOO_MANY_ELEMENTS": "Split the document into several messages.",
    "XML_SCHEMA_INVALID": "Validate against the published schema before sending; the message "
    "names the element and rule.",
    "XML_PROCESSING_INSTRUCTION": "Remove processing instructions (stylesheets and the like).",
    # delivery
    "DLV_STORE_UNAVAILABLE": "Nothing was receipted, so the sender retries. Operators: check "
    "the database and disk of the receiving gateway.",
    "DLV_DUPLICATE_CONFLICT": "A message id was reused for different content: give every new "
    "message a fresh UUID; resend only identical bytes under the same id.",
    "DLV_RECEIPT_MISMATCH": "The receipt does not prove delivery of what was sent: keep the "
    "message queued and report it to the partner; do not treat it as delivered.",
    # UB1 AEO mutual recognition
    "AEO_PREVIOUS_STATUS_MISMATCH": "A change was lost between the two sides: ask for (or send) "
    "a full list to resynchronise, then resume deltas.",
    "AEO_OUT_OF_ORDER": "An older change arrived after a newer one; nothing to do if the newer "
    "state is right, otherwise resynchronise with a full list.",
    "AEO_UNKNOWN_AUTHORISATION": "The receiver never got the grant this change refers to: "
    "resynchronise with a full list.",
    "AEO_NO_CONSENT": "Expected behaviour, not a fault: an operator who has not consented is "
    "never sent. Record the consent in the source system if it was given.",
    "AEO_IMPORT_REJECTED": "Fix every record listed in the message in the export and import the "
    "whole file again; no record of a refused file was taken.",
    "AEO_MAPPING_SPEC_INVALID": "Correct the mapping spec file in adapters/mappings that the "
    "message names.",
    # configuration
    "CFG_INVALID": "The message names the file and the setting; correct it and start again.",
    # transport
    "TRN_UNAVAILABLE": "Check the partner endpoint address, network path and TLS certificates; "
    "the message stays queued and is retried.",
    "TRN_PROTOCOL": "The endpoint is not a GNC gateway of the configured binding, or it "
    "answered with an error page: check the URL and binding in the partner profile.",
    "TRN_BAD_REQUEST": "Send `POST` with the envelope as the body, the XML content type and a "
    "Content-Length, to the path of the XML transport profile.",
    # UB2 schema packs and EU message intake (docs/ub2.md)
    "UB2_NOT_XML": "The message keeps the XML intake code (DTD, entity, size, depth) and the "
    "line; send plain XML without a DOCTYPE within the limits.",
    "UB2_UNKNOWN_MESSAGE": "Send a CC315A, a CC313A or an original DEC-DMS export/import "
    "declaration; notifications, amendment requests and other messages are not translated.",
    "UB2_WRONG_NAMESPACE": "Put the root element in the namespace its official schema declares "
    "(the message names it).",
    "UB2_SOAP_INVALID": "Send exactly one message in the SOAP 1.2 Body, no Fault, and no "
    "mustUnderstand header block; or send the message bare.",
    "UB2_OUTPUT_INVALID": "Correct the source values the code-list warnings name (each with its "
    "XPath); `gncgw validate FILE` lists them all.",
    "UB2_SCHEMA_INVALID": "Correct the element the location names (an XPath in the document "
    "sent); `gncgw validate FILE` lists every schema error at once.",
    "UB2_SCHEMA_PACK_INVALID": "Point `ub2.schema_packs.*` at the unpacked official schema set; "
    "the message names the pack and the missing or broken file.",
    "UB2_SCHEMA_PACK_MISSING": "Configure the schema pack for this kind of message "
    "(`ub2.schema_packs.ics_ens` or `ub2.schema_packs.wco_dm`) and restart the gateway.",
}


# Generated code, and Alembic migration scripts (they run only inside Alembic's context).
_NOT_IMPORTABLE = ("gateway._proto", "gateway.store.migrations")


def collect_codes() -> dict[str, str]:
    """Every registered code and its summary, after importing all gateway modules."""
    sys.path.insert(0, str(ROOT / "src"))
    import gateway
    from gateway.errors import registry

    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        name = module.name
        if name.endswith("__main__") or name.startswith(_NOT_IMPORTABLE):
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not exc.name.startswith("gateway"):
                print(f"note: {name} skipped, needs {exc.name}", file=sys.stderr)
                continue
            raise
    return {code: entry.summary for code, entry in registry().items()}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(codes: dict[str, str]) -> str:
    """docs/errors.md for these codes: a table per prefix group, codes in alphabetical order."""
    lines = [
        "# Error codes",
        "",
        "<!-- generated by scripts/gen_errors_doc.py from gateway.errors; do not edit by hand -->",
        "",
        "Every error the gateway reports carries one of these stable codes. The command line "
        "prints `error: CODE: message`; partners see the code in rejection receipts. A code, "
        "once published, never changes meaning. The message beside the code says what was "
        "wrong and where (a field, an XPath, a file).",
        "",
    ]
    known = {prefix for prefix, _, _ in GROUPS}
    groups = list(GROUPS)
    others = sorted({c.split("_", 1)[0] for c in codes} - known)
    groups += [(p, f"{p} codes", "See the message for the rule that refused.") for p in others]
    lines += ["| prefix | area |", "|---|---|"]
    lines += [f"| `{p}` | [{t}](#{p.lower()}) |" for p, t, _ in groups if _in(codes, p)]
    for prefix, title, general in groups:
        members = sorted(c for c in codes if c.split("_", 1)[0] == prefix)
        if not members:
            continue
        lines += ["", f'<a id="{prefix.lower()}"></a>', "", f"## {prefix}: {title}", ""]
        lines += ["| code | meaning | what to do |", "|---|---|---|"]
        for code in members:
            advice = ADVICE.get(code, general)
            lines.append(f"| `{code}` | {_cell(codes[code])} | {_cell(advice)} |")
    return "\n".join(lines) + "\n"


def _in(codes: dict[str, str], prefix: str) -> bool:
    return any(c.split("_", 1)[0] == prefix for c in codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/errors.md is stale")
    args = parser.parse_args(argv)
    text = render(collect_codes())
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is out of date: run scripts/gen_errors_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
