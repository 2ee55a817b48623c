"""gncgw aeo: the UB1 AEO exchange from the command line.

    gncgw aeo import FILE [--kind full|changes] [--format xml|csv]   EU export in, deltas queued
    gncgw aeo sync --to US [--deliver]                                full list queued (and sent)
    gncgw aeo query --partner US ID                                   online query, verified, logged
    gncgw aeo show ID                                                 own and partner records
    gncgw aeo summary [--partner US]                                  reconciliation summaries
    gncgw aeo export --partner US -o FILE                             a partner list, EOS format

All take ``--config FILE`` and work on the gateway's message store (the one ``gncgw serve``
uses; SQLite serialises the two writers). The EOS mapping spec is
adapters/mappings/eos-aeo.toml beside the configuration or in the source tree, or ``--mapping``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import gateway
from gateway.config import GatewayConfig, build_node, load_config
from gateway.errors import ConfigError
from gateway.model.aeo import AeoRecord
from gateway.model.aeo_list import ReconciliationSummary
from gateway.model.header import parse_administration
from gateway.node import GatewayNode
from gateway.services.aeo import AeoService, ask_partner, service_for
from gateway.store.outbox import OutboundState
from gateway.translate.eos_aeo import ExportKind, MappingSpec, load_mapping_spec

SPEC_NAME = Path("adapters") / "mappings" / "eos-aeo.toml"


def mapping_spec_for(config: GatewayConfig, given: str | None) -> MappingSpec:
    """The EOS mapping spec: the given file, or adapters/ beside the config or the source tree."""
    candidates = (
        [Path(given)]
        if given
        else [config.path.parent / SPEC_NAME, Path(gateway.__file__).parents[2] / SPEC_NAME]
    )
    for path in candidates:
        if path.is_file():
            return load_mapping_spec(path.read_bytes(), path.name)
    raise ConfigError(
        f"no EOS mapping spec at {', '.join(map(str, candidates))}: give --mapping FILE",
        location="--mapping",
    )


class _Session:
    """The configuration, the node's store and the AEO service, closed together."""

    def __init__(self, args: argparse.Namespace, part_size: int | None = None) -> None:
        self.config = load_config(Path(args.config))
        self.node: GatewayNode = build_node(self.config)
        kwargs = {"part_size": part_size} if part_size else {}
        spec = mapping_spec_for(self.config, args.mapping)
        self.service: AeoService = service_for(
            self.config, self.node.inbox.database, spec, **kwargs
        )

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.node.inbox.close()


