"""The gncgw command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from gateway import __version__
from gateway.errors import GatewayError

# Modules that define `register(subparsers)`; a module missing from a partial install is skipped.
_COMMAND_MODULES = (
    "certs", "envelope", "send", "serve", "outbox", "log", "aeo", "risk", "conformance", "partner",
    "ub2",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gncgw",
        description="GNC gateway: signed WCO Utility Block exchanges between customs "
        "administrations.",
    )
    parser.add_argument("--version", action="version", version=f"gncgw {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at debug level (otherwise serve and conformance listen log at info, and "
        "one-shot commands only warnings: they print their own results and errors)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        module = import_module(f"gateway.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # A command that serves logs what it does (INFO); a one-shot command prints its own result
    # and errors, so its log shows only warnings unless -v (its INFO lines would repeat them).
    level = getattr(args, "log_level", logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except GatewayError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gncgw ... | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
