"""gncgw send: seal a payload for a partner, deliver it over the partner's binding, and show
the partner's verified receipt.

The envelope is queued in the gateway's outbox first and delivered by the delivery worker, as
every other send: the message log holds it with its receipt, and if the partner cannot be
reached it stays queued for ``gncgw serve`` (exit status 1) rather than being lost.

Without ``--ub`` and ``--type`` the payload is an EU message (CC315A, CC313A, DEC-DMS) and takes
the UB2 path (gateway.cli.ub2.send_eu_message): translated, checked against code lists and the
partner's lanes, sealed and queued in one unit, then delivered now."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from gateway.cli.delivering import deliver_now
from gateway.cli.envelope import add_header_options, read_input
from gateway.config import build_node, load_config
from gateway.model.codes import HandlingLabel, UtilityBlock
from gateway.model.header import parse_administration, utc_now
from gateway.node import VerifiedReceipt
from gateway.services.sending import seal_and_queue
from gateway.store.outbox import SqliteOutbox


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
    binding = config.partner(receiver).envelope_binding  # refuses a partner not configured
    node = build_node(config)
    try:
        outbox = SqliteOutbox(node.inbox.database)

        def queue(conn: Any) -> str:
            return seal_and_queue(
                conn,
                outbox,
                config.signing_identity,
                partner=receiver,
                binding=binding,
                utility_block=UtilityBlock(args.ub),
                message_type=args.type,
                payload=payload,
                content_type=args.content_type,
                schema_version=args.schema_version,
                ordering_key=f"send:{receiver.value}:{uuid.uuid4()}",  # held up by nothing
                now=utc_now(),
                handling_label=HandlingLabel(args.label),
            )

        message_id = node.inbox.database.write(queue)
        return deliver_now(config, node, outbox, receiver, message_id)
    finally:
        node.inbox.close()


def register(subparsers: Any) -> None:
    send = subparsers.add_parser("send", help="seal a payload and deliver it to a partner")
    send.add_argument("payload", help="payload file ('-' for stdin)")
    send.add_argument("--config", required=True, help="this gateway's TOML configuration")
    add_header_options(send)
    for action in send._actions:  # optional here: without them the payload is an EU message
        if action.dest in ("ub", "type"):
            action.required = False
    send.set_defaults(func=_cmd_send)
