"""`gncgw conformance run`: play the EU side of a partner suite against any endpoint.

For each case and each binding a target was given for, the runner builds the case's messages
(a named generator or a fixture), seals them as the EU side does (or with the case's mutation:
a flipped signature bit, another administration's certificate, a created-at beyond the
profile's tolerance, ...), sends them over the real transport with mutual TLS, and checks what
comes back: the receipt's signature, that its signer is trusted for the partner, that it names
the message and the SHA-256 of exactly the bytes sent, and its outcome and code. A target that
does not answer in time fails that case; the run goes on.

This module is the I/O edge (transports, clock, randomness); the case model, the generators and
the judgement are pure (model, generators, results).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from gateway._proto.gnc.v1 import envelope_pb2 as pb
from gateway.conformance.generators import GeneratorInput, Message, Plan, generate
from gateway.conformance.model import Case, Direction, Mutation, Outcome, Suite
from gateway.conformance.results import (
    Answer,
    AnswerKind,
    CaseResult,
    RunResult,
    Status,
    Step,
    check_values,
    expected_text,
    judge,
)
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding, new_header
from gateway.errors import (
    CNF_TARGET_INVALID,
    ConformanceError,
    GatewayError,
    TransportError,
)
from gateway.model.codes import Administration, HandlingLabel, UtilityBlock
from gateway.model.header import EnvelopeHeader, utc_now
from gateway.model.risk import Feedback, IprDetention, IprStatistics, RiskInformation
from gateway.node import open_receipt, seal_envelope, verify_partner_receipt
from gateway.partners.profile import PartnerProfile
from gateway.services.aeo import build_query, form_for, verify_answer
from gateway.translate import aeo_exchange, ub3_exchange
from gateway.translate.aeo_exchange import CONTENT_TYPES, Payload, Query
from gateway.transport.tls import ClientTls
from gateway.trust.store import TrustStore

TRN_UNAVAILABLE = TransportError.code

__all__ = [
    "Target",
    "Tester",
    "parse_target",
    "run_suite",
]

Progress = Callable[[int, int, CaseResult], None]
EXCERPT = 2000


@dataclass(frozen=True)
class Target:
    """Where the partner's system listens, in one binding."""

    binding: Binding
    endpoint: str  # host:port (gRPC) or the https URL of the envelopes resource (XML)
    label: str


