"""What a run observed and how a case is judged: pure code the runner, listener and reports share.

The judgement is kept apart from the I/O so that what "passed" means is one small function a
reviewer can read: an outcome, a code, and value checks on the UB1 records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from gateway.conformance.model import Case, Expectation, Outcome, ValueCheck
from gateway.envelope.opened import Binding
from gateway.model.aeo import AeoRecord
from gateway.model.codes import Administration
from gateway.partners.profile import PartnerProfile
from gateway.translate.aeo_exchange import FullList, FullListPart, Payload, StatusChanges

__all__ = [
    "Answer",
    "AnswerKind",
    "CaseResult",
    "RunResult",
    "Status",
    "Step",
    "check_values",
    "judge",
    "records_of",
]


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # could not run: a fault on the tester's side, no verdict on the partner


class AnswerKind(StrEnum):
    RECEIPT = "receipt"  # a signed receipt (checked: signature, signer, subject, digest)
    TRANSPORT = "transport"  # the transport refused or failed (HTTP problem, gRPC status)
    TIMEOUT = "timeout"  # no answer in time / target unreachable
    WITHHELD = "withheld"  # the EU side refused to send (agreement rules)
    ANSWER = "answer"  # a signed answer envelope to an online query


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    outcome: str = ""  # ACCEPTED / REJECTED for receipts; the answer type for queries
    code: str = ""
    message: str = ""
    receipt_id: str = ""
    duplicate: bool = False
    verified: bool = False  # signature, signer trusted for the partner, message id and digest
    verify_error: str = ""
    signer: str = ""
    excerpt: str = ""


@dataclass(frozen=True)
class Step:
    """One envelope sent (or received) and what came back."""

    role: str  # setup, judged, first copy, ...
    message_type: str
    message_id: str
    sha256: str  # of the exact envelope bytes
    size: int
    excerpt: str
    answer: Answer | None = None


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    title: str
    exchange: str
    binding: Binding
    required: bool
    status: Status
    reasons: tuple[str, ...]
    steps: tuple[Step, ...]
    started: datetime
    finished: datetime
    source: str
    mutation: str
    expected: str

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()


@dataclass(frozen=True)
class RunResult:
    suite: str
    title: str
    partner: Administration
    suite_version: str
    profile_version: str
    profile_status: str
    suite_sha256: str
    mode: str  # run or listen
    targets: tuple[str, ...]
    tester: Administration
    started: datetime
    finished: datetime
    results: tuple[CaseResult, ...] = field(default=())
    # `listen`: messages received that no case of the suite judges (unreadable, another
    # exchange): shown in the reports, so nothing the partner sent goes unseen.
    unmatched: tuple[Step, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Every required case passed, and there was one at least (optional cases are reported,
        never blocking; a run of optional cases only proves nothing)."""
        required = [r for r in self.results if r.required]
        return bool(required) and all(r.passed for r in required)

    @property
    def failed_required(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if r.required and r.status is Status.FAILED)

    @property
    def not_run(self) -> tuple[CaseResult, ...]:
        """Cases the tester could not run (no verdict on the partner; the run proves less)."""
        return tuple(r for r in self.results if r.status is Status.ERROR)

    @property
    def bindings(self) -> tuple[Binding, ...]:
        return tuple(dict.fromkeys(r.binding for r in self.results))

    def counts(self) -> tuple[int, int]:
        """(passed, failed); the cases that could not run are in neither."""
        passed = sum(1 for r in self.results if r.passed)
        return passed, sum(1 for r in self.results if r.status is Status.FAILED)


def records_of(payloads: Iterable[Payload]) -> list[AeoRecord]:
    out: list[AeoRecord] = []
    for payload in payloads:
        if isinstance(payload, StatusChanges):
            out += [c.record for c in payload.changes if c.record is not None]
        elif isinstance(payload, FullListPart | FullList):
            out += list(payload.records)
    return out


