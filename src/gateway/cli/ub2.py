"""gncgw translate / validate / mapping coverage / ub2: UB2 transaction data from the command line.

    gncgw translate IN.xml [--to ub2-xml|ub2-proto|json] [-o OUT] [--strict] [--no-validate]
    gncgw validate IN.xml                     every schema error with its path, then code lists
    gncgw mapping coverage SOURCE [--samples DIR]   carried / dropped / not covered, per element
    gncgw send --to CN IN.xml --config F      (cli/send.py) translate, check, seal, deliver now
    gncgw ub2 control-results REF --config F [--format dms|json]   received control results
    gncgw ub2 send-control-result FILE.json --to CN --config F     report a control, deliver now

translate, validate and coverage take the schema packs and mapping specs from ``--config F``
(its ``[ub2]`` table) or from ``--ics-ens DIR`` / ``--wco-dm DIR`` / ``--mappings DIR``.
Exit codes: 0 ok, 1 refused or invalid, 2 usage. Errors print as ``error: CODE: message (at
LOCATION)``; code-list findings of a translation as ``warning: CODE: message (at XPATH)``. UB2 XML
that our own ub2-transaction.xsd would refuse (a warned value can break it) is not written:
``UB2_OUTPUT_INVALID``, exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.cli.delivering import deliver_now
from gateway.config import GatewayConfig, build_node, default_ub2_mappings, load_config
from gateway.errors import (
    UB2_MAPPING_INVALID,
    UB2_OUTPUT_INVALID,
    UB2_SCHEMA_PACK_MISSING,
    UB2_UNKNOWN_TRANSACTION,
    GatewayError,
    TransactionError,
)
from gateway.model.consignment import SourceMessage
from gateway.model.control_result import ControlResult
from gateway.model.header import parse_administration
from gateway.node import GatewayNode
from gateway.services.transactions import TransactionService, service_for
from gateway.store.transaction_store import Direction
from gateway.translate import ub2_exchange
from gateway.translate.eu_messages import SchemaPacks, load_schema_packs
from gateway.translate.ub2_pipeline import Translation, Ub2Pipeline
from gateway.translate.ub2_translate import (
    MappingSpec,
    coverage,
    element_paths,
    load_mapping_spec,
    load_mapping_specs,
)
from gateway.translate.ub3_exchange import PayloadForm

OUTPUTS = ("ub2-xml", "ub2-proto", "json")
_WRAPPERS = {
    None: "bare",
    "soap12": "in a SOAP 1.2 envelope",
    "metadata": "in a DEC-DMS MetaData",
    "hmrc-request": "in an HMRC submitDeclarationRequest",
}


class UsageError(Exception):
    """A command line that cannot work as given (exit 2)."""


def _usage(message: str) -> int:
    print(f"usage error: {message}", file=sys.stderr)
    return 2


# --- where the packs and specs come from -------------------------------------------------------
def pipeline_from_args(args: argparse.Namespace) -> tuple[Ub2Pipeline, str]:
    """The pipeline of ``--config`` ([ub2]) or of ``--ics-ens`` / ``--wco-dm`` / ``--mappings``,
    and a note saying where the packs came from."""
    given = [flag for flag in ("ics_ens", "wco_dm") if getattr(args, flag, None)]
    if args.config and given:
        raise UsageError("give --config FILE or --ics-ens/--wco-dm, not both")
    if args.config:
        config = load_config(Path(args.config))
        if config.ub2 is not None:
            return config.ub2.pipeline(), f"[ub2] of {config.path}"
        mappings = (
            Path(args.mappings) if args.mappings else default_ub2_mappings(config.path.parent)
        )
        return Ub2Pipeline(None, _specs(mappings)), f"{config.path} has no [ub2] table"
    packs: SchemaPacks | None = None
    if given:
        ics = Path(args.ics_ens) if args.ics_ens else None
        wco = Path(args.wco_dm) if args.wco_dm else None
        packs = load_schema_packs(ics, wco)
    mappings = Path(args.mappings) if args.mappings else default_ub2_mappings()
    return Ub2Pipeline(packs, _specs(mappings)), "the command line" if given else "none given"


def _specs(directory: Path) -> dict[SourceMessage, MappingSpec]:
    return load_mapping_specs(directory)


def _require_packs(pipeline: Ub2Pipeline, where: str) -> None:
    if pipeline.packs is None:
        raise TransactionError(
            f"no schema packs ({where}): EU messages are validated against the official "
            "schemas before they are translated; give --config FILE with [ub2] schema_packs, "
            "or --ics-ens DIR / --wco-dm DIR (or --no-validate to translate unvalidated)",
            code=UB2_SCHEMA_PACK_MISSING,
            location="--config",
        )


def _describe(translation: Translation) -> str:
    message, c = translation.message, translation.consignment
    return (
        f"{message.source.value} {c.reference} ({_WRAPPERS.get(message.wrapped, message.wrapped)}"
        f"): {len(c.goods_items)} goods item(s), {len(c.parties)} parties"
    )


# --- translate ------------------------------------------------------------------------------
def _cmd_translate(args: argparse.Namespace) -> int:
    if args.to == "ub2-proto" and not args.output:
        return _usage("--to ub2-proto writes binary protobuf: give -o FILE")
    try:
        pipeline, where = pipeline_from_args(args)
    except UsageError as error:
        return _usage(str(error))
    if not args.no_validate:
        _require_packs(pipeline, where)
    data = _read(args.input)
    translation = pipeline.translate(data, validate=not args.no_validate)
    if not translation.validated:
        print("warning: the message was NOT schema-validated (--no-validate)", file=sys.stderr)
    level = "error" if args.strict else "warning"
    for finding in translation.findings:
        print(f"{level}: {finding}", file=sys.stderr)
    if args.strict and translation.findings:
        print(
            f"error: {len(translation.findings)} code-list finding(s) with --strict: "
            "nothing written",
            file=sys.stderr,
        )
        return 1
    output = _render(translation, args.to)
    if args.to == "ub2-xml":
        _refuse_invalid_output(output)
    if args.output and args.output != "-":
        Path(args.output).write_bytes(output)
    else:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    print(
        f"translated {_describe(translation)} to {args.to}"
        + (f" -> {args.output}" if args.output and args.output != "-" else "")
        + (f"; {len(translation.findings)} code-list finding(s)" if translation.findings else ""),
        file=sys.stderr,
    )
    return 0


def _render(translation: Translation, to: str) -> bytes:
    record = translation.consignment
    if to == "json":
        return ub2_exchange.to_json(record).encode("utf-8")
    form = PayloadForm.PROTOBUF if to == "ub2-proto" else PayloadForm.XML
    return ub2_exchange.encode(record, form)


def _refuse_invalid_output(output: bytes) -> None:
    """Write no UB2 XML that our own schema refuses (a bad value, warned about, can break it)."""
    problem = ub2_exchange.schema_problem(etree.fromstring(output))
    if problem is not None:
        detail, location = problem
        raise TransactionError(
            f"the UB2 XML is not valid against ub2-transaction.xsd ({detail}); the findings "
            "above name the source values: nothing written",
            code=UB2_OUTPUT_INVALID,
            location=f"UB2 XML {location}",
        )


def _read(path: str) -> bytes:
    from gateway.cli.envelope import read_input

    return read_input(path)


# --- validate -------------------------------------------------------------------------------
def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        pipeline, where = pipeline_from_args(args)
    except UsageError as error:
        return _usage(str(error))
    _require_packs(pipeline, where)
    report = pipeline.check(_read(args.input))
    message = report.message
    print(
        f"{args.input}: {message.source.value} "
        f"({_WRAPPERS.get(message.wrapped, message.wrapped)}), message at {message.base_path}"
    )
    if report.schema_errors:
        print(f"schema: INVALID, {len(report.schema_errors)} error(s)")
        for finding in report.schema_errors:
            hint = f" (expected: {finding.expected})" if finding.expected else ""
            line = f", line {finding.line}" if finding.line else ""
            print(f"  error: UB2_SCHEMA_INVALID: {finding.reason}{hint} (at {finding.path}{line})")
    else:
        print("schema: valid")
    if report.refusal is not None:
        print(f"translation: refused\n  error: {report.refusal}")
    elif report.translation is not None:
        findings = report.findings
        print(
            f"code lists: {len(findings)} finding(s)" if findings else "code lists: every value ok"
        )
        for problem in findings:
            print(f"  error: {problem}")
    print("result: " + ("OK" if report.ok else "NOT OK"))
    return 0 if report.ok else 1


# --- mapping coverage -----------------------------------------------------------------------
def _cmd_coverage(args: argparse.Namespace) -> int:
    try:
        pipeline, _ = pipeline_from_args(args)
    except UsageError as error:
        return _usage(str(error))
    spec = _spec_for(pipeline, args.source)
    schema_dir: Path | None = None
    if pipeline.packs is not None:
        ics = spec.source in (SourceMessage.CC315A, SourceMessage.CC313A)
        schema_dir = pipeline.packs.ics_ens if ics else pipeline.packs.wco_dm
    if schema_dir is None:
        print(
            "note: no schema pack for this message: listing only the elements the spec names",
            file=sys.stderr,
        )
    only = _sample_paths(Path(args.samples), spec) if args.samples else None
    report = coverage(spec, schema_dir, only=only)
    sys.stdout.write(report.render())
    return 0


def _spec_for(pipeline: Ub2Pipeline, source: str) -> MappingSpec:
    try:
        return pipeline.spec(SourceMessage(source.upper()))
    except ValueError:
        pass
    path = Path(source)
    if path.suffix == ".toml" and path.is_file():
        return load_mapping_spec(path)
    known = ", ".join(s.value for s in SourceMessage)
    raise TransactionError(
        f"{source!r} is neither a source message ({known}) nor a mapping spec file",
        code=UB2_MAPPING_INVALID,
        location="SOURCE",
    )


def _sample_paths(directory: Path, spec: MappingSpec) -> set[str]:
    """Element paths occurring in the samples of the spec's source message below directory."""
    from gateway.translate.eu_messages import read_eu_message

    if not directory.is_dir():
        raise TransactionError(
            "the samples directory does not exist",
            code=UB2_MAPPING_INVALID,
            location=str(directory),
        )
    occurring: set[str] = set()
    used = skipped = 0
    for path in sorted(directory.rglob("*.xml")):
        try:
            message = read_eu_message(path.read_bytes(), None, validate=False)
        except (GatewayError, OSError):
            skipped += 1
            continue
        if message.source is spec.source:
            occurring |= set(element_paths(message.root))
            used += 1
    print(
        f"samples: {used} {spec.source.value} message(s) in {directory} ({skipped} other or "
        "unreadable file(s) skipped)",
        file=sys.stderr,
    )
    return occurring


