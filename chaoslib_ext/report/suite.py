"""The suite report: one row per experiment of the day (verdict, what broke, time to recover,
error budget consumed, where its report is) and the day's verdict; as JSON, Markdown and JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from chaoslib_ext import __version__
from chaoslib_ext.history.store import History
from chaoslib_ext.notify import send_all, summary_of
from chaoslib_ext.report.document import iso
from chaoslib_ext.report.junit import junit_document, junit_testsuite
from chaoslib_ext.suite import Entry, SuiteRun, suite_exit_code
from chaoslib_ext.units import format_duration, format_ms, format_percent

SCHEMA_ID = "gameday-suite-report/1"
VERDICT_WORDS = {0: "held", 1: "violated", 3: "aborted", 4: "not-tested"}  # by exit code


def build_suite_report(run: SuiteRun) -> dict[str, Any]:
    suite = run.suite
    code = suite_exit_code(run)
    reasons = [
        f"{e.experiment.title}: {e.verdict}" for e in run.entries if e.verdict not in ("held", "skipped")
    ]
    if run.stopped:
        reasons.append(f"stopped early: {run.stopped}")
    return {
        "schema": SCHEMA_ID,
        "gameday_version": __version__,
        "run_id": run.run_id,
        "suite": {
            "title": suite.title,
            "description": suite.description,
            "file": str(suite.path),
            "sha256": suite.sha256,
            "stop_on": suite.stop_on,
            "pause_s": suite.pause,
            "deadline_s": suite.deadline,
            "seed": suite.seed,
        },
        "verdict": VERDICT_WORDS[int(code)],
        "exit_code": int(code),
        "reasons": reasons,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_s": round(run.ended_at - run.started_at, 3),
        "ran": sum(1 for e in run.entries if e.report is not None),
        "skipped": sum(1 for e in run.entries if e.skipped),
        "experiments": [
            _row(number, entry, run.directory.path) for number, entry in enumerate(run.entries, 1)
        ],
        "notifications": [],
    }


def _row(number: int, entry: Entry, suite_dir: Path) -> dict[str, Any]:
    report = entry.report
    row: dict[str, Any] = {
        "index": number,
        "title": entry.experiment.title,
        "file": str(entry.experiment.path),
        "verdict": entry.verdict,
        "run_id": None,
        "exit_code": None,
        "what_broke": [entry.skipped or entry.error] if report is None else report["reasons"][:3],
        "time_to_recover_s": None,
        "error_budget_consumed": None,
        "fault": None,
        "report": None,
    }
    if report is not None and entry.report_dir is not None:
        fault = next((p for p in report["phases"] if p["name"] == "fault"), None)
        budget = report["error_budget"]
        main_file = "report.md" if (entry.report_dir / "report.md").exists() else "report.json"
        row.update(
            run_id=report["run_id"],
            exit_code=report["exit_code"],
            time_to_recover_s=report["recovery"]["time_to_recover_s"],
            error_budget_consumed=None if budget is None else budget["consumed"],
            fault=None
            if fault is None
            else {
                "availability": fault["availability"],
                "p95_ms": fault["latency_ms"]["p95"],
                "sent": fault["sent"],
            },
            report=str((entry.report_dir / main_file).relative_to(suite_dir)),
        )
    return row


def render_suite_markdown(document: dict[str, Any]) -> str:
    suite = document["suite"]
    lines = [
        f"# {document['verdict'].upper()}: {suite['title']}",
        "",
        f"Game day `{document['run_id']}`: {document['ran']} of {len(document['experiments'])} "
        f"experiment(s) ran in {format_duration(document['duration_s'])} "
        f"(exit code {document['exit_code']}).",
    ]
    if suite["seed"] is not None:
        lines.append(f"Order shuffled with seed {suite['seed']}.")
    lines += ["", *[f"- {reason}" for reason in document["reasons"]], ""]
    lines += [
        "| # | experiment | verdict | what broke | time to recover | error budget used "
        "| fault availability | fault p95 | report |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["experiments"]:
        fault = row["fault"] or {}
        ttr = row["time_to_recover_s"]
        budget = row["error_budget_consumed"]
        cells = [
            str(row["index"]),
            row["title"],
            row["verdict"].upper() if row["verdict"] not in ("held", "skipped") else row["verdict"],
            "; ".join(row["what_broke"]) or "nothing",
            "-" if ttr is None else format_duration(ttr),
            "-" if budget is None else format_percent(budget),
            "-" if fault.get("availability") is None else format_percent(fault["availability"]),
            "-" if fault.get("p95_ms") is None else format_ms(fault["p95_ms"]),
            "-" if row["report"] is None else f"[{row['run_id']}]({row['report']})",
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    for note in document["notifications"]:
        state = "sent" if note["sent"] else f"NOT sent ({note['problem']})"
        lines.append(f"\nNotification to {note['webhook']}: {state} after {note['attempts']} attempt(s).")
    return "\n".join(lines) + "\n"


def render_suite_junit(document: dict[str, Any], run: SuiteRun) -> str:
    """Every experiment's own test suite (its objectives as cases), and one for those that did not run."""
    suites = [junit_testsuite(entry.report) for entry in run.entries if entry.report is not None]
    missing = [entry for entry in run.entries if entry.report is None]
    if missing:
        not_run = ET.Element(
            "testsuite", {"name": f"{document['suite']['title']}: not run", "tests": str(len(missing))}
        )
        for entry in missing:
            case = ET.SubElement(
                not_run, "testcase", {"classname": "gameday.suite", "name": entry.experiment.title}
            )
            if entry.skipped:
                ET.SubElement(case, "skipped", {"message": entry.skipped})
            else:
                ET.SubElement(
                    case, "error", {"message": entry.error, "type": "not-started"}
                ).text = entry.error
        not_run.set("errors", str(sum(1 for e in missing if not e.skipped)))
        not_run.set("skipped", str(sum(1 for e in missing if e.skipped)))
        not_run.set("failures", "0")
        suites.append(not_run)
    return junit_document(suites)


def write_suite_reports(run: SuiteRun, history: History | None) -> tuple[dict[str, Any], list[Path]]:
    """Build the suite report, send the suite's notifications, record it in the history (what came
    of both goes into the report), then write suite.json, suite.md and junit.xml."""
    mask = run.suite.secrets.mask
    document = run.suite.secrets.mask_data(build_suite_report(run))
    if run.suite.notify:
        document["notifications"] = send_all(run.suite.notify, suite_summary(document, run), mask)
    if history is not None:
        try:
            history.record_suite(document, run.directory.path / "suite.json")
        except Exception as error:
            document["reasons"].append(mask(f"not recorded in the history {history.where}: {error}"))
    written = [
        run.directory.write("suite.json", json.dumps(document, indent=2) + "\n"),
        run.directory.write("suite.md", render_suite_markdown(document)),
        run.directory.write("junit.xml", render_suite_junit(document, run)),
    ]
    return document, written


def suite_summary(document: dict[str, Any], run: SuiteRun) -> dict[str, Any]:
    """What a notification says of a day: its verdict, why, each experiment's verdict, the report."""
    verdicts = {row["title"]: row["verdict"] for row in document["experiments"]}
    report = run.directory.path / "suite.md"
    return summary_of("suite", document["suite"]["title"], document, verdicts, report)