def _print_summary(title: str, summary: ReconciliationSummary, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up per call: tests and callers may swap sys.stdout
    print(f"{title}: {summary.total} records", file=out)
    for entry in summary.entries:
        print(f"  {entry.status.value:<18} {entry.count:>8}  {entry.sha256.hex()}", file=out)


def _cmd_import(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    is_xml = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"
    fmt = args.format or ("xml" if is_xml else "csv")
    if (fmt == "xml") != is_xml:
        raise ConfigError(f"{args.file} is not {fmt.upper()}", location="--format")
    kind = ExportKind(args.kind.upper()) if args.kind else None
    with _Session(args) as session:
        result = session.service.import_export(
            data, csv_kind=kind or ExportKind.FULL, source=Path(args.file).name
        )
        if kind is not None and result.kind is not kind:
            print(
                f"note: the file says it is a {result.kind.value} export (--kind ignored)",
                file=sys.stderr,
            )
    print(
        f"imported {result.records} records ({result.kind.value}): {result.applied} changes "
        f"applied to the {session.config.administration.value} list, {result.unchanged} unchanged"
    )
    for partner in result.partners:
        withheld = ", ".join(f"{code} {n}" for code, n in sorted(partner.withheld.items()))
        print(
            f"  {partner.partner.value}: {partner.changes} changes in {partner.envelopes} "
            f"envelope(s) queued" + (f"; not sent: {withheld}" if withheld else "")
        )
    print(f"{result.envelopes} envelope(s) queued in the outbox")
    return 0


def _bar(done: int, total: int, width: int = 40) -> str:
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def _cmd_sync(args: argparse.Namespace) -> int:
    partner = parse_administration(args.to, "to")
    with _Session(args, part_size=args.part_size) as session:
        result = session.service.full_sync(partner)
        print(
            f"full list {result.sync_id} for {partner.value}: {result.records} records in "
            f"{result.parts} part(s) + end queued ({len(result.message_ids)} envelopes)"
        )
        _print_summary("summary", result.summary)
        if not args.deliver:
            return 0
        from gateway.services.delivery import DeliveryWorker
        from gateway.transport.links import open_link

        config = session.config
        settings = config.partner(partner)
        worker = DeliveryWorker(
            session.service.outbox,
            lambda code: open_link(config, code),
            partners=[partner],
            retry={partner: settings.profile.retry} if settings.profile else None,
            message_log=session.node.message_log,
        )
        ids = set(result.message_ids)
        total = len(ids)
        outbox = session.service.outbox
        last = ""
        while True:
            report = worker.run_once(partner)
            states = [outbox.get(message_id) for message_id in ids]
            done = sum(1 for s in states if s is not None and s.state is OutboundState.DELIVERED)
            dead = [s for s in states if s is not None and s.state is OutboundState.DEAD]
            bar = _bar(done, total)
            if bar != last:
                print(f"\rdelivering {bar}", end="", file=sys.stderr, flush=True)
                last = bar
            if done == total or dead:
                break
            if not report.attempted:
                time.sleep(0.2)  # waiting for a retry or for earlier messages of the partner
        print(file=sys.stderr)
        if dead:
            item = dead[0]
            print(
                f"error: {item.last_error_code}: {partner.value} did not take {item.message_id}: "
                f"{item.last_error}",
                file=sys.stderr,
            )
            return 1
        print(f"delivered: {partner.value} holds the list (receipts verified)")
    return 0


def _print_record(record: AeoRecord, indent: str = "  ") -> None:
    data = record.to_json_dict()
    for key in (
        "holder_id", "holder_name", "authorisation_number", "aeo_type", "partner_programme",
        "issuing_country", "competent_authority", "authorised_since", "status",
        "status_effective", "status_reason", "consent", "consent_date", "version",
    ):  # fmt: skip
        value = data[key]
        if value not in (None, ""):
            print(f"{indent}{key:<21} {value}")
    address = record.address
    print(f"{indent}{'address':<21} {address.street}, {address.postcode} {address.city}, "
          f"{address.country}")  # fmt: skip
    for ref in record.cross_references:
        print(f"{indent}{ref.scheme:<21} {ref.value}")


def _cmd_query(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config))
    partner = parse_administration(args.partner, "partner")
    node = build_node(config)  # the gateway's store: the query is a row of its message log
    try:
        verified = ask_partner(config, partner, args.identifier, message_log=node.message_log)
    finally:
        node.inbox.close()
    answer = verified.answer
    signer = verified.signer.certificate.subject.rfc4514_string()
    if answer.refusal_code:
        print(f"REFUSED by {partner.value}: {answer.refusal_code}: {answer.refusal}")
    elif answer.record is None:
        print(f"NOT FOUND: {args.identifier} is not an AEO {partner.value} may disclose")
    elif answer.is_aeo:
        print(f"AEO: {args.identifier} is an AEO of {partner.value} since {answer.since}")
    else:
        record = answer.record
        print(
            f"NOT AN AEO NOW: {args.identifier} is {record.status.value} since "
            f"{record.status_effective}"
        )
    if answer.record is not None:
        _print_record(answer.record)
    print(f"answer {verified.header.message_id} signed by {signer} (verified)")
    return 0 if answer.is_aeo else 3


def _cmd_show(args: argparse.Namespace) -> int:
    with _Session(args) as session:
        store = session.service.store
        owners = store.owners()
        found = 0
        for owner in owners:
            for record in store.find(owner, args.identifier):
                found += 1
                where = "own list" if owner is store.own else f"list received from {owner.value}"
                print(f"{record.authorisation_number} ({where})")
                _print_record(record)
                history = store.history(owner, record.authorisation_number)
                if history:
                    print("  history:")
                for entry in history:
                    print(
                        f"    {entry.recorded_at}  {entry.kind:<8} v{entry.version} "
                        f"{entry.status.value} from {entry.effective_date}  ({entry.source})"
                        + (f" {entry.reason}" if entry.reason else "")
                    )
        if not found:
            print(f"no record names {args.identifier!r}", file=sys.stderr)
            return 1
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    with _Session(args) as session:
        service = session.service
        own = session.config.administration
        if args.partner is None:
            _print_summary(f"{own.value} own list", service.store.summary(own))
            return 0
        partner = parse_administration(args.partner, "partner")
        shown = False
        if partner in service.partners:
            _print_summary(
                f"{own.value} list as {partner.value} should hold it",
                service.own_view_summary(partner),
            )
            shown = True
        if service.store.count(partner) or not shown:
            _print_summary(f"list received from {partner.value}", service.received_summary(partner))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    partner = parse_administration(args.partner, "partner")
    with _Session(args) as session:
        data = session.service.export_partner_list(partner)
        count = session.service.store.count(partner)
    Path(args.output).write_bytes(data)
    print(f"wrote {count} {partner.value} records (EOS XML full export) to {args.output}")
    return 0


def register(subparsers: Any) -> None:
    aeo = subparsers.add_parser("aeo", help="UB1 AEO lists: import, sync, query, show")
    commands = aeo.add_subparsers(dest="aeo_command", metavar="ACTION", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        parser.add_argument("--config", required=True, metavar="FILE", help="gateway config")
        parser.add_argument("--mapping", metavar="FILE", help="EOS mapping spec (TOML)")
        return parser

    p = command("import", "import an EOS AEO export; queue each partner's changes")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--kind", choices=["full", "changes"], help="CSV: full export or changes")
    p.add_argument("--format", choices=["xml", "csv"], help="default: from the content")
    p.set_defaults(func=_cmd_import)

    p = command("sync", "queue the full list for a partner (in parts, with its summary)")
    p.add_argument("--to", required=True, metavar="PARTNER")
    p.add_argument("--deliver", action="store_true", help="deliver it now, with a progress bar")
    p.add_argument("--part-size", type=int, metavar="N", help="records per envelope (1000)")
    p.set_defaults(func=_cmd_sync)

    p = command("query", "ask a partner online whether ID is one of its AEOs")
    p.add_argument("--partner", required=True, metavar="PARTNER")
    p.add_argument("identifier", metavar="ID")
    p.set_defaults(func=_cmd_query)

    p = command("show", "records (own and received) named by an EORI, number or MID")
    p.add_argument("identifier", metavar="ID")
    p.set_defaults(func=_cmd_show)

    p = command("summary", "reconciliation summary (count and digest per status)")
    p.add_argument("--partner", metavar="PARTNER")
    p.set_defaults(func=_cmd_summary)

    p = command("export", "write a partner's list in the EU's EOS format")
    p.add_argument("--partner", required=True, metavar="PARTNER")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_export)
