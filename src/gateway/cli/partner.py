"""`gncgw partner promote|runs`: move a staging link to production once its suite passed.

Promotion is a decision about a specification version: the partner's profile (status
``staging``, agreement version V) becomes ``production`` only when the latest recorded run of
its conformance suite at version V, for the suite as it is now, passed every required case in
the profile's binding (gateway.conformance.record). Otherwise it refuses and names the failing
cases. Runs are recorded by ``gncgw conformance run --config`` in the gateway's store.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.conformance.record import (
    check_promotion,
    latest_runs,
    promoted_profile_text,
    record_promotion,
)
from gateway.conformance.suites import load_suite
from gateway.errors import CNF_PROMOTION_REFUSED, ConformanceError
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.store.database import display_url, open_database

# conformance/ of the source tree: the suites the project ships, one folder per partner.
SHIPPED_SUITES = Path(__file__).resolve().parents[3] / "conformance"


def _partner(code: str) -> Administration:
    try:
        return Administration(code.strip().upper())
    except ValueError:
        raise ConformanceError(
            f"{code!r} is not an administration code",
            code=CNF_PROMOTION_REFUSED,
            location="PARTNER",
        ) from None


def _promote(args: argparse.Namespace) -> int:
    partner = _partner(args.partner)
    config = load_config(args.config)
    settings = config.partner(partner)
    profile = settings.profile
    if profile is None or settings.profile_path is None:
        raise ConformanceError(
            f"partner {partner.value} links no profile in {config.path}: nothing to promote",
            code=CNF_PROMOTION_REFUSED,
            location=f"{config.path}:partners",
        )
    # The suite the project ships for the partner, never one the caller names: a gate judged
    # by a suite of one's choosing (fewer cases, an older copy) would be no gate.
    suite = load_suite(SHIPPED_SUITES / partner.value.lower())
    database = open_database(config.store_url)
    try:
        run = check_promotion(profile, suite.sha256, suite.version, latest_runs(database, partner))
        path = settings.profile_path
        text = promoted_profile_text(path.read_text(encoding="utf-8"), str(path))
        path.write_text(text, encoding="utf-8")
        record_promotion(database, run, utc_now())
    finally:
        database.close()
    print(
        f"promoted {partner.value} to production: profile {path} (agreement version "
        f"{profile.agreement.version}), on the strength of run #{run.id} ({run.finished_at}, "
        f"{', '.join(run.bindings)}); restart gncgw serve to apply"
    )
    return 0


def _runs(args: argparse.Namespace) -> int:
    partner = _partner(args.partner)
    config = load_config(args.config)
    database = open_database(config.store_url)
    try:
        runs = latest_runs(database, partner, args.limit)
    finally:
        database.close()
    for run in runs:
        verdict = "passed" if run.passed else "failed: " + ", ".join(run.failed_cases)
        print(
            f"#{run.id} {run.finished_at} {run.suite} v{run.suite_version} "
            f"(profile {run.profile_version}) {'/'.join(run.bindings)} {verdict}"
        )
    if not runs:
        store = display_url(config.store_url)
        print(f"no conformance run of {partner.value} is recorded in {store}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("partner", help="partner links: promotion, conformance runs")
    commands = parser.add_subparsers(dest="partner_command", metavar="ACTION", required=True)
    promote = commands.add_parser(
        "promote", help="promote a staging link to production once its suite passed"
    )
    promote.add_argument("partner", metavar="PARTNER", help="administration code, e.g. CA")
    promote.add_argument("--config", type=Path, required=True)
    promote.set_defaults(func=_promote)
    runs = commands.add_parser("runs", help="the partner's recorded conformance runs")
    runs.add_argument("partner", metavar="PARTNER")
    runs.add_argument("--config", type=Path, required=True)
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=_runs)
