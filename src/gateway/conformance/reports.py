"""Reports of a run, rendered as bytes (pure): JUnit XML for CI, a self-contained HTML page for
people, JSON for tools, the EU Interoperability Test Bed's TAR (gitb_tr.xsd) and a per-partner
conformance statement (JSON, and the Test Bed's ConformanceStatementReport).

``write_reports`` is the only function here that touches the disk.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.conformance.results import CaseResult, RunResult, Status, Step

__all__ = [
    "GITB_CORE_NS",
    "GITB_TR_NS",
    "conformance_statement",
    "render_html",
    "render_json",
    "render_junit",
    "render_statement_xml",
    "render_tar",
    "write_reports",
]

GITB_TR_NS = "http://www.gitb.com/tr/v1/"
GITB_CORE_NS = "http://www.gitb.com/core/v1/"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_TR = f"{{{GITB_TR_NS}}}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _case_name(result: CaseResult) -> str:
    return f"{result.case_id} [{result.binding.value}]"


# --- JSON ------------------------------------------------------------------------------------
def _result_dict(result: CaseResult) -> dict[str, Any]:
    return {
        "id": result.case_id,
        "title": result.title,
        "exchange": result.exchange,
        "binding": result.binding.value,
        "required": result.required,
        "status": result.status.value,
        "expected": result.expected,
        "mutation": result.mutation,
        "reasons": list(result.reasons),
        "source": result.source,
        "seconds": round(result.seconds, 4),
        "steps": [_step_dict(s) for s in result.steps],
    }


def _step_dict(s: Step) -> dict[str, Any]:
    return {
        "role": s.role,
        "message_type": s.message_type,
        "message_id": s.message_id,
        "sha256": s.sha256,
        "size": s.size,
        "answer": None
        if s.answer is None
        else {
            "kind": s.answer.kind.value,
            "outcome": s.answer.outcome,
            "code": s.answer.code,
            "message": s.answer.message,
            "receipt_id": s.answer.receipt_id,
            "verified": s.answer.verified,
            "verify_error": s.answer.verify_error,
            "signer": s.answer.signer,
        },
    }


def run_dict(run: RunResult) -> dict[str, Any]:
    passed, failed = run.counts()
    return {
        "suite": run.suite,
        "title": run.title,
        "partner": run.partner.value,
        "suite_version": run.suite_version,
        "profile_version": run.profile_version,
        "profile_status": run.profile_status,
        "suite_sha256": run.suite_sha256,
        "mode": run.mode,
        "targets": list(run.targets),
        "tester": run.tester.value,
        "started": _iso(run.started),
        "finished": _iso(run.finished),
        "passed": run.passed,
        "counts": {"passed": passed, "failed": failed, "not_run": len(run.not_run)},
        "failed_required": [_case_name(r) for r in run.failed_required],
        "cases": [_result_dict(r) for r in run.results],
        "unmatched": [_step_dict(s) for s in run.unmatched],
    }


def render_json(run: RunResult) -> bytes:
    return json.dumps(run_dict(run), indent=2, ensure_ascii=False).encode() + b"\n"


# --- JUnit -----------------------------------------------------------------------------------
def render_junit(run: RunResult) -> bytes:
    # JUnit's counts are of the elements written below: a required case that did not pass is a
    # <failure>, an optional one a <skipped>.
    errors = len(run.not_run)
    failures = sum(1 for r in run.results if r.required and r.status is Status.FAILED)
    skipped = sum(1 for r in run.results if not r.required and r.status is Status.FAILED)
    suite = etree.Element(
        "testsuite",
        name=f"conformance.{run.suite}",
        tests=str(len(run.results)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{(run.finished - run.started).total_seconds():.3f}",
        timestamp=_iso(run.started),
    )
    props = etree.SubElement(suite, "properties")
    for name, value in (
        ("partner", run.partner.value),
        ("suite_version", run.suite_version),
        ("profile_version", run.profile_version),
        ("targets", " ".join(run.targets)),
    ):
        etree.SubElement(props, "property", name=name, value=value)
    for result in run.results:
        case = etree.SubElement(
            suite,
            "testcase",
            classname=f"conformance.{run.suite}.{result.binding.value}",
            name=result.case_id,
            time=f"{result.seconds:.3f}",
        )
        if not result.passed:
            kind = (
                "error"
                if result.status is Status.ERROR
                else ("failure" if result.required else "skipped")
            )
            element = etree.SubElement(
                case, kind, message="; ".join(result.reasons)[:1000] or "failed"
            )
            element.text = "\n".join(result.reasons)
        out = etree.SubElement(case, "system-out")
        out.text = f"expected: {result.expected}\nsource: {result.source}"
    root = etree.Element("testsuites", name=f"conformance {run.suite}")
    root.append(suite)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# --- HTML ------------------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.passed{color:#176f2c}.failed{color:#b00020}pre{background:#f6f6f6;padding:8px;overflow:auto;
max-height:20em;white-space:pre-wrap}details{margin:.5em 0}"""


