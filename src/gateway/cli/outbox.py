"""`gncgw outbox` (list, replay, discard the messages waiting for or refused by a partner).
(`gncgw log` is in gateway.cli.log.)

It opens the message store named by the gateway configuration (store.url, SQLite or
PostgreSQL). It may run while `gncgw serve` runs on the same store: SQLite (WAL) lets them read
and make short writes, PostgreSQL anyway; a replayed message is picked up by the serving node's
delivery worker at its next pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.model.codes import Administration
from gateway.store.database import Database, open_database
from gateway.store.outbox import OutboundItem, OutboundState, SqliteOutbox


@contextmanager
def _database(config_path: Path) -> Iterator[Database]:
    config = load_config(config_path)
    if config.store_path is not None and not config.store_path.exists():
        raise ConfigError(
            f"config error: store.url: no message store at {config.store_path} yet "
            "(it is created when the gateway first runs)",
            location=str(config.path),
        )
    database = open_database(config.store_url)
    try:
        yield database
    finally:
        database.close()


def _partner(code: str) -> Administration:
    try:
        return Administration(code.strip().upper())
    except ValueError:
        known = ", ".join(a.value for a in Administration)
        raise ConfigError(
            f"--partner {code!r} is not a known administration code (known: {known})",
            location="--partner",
        ) from None


def _when(item: OutboundItem) -> str:
    if item.state is OutboundState.DELIVERED and item.delivered_at is not None:
        return f"delivered {item.delivered_at:%Y-%m-%dT%H:%M:%SZ}"
    if item.state is OutboundState.PENDING:
        return (
            f"next {item.next_attempt:%Y-%m-%dT%H:%M:%SZ}"
            if item.next_attempt is not None
            else "next: now"
        )
    return f"since {item.last_attempt:%Y-%m-%dT%H:%M:%SZ}" if item.last_attempt else ""


def _node(item: OutboundItem) -> str:
    """Several nodes (PostgreSQL): the node claiming it now, or the one that settled it last."""
    if item.claimed_by is None:
        return ""
    if item.claim_expires is not None and item.state is OutboundState.PENDING:
        return f"  claimed by {item.claimed_by} until {item.claim_expires:%Y-%m-%dT%H:%M:%SZ}"
    return f"  node={item.claimed_by}"


def _cmd_list(args: argparse.Namespace) -> int:
    partner = _partner(args.partner) if args.partner else None
    with _database(args.config) as database:
        outbox = SqliteOutbox(database)
        items = outbox.list(args.state, partner, limit=args.limit)
        counts = outbox.counts()
    for item in items:
        error = f"  {item.last_error_code}: {item.last_error}" if item.last_error_code else ""
        print(
            f"{item.message_id}  {item.partner.value}  {item.state.value:<9}  "
            f"attempts={item.attempts}  {item.utility_block.value}/{item.message_type}  "
            f"key={item.ordering_key}  {_when(item)}{_node(item)}{error}"
        )
    print(
        f"{len(items)} listed; outbox: "
        + ", ".join(f"{state} {count}" for state, count in counts.items())
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    if (args.message_id is None) == (not args.all_dead):
        raise ConfigError(
            "give a MESSAGE_ID, or --all-dead (optionally with --partner), not both",
            location="gncgw outbox replay",
        )
    if args.partner and args.message_id:
        raise ConfigError(
            "--partner goes with --all-dead, not with a MESSAGE_ID", location="gncgw outbox replay"
        )
    partner = _partner(args.partner) if args.partner else None
    with _database(args.config) as database:
        count = SqliteOutbox(database).replay(args.message_id, partner)
    scope = args.message_id or f"dead letters{f' to {partner.value}' if partner else ''}"
    print(f"replayed {count} ({scope}): pending again, attempts reset")
    return 0


def _cmd_discard(args: argparse.Namespace) -> int:
    with _database(args.config) as database:
        SqliteOutbox(database).discard(args.message_id)
    print(f"discarded {args.message_id}: later messages of its ordering key may now be delivered")
    return 0


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the gateway's TOML config"
    )


def register(subparsers: Any) -> None:
    outbox = subparsers.add_parser(
        "outbox",
        help="list, replay or discard outbound messages (dead letters included)",
        description="The outbox of the gateway's message store. A dead letter blocks later "
        "messages of its ordering key until it is replayed or discarded.",
    )
    commands = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="list outbound messages, oldest first")
    _config_option(listing)
    listing.add_argument("--state", choices=[s.value for s in OutboundState])
    listing.add_argument("--partner", metavar="CODE", help="e.g. US")
    listing.add_argument("--limit", type=int, metavar="N", help="at most N messages")
    listing.set_defaults(func=_cmd_list)

    replay = commands.add_parser(
        "replay", help="dead letters back to pending (attempts reset); the worker resends them"
    )
    _config_option(replay)
    replay.add_argument("message_id", nargs="?", metavar="MESSAGE_ID")
    replay.add_argument("--all-dead", action="store_true", help="every dead letter")
    replay.add_argument("--partner", metavar="CODE", help="with --all-dead: only this partner's")
    replay.set_defaults(func=_cmd_replay)

    discard = commands.add_parser(
        "discard", help="give up on a dead letter (it is kept; its ordering key moves on)"
    )
    _config_option(discard)
    discard.add_argument("message_id", metavar="MESSAGE_ID")
    discard.set_defaults(func=_cmd_discard)