# --- sending: a translated EU message, a control result -------------------------------------
class _Session:
    """The configuration, the node (store, message log) and the UB2 service, closed together."""

    def __init__(self, config_path: str) -> None:
        self.config: GatewayConfig = load_config(Path(config_path))
        self.node: GatewayNode = build_node(self.config)
        self.service: TransactionService = service_for(self.config, self.node.inbox.database)

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.node.inbox.close()


def send_eu_message(args: argparse.Namespace) -> int:
    """``gncgw send --to CN IN.xml --config F`` without --ub/--type: the UB2 path."""
    partner = parse_administration(args.receiver, "receiver")
    data = _read(args.payload)
    actor = getpass.getuser()
    with _Session(args.config) as session:
        ub2 = session.config.ub2
        if ub2 is None:
            raise TransactionError(
                f"{session.config.path} has no [ub2] table: an EU message is validated against "
                "the schema packs it names before it is sent (or give --ub and --type to send "
                "the file as a raw payload)",
                code=UB2_SCHEMA_PACK_MISSING,
                location=f"{session.config.path}:ub2",
            )
        translation = ub2.pipeline().translate(data)
        print(f"translated {_describe(translation)}")
        try:
            result = session.service.send_consignment(translation.consignment, partner, actor=actor)
        except GatewayError as error:
            shown = {(f.code, f.location) for f in translation.findings}
            if (error.code, error.location) in shown:
                for finding in translation.findings:  # every bad value, not just the first
                    print(f"error: {finding}", file=sys.stderr)
            else:
                print(f"error: {error}", file=sys.stderr)
            print(f"refused: nothing was sent to {partner.value}", file=sys.stderr)
            return 1
        print(
            f"queued TransactionData {result.reference} for {partner.value} on lane "
            f"{result.lane}: message {result.message_id}"
        )
        return deliver_now(
            session.config, session.node, session.service.outbox, result.partner, result.message_id
        )


