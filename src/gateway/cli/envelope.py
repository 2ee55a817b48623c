"""gncgw sign | verify | inspect: envelopes in either binding, from files."""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from gateway.envelope.intake import IntakeLimits, header_unverified, open_any
from gateway.envelope.keys import load_identity
from gateway.envelope.opened import Binding, OpenedEnvelope, new_header
from gateway.errors import ConfigError, GatewayError
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.header import EnvelopeHeader, parse_administration, utc_now
from gateway.node import seal_envelope
from gateway.trust.store import TrustStore


def detect_binding(raw: bytes) -> Binding:
    """XML starts with '<' (after an optional BOM and whitespace); anything else is protobuf."""
    head = raw[:64].lstrip(b"\xef\xbb\xbf").lstrip()
    return Binding.XML if head.startswith(b"<") else Binding.PROTOBUF


def read_input(path: str) -> bytes:
    """A file's bytes, or stdin for '-'; a missing file is a clear error."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", location=path) from None


def load_trust(args: argparse.Namespace) -> TrustStore:
    """Trust from a gateway config (--config) or a test-PKI layout directory (--trust-dir)."""
    if getattr(args, "config", None):
        from gateway.config import load_config

        return load_config(Path(args.config)).trust
    if getattr(args, "trust_dir", None):
        from gateway.cli.certs import trust_from_directory

        return trust_from_directory(Path(args.trust_dir))
    raise ConfigError("say whom to trust: --config FILE or --trust-dir DIR")


def _cmd_sign(args: argparse.Namespace) -> int:
    sender = parse_administration(args.sender, "sender")
    identity = load_identity(sender, read_input(args.key), read_input(args.cert))
    payload = read_input(args.payload)
    header = new_header(
        payload=payload,
        utility_block=UtilityBlock(args.ub),
        message_type=args.type,
        sender=sender,
        receiver=parse_administration(args.receiver, "receiver"),
        payload_content_type=args.content_type,
        schema_version=args.schema_version,
        handling_label=HandlingLabel(args.label),
        correlation_id=args.correlation_id,
    )
    raw = seal_envelope(Binding(args.binding), header, payload, identity)
    if args.output == "-":
        sys.stdout.buffer.write(raw)
    else:
        Path(args.output).write_bytes(raw)
        print(f"signed {header.message_id} ({args.binding}, {len(raw)} bytes) -> {args.output}")
    return 0


def _describe(opened: OpenedEnvelope, raw: bytes) -> list[tuple[str, str]]:
    header = opened.header
    leaf = opened.signer_chain[0]
    return [
        ("binding", opened.binding.value),
        *_header_rows(header),
        ("payload", f"{len(opened.payload)} bytes, {header.payload_content_type}"),
        ("payload SHA-256", header.payload_sha256.hex() + "  (matches payload)"),
        ("handling label", header.handling_label.value),
        ("signer", leaf.subject.rfc4514_string()),
        ("signer issuer", leaf.issuer.rfc4514_string()),
        ("signer SHA-256", leaf.fingerprint(hashes.SHA256()).hex()),
        ("signer valid from", leaf.not_valid_before_utc.isoformat()),
        ("signer valid until", leaf.not_valid_after_utc.isoformat()),
        ("envelope SHA-256", hashlib.sha256(raw).hexdigest()),
        ("signature", "verifies over the exact bytes"),
    ]


def _header_rows(header: EnvelopeHeader) -> list[tuple[str, str]]:
    return [
        ("message id", header.message_id),
        ("correlation id", header.correlation_id),
        ("utility block", header.utility_block.value),
        ("message type", header.message_type),
        ("sender -> receiver", f"{header.sender.value} -> {header.receiver.value}"),
        ("created at", header.created_at.isoformat()),
        ("schema version", header.schema_version),
    ]


def _inspect_refused(raw: bytes, binding: Binding, error: GatewayError) -> int:
    """What a refused envelope claims, marked as not verified, and why it was refused."""
    try:
        claimed = header_unverified(raw, binding)
    except GatewayError:
        raise error from None  # not even a header to show: the refusal alone
    print(f"NOT VERIFIED: {error}")
    print("what the envelope claims (not to be believed):")
    _print_table(
        [
            ("binding", binding.value),
            *_header_rows(claimed),
            ("payload SHA-256", claimed.payload_sha256.hex() + "  (as the header claims)"),
            ("handling label", claimed.handling_label.value),
            ("envelope SHA-256", hashlib.sha256(raw).hexdigest()),
            ("verification", f"REFUSED: {error.code}"),
        ]
    )
    return 1


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def _at(args: argparse.Namespace) -> datetime:
    return datetime.fromisoformat(args.at) if getattr(args, "at", None) else utc_now()


def _cmd_verify(args: argparse.Namespace) -> int:
    raw = read_input(args.file)
    binding = Binding(args.binding) if args.binding != "auto" else detect_binding(raw)
    trust = load_trust(args)
    opened = open_any(raw, binding, IntakeLimits())
    signer = trust.check_signer(opened.header.sender, opened.signer_chain, _at(args))
    print(
        f"ok: {opened.header.message_id} from {opened.header.sender.value} "
        f"signed by {signer.certificate.subject.rfc4514_string()} (trusted for "
        f"{signer.administration.value}), payload SHA-256 {opened.header.payload_sha256.hex()}"
    )
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    raw = read_input(args.file)
    binding = Binding(args.binding) if args.binding != "auto" else detect_binding(raw)
    try:
        opened = open_any(raw, binding, IntakeLimits())
    except GatewayError as error:
        return _inspect_refused(raw, binding, error)
    rows = _describe(opened, raw)
    if args.config or args.trust_dir:
        try:
            trust = load_trust(args)
            signer = trust.check_signer(opened.header.sender, opened.signer_chain, _at(args))
            rows.append(("trust", f"trusted for {signer.administration.value}"))
        except GatewayError as error:
            rows.append(("trust", f"NOT TRUSTED: {error}"))
            _print_table(rows)
            return 1
    else:
        rows.append(("trust", "not checked (give --config or --trust-dir)"))
    _print_table(rows)
    if args.payload:
        print()
        sys.stdout.write(opened.payload.decode("utf-8", errors="replace"))
        print()
    return 0


ADMINISTRATIONS = [a.value for a in Administration]


def add_header_options(parser: argparse.ArgumentParser) -> None:
    """The header fields a user chooses when sealing (sign and send share them)."""
    parser.add_argument("--to", dest="receiver", required=True, choices=ADMINISTRATIONS)
    parser.add_argument("--ub", required=True, choices=[u.value for u in UtilityBlock])
    parser.add_argument("--type", required=True, help="message type, e.g. AEO_STATUS_CHANGE")
    parser.add_argument("--content-type", default="application/octet-stream")
    parser.add_argument("--schema-version", default="1.0")
    parser.add_argument(
        "--label", default=HandlingLabel.LIMITED.value, choices=[h.value for h in HandlingLabel]
    )


def _trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="gateway config whose partner trust to use")
    parser.add_argument(
        "--trust-dir", help="directory in the test-PKI layout (ADMIN/ca.pem, crl.pem)"
    )
    parser.add_argument("--at", help="check validity at this ISO time instead of now")


def register(subparsers: Any) -> None:
    sign = subparsers.add_parser("sign", help="wrap a payload in a signed envelope")
    sign.add_argument("payload", help="payload file ('-' for stdin)")
    sign.add_argument("--binding", choices=[b.value for b in Binding], default="protobuf")
    sign.add_argument("--key", required=True, help="signing private key (PEM)")
    sign.add_argument("--cert", required=True, help="signing certificate, leaf first (PEM)")
    sign.add_argument("--from", dest="sender", required=True, choices=ADMINISTRATIONS)
    add_header_options(sign)
    sign.add_argument("--correlation-id")
    sign.add_argument("-o", "--output", required=True, help="envelope file ('-' for stdout)")
    sign.set_defaults(func=_cmd_sign)

    verify = subparsers.add_parser("verify", help="check an envelope's signature and trust")
    verify.add_argument("file")
    verify.add_argument("--binding", choices=["auto", *[b.value for b in Binding]], default="auto")
    _trust_options(verify)
    verify.set_defaults(func=_cmd_verify)

    inspect = subparsers.add_parser(
        "inspect", help="show an envelope: header, signer, digest check"
    )
    inspect.add_argument("file")
    inspect.add_argument("--binding", choices=["auto", *[b.value for b in Binding]], default="auto")
    inspect.add_argument("--payload", action="store_true", help="print the payload too")
    _trust_options(inspect)
    inspect.set_defaults(func=_cmd_inspect)
