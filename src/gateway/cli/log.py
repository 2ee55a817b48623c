"""`gncgw log`: the tamper-evident message log (every envelope sent and received, with its
receipt, in a hash chain with signed checkpoints; see docs/message-log.md).

    gncgw log list       --config FILE [--partner CODE] [--limit N]
    gncgw log checkpoint --config FILE                 sign the chain head now
    gncgw log verify     --config FILE [--trust-dir DIR]
    gncgw log verify     --archive FILE (--trust-dir DIR | --config FILE)
    gncgw log export     --config FILE --from ISO --to ISO -o ARCHIVE

`verify` exits 1 naming the first entry altered, removed or inserted (DLV_LOG_TAMPERED) or the
first signature refused (DLV_LOG_SIGNATURE).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.cli.outbox import _config_option, _database, _partner
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, TrustError
from gateway.model.codes import Administration
from gateway.store.log_chain import SignerCheck, export_archive, verify_archive, verify_log
from gateway.store.message_log import SqliteMessageLog
from gateway.trust.store import TrustStore


def _cmd_list(args: argparse.Namespace) -> int:
    partner = _partner(args.partner).value if args.partner else None
    with _database(args.config) as database:
        entries = SqliteMessageLog(database).entries(partner=partner, limit=args.limit)
    for e in entries:
        code = f" {e.code}" if e.code else ""
        receipt = f"receipt {len(e.receipt)} B" if e.receipt is not None else "no receipt"
        print(
            f"{e.seq}  {e.at:%Y-%m-%dT%H:%M:%S.%fZ}  {e.direction.value:<8}  "
            f"{e.partner or '-':<2}  {e.message_id or '(unread)'}  "
            f"{e.utility_block or '-'}/{e.message_type or '-'}  {e.binding.value}  "
            f"{e.outcome.value}{code}  sha256={e.envelope_sha256.hex()}  {receipt}"
        )
    return 0


def _signer_check(config: GatewayConfig | None, trust: TrustStore | None) -> SignerCheck:
    """Own checkpoints: the configured signing certificate itself; anything else (a rotated
    key, a partner's archive): a chain the trust store accepts for the administration named."""
    own_der = config.signing_identity.certificate.public_bytes(Encoding.DER) if config else None
    own_admin = config.administration.value if config else None

    def check(administration: str, chain: Sequence[x509.Certificate], at: datetime) -> None:
        if (
            own_der is not None
            and administration == own_admin
            and chain[0].public_bytes(Encoding.DER) == own_der
        ):
            return
        if trust is None:
            raise TrustError(
                f"the signer is not this gateway's signing certificate and no trust for "
                f"{administration} was given (--trust-dir)"
            )
        try:
            claimed = Administration(administration)
        except ValueError:
            raise TrustError(f"unknown administration {administration!r}") from None
        trust.check_signer(claimed, chain, at)

    return check


def _trust(args: argparse.Namespace, config: GatewayConfig | None) -> TrustStore | None:
    if args.trust_dir:
        from gateway.cli.certs import trust_from_directory

        return trust_from_directory(Path(args.trust_dir))
    return config.trust if config is not None else None


def _cmd_verify(args: argparse.Namespace) -> int:
    if not args.config and not args.archive:
        raise ConfigError("give --config FILE (the store) or --archive FILE", location="log verify")
    config = load_config(args.config) if args.config else None
    check = _signer_check(config, _trust(args, config))
    if args.archive:
        try:  # read line by line, not whole: an archive may hold millions of entries
            with Path(args.archive).open("rb") as source:
                report = verify_archive(source, check)
        except OSError as exc:
            raise ConfigError(
                f"cannot read {args.archive}: {exc.strerror}", location=str(args.archive)
            ) from None
        assert report.time_range is not None
        what = (
            f"archive {args.archive} ({report.administration}'s log, logged "
            f"{report.time_range[0]} .. {report.time_range[1]})"
        )
    else:
        assert config is not None  # --config, since no --archive
        with _database(args.config) as database:
            report = verify_log(
                SqliteMessageLog(database), check, administration=config.administration.value
            )
        what = f"{config.administration.value} message log"
    print(
        f"{what}: OK, {report.entries} entries, {report.checkpoints} checkpoint(s), "
        f"head seq {report.head_seq} sha256={report.head_sha256.hex()}"
    )
    return 0


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with _database(args.config) as database:
        checkpoint = SqliteMessageLog(database).checkpoint(config.signing_identity)
    if checkpoint is None:
        print("the message log is empty: nothing to checkpoint")
    else:
        print(
            f"checkpoint {checkpoint.id}: {checkpoint.entries} entries, head seq "
            f"{checkpoint.head_seq} sha256={checkpoint.head_sha256.hex()}"
        )
    return 0


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _cmd_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with _database(args.config) as database:
        count = export_archive(
            SqliteMessageLog(database),
            config.signing_identity,
            args.start,
            args.end,
            Path(args.output),
        )
    print(f"exported {count} entries to {args.output}")
    return 0


def register(subparsers: Any) -> None:
    log = subparsers.add_parser(
        "log",
        help="the message log: every envelope sent and received, with its receipt",
        description="The tamper-evident message log of the gateway's message store.",
    )
    commands = log.add_subparsers(dest="log_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="the newest log rows, oldest first")
    _config_option(listing)
    listing.add_argument("--partner", metavar="CODE", help="e.g. US")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="default 50")
    listing.set_defaults(func=_cmd_list)

    checkpoint = commands.add_parser("checkpoint", help="sign a checkpoint of the chain head now")
    _config_option(checkpoint)
    checkpoint.set_defaults(func=_cmd_checkpoint)

    verify = commands.add_parser(
        "verify",
        help="recompute the hash chain and check every checkpoint (or a signed archive)",
    )
    verify.add_argument("--config", type=Path, metavar="FILE", help="the gateway's TOML config")
    verify.add_argument("--archive", type=Path, metavar="FILE", help="an exported archive")
    verify.add_argument(
        "--trust-dir",
        metavar="DIR",
        help="trust from a test-PKI layout directory (ADMIN/ca.pem, crl.pem)",
    )
    verify.set_defaults(func=_cmd_verify)

    export = commands.add_parser("export", help="write a signed archive of a time range")
    _config_option(export)
    export.add_argument("--from", dest="start", required=True, type=_time, metavar="ISO")
    export.add_argument("--to", dest="end", required=True, type=_time, metavar="ISO")
    export.add_argument("-o", "--output", required=True, metavar="ARCHIVE")
    export.set_defaults(func=_cmd_export)
