"""gncgw risk: the UB3 risk information exchange from the command line.

    gncgw risk send --to CN FILE [--deliver]        CRMS form in -> UB3 envelope queued (sent)
    gncgw risk feedback REF FILE [--deliver]        feedback on a received record, to its originator
    gncgw risk outstanding [--partner CN]           records sent that have had no feedback yet
    gncgw risk list [--kind KIND]                   received records (each listed record is logged)
    gncgw risk show REF [--form]                    a received record (the read is logged)
    gncgw risk refusals                             outbound records refused by the handling rules
    gncgw risk access-log                           who read which received record, when
    gncgw risk purge                                delete received records past their retention

All take ``--config FILE`` and work on the gateway's message store (the one ``gncgw serve``
uses). Reads are logged under the operating-system user, or ``--as NAME``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from gateway.config import build_node, load_config
from gateway.model.header import parse_administration
from gateway.model.risk import Feedback, IprDetention, IprStatistics, RiskInformation, RiskKind
from gateway.node import GatewayNode
from gateway.services.risk import RiskService, SendResult, service_for
from gateway.store.risk_store import Received
from gateway.translate.crms_risk import write_form


class _Session:
    """The configuration, the node's store and the UB3 service, closed together."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config = load_config(Path(args.config))
        self.node: GatewayNode = build_node(self.config)
        self.service: RiskService = service_for(self.config, self.node.inbox.database)

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.node.inbox.close()


def _actor(args: argparse.Namespace) -> str:
    name: str = args.actor or getpass.getuser()
    return name


def _deliver(session: _Session, result: SendResult) -> int:
    from gateway.cli.delivering import deliver_now

    outbox = session.service.outbox
    return deliver_now(
        session.config, session.node, outbox, result.partner, result.message_id, timeout=60.0
    )


def _print_sent(result: SendResult) -> None:
    record = result.record
    print(
        f"queued {record.kind.value} {record.originator.value}/{record.reference} "
        f"({record.label.value}) for {result.partner.value}: message {result.message_id}"
    )
    for removed in result.removed:
        print(f"  removed before signing: {removed}")


def _cmd_send(args: argparse.Namespace) -> int:
    to = parse_administration(args.to, "to")
    data = Path(args.file).read_bytes()
    with _Session(args) as session:
        result = session.service.send_form(
            data, to, actor=_actor(args), source=Path(args.file).name
        )
        _print_sent(result)
        return _deliver(session, result) if args.deliver else 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    originator = parse_administration(args.originator, "originator") if args.originator else None
    with _Session(args) as session:
        result = session.service.send_feedback(
            args.reference, data, actor=_actor(args), originator=originator,
            source=Path(args.file).name,
        )  # fmt: skip
        _print_sent(result)
        return _deliver(session, result) if args.deliver else 0


def _cmd_outstanding(args: argparse.Namespace) -> int:
    partner = parse_administration(args.partner, "partner") if args.partner else None
    with _Session(args) as session:
        rows = session.service.outstanding(partner)
    for row in rows:
        print(
            f"{row.partner.value}  {row.reference:<35} {row.area:<28} {row.label.value:<12} "
            f"sent {row.sent_at:%Y-%m-%d %H:%M}  message {row.message_id}"
        )
    print(f"{len(rows)} record(s) awaiting feedback")
    return 0


def _summary(row: Received) -> str:
    record = row.record
    extra = ""
    if isinstance(record, RiskInformation):
        extra = f"{record.area.value} until {record.valid_until}"
    elif isinstance(record, IprDetention):
        extra = f"{record.procedure.value} {record.right_category.value} {record.detained_on}"
    elif isinstance(record, IprStatistics):
        extra = f"{record.period_start}..{record.period_end}, {len(record.lines)} line(s)"
    return (
        f"{record.kind.value:<23} {record.originator.value}/{record.reference:<35} "
        f"{record.label.value:<12} {extra}"
    )