def check_values(
    expect: Expectation,
    payloads: Sequence[Payload],
    profile: PartnerProfile,
    sender: Administration | None = None,
) -> list[str]:
    """Why the UB1 values do not hold (empty when they all do)."""
    problems: list[str] = []
    records = records_of(payloads)
    if (
        expect.values
        and not records
        and any(k is not ValueCheck.LIST_OWNER_IS_SENDER for k in expect.values)
    ):
        problems.append("value checks expect records, but the messages carry none")
    for check, wanted in expect.values.items():
        if check is ValueCheck.PARTNER_PROGRAMME:
            bad = [r.authorisation_number for r in records if r.partner_programme != wanted]
            if bad:
                problems.append(f"partner_programme is not {wanted!r} on {', '.join(bad[:5])}")
        elif check is ValueCheck.CROSS_REFERENCE:
            bad = [r.authorisation_number for r in records if not r.references(str(wanted))]
            if bad:
                problems.append(f"no {wanted} cross reference on {', '.join(bad[:5])}")
        elif check is ValueCheck.ONLY_PARTNER_REFERENCES and wanted:
            prefix = profile.scheme_prefix
            bad = [
                f"{r.authorisation_number} ({ref.scheme})"
                for r in records
                for ref in r.cross_references
                if not ref.scheme.startswith(prefix)
            ]
            if bad:
                problems.append(f"cross references of other partners sent: {', '.join(bad[:5])}")
        elif check is ValueCheck.INBOUND_PROGRAMME_KNOWN and wanted:
            bad = [
                f"{r.authorisation_number} ({r.partner_programme or 'none'})"
                for r in records
                if r.partner_programme not in profile.ub1_rules().inbound
            ]
            if bad:
                known = ", ".join(sorted(profile.ub1_rules().inbound))
                problems.append(f"programme not in the profile's ub1.inbound ({known}): {bad[:5]}")
        elif check is ValueCheck.LIST_OWNER_IS_SENDER and wanted and sender is not None:
            owners = {
                getattr(p, "list_owner", sender) for p in payloads if hasattr(p, "list_owner")
            }
            if owners - {sender}:
                problems.append(f"list owner {sorted(o.value for o in owners)} is not {sender}")
    return problems


def judge(case: Case, binding: Binding, answer: Answer, first: Answer | None = None) -> list[str]:
    """Why the judged answer does not meet the case's expectation (empty: it does)."""
    expect = case.expect
    wanted_code = expect.code_for(binding)
    outcome = expect.outcome
    if outcome is Outcome.NOT_SENT:
        if answer.kind is not AnswerKind.WITHHELD:
            return ["the EU side sent a message the agreement does not allow"]
        if answer.code != wanted_code:
            return [f"withheld with {answer.code}, expected {wanted_code}"]
        return []
    if answer.kind is AnswerKind.TIMEOUT:
        return [f"no answer: {answer.message}"]
    if outcome is Outcome.REFUSED and answer.kind is AnswerKind.TRANSPORT:
        if answer.code == wanted_code:
            return []
        return [f"refused by the transport with {answer.code or 'no code'}, expected {wanted_code}"]
    if outcome is Outcome.ANSWERED:
        if answer.kind is not AnswerKind.ANSWER:
            return [f"expected a signed answer envelope, got {answer.kind.value}: {answer.message}"]
        return [] if answer.verified else [f"the answer does not verify: {answer.verify_error}"]
    if answer.kind is not AnswerKind.RECEIPT:
        return [f"expected a signed receipt, got {answer.kind.value}: {answer.message}"]
    if not answer.verified:
        return [f"the receipt does not verify: {answer.verify_error}"]
    if outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
        if answer.outcome != "ACCEPTED":
            return [f"rejected with {answer.code}: {answer.message}"]
        if (
            outcome is Outcome.DUPLICATE
            and first is not None
            and answer.receipt_id != first.receipt_id
            and not answer.duplicate
        ):
            return [
                f"the resend got a new receipt {answer.receipt_id}, not the original "
                f"{first.receipt_id} (and is not marked duplicate)"
            ]
        return []
    if answer.outcome != "REJECTED":
        return [f"accepted, expected a rejection with {wanted_code}"]
    if answer.code != wanted_code:
        return [f"rejected with {answer.code}, expected {wanted_code}: {answer.message}"]
    return []


def expected_text(case: Case, binding: Binding) -> str:
    code = case.expect.code_for(binding)
    text = case.expect.outcome.value + (f" {code}" if code else "")
    if case.expect.values:
        text += " with " + ", ".join(f"{k.value}={v}" for k, v in case.expect.values.items())
    return text