def _cmd_send_control_result(args: argparse.Namespace) -> int:
    partner = parse_administration(args.to, "to")
    text = Path(args.file).read_text(encoding="utf-8")
    record = ub2_exchange.from_json(text, ub2_exchange.Ub2Kind.CONTROL_RESULT)
    assert isinstance(record, ControlResult)
    with _Session(args.config) as session:
        result = session.service.send_control_result(record, partner, actor=getpass.getuser())
        print(
            f"queued ControlResult {record.reference} ({record.outcome.value}) on transaction "
            f"{result.reference} for {partner.value}: message {result.message_id}"
        )
        return deliver_now(
            session.config, session.node, session.service.outbox, result.partner, result.message_id
        )


def _cmd_control_results(args: argparse.Namespace) -> int:
    with _Session(args.config) as session:
        store = session.service.store
        known = store.sent(reference=args.reference) + store.received(reference=args.reference)
        entries = session.service.store.control_results_for(
            args.reference, direction=Direction.RECEIVED
        )
    if not known:
        raise TransactionError(
            f"no transaction {args.reference!r} was sent or received by this gateway",
            code=UB2_UNKNOWN_TRANSACTION,
            location="REFERENCE",
        )
    print(f"{len(entries)} control result(s) received on transaction {args.reference}",
          file=sys.stderr)  # fmt: skip
    if args.format == "json":
        plain = [
            {
                "from": e.partner.value,
                "message_id": e.message_id,
                "received_at": e.at.isoformat(),
                "transaction_reference": e.transaction_reference,
                "transaction_message_id": e.transaction_message_id,
                "control_result": json.loads(ub2_exchange.to_json(e.result)),
            }
            for e in entries
        ]
        print(json.dumps(plain, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    from gateway.translate.eu_control_result import to_dms_notification

    for entry in entries:
        print(f"<!-- control result {entry.result.reference} from {entry.partner.value}, "
              f"message {entry.message_id} -->")  # fmt: skip
        sys.stdout.flush()
        sys.stdout.buffer.write(to_dms_notification(entry.result))
        sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
    return 0


# --- registration ---------------------------------------------------------------------------
def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="gateway config (its [ub2] table)")
    parser.add_argument("--ics-ens", metavar="DIR", help="ICS schema pack (CC315A, CC313A)")
    parser.add_argument("--wco-dm", metavar="DIR", help="WCO DM DEC-DMS schema pack")
    parser.add_argument("--mappings", metavar="DIR", help="UB2 mapping specs (adapters/mappings)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "translate", help="an EU message (CC315A, CC313A, DEC-DMS) into a UB2 transaction record"
    )
    p.add_argument("input", metavar="IN.xml", help="the EU message ('-' for stdin)")
    p.add_argument("--to", choices=OUTPUTS, default="ub2-xml", help="output (default ub2-xml)")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    p.add_argument("--strict", action="store_true", help="code-list findings are errors")
    p.add_argument(
        "--no-validate", action="store_true", help="skip schema validation (said on stderr)"
    )
    _source_options(p)
    p.set_defaults(func=_cmd_translate)

    p = subparsers.add_parser(
        "validate", help="check an EU message: every schema error with its path, and code lists"
    )
    p.add_argument("input", metavar="IN.xml")
    _source_options(p)
    p.set_defaults(func=_cmd_validate)

    mapping = subparsers.add_parser("mapping", help="UB2 mapping specs")
    actions = mapping.add_subparsers(dest="mapping_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "coverage", help="which source elements a spec carries (target, WCO ID) or drops (why)"
    )
    p.add_argument(
        "source", metavar="SOURCE", help="CC315A, CC313A, DEC-DMS-EX, DEC-DMS-IM or a spec file"
    )
    p.add_argument(
        "--samples", metavar="DIR", help="only elements occurring in the messages below DIR"
    )
    _source_options(p)
    p.set_defaults(func=_cmd_coverage)

    ub2 = subparsers.add_parser("ub2", help="UB2 control results")
    actions = ub2.add_subparsers(dest="ub2_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "control-results", help="control results received on a transaction (DMS or JSON)"
    )
    p.add_argument("reference", metavar="REFERENCE", help="the transaction's reference (LRN)")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--format", choices=("dms", "json"), default="dms")
    p.set_defaults(func=_cmd_control_results)

    p = actions.add_parser(
        "send-control-result", help="report a control on a received transaction, deliver now"
    )
    p.add_argument("file", metavar="FILE.json", help="a ControlResult as gncgw writes JSON")
    p.add_argument("--to", required=True, metavar="PARTNER")
    p.add_argument("--config", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_send_control_result)