def _cmd_list(args: argparse.Namespace) -> int:
    kind = RiskKind(args.kind) if args.kind else None
    with _Session(args) as session:
        rows = session.service.list_received(actor=_actor(args), kind=kind)
    for row in rows:
        print(_summary(row))
    print(f"{len(rows)} received record(s); this listing is recorded in the access log")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    originator = parse_administration(args.originator, "originator") if args.originator else None
    with _Session(args) as session:
        rows = session.service.show(args.reference, actor=_actor(args), originator=originator)
    for row in rows:
        if args.form:
            sys.stdout.write(write_form(row.record).decode("utf-8"))
            continue
        print(_summary(row))
        print(f"  received from {row.sender.value} at {row.received_at:%Y-%m-%d %H:%M:%S} UTC, "
              f"message {row.message_id}")  # fmt: skip
        if row.retain_until:
            print(f"  keep until {row.retain_until:%Y-%m-%d}")
        record = row.record
        if isinstance(record, RiskInformation):
            i = record.indicators
            print(f"  action: {record.recommended_action.value}")
            print(f"  description: {record.description}")
            for name, values in (
                ("commodity codes", i.commodity_codes), ("countries", i.countries),
                ("routes", ["-".join(r) for r in i.routes]),
                ("transport modes", [m.value for m in i.transport_modes]),
                ("containers", i.container_ids),
            ):  # fmt: skip
                if values:
                    print(f"  {name}: {', '.join(values)}")
            for op in i.operators:
                line = f"  operator: {op.role.value} {op.identifier} {op.name} {op.country}"
                print(line.rstrip())
        elif isinstance(record, Feedback):  # pragma: no cover - feedback is not in risk_received
            pass
    return 0


def _cmd_refusals(args: argparse.Namespace) -> int:
    with _Session(args) as session:
        rows = session.service.store.refusals()
    for r in rows:
        print(
            f"{r.at:%Y-%m-%d %H:%M:%S}  {r.actor:<12} to {r.partner or '-':<3} "
            f"{r.kind or '-':<23} {r.reference or '-':<30} {r.code}  rule {r.rule}"
        )
        print(f"    {r.message}")
    print(f"{len(rows)} refusal(s)")
    return 0


def _cmd_access_log(args: argparse.Namespace) -> int:
    with _Session(args) as session:
        rows = session.service.store.access_log()
    for r in rows:
        print(
            f"{r.at:%Y-%m-%d %H:%M:%S}  {r.actor:<12} {r.action:<6} {r.kind:<23} "
            f"{r.originator}/{r.reference}  {r.label}"
        )
    print(f"{len(rows)} read(s)")
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    with _Session(args) as session:
        count = session.service.purge_expired(actor=_actor(args))
    print(f"purged {count} received record(s) past their retention period")
    return 0


def register(subparsers: Any) -> None:
    risk = subparsers.add_parser("risk", help="UB3 risk information, feedback and IPR data")
    commands = risk.add_subparsers(dest="risk_command", metavar="ACTION", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        parser.add_argument("--config", required=True, metavar="FILE", help="gateway config")
        parser.add_argument(
            "--as", dest="actor", metavar="NAME", help="who is acting (default: OS user)"
        )
        return parser

    p = command("send", "send a CRMS risk / IPR form to a partner under its handling rules")
    p.add_argument("--to", required=True, metavar="PARTNER")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--deliver", action="store_true", help="deliver it now and wait")
    p.set_defaults(func=_cmd_send)

    p = command("feedback", "send feedback (CRMS feedback form) on a received record")
    p.add_argument("reference", metavar="REF")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--originator", metavar="ADMIN", help="when REF is held from two originators")
    p.add_argument("--deliver", action="store_true", help="deliver it now and wait")
    p.set_defaults(func=_cmd_feedback)

    p = command("outstanding", "risk information sent that has had no feedback yet")
    p.add_argument("--partner", metavar="PARTNER")
    p.set_defaults(func=_cmd_outstanding)

    p = command("list", "received records (logged read)")
    p.add_argument("--kind", choices=[k.value for k in RiskKind if k is not RiskKind.FEEDBACK])
    p.set_defaults(func=_cmd_list)

    p = command("show", "a received record (logged read)")
    p.add_argument("reference", metavar="REF")
    p.add_argument("--originator", metavar="ADMIN")
    p.add_argument("--form", action="store_true", help="print it as its CRMS form (XML)")
    p.set_defaults(func=_cmd_show)

    command("refusals", "outbound records the handling rules refused").set_defaults(
        func=_cmd_refusals
    )
    command("access-log", "reads of received records").set_defaults(func=_cmd_access_log)
    command("purge", "delete received records past their retention").set_defaults(func=_cmd_purge)
