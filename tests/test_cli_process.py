"""The gncgw process as a shell user meets it: a reader that goes away, and how much it logs."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from ub2_data import wco_dm_pack

from gateway.cli import build_parser


@pytest.mark.shared_data
def test_a_reader_that_goes_away_stops_it_quietly() -> None:
    """`gncgw mapping coverage DEC-DMS-EX | true`: 117 KB for a reader that reads nothing.
    Exit 141 (128 + SIGPIPE) as Unix tools do, and no traceback."""
    child = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "mapping", "coverage", "DEC-DMS-EX",
         "--wco-dm", str(wco_dm_pack())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before anything is read
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["serve", "--config", "eu.toml"], logging.INFO),
        (["conformance", "listen", "--suite", "s", "--config", "c", "--port", "1"], logging.INFO),
        (["send", "--config", "eu.toml", "--to", "CN", "in.xml"], logging.WARNING),
        (["outbox", "list", "--config", "eu.toml"], logging.WARNING),
    ],
)
def test_serving_commands_log_at_info_one_shot_commands_only_warnings(
    argv: list[str], level: int
) -> None:
    """A one-shot command prints its own results and errors; INFO lines would repeat them."""
    args = build_parser().parse_args(argv)
    assert getattr(args, "log_level", logging.WARNING) == level
