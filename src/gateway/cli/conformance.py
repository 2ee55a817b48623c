"""`gncgw conformance run|listen|check`: per-partner conformance suites (docs/conformance.md).

`run` plays the EU side against a target endpoint, `listen` plays the EU test endpoint for a
partner system, `check` loads a suite (and its profile) and lists its cases without running.
The tester's identity and trust come from a gateway configuration (`--config`, the partner's
entry: CA, CRL, profile) or a test-PKI directory (`--pki`); the negative cases' certificates
(expired, revoked, impostor, a third administration's) come from `--pki`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from gateway.conformance.model import Direction, Suite
from gateway.conformance.results import CaseResult, RunResult, Status
from gateway.conformance.suites import check_version, load_suite, suite_profile
from gateway.envelope.opened import Binding
from gateway.errors import CNF_TARGET_INVALID, ConformanceError
from gateway.model.codes import Administration
from gateway.partners.profile import PartnerProfile


def _progress(index: int, total: int, result: CaseResult) -> None:
    mark = (
        "PASS"
        if result.passed
        else "NOT RUN"
        if result.status is Status.ERROR
        else ("FAIL" if result.required else "warn")
    )
    print(
        f"[{index:>3}/{total}] {mark} {result.case_id} ({result.binding.value}) "
        f"{result.seconds:.2f}s",
        flush=True,
    )
    for reason in result.reasons:
        print(f"          {reason}", flush=True)


def _profile_for(args: argparse.Namespace, suite: Suite) -> PartnerProfile:
    """The config's linked profile for the partner if any (the deployment's), else the suite's."""
    profile: PartnerProfile | None = None
    if args.config is not None:
        from gateway.config import load_config

        config = load_config(args.config)
        profile = config.partner(suite.partner).profile
    if profile is None:
        profile = suite_profile(args.suite, suite)
    check_version(suite, profile)
    return profile


def _summary(run: RunResult, report_dir: Path | None) -> int:
    passed, failed = run.counts()
    verdict = "PASSED" if run.passed else "FAILED"
    print(
        f"{verdict}: suite {run.suite} (version {run.suite_version}) against "
        f"{', '.join(run.targets)}: {passed} passed, {failed} failed"
        + (f", {len(run.not_run)} could not run" if run.not_run else "")
    )
    for result in run.failed_required:
        print(f"  required case failed: {result.case_id} ({result.binding.value})")
    if run.unmatched:
        print(f"  {len(run.unmatched)} message(s) received that no case judges (in the reports)")
    if report_dir is not None:
        from gateway.conformance.reports import write_reports

        for path in write_reports(run, report_dir):
            print(f"  report: {path}")
    return 0 if run.passed else 1


def _run(args: argparse.Namespace) -> int:
    from gateway.conformance.runner import (
        Tester,
        alternates_from_pki,
        parse_target,
        pki_tester,
        run_suite,
    )

    suite = load_suite(args.suite)
    targets = [parse_target(t) for t in args.target]
    profile = _profile_for(args, suite)
    if args.config is not None:
        from gateway.config import load_config

        config = load_config(args.config)
        alternates = (
            alternates_from_pki(
                args.pki, suite.partner, own=config.administration.value, third=args.third_party
            )
            if args.pki is not None
            else {}
        )
        tester = Tester(
            config.administration,
            config.signing_identity,
            config.client_tls(suite.partner),
            config.trust,
            alternates,
        )
    elif args.pki is not None:
        tester = pki_tester(args.pki, suite.partner, third=args.third_party)
        config = None
    else:
        raise ConformanceError(
            "give the tester's identity and trust: --config GATEWAY.toml or --pki DIR",
            code=CNF_TARGET_INVALID,
            location="--config",
        )
    only = args.case or ()
    count = sum(
        1
        for t in targets
        for c in suite.selected(Direction.SEND)
        if t.binding in c.bindings and (not only or c.id in only)
    )
    print(
        f"suite {suite.name} (version {suite.version}, {count} case runs) -> "
        f"{', '.join(t.label for t in targets)}",
        flush=True,
    )
    run = run_suite(
        suite,
        profile,
        tester,
        targets,
        timeout=args.timeout,
        max_envelope_bytes=args.max_envelope_bytes,
        progress=_progress,
        only=only,
    )
    if config is not None and not args.case and run.not_run:
        print(
            f"not recorded: {len(run.not_run)} case run(s) could not run on the tester's side "
            "(see above); a run proves conformance only when every case ran"
        )
    elif config is not None and not args.case:
        from gateway.conformance.record import record_run
        from gateway.store.database import display_url, open_database

        database = open_database(config.store_url)
        try:
            run_id = record_run(database, run)
        finally:
            database.close()
        print(f"recorded as run #{run_id} in {display_url(config.store_url)}")
    return _summary(run, args.report_dir)