def parse_target(text: str) -> Target:
    """``grpc://HOST:PORT`` (protobuf binding) or ``https://HOST:PORT/gnc/v1/envelopes`` (XML)."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "grpc" and parts.hostname and parts.port and parts.path in ("", "/"):
        return Target(Binding.PROTOBUF, parts.netloc, text)
    if parts.scheme == "https" and parts.hostname:
        url = text if parts.path not in ("", "/") else text.rstrip("/") + "/gnc/v1/envelopes"
        return Target(Binding.XML, url, text)
    raise ConformanceError(
        f"target {text!r} is neither grpc://HOST:PORT nor an https:// URL "
        "(e.g. https://HOST:PORT/gnc/v1/envelopes)",
        code=CNF_TARGET_INVALID,
        location="--target",
    )


@dataclass(frozen=True)
class Tester:
    """The EU side the runner plays: its keys, its TLS material and its trust in the partner.

    ``alternates`` holds the signing identities the negative cases need: ``expired``,
    ``revoked`` (EU certificates the partner must refuse), ``untrusted`` (an impostor under a
    CA nobody trusts) and ``wrong_partner`` (a valid certificate of a third administration).
    """

    administration: Administration
    signing: SigningIdentity
    tls: ClientTls
    trust: TrustStore
    alternates: Mapping[str, SigningIdentity] = field(default_factory=dict)


class _Submitter(Protocol):
    def submit(self, raw: bytes) -> bytes: ...
    def close(self) -> None: ...


class _GrpcSubmitter:
    def __init__(self, endpoint: str, tls: ClientTls, timeout: float) -> None:
        from gateway.transport.grpc_client import GrpcPartnerClient

        self._client = GrpcPartnerClient(endpoint, tls=tls)
        self._timeout = timeout

    def submit(self, raw: bytes) -> bytes:
        return self._client.submit(raw, timeout=self._timeout)

    def close(self) -> None:
        self._client.close()


def _open_submitter(target: Target, tls: ClientTls, timeout: float) -> _Submitter:
    if target.binding is Binding.PROTOBUF:
        return _GrpcSubmitter(target.endpoint, tls, timeout)
    from gateway.transport.xml_http import XmlPartnerClient

    return XmlPartnerClient(target.endpoint, tls=tls, timeout=timeout)


# --- sealing and mutations ---------------------------------------------------------------------
def _flip_signature(binding: Binding, raw: bytes) -> bytes:
    """The same envelope with one bit of its signature value flipped."""
    if binding is Binding.PROTOBUF:
        envelope = pb.SignedEnvelope()
        envelope.ParseFromString(raw)
        protected, _, signature = envelope.jws.rpartition(".")
        sig = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        sig[len(sig) // 2] ^= 0x01
        flipped = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
        envelope.jws = f"{protected}.{flipped}"
        return envelope.SerializeToString()
    found = re.search(rb"(<(?:\w+:)?SignatureValue(?:\s[^>]*)?>)([^<]+)", raw)
    if found is None:
        raise ConformanceError("no SignatureValue in the sealed XML envelope")
    value = bytearray(base64.b64decode(b"".join(found.group(2).split())))
    value[len(value) // 2] ^= 0x01
    return raw[: found.start(2)] + base64.b64encode(bytes(value)) + raw[found.end(2) :]


def _tamper_payload(binding: Binding, raw: bytes) -> bytes:
    """The same envelope with its payload changed after signing."""
    if binding is Binding.PROTOBUF:
        envelope = pb.SignedEnvelope()
        envelope.ParseFromString(raw)
        envelope.payload = envelope.payload + b"\n"
        return envelope.SerializeToString()
    found = re.search(rb"(<(?:\w+:)?Payload(?:\s[^>]*)?>)([A-Za-z0-9+/=\s]+)<", raw)
    if found is None:
        raise ConformanceError("no Payload element in the sealed XML envelope")
    data = base64.b64decode(b"".join(found.group(2).split())) + b"\n"
    return raw[: found.start(2)] + base64.b64encode(data) + raw[found.end(2) :]


_UB3_RECORDS = (RiskInformation, Feedback, IprDetention, IprStatistics)
UB3_SCHEMA_VERSION = "1.0"  # services.risk.SCHEMA_VERSION


def _ub1(messages: Sequence[Message]) -> list[Payload]:
    return [m for m in messages if not isinstance(m, _UB3_RECORDS)]


def _encode(message: Message, binding: Binding) -> bytes:
    if isinstance(message, _UB3_RECORDS):
        return ub3_exchange.encode(message, ub3_exchange.PayloadForm(form_for(binding).value))
    return aeo_exchange.encode(message, form_for(binding))


def _label(message: Message | None) -> HandlingLabel | None:
    """A UB3 record travels under its own label (as services.risk seals it)."""
    return message.label if isinstance(message, _UB3_RECORDS) else None


def _excerpt(binding: Binding, header: EnvelopeHeader, raw: bytes, payload: bytes) -> str:
    head = (
        f"{header.utility_block.value}/{header.message_type} id={header.message_id} "
        f"{header.sender.value}->{header.receiver.value} created={header.created_at.isoformat()} "
        f"payload={len(payload)} bytes sha256={header.payload_sha256.hex()}"
    )
    if binding is Binding.XML:
        return head + "\n" + raw[:EXCERPT].decode("utf-8", "replace")
    if header.payload_content_type.startswith("application/xml"):
        return head + "\n" + payload[:EXCERPT].decode("utf-8", "replace")
    return head + "\n(protobuf payload) " + payload[:256].hex()


@dataclass
class _Context:
    suite: Suite
    profile: PartnerProfile
    tester: Tester
    timeout: float
    max_envelope_bytes: int
    clock: Callable[[], datetime]
    run_nonce: str


class _CaseRunner:
    def __init__(self, ctx: _Context, case: Case, index: int, target: Target, sub: _Submitter):
        self.ctx = ctx
        self.case = case
        self.binding = target.binding
        self.target = target
        self.sub = sub
        self.nonce = f"{ctx.run_nonce}{index:03d}"
        self.steps: list[Step] = []

    # -- building ---------------------------------------------------------------------------------
    def plan(self, nonce: str) -> tuple[Plan, list[bytes]]:
        case = self.case
        if case.generator is None:
            return Plan(), [case.fixtures[self.binding]]
        plan = generate(
            case.generator,
            GeneratorInput(
                self.ctx.profile,
                nonce,
                self.ctx.clock().date(),
                case.params,
                self.ctx.suite.rules,
            ),
        )
        return plan, [_encode(p, self.binding) for p in plan.messages]

    def header(
        self,
        payload: bytes,
        message_type: str,
        *,
        message_id: str | None = None,
        created_at: datetime | None = None,
        label: HandlingLabel | None = None,
    ) -> EnvelopeHeader:
        block = self.case.exchange.utility_block
        if block is UtilityBlock.UB3:
            content_type = ub3_exchange.CONTENT_TYPES[
                ub3_exchange.PayloadForm(form_for(self.binding).value)
            ]
            return new_header(
                payload=payload,
                utility_block=block,
                message_type=message_type,
                sender=self.ctx.tester.administration,
                receiver=self.ctx.suite.partner,
                payload_content_type=content_type,
                schema_version=UB3_SCHEMA_VERSION,
                handling_label=label or HandlingLabel.LIMITED,
                message_id=message_id,
                created_at=created_at,
            )
        return new_header(
            payload=payload,
            utility_block=UtilityBlock.UB1,
            message_type=message_type,
            sender=self.ctx.tester.administration,
            receiver=self.ctx.suite.partner,
            payload_content_type=CONTENT_TYPES[form_for(self.binding)],
            message_id=message_id,
            created_at=created_at,
        )

    def identity(self, mutation: Mutation) -> SigningIdentity:
        names = {
            Mutation.EXPIRED_CERTIFICATE: "expired",
            Mutation.REVOKED_CERTIFICATE: "revoked",
            Mutation.UNTRUSTED_CERTIFICATE: "untrusted",
            Mutation.WRONG_PARTNER_CERTIFICATE: "wrong_partner",
        }
        name = names.get(mutation)
        if name is None:
            return self.ctx.tester.signing
        found = self.ctx.tester.alternates.get(name)
        if found is None:
            raise ConformanceError(
                f"the {mutation.value} case needs the tester's {name} signing certificate: "
                "give --pki DIR (a test-PKI layout) with it",
                code=CNF_TARGET_INVALID,
                location=self.case.source,
            )
        # Header sender stays the tester's administration: only the key and chain change.
        return replace(found, administration=self.ctx.tester.administration)

    def seal(
        self,
        header: EnvelopeHeader,
        payload: bytes,
        mutation: Mutation = Mutation.NONE,
    ) -> bytes:
        raw = seal_envelope(self.binding, header, payload, self.identity(mutation))
        if mutation is Mutation.BAD_SIGNATURE:
            raw = _flip_signature(self.binding, raw)
        elif mutation is Mutation.TAMPERED_PAYLOAD:
            raw = _tamper_payload(self.binding, raw)
        return raw

    # -- sending ----------------------------------------------------------------------------------
    def send(self, role: str, header: EnvelopeHeader, payload: bytes, raw: bytes) -> Answer:
        step_answer = self._exchange(header, raw)
        self.steps.append(
            Step(
                role,
                header.message_type,
                header.message_id,
                hashlib.sha256(raw).hexdigest(),
                len(raw),
                _excerpt(self.binding, header, raw, payload),
                step_answer,
            )
        )
        return step_answer

    def _exchange(self, header: EnvelopeHeader, raw: bytes) -> Answer:
        try:
            answer = self.sub.submit(raw)
        except TransportError as error:
            remote = getattr(error, "remote_code", "")
            if error.code == TRN_UNAVAILABLE:
                return Answer(
                    AnswerKind.TIMEOUT,
                    message=f"no answer within {self.ctx.timeout:g} s or unreachable: {error}",
                )
            return Answer(AnswerKind.TRANSPORT, code=remote or error.code, message=str(error))
        return self.check_receipt(answer, header.message_id, raw)

    def check_receipt(self, answer: bytes, message_id: str, raw: bytes) -> Answer:
        try:
            receipt = open_receipt(self.binding, answer).receipt
        except GatewayError as error:
            return Answer(
                AnswerKind.TRANSPORT, code=error.code, message=f"not a signed receipt: {error}"
            )
        base = Answer(
            AnswerKind.RECEIPT,
            outcome=receipt.outcome.value,
            code=receipt.error_code,
            message=receipt.error_message,
            receipt_id=receipt.receipt_id,
            duplicate=receipt.duplicate,
            excerpt=answer[:EXCERPT].decode("utf-8", "replace")
            if self.binding is Binding.XML
            else f"(protobuf SignedReceipt, {len(answer)} bytes)",
        )
        try:
            verified = verify_partner_receipt(
                self.binding,
                answer,
                partner=self.ctx.suite.partner,
                trust=self.ctx.tester.trust,
                message_id=message_id,
                sent=raw,
                now=self.ctx.clock(),
            )
        except GatewayError as error:
            return replace(base, verify_error=str(error))
        return replace(
            base, verified=True, signer=verified.signer.certificate.subject.rfc4514_string()
        )

    def setup(self, payloads: Sequence[bytes], messages: Sequence[Message]) -> list[str]:
        """Send every message but the last normally; each must be accepted."""
        for number, data in enumerate(payloads[:-1], start=1):
            message = messages[number - 1]
            kind = (
                message.kind.value
                if isinstance(message, _UB3_RECORDS)
                else message.message_type.value
            )
            header = self.header(data, kind, label=_label(message))
            answer = self.send(f"setup {number}", header, data, self.seal(header, data))
            if not (
                answer.kind is AnswerKind.RECEIPT
                and answer.verified
                and answer.outcome == "ACCEPTED"
            ):
                why = (
                    answer.verify_error
                    or f"{answer.outcome or answer.kind.value} {answer.code} {answer.message}"
                )
                return [f"setup message {number} ({kind}) was not accepted: {why.strip()}"]
        return []

    # -- the case ---------------------------------------------------------------------------------
    def run(self) -> list[str]:
        case = self.case
        plan, payloads = self.plan(self.nonce)
        if case.expect.outcome is Outcome.NOT_SENT or plan.withheld_code:
            answer = (
                Answer(AnswerKind.WITHHELD, code=plan.withheld_code, message=plan.withheld_reason)
                if plan.withheld_code
                else Answer(AnswerKind.RECEIPT, message=plan.note)
            )
            self.steps.append(
                Step(
                    "withheld by the EU side",
                    case.exchange.message_type,
                    "",
                    "",
                    0,
                    f"{plan.withheld_code}: {plan.withheld_reason}",
                    answer,
                )
            )
            return judge(case, self.binding, answer)
        values = check_values(case.expect, _ub1(plan.messages), self.ctx.profile)
        if case.exchange.message_type == "AeoQuery":
            return values + self.query(plan)
        problems = self.setup(payloads, plan.messages)
        if problems:
            return problems
        data = payloads[-1]
        kind = case.exchange.message_type
        mutation = case.mutation
        now = self.ctx.clock()
        created: datetime | None = None
        if mutation is Mutation.CLOCK_SKEW:
            created = now + self.ctx.profile.clock_skew + timedelta(minutes=10)
        elif mutation is Mutation.TOO_OLD:
            created = now - self.ctx.profile.duplicate_window - timedelta(hours=1)
        elif mutation is Mutation.OVERSIZE:
            data = b"\x00" * _oversize_payload_bytes(self.binding, self.ctx.max_envelope_bytes)
        label = _label(plan.messages[-1] if plan.messages else None)
        header = self.header(data, kind, created_at=created, label=label)
        raw = self.seal(header, data, mutation)
        if mutation is Mutation.OVERSIZE and len(raw) <= self.ctx.max_envelope_bytes:
            return [f"the oversize envelope is only {len(raw)} bytes (the limit is "
                    f"{self.ctx.max_envelope_bytes})"]  # fmt: skip
        first: Answer | None = None
        if mutation in (Mutation.REPLAY_SAME, Mutation.REPLAY_CONFLICT):
            first = self.send("first copy", header, data, raw)
            if not (
                first.kind is AnswerKind.RECEIPT and first.verified and first.outcome == "ACCEPTED"
            ):
                why = f"{first.code} {first.message} {first.verify_error}".strip()
                return [f"the first copy was not accepted: {why}"]
            if mutation is Mutation.REPLAY_CONFLICT:
                _, other = self.plan(self.nonce + "1")
                data = other[-1] if other[-1] != data else data + b" "
                header = self.header(data, kind, message_id=header.message_id, label=label)
                raw = self.seal(header, data)
        answer = self.send("judged", header, data, raw)
        reasons = values + judge(case, self.binding, answer, first)
        if not reasons and mutation in _ENVELOPE_FAULTS:
            reasons = self.nothing_kept(header, payloads[-1], kind, label)
        return reasons

    def nothing_kept(
        self, refused: EnvelopeHeader, payload: bytes, kind: str, label: HandlingLabel | None
    ) -> list[str]:
        """A refused envelope leaves nothing behind: a valid envelope under its message id (the
        payload as planned, signed as usual) is then accepted as new, not as a duplicate or a
        conflict."""
        header = self.header(payload, kind, message_id=refused.message_id, label=label)
        answer = self.send("same id, valid", header, payload, self.seal(header, payload))
        if (
            answer.kind is AnswerKind.RECEIPT
            and answer.verified
            and answer.outcome == "ACCEPTED"
            and not answer.duplicate
        ):
            return []
        got = f"{answer.outcome or answer.kind.value} {answer.code}".strip()
        got += " (marked duplicate)" if answer.duplicate else ""
        return [
            "the target kept something of the envelope it refused: a valid envelope with the "
            f"same message id was then answered {got}, not accepted as new"
        ]

    def query(self, plan: Plan) -> list[str]:
        from gateway.transport.inquiry import open_inquiry_client

        assert isinstance(plan.messages[-1], Query)
        identifier = plan.messages[-1].identifier
        tester = self.ctx.tester
        header, raw, query = build_query(
            replace(tester.signing), self.ctx.suite.partner, self.binding, identifier
        )
        client = open_inquiry_client(
            self.binding, self.target.endpoint, tester.tls, self.ctx.timeout
        )
        try:
            try:
                answer_raw = client.ask(raw)
            except TransportError as error:
                kind = AnswerKind.TIMEOUT if error.code == TRN_UNAVAILABLE else AnswerKind.TRANSPORT
                answer = Answer(kind, code=error.code, message=str(error))
            else:
                answer = self._verify_answer(answer_raw, header, query)
        finally:
            client.close()
        payload = aeo_exchange.encode(query, form_for(self.binding))
        self.steps.append(
            Step(
                "judged",
                header.message_type,
                header.message_id,
                hashlib.sha256(raw).hexdigest(),
                len(raw),
                _excerpt(self.binding, header, raw, payload),
                answer,
            )
        )
        return judge(self.case, self.binding, answer)

    def _verify_answer(self, raw: bytes, header: EnvelopeHeader, query: Query) -> Answer:
        try:
            verified = verify_answer(
                raw,
                self.binding,
                request=header,
                query=query,
                trust=self.ctx.tester.trust,
                now=self.ctx.clock(),
            )
        except GatewayError as error:
            # A signed AeoQueryRefused is a valid, verified answer: the partner's code.
            if error.location == f"{self.ctx.suite.partner.value}:query":
                return Answer(
                    AnswerKind.ANSWER,
                    outcome="AeoQueryRefused",
                    code=error.code,
                    message=error.message,
                    verified=True,
                )
            return Answer(AnswerKind.ANSWER, outcome="unverified", verify_error=str(error))
        found = verified.answer
        text = "found" if found.found else (found.refusal_code or "not found")
        return Answer(
            AnswerKind.ANSWER,
            outcome="AeoQueryAnswer",
            code=found.refusal_code,
            message=text,
            verified=True,
            signer=verified.signer.certificate.subject.rfc4514_string(),
        )


# Mutations that spoil only the envelope (its signature, signer, size or time), so the planned
# payload is itself valid: after the refusal, the same message id must be free (nothing stored).
_ENVELOPE_FAULTS = frozenset(
    {
        Mutation.BAD_SIGNATURE,
        Mutation.TAMPERED_PAYLOAD,
        Mutation.WRONG_PARTNER_CERTIFICATE,
        Mutation.EXPIRED_CERTIFICATE,
        Mutation.REVOKED_CERTIFICATE,
        Mutation.UNTRUSTED_CERTIFICATE,
        Mutation.OVERSIZE,
        Mutation.CLOCK_SKEW,
        Mutation.TOO_OLD,
    }
)


def _oversize_payload_bytes(binding: Binding, max_envelope_bytes: int) -> int:
    """A payload whose envelope is 4 KiB over the limit. XML carries it in base64 (4/3 of its
    size), so a smaller payload does: the XML binding seals at most its own payload limit, below
    the default envelope limit, and an envelope limit-sized payload could not be sent at all."""
    over = max_envelope_bytes + 4096
    return over if binding is Binding.PROTOBUF else over * 3 // 4 + 1


def run_suite(
    suite: Suite,
    profile: PartnerProfile,
    tester: Tester,
    targets: Sequence[Target],
    *,
    timeout: float = 30.0,
    max_envelope_bytes: int | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utc_now,
    only: Sequence[str] = (),
) -> RunResult:
    """Run the suite's send cases against each target, in its binding; never raises for a case."""
    if not targets:
        raise ConformanceError("no target given", code=CNF_TARGET_INVALID, location="--target")
    ctx = _Context(
        suite,
        profile,
        tester,
        timeout,
        max_envelope_bytes or suite.max_envelope_bytes,
        clock,
        f"{secrets.randbelow(10**9):09d}",
    )
    cases = [c for c in suite.selected(Direction.SEND) if not only or c.id in only]
    plan = [(c, t) for t in targets for c in cases if t.binding in c.bindings]
    started = clock()
    results: list[CaseResult] = []
    submitters: dict[str, _Submitter] = {}
    try:
        for index, (case, target) in enumerate(plan):
            sub = submitters.get(target.label)
            if sub is None:
                sub = submitters[target.label] = _open_submitter(target, tester.tls, timeout)
            runner = _CaseRunner(ctx, case, index, target, sub)
            begun = clock()
            not_run = True
            try:
                reasons = runner.run()
                not_run = False
            except GatewayError as error:
                reasons = [f"could not run: {error}"]
            except Exception as error:  # a fault in one case must not end the run
                reasons = [f"could not run: internal error {type(error).__name__}: {error}"]
            result = CaseResult(
                case.id,
                case.title,
                str(case.exchange),
                target.binding,
                case.required,
                Status.ERROR if not_run else Status.FAILED if reasons else Status.PASSED,
                tuple(reasons),
                tuple(runner.steps),
                begun,
                clock(),
                case.source,
                case.mutation.value,
                expected_text(case, target.binding),
            )
            results.append(result)
            if progress is not None:
                progress(index + 1, len(plan), result)
    finally:
        for sub in submitters.values():
            sub.close()
    return RunResult(
        suite.name,
        suite.title,
        suite.partner,
        suite.version,
        profile.agreement.version,
        profile.status.value,
        suite.sha256,
        "run",
        tuple(t.label for t in targets),
        tester.administration,
        started,
        clock(),
        tuple(results),
    )


