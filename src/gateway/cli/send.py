"""gncgw send: seal a payload for a partner, deliver it over the partner's binding, and show
the partner's verified receipt.

Without ``--ub`` and ``--type`` the payload is an EU message (CC315A, CC313A, DEC-DMS) and takes
the UB2 path (gateway.cli.ub2.send_eu_message): translated, checked against code lists and the
partner's lanes, sealed and queued in one unit, then delivered now."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.cli.envelope import add_header_options, read_input
from gateway.config import load_config
from gateway.envelope.opened import new_header
from gateway.model.codes import HandlingLabel, UtilityBlock
from gateway.model.header import parse_administration
from gateway.node import VerifiedReceipt, seal_envelope
from gateway.transport.links import open_link


def describe_receipt(verified: VerifiedReceipt) -> str:
    receipt = verified.receipt
    signer = verified.signer.certificate.subject.rfc4514_string()
    if receipt.accepted:
        extra = " (duplicate: already stored, original receipt)" if receipt.duplicate else ""
        return (
            f"ACCEPTED {receipt.message_id} by {receipt.issuer.value}{extra}\n"
            f"  receipt signed by {signer}\n"
            f"  digest of what was received {receipt.received_sha256.hex()} (matches what was sent)"
        )
    return (
        f"REJECTED {receipt.message_id or '(unread)'} by {receipt.issuer.value}: "
        f"{receipt.error_code}\n  {receipt.error_message}\n  receipt signed by {signer}"
    )


def _cmd_send(args: argparse.Namespace) -> int:
    if args.ub is None and args.type is None:
        from gateway.cli.ub2 import send_eu_message

        return send_eu_message(args)
    if args.ub is None or args.type is None:
        print("usage error: give both --ub and --type (or neither, for an EU message)",
              file=sys.stderr)  # fmt: skip
        return 2
    config = load_config(Path(args.config))
    receiver = parse_administration(args.receiver, "receiver")
    payload = read_input(args.payload)
    with open_link(config, receiver) as link:
        header = new_header(
            payload=payload,
            utility_block=UtilityBlock(args.ub),
            message_type=args.type,
            sender=config.administration,
            receiver=receiver,
            payload_content_type=args.content_type,
            schema_version=args.schema_version,
            handling_label=HandlingLabel(args.label),
        )
        raw = seal_envelope(link.binding, header, payload, config.signing_identity)
        print(
            f"sending {header.message_id} to {receiver.value} over {link.binding.value} "
            f"({link.endpoint}, {len(raw)} bytes)"
        )
        verified = link.deliver(raw)
    print(describe_receipt(verified))
    if not verified.accepted:
        print(f"error: {verified.receipt.error_code}: refused by {receiver.value}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    send = subparsers.add_parser("send", help="seal a payload and deliver it to a partner")
    send.add_argument("payload", help="payload file ('-' for stdin)")
    send.add_argument("--config", required=True, help="this gateway's TOML configuration")
    add_header_options(send)
    for action in send._actions:  # optional here: without them the payload is an EU message
        if action.dest in ("ub", "type"):
            action.required = False
    send.set_defaults(func=_cmd_send)