def _listen(args: argparse.Namespace) -> int:
    from gateway.conformance.listen import Listener, ListenerIdentity

    suite = load_suite(args.suite)
    profile = _profile_for(args, suite)
    binding = (
        Binding(args.binding)
        if args.binding
        else (Binding.PROTOBUF if profile.transport.binding.value == "grpc" else Binding.XML)
    )
    if args.config is not None:
        from gateway.config import load_config

        config = load_config(args.config)
        identity = ListenerIdentity(
            config.administration, config.signing_identity, config.tls_identity, config.trust
        )
    elif args.pki is not None:
        identity = _pki_listener_identity(args.pki, suite)
    else:
        raise ConformanceError(
            "give the test endpoint's identity and trust: --config GATEWAY.toml or --pki DIR",
            code=CNF_TARGET_INVALID,
            location="--config",
        )
    listener = Listener(
        suite,
        profile,
        identity,
        binding=binding,
        host=args.host,
        port=args.port,
        progress=_progress,
    )
    port = listener.start()
    try:
        print(
            f"listening for {suite.partner.value} on {args.host}:{port} ({binding.value}); "
            f"{len(listener.cases)} expected message(s), timeout {args.timeout:g} s",
            flush=True,
        )
        if not listener.wait(args.timeout):
            print("timeout: not every expected message arrived", flush=True)
    finally:
        listener.stop()
    return _summary(listener.result(), args.report_dir)


def _pki_listener_identity(root: Path, suite: Suite) -> Any:
    from gateway.conformance.listen import ListenerIdentity
    from gateway.testpki import TestPki
    from gateway.transport.tls import TlsIdentity
    from gateway.trust.loading import partner_trust_from_pem
    from gateway.trust.store import TrustStore

    pki = TestPki(root)
    partner = suite.partner.value
    crl = pki.path(partner, "crl")
    trust = TrustStore(
        [
            partner_trust_from_pem(
                partner,
                pki.path(partner, "ca").read_bytes(),
                [crl.read_bytes()] if crl.is_file() else [],
                require_crl=crl.is_file(),
            )
        ]
    )
    tls = TlsIdentity.from_files(pki.key_path("EU", "tls"), pki.path("EU", "tls"))
    return ListenerIdentity(Administration.EU, pki.identity("EU"), tls, trust)


def _check(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    profile = suite_profile(args.suite, suite)
    check_version(suite, profile)
    print(
        f"suite {suite.name}: partner {suite.partner.value}, version {suite.version} "
        f"(profile {profile.source}, status {profile.status.value}), {len(suite.cases)} cases"
    )
    for case in suite.cases:
        bindings = "/".join(b.value for b in case.bindings)
        codes = " " + ",".join(sorted(set(case.expect.codes.values()))) if case.expect.codes else ""
        print(
            f"  {case.id:<40} {case.direction.value:<7} {bindings:<12} "
            f"{case.exchange!s:<22} {case.expect.outcome.value}"
            f"{codes}"
            f"{'' if case.required else ' (optional)'}"
        )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "conformance", help="run a partner's conformance suite (docs/conformance.md)"
    )
    commands = parser.add_subparsers(dest="conformance_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--suite", type=Path, required=True, help="suite directory, e.g. conformance/us"
        )
        p.add_argument("--config", type=Path, help="gateway TOML: tester identity, trust, profile")
        p.add_argument("--pki", type=Path, help="test-PKI directory (gncgw certs init)")
        p.add_argument("--report-dir", type=Path, help="write JUnit, HTML, JSON, TAR, statement")

    run = commands.add_parser("run", help="play the EU side against a target endpoint")
    common(run)
    run.add_argument(
        "--target",
        action="append",
        required=True,
        help="grpc://HOST:PORT or https://HOST:PORT/gnc/v1/envelopes (repeatable)",
    )
    run.add_argument("--timeout", type=float, default=30.0, help="seconds per answer (30)")
    run.add_argument(
        "--max-envelope-bytes",
        type=int,
        help="the target's envelope size limit (default: the suite's)",
    )
    run.add_argument(
        "--third-party",
        help="administration whose certificate the "
        "wrong-partner case signs with (the target must trust it)",
    )
    run.add_argument("--case", action="append", help="run only this case id (repeatable)")
    run.set_defaults(func=_run)

    listen = commands.add_parser("listen", help="play the EU test endpoint for a partner system")
    common(listen)
    listen.add_argument("--port", type=int, required=True)
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument(
        "--binding", choices=["protobuf", "xml"], help="default: the profile's binding"
    )
    listen.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (300)")
    listen.set_defaults(func=_listen, log_level=logging.INFO)

    check = commands.add_parser("check", help="load a suite and list its cases")
    check.add_argument("--suite", type=Path, required=True)
    check.set_defaults(func=_check)