def pki_tester(
    root: Path, partner: Administration, *, own: str = "EU", third: str | None = None
) -> Tester:
    """The tester's identity, TLS and trust from a test-PKI directory (gncgw certs init)."""
    from gateway.testpki import TestPki
    from gateway.trust.loading import partner_trust_from_pem
    from gateway.trust.store import TrustStore

    pki = TestPki(root)
    p = partner.value
    for path in (pki.path(own, "signing"), pki.path(own, "tls"), pki.path(p, "ca")):
        if not path.is_file():
            raise ConformanceError(
                f"{path} not found: --pki must be a test-PKI directory with {own} and {p}",
                code=CNF_TARGET_INVALID,
                location="--pki",
            )
    crl = pki.path(p, "crl")
    trust = TrustStore(
        [
            partner_trust_from_pem(
                p,
                pki.path(p, "ca").read_bytes(),
                [crl.read_bytes()] if crl.is_file() else [],
                require_crl=crl.is_file(),
            )
        ]
    )
    tls = ClientTls.from_files(pki.key_path(own, "tls"), pki.path(own, "tls"), pki.path(p, "ca"))
    return Tester(
        Administration(own),
        pki.identity(own),
        tls,
        trust,
        alternates_from_pki(root, partner, own=own, third=third),
    )


def alternates_from_pki(
    root: Path, partner: Administration, *, own: str = "EU", third: str | None = None
) -> dict[str, SigningIdentity]:
    """The negative cases' signing identities found in a test-PKI directory."""
    from gateway.testpki import FOREIGN, TestPki

    pki = TestPki(root)
    out: dict[str, SigningIdentity] = {}
    if third is None:
        third = next(
            (
                a
                for a in ("JP", "US", "CN", "CH")
                if a not in (own, partner.value) and pki.path(a, "signing").is_file()
            ),
            None,
        )
    candidates = {
        "expired": (own, "expired"),
        "revoked": (own, "revoked"),
        "untrusted": (FOREIGN, f"{own}-impostor"),
    }
    if third is not None:
        candidates["wrong_partner"] = (third, "signing")
    for name, (admin, stem) in candidates.items():
        if pki.path(admin, stem).is_file() and pki.key_path(admin, stem).is_file():
            out[name] = pki.identity(admin, stem)
    return out