def render_html(run: RunResult) -> bytes:
    esc = html.escape
    passed, failed = run.counts()
    verdict = "PASSED" if run.passed else "FAILED"
    rows = []
    sections = []
    for n, r in enumerate(run.results):
        status = r.status.value
        rows.append(
            f"<tr><td><a href='#c{n}'>{esc(r.case_id)}</a></td><td>{r.binding.value}</td>"
            f"<td>{esc(r.exchange)}</td><td>{'yes' if r.required else 'no'}</td>"
            f"<td class='{status}'>{status}</td></tr>"
        )
        steps = []
        for s in r.steps:
            answer = s.answer
            came_back = (
                "nothing"
                if answer is None
                else (
                    f"{answer.kind.value} {answer.outcome} {answer.code} "
                    f"{'(signature, signer and digest verified)' if answer.verified else ''}"
                    f"{' ' + answer.verify_error if answer.verify_error else ''}\n{answer.message}"
                    f"{chr(10) + answer.excerpt if answer.excerpt else ''}"
                )
            )
            steps.append(
                f"<details open><summary>{esc(s.role)}: {esc(s.message_type)} {esc(s.message_id)} "
                f"({s.size} bytes, SHA-256 {esc(s.sha256[:16])}…)</summary>"
                f"<p>Sent:</p><pre>{esc(s.excerpt)}</pre>"
                f"<p>Came back:</p><pre>{esc(came_back)}</pre></details>"
            )
        why = "; ".join(r.reasons) if r.reasons else f"the answer met the expectation: {r.expected}"
        sections.append(
            f"<h3 id='c{n}'>{esc(r.case_id)} [{r.binding.value}] "
            f"<span class='{status}'>{status}</span></h3>"
            f"<p>{esc(r.title)}<br>Exchange {esc(r.exchange)}, mutation {esc(r.mutation)}, "
            f"expected {esc(r.expected)}; defined at {esc(r.source)}</p>"
            f"<p><b>Why {status}:</b> {esc(why)}</p>{''.join(steps)}"
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Conformance {esc(run.suite)}: {verdict}</title>
<style>{_CSS}</style></head><body>
<h1>Conformance suite {esc(run.suite)}: <span class="{verdict.lower()}">{verdict}</span></h1>
<p>{esc(run.title)}</p>
<table><tr><th>partner</th><td>{run.partner.value}</td></tr>
<tr><th>suite version / profile version</th><td>{esc(run.suite_version)} /
{esc(run.profile_version)} ({esc(run.profile_status)})</td></tr>
<tr><th>targets</th><td>{esc(", ".join(run.targets))}</td></tr>
<tr><th>tester</th><td>{run.tester.value}</td></tr>
<tr><th>run</th><td>{_iso(run.started)} to {_iso(run.finished)} ({esc(run.mode)})</td></tr>
<tr><th>cases</th><td>{passed} passed, {failed} failed</td></tr>
<tr><th>suite SHA-256</th><td>{esc(run.suite_sha256)}</td></tr></table>
<h2>Cases</h2><table><tr><th>case</th><th>binding</th><th>exchange</th><th>required</th>
<th>result</th></tr>{"".join(rows)}</table>
<h2>Details</h2>{"".join(sections)}</body></html>
"""
    return page.encode()


# --- TAR (EU Interoperability Test Bed) ------------------------------------------------------
def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{_TR}{tag}")
    for key, value in attrs.items():
        element.set(key, value)
    if text is not None:
        element.text = text
    return element


def render_tar(run: RunResult) -> bytes:
    """One TAR (gitb_tr.xsd TestStepReport of type TAR) with a BAR assertion per case."""
    nsmap = {None: GITB_TR_NS, "gitb": GITB_CORE_NS, "xsi": _XSI}
    root = etree.Element(f"{_TR}TestStepReport", nsmap=nsmap)
    root.set(f"{{{_XSI}}}type", "TAR")
    root.set("id", f"conformance-{run.suite}")
    root.set("name", f"GNC conformance {run.suite}")
    _sub(root, "date", _iso(run.finished))
    _sub(root, "result", "SUCCESS" if run.passed else "FAILURE")
    overview = _sub(root, "overview")
    _sub(overview, "profileID", f"gnc-ub1-{run.partner.value}")
    _sub(overview, "customizationID", f"agreement {run.profile_version}")
    _sub(overview, "transactionID", run.suite_sha256)
    _sub(overview, "validationServiceName", "gncgw conformance")
    _sub(overview, "validationServiceVersion", run.suite_version)
    _sub(overview, "note", f"targets: {', '.join(run.targets)}; mode {run.mode}")
    counters = _sub(root, "counters")
    _sub(counters, "nrOfAssertions", str(len(run.results)))
    _sub(counters, "nrOfErrors", str(sum(1 for r in run.results if not r.passed and r.required)))
    _sub(
        counters,
        "nrOfWarnings",
        str(sum(1 for r in run.results if not r.passed and not r.required)),
    )
    context = _sub(root, "context", name="run")
    for name, value in (
        ("partner", run.partner.value),
        ("suite", run.suite),
        ("suiteVersion", run.suite_version),
        ("profileVersion", run.profile_version),
        ("profileStatus", run.profile_status),
        ("tester", run.tester.value),
    ):
        # AnyContent is declared in gitb_core.xsd: its children are in the core namespace.
        item = etree.SubElement(context, f"{{{GITB_CORE_NS}}}item")
        item.set("name", name)
        item.set("embeddingMethod", "STRING")
        item.set("type", "string")
        etree.SubElement(item, f"{{{GITB_CORE_NS}}}value").text = value
    reports = _sub(root, "reports")
    for r in run.results:
        kind = "info" if r.passed else ("error" if r.required else "warning")
        bar = _sub(reports, kind)
        bar.set(f"{{{_XSI}}}type", "BAR")
        _sub(bar, "assertionID", f"{r.case_id}/{r.binding.value}")
        _sub(
            bar,
            "description",
            f"{r.title}: {r.status.value}" + (f" ({'; '.join(r.reasons)})" if r.reasons else ""),
        )
        _sub(bar, "location", r.source)
        _sub(bar, "test", f"{r.exchange} {r.mutation}")
        _sub(bar, "type", "required" if r.required else "optional")
        _sub(bar, "value", r.expected)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# --- conformance statement ------------------------------------------------------------------
def conformance_statement(run: RunResult) -> dict[str, Any]:
    """Which exchanges passed, in which binding, against which profile version."""
    exchanges: dict[str, dict[str, str]] = {}
    for r in run.results:
        entry = exchanges.setdefault(r.exchange, {})
        previous = entry.get(r.binding.value, "passed")
        if previous == "failed" or r.status is Status.FAILED:
            entry[r.binding.value] = "failed"
        elif previous == "not run" or r.status is Status.ERROR:
            entry[r.binding.value] = "not run"  # no verdict: the tester could not run a case
        else:
            entry[r.binding.value] = "passed"
    return {
        "statement": f"Conformance of the {run.partner.value} link to the EU-"
        f"{run.partner.value} UB1 exchange specification, agreement version "
        f"{run.profile_version}",
        "partner": run.partner.value,
        "profile_version": run.profile_version,
        "profile_status": run.profile_status,
        "suite": run.suite,
        "suite_version": run.suite_version,
        "suite_sha256": run.suite_sha256,
        "targets": list(run.targets),
        "bindings": [b.value for b in run.bindings],
        "date": _iso(run.finished),
        "conformant": run.passed,
        "exchanges": exchanges,
        "failed_required": [_case_name(r) for r in run.failed_required],
    }


def render_statement_xml(run: RunResult) -> bytes:
    """The statement as the Test Bed's ConformanceStatementReport (gitb_tr.xsd)."""
    nsmap = {None: GITB_TR_NS, "gitb": GITB_CORE_NS}
    root = etree.Element(f"{_TR}ConformanceStatementReport", nsmap=nsmap)
    _sub(_sub(root, "metadata"), "reportTime", _iso(run.finished))
    statement = _sub(root, "statement", id=f"{run.partner.value}-{run.profile_version}")
    definition = _sub(statement, "definition")
    party = _sub(definition, "party")
    _sub(_sub(party, "organisation"), "name", f"Customs administration {run.partner.value}")
    system = _sub(party, "system")
    _sub(system, "name", ", ".join(run.targets))
    _sub(system, "version", run.profile_version)
    for tag, name, description in (
        ("domain", "GNC Utility Blocks", "WCO Globally Networked Customs exchanges"),
        ("specification", f"UB1 EU-{run.partner.value}", f"agreement {run.profile_version}"),
        ("actor", f"{run.partner.value} gateway", f"tested by {run.tester.value}"),
    ):
        element = _sub(definition, tag)
        _sub(element, "name", name)
        _sub(element, "description", description)
    passed_required = sum(1 for r in run.results if r.required and r.passed)
    failed_required = sum(1 for r in run.results if r.required and not r.passed)
    summary = _sub(statement, "summary")
    _sub(summary, "status", "SUCCESS" if run.passed else "FAILURE")
    _sub(summary, "succeeded", str(passed_required))
    _sub(summary, "failed", str(failed_required))
    _sub(summary, "incomplete", "0")
    _sub(
        summary, "succeededIgnored", str(sum(1 for r in run.results if not r.required and r.passed))
    )
    _sub(
        summary,
        "failedIgnored",
        str(sum(1 for r in run.results if not r.required and not r.passed)),
    )
    _sub(summary, "incompleteIgnored", "0")
    _sub(statement, "lastUpdate", _iso(run.finished))
    overview = _sub(statement, "testOverview")
    suite = _sub(overview, "testSuite")
    meta = etree.SubElement(suite, f"{_TR}metadata")
    etree.SubElement(meta, f"{{{GITB_CORE_NS}}}name").text = run.suite
    etree.SubElement(meta, f"{{{GITB_CORE_NS}}}version").text = run.suite_version
    _sub(suite, "result", "SUCCESS" if run.passed else "FAILURE")
    cases = _sub(suite, "testCases")
    for r in run.results:
        case = _sub(cases, "testCase", optional="false" if r.required else "true")
        case_meta = etree.SubElement(case, f"{_TR}metadata")
        etree.SubElement(case_meta, f"{{{GITB_CORE_NS}}}name").text = _case_name(r)
        etree.SubElement(case_meta, f"{{{GITB_CORE_NS}}}description").text = r.title
        _sub(case, "result", "SUCCESS" if r.passed else "FAILURE")
        _sub(case, "lastUpdate", _iso(r.finished))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def render_all(run: RunResult) -> Mapping[str, bytes]:
    """Every report of a run, by file name."""
    stem = f"conformance-{run.suite}"
    return {
        f"{stem}.junit.xml": render_junit(run),
        f"{stem}.html": render_html(run),
        f"{stem}.json": render_json(run),
        f"{stem}.tar.xml": render_tar(run),
        f"{stem}.statement.json": json.dumps(conformance_statement(run), indent=2).encode() + b"\n",
        f"{stem}.statement.xml": render_statement_xml(run),
    }


def write_reports(run: RunResult, directory: Path) -> list[Path]:
    """Write every report into ``directory`` (created if missing); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_all(run).items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written
