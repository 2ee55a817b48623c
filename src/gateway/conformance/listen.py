"""`gncgw conformance listen`: play the EU test endpoint and check what a partner system sends.

A real gateway node (real SQLite inbox, the UB1 handlers, the partner's clock-skew and
duplicate-window rules) behind a real gRPC or XML-over-HTTPS listener with mutual TLS: every
envelope that arrives is verified and answered with a signed receipt, exactly as production
would, and then matched against the suite's ``direction = "receive"`` cases (the exchange it
carries, the outcome we gave it, the UB1 values of its payload). The run ends when every
receive case has seen its message, or on timeout (cases still waiting fail as not received).
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from gateway.conformance.model import Case, Direction, Suite
from gateway.conformance.results import (
    Answer,
    AnswerKind,
    CaseResult,
    RunResult,
    Status,
    Step,
    check_values,
    expected_text,
)
from gateway.envelope.intake import DEFAULT_LIMITS, open_any
from gateway.envelope.keys import SigningIdentity
from gateway.envelope.opened import Binding
from gateway.errors import GatewayError
from gateway.model.codes import Administration
from gateway.model.header import utc_now
from gateway.node import CheckedBatch, GatewayNode, open_receipt
from gateway.partners.profile import PartnerProfile
from gateway.services.aeo import decode_payload, ub1_handlers
from gateway.store.aeo_store import AeoStore
from gateway.store.inbox import SqliteInbox
from gateway.translate.aeo_exchange import Payload
from gateway.transport.tls import TlsIdentity
from gateway.trust.store import TrustStore

__all__ = ["Listener", "ListenerIdentity"]

Progress = Callable[[int, int, CaseResult], None]


@dataclass(frozen=True)
class ListenerIdentity:
    """The EU test endpoint's keys and its trust in the partner."""

    administration: Administration
    signing: SigningIdentity
    tls: TlsIdentity
    trust: TrustStore


