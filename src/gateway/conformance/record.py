"""Recorded runs and the promotion of a staging link (specification versions).

A run made with ``--config`` is recorded in that gateway's store (SQLite or PostgreSQL; table
``conformance_runs``: partner, suite and profile versions, the suite's SHA-256, the bindings it
covered, pass/fail and the failing cases, the conformance statement). ``gncgw partner promote``
then moves a staging profile to production only when the latest recorded run of that partner's
suite, at the profile's agreement version and for the suite as it is now, passed every required
case in the profile's binding. The decision (``check_promotion``) and the profile rewrite
(``promoted_profile_text``) are pure; the store access is the edge.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.conformance.reports import conformance_statement
from gateway.conformance.results import RunResult
from gateway.errors import CNF_PROMOTION_REFUSED, ConformanceError
from gateway.model.codes import Administration
from gateway.partners.profile import Binding as ProfileBinding
from gateway.partners.profile import LinkStatus, PartnerProfile, load_profile
from gateway.store.database import Database

__all__ = [
    "RecordedRun",
    "check_promotion",
    "latest_runs",
    "promoted_profile_text",
    "record_run",
]


@dataclass(frozen=True)
class RecordedRun:
    id: int
    partner: str
    suite: str
    suite_version: str
    profile_version: str
    suite_sha256: str
    bindings: tuple[str, ...]
    mode: str
    passed: bool
    failed_cases: tuple[str, ...]
    finished_at: str


def record_run(database: Database, run: RunResult) -> int:
    """Store a run (its statement and failing cases); its id. (The tables come from the
    store's migrations, gateway.store.schema.)"""
    statement = conformance_statement(run)

    def unit(conn: sqlite3.Connection) -> int:
        cursor = conn.execute(
            "INSERT INTO conformance_runs (partner, suite, suite_version, profile_version, "
            "suite_sha256, bindings, targets, mode, passed, failed_cases, statement, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                run.partner.value,
                run.suite,
                run.suite_version,
                run.profile_version,
                run.suite_sha256,
                json.dumps([b.value for b in run.bindings]),
                json.dumps(list(run.targets)),
                run.mode,
                int(run.passed),
                json.dumps(statement["failed_required"]),
                json.dumps(statement),
                run.finished.isoformat(),
            ),
        )
        return int(cursor.fetchone()[0])

    return database.write(unit)


def latest_runs(database: Database, partner: Administration, limit: int = 20) -> list[RecordedRun]:
    """The partner's recorded runs, newest first."""
    rows = database.reader().execute(
        "SELECT id, partner, suite, suite_version, profile_version, suite_sha256, bindings, mode, "
        "passed, failed_cases, finished_at FROM conformance_runs WHERE partner = ? "
        "ORDER BY id DESC LIMIT ?",
        (partner.value, limit),
    )
    return [
        RecordedRun(
            int(r[0]),
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            tuple(json.loads(r[6])),
            r[7],
            bool(r[8]),
            tuple(json.loads(r[9])),
            r[10],
        )
        for r in rows
    ]


def record_promotion(database: Database, run: RecordedRun, at: datetime) -> None:
    def unit(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO conformance_promotions (partner, profile_version, run_id, promoted_at) "
            "VALUES (?, ?, ?, ?)",
            (run.partner, run.profile_version, run.id, at.isoformat()),
        )

    database.write(unit)


def _binding_name(profile: PartnerProfile) -> str:
    return "protobuf" if profile.transport.binding is ProfileBinding.GRPC else "xml"


def check_promotion(
    profile: PartnerProfile, suite_sha256: str, suite_version: str, runs: Sequence[RecordedRun]
) -> RecordedRun:
    """The run that allows promotion, or CNF_PROMOTION_REFUSED saying what is missing/failing.

    Only the latest `run` (not `listen`) at the profile's version and for the suite as it is
    now counts: a later failing run withdraws an earlier pass.
    """
    partner = profile.administration.value
    version = profile.agreement.version

    def refuse(message: str) -> ConformanceError:
        return ConformanceError(message, code=CNF_PROMOTION_REFUSED, location=partner)

    if profile.status is not LinkStatus.STAGING:
        raise refuse(f"the {partner} link is already {profile.status.value}")
    if suite_version != version:
        raise refuse(
            f"the {partner} suite is at version {suite_version!r} but the profile at "
            f"{version!r}: no run of the suite can pass at the profile's version"
        )
    current = [
        r
        for r in runs
        if r.mode == "run" and r.profile_version == version and r.suite_sha256 == suite_sha256
    ]
    if not current:
        raise refuse(
            f"no run of the {partner} suite at version {version!r} is recorded (for the suite "
            "as it is now): run `gncgw conformance run --config ...` against the partner first"
        )
    latest = current[0]
    if not latest.passed:
        failing = ", ".join(latest.failed_cases) or "unknown"
        raise refuse(
            f"the latest run (#{latest.id}, {latest.finished_at}) of the {partner} suite at "
            f"version {version!r} failed: {failing}"
        )
    binding = _binding_name(profile)
    if binding not in latest.bindings:
        raise refuse(
            f"the latest passing run (#{latest.id}) covered {', '.join(latest.bindings)}, not "
            f"the profile's binding {binding}"
        )
    return latest


_STATUS_LINE = re.compile(r'^(\s*status\s*=\s*)"staging"(.*)$', re.MULTILINE)


def promoted_profile_text(text: str, source: str) -> str:
    """The profile with ``partner.status`` set to production (comments and layout kept)."""
    profile = load_profile(text, source)
    if profile.status is not LinkStatus.STAGING:
        raise ConformanceError(
            f"{source}: partner.status is {profile.status.value}, not staging",
            code=CNF_PROMOTION_REFUSED,
            location=source,
        )
    new, count = _STATUS_LINE.subn(r'\1"production"\2', text)
    promoted = load_profile(new, source) if count == 1 else None
    if promoted is None or promoted.status is not LinkStatus.PRODUCTION:
        raise ConformanceError(
            f"{source}: cannot find the one line 'status = \"staging\"' to change",
            code=CNF_PROMOTION_REFUSED,
            location=source,
        )
    return new