class _ObservingNode(GatewayNode):
    """A gateway node that also hands every envelope and its signed receipt to an observer."""

    def __init__(self, observe: Callable[[bytes, Binding, bytes], None], **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._observe = observe

    def finish_receive(self, checked: CheckedBatch) -> list[bytes]:
        # Every transport path (unary, stream, XML) ends here, with the answers in batch order.
        answers = super().finish_receive(checked)
        for raw, answer in zip(checked.raws, answers, strict=False):
            self._observe(raw, checked.binding, answer)
        return answers


class Listener:
    """The test endpoint for one suite in one binding; ``start``, ``wait``, ``stop``."""

    def __init__(
        self,
        suite: Suite,
        profile: PartnerProfile,
        identity: ListenerIdentity,
        *,
        binding: Binding,
        host: str = "127.0.0.1",
        port: int = 0,
        store_dir: Path | None = None,
        progress: Progress | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.suite = suite
        self.profile = profile
        self.identity = identity
        self.binding = binding
        self.clock = clock
        self.progress = progress
        self.cases = [c for c in suite.selected(Direction.RECEIVE) if binding in c.bindings]
        self.results: dict[str, CaseResult] = {}
        self.unmatched: list[Step] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        if not self.cases:
            self._done.set()
        self._tmp = (
            tempfile.TemporaryDirectory(prefix="gncgw-listen-") if store_dir is None else None
        )
        directory = Path(self._tmp.name) if self._tmp is not None else store_dir
        assert directory is not None
        inbox = SqliteInbox(directory / "conformance-listen.db")
        limits = replace(
            DEFAULT_LIMITS,
            clock_skew_by_sender={profile.administration: profile.clock_skew},
            max_age_by_sender={profile.administration: profile.duplicate_window},
        )
        self.node = _ObservingNode(
            self._observe,
            identity=identity.signing,
            trust=identity.trust,
            inbox=inbox,
            limits=limits,
            handlers=ub1_handlers(AeoStore(inbox.database, identity.administration)),
        )
        self.started = clock()
        self._server: _Server
        if binding is Binding.PROTOBUF:
            from gateway.transport.grpc_server import GrpcGatewayServer

            self._server = _GrpcServer(
                GrpcGatewayServer(self.node, address=f"{host}:{port}", tls=identity.tls)
            )
        else:
            from gateway.transport.xml_http import XmlHttpServer

            self._server = _XmlServer(
                XmlHttpServer(self.node, host=host, port=port, identity=identity.tls)
            )

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> int:
        """Start listening; the port."""
        self.started = self.clock()
        return self._server.start()

    def wait(self, timeout: float) -> bool:
        """Until every receive case saw its message (True) or the timeout passed (False)."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        self._server.stop()
        self.node.inbox.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def result(self) -> RunResult:
        """The run so far; cases that saw nothing fail as not received."""
        now = self.clock()
        with self._lock:
            results = [
                self.results.get(case.id)
                or CaseResult(
                    case.id,
                    case.title,
                    str(case.exchange),
                    self.binding,
                    case.required,
                    Status.FAILED,
                    (f"no {case.exchange} message was received",),
                    (),
                    self.started,
                    now,
                    case.source,
                    case.mutation.value,
                    expected_text(case, self.binding),
                )
                for case in self.cases
            ]
        return RunResult(
            self.suite.name,
            self.suite.title,
            self.suite.partner,
            self.suite.version,
            self.profile.agreement.version,
            self.profile.status.value,
            self.suite.sha256,
            "listen",
            (f"listen {self.binding.value}",),
            self.identity.administration,
            self.started,
            now,
            tuple(results),
            tuple(self.unmatched),
        )

    # -- observing --------------------------------------------------------------------------------
    def _observe(self, raw: bytes, binding: Binding, answer: bytes) -> None:
        try:
            receipt = open_receipt(binding, answer).receipt
        except GatewayError:  # our own receipt: cannot happen unless the node is broken
            return
        header = None
        payloads: list[Payload] = []
        try:
            opened = open_any(raw, binding, DEFAULT_LIMITS)
            header = opened.header
            payloads = [decode_payload(header, opened.payload, DEFAULT_LIMITS.max_envelope_bytes)]
        except GatewayError:
            pass
        kind = f"{header.utility_block.value}/{header.message_type}" if header else "unreadable"
        step = Step(
            "received",
            header.message_type if header else "?",
            header.message_id if header else "",
            hashlib.sha256(raw).hexdigest(),
            len(raw),
            (
                raw[:2000].decode("utf-8", "replace")
                if binding is Binding.XML
                else f"{kind} from {header.sender.value if header else '?'} ({len(raw)} bytes)"
            ),
            Answer(
                AnswerKind.RECEIPT,
                outcome=receipt.outcome.value,
                code=receipt.error_code,
                message=receipt.error_message,
                receipt_id=receipt.receipt_id,
                verified=True,
            ),
        )
        with self._lock:
            case = next(
                (c for c in self.cases if str(c.exchange) == kind and c.id not in self.results),
                None,
            )
            if case is None:
                # Every case of this exchange has its message: a later one is judged too, and
                # a failure there fails the case (the first message is not all that counts).
                case = next((c for c in self.cases if str(c.exchange) == kind), None)
                if case is None:
                    self.unmatched.append(step)
                    return
            reasons = self._judge(case, receipt.outcome.value, receipt.error_code, payloads)
            if header is not None and header.sender is not self.suite.partner:
                reasons.append(f"sent by {header.sender.value}, not {self.suite.partner.value}")
            earlier = self.results.get(case.id)
            if earlier is not None:
                again = tuple(f"a later message: {reason}" for reason in reasons)
                self.results[case.id] = replace(
                    earlier,
                    status=Status.FAILED if earlier.reasons or again else Status.PASSED,
                    reasons=earlier.reasons + again,
                    steps=(*earlier.steps, step),
                    finished=self.clock(),
                )
                return
            result = CaseResult(
                case.id,
                case.title,
                str(case.exchange),
                binding,
                case.required,
                Status.FAILED if reasons else Status.PASSED,
                tuple(reasons),
                (step,),
                self.clock(),
                self.clock(),
                case.source,
                case.mutation.value,
                expected_text(case, binding),
            )
            self.results[case.id] = result
            done = len(self.results) == len(self.cases)
        if self.progress is not None:
            self.progress(len(self.results), len(self.cases), result)
        if done:
            self._done.set()

    def _judge(self, case: Case, outcome: str, code: str, payloads: list[Payload]) -> list[str]:
        expect = case.expect
        reasons: list[str] = []
        if expect.outcome.value.upper() != outcome:
            reasons.append(
                f"our gateway answered {outcome} {code}, expected {expect.outcome.value}"
            )
        elif code != expect.code_for(self.binding):
            reasons.append(f"refused with {code}, expected {expect.code_for(self.binding)}")
        reasons += check_values(
            expect,
            payloads,
            self.profile,
            self.suite.partner,
        )
        return reasons


class _Server:
    def start(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class _GrpcServer(_Server):
    def __init__(self, server: object) -> None:
        from gateway.transport.grpc_server import GrpcGatewayServer

        assert isinstance(server, GrpcGatewayServer)
        self.server = server

    def start(self) -> int:
        return self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


class _XmlServer(_Server):
    def __init__(self, server: object) -> None:
        from gateway.transport.xml_http import XmlHttpServer

        assert isinstance(server, XmlHttpServer)
        self.server = server

    def start(self) -> int:
        self.server.start()
        return self.server.address[1]

    def stop(self) -> None:
        self.server.stop()
