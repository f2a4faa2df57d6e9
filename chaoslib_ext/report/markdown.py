"""report.md: readable in a pull request. Verdict first, then phases, then the fault timeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaoslib_ext.units import format_duration, format_ms, format_percent

HEADLINES = {
    "held": "✅ SLO held",
    "violated": "❌ SLO violated",
    "aborted": "⚠️ Run aborted",
    "steady-state-failed": "⛔ Steady state did not hold before the fault: nothing was injected",
    "baseline-failed": "⛔ Baseline did not hold: nothing was injected",
    "not-tested": "❔ Not tested: the fault touched no traffic",
    "regressed": "📉 SLO held, but regressed against its baseline",
}


def headline_key(report: dict[str, Any]) -> str:
    """Which headline a report gets: its verdict, or for a run stopped before the fault, why."""
    if report["status"] in ("steady-state-failed", "baseline-failed"):
        return str(report["status"])
    return str(report["verdict"])


def render_markdown(report: dict[str, Any]) -> str:
    experiment = report["experiment"]
    overrides = " ".join(f"`--var {name}={value}`" for name, value in experiment["overrides"].items())
    lines = [
        f"# {HEADLINES[headline_key(report)]}: {experiment['title']}",
        "",
        f"Run `{report['run_id']}` of `{experiment['file']}`"
        + (f" with {overrides}" if overrides else "")
        + f", {format_duration(report['duration_s'])}, status **{report['status']}**, "
        f"exit code **{report['exit_code']}**.",
        "",
    ]
    if report["dry_run"]:
        lines += [
            "**Dry run:** no fault was injected; the fault timeline says what each would have done.",
            "",
        ]
    if report["reasons"]:
        lines += ["**Why:**", ""] + [f"- {reason}" for reason in report["reasons"]] + [""]
    if report["warnings"]:
        lines += ["**Read with care:**", ""] + [f"- {warning}" for warning in report["warnings"]] + [""]
    lines += _guard(report)
    lines += (
        _phases(report)
        + _changes(report)
        + _objectives(report)
        + _recovery(report)
        + _breaches(report)
        + _seconds(report)
        + _endpoints(report)
        + _workers(report)
    )
    lines += _faults(report) + _steady_state(report) + _errors(report)
    lines += _regression(report) + _notifications(report)
    return "\n".join(lines).rstrip() + "\n"


def _regression(report: dict[str, Any]) -> list[str]:
    section = report.get("regression")
    if section is None:
        return []
    if section["baseline"] is None:
        return ["## Regression gate", "", "No earlier held run of this experiment to compare with.", ""]
    lines = [
        "## Regression gate",
        "",
        f"Against `{section['baseline']}`, bounds: {', '.join(section['bounds'])}.",
        "",
    ]
    lines += [f"- **{text}**" for text in section["regressions"]] or ["- within every bound"]
    lines += ["", "What changed:", ""] + [f"- {text}" for text in section["changes"]] + [""]
    return lines


def _notifications(report: dict[str, Any]) -> list[str]:
    sent = report.get("notifications", [])
    if not sent:
        return []
    lines = ["## Notifications", ""]
    for note in sent:
        state = "sent" if note["sent"] else f"**not sent** ({note['problem']})"
        lines.append(f"- {note['format']} webhook {note['webhook']}: {state}, {note['attempts']} attempt(s)")
    return [*lines, ""]


def _when(start: float, end: float) -> str:
    return f"{start:+.1f}s … {end:+.1f}s"


def _phases(report: dict[str, Any]) -> list[str]:
    if not report["phases"]:
        return ["No load was measured.", ""]
    allowance = report["slo"]["recovery_within_s"]
    lines = [
        "## Phases",
        "",
        "Requests count in the phase in which they were sent. Latency is over successful requests, "
        "corrected for coordinated omission where the users' pacing is known (measured figures in "
        "report.json); req/s counts successful requests."
        + (
            f" The recovery phase is judged after the {format_duration(allowance)} `recovery_within` "
            "allowance that follows the fault."
            if allowance is not None
            else ""
        ),
        "",
        "| phase | window | sent | answered | availability | timeouts "
        "| p50 | p95 | p99 | max | req/s | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for phase in report["phases"]:
        latency = phase["latency_ms"]
        if not phase["judged"]:
            result = "not judged"
        else:
            result = "held" if all(o["held"] for o in phase["objectives"]) else "**violated**"
        rate = "-" if phase["throughput_rps"] is None else f"{phase['throughput_rps']:.1f}"
        lines.append(
            f"| {phase['name']} | {_when(phase['start_s'], phase['end_s'])} | {phase['sent']} | "
            f"{phase['answered']} | {format_percent(phase['availability'])} | {phase['timeouts']} | "
            f"{format_ms(latency['p50'])} | "
            f"{format_ms(latency['p95'])} | {format_ms(latency['p99'])} | {format_ms(latency['max'])} | "
            f"{rate} | {result} |"
        )
    return [*lines, ""]


def _changes(report: dict[str, Any]) -> list[str]:
    """What the fault did to each SLI: baseline, then fault and recovery with the change."""
    phases = {p["name"]: p for p in report["phases"]}
    if "baseline" not in phases or "fault" not in phases:
        return []
    order = [name for name in ("baseline", "fault", "recovery") if name in phases]
    rows: list[tuple[str, Callable[[dict[str, Any]], float | None], Callable[[float | None], str], str]] = [
        ("availability", lambda p: p["availability"], format_percent, "points"),
        ("p50", lambda p: p["latency_ms"]["p50"], format_ms, "ratio"),
        ("p95", lambda p: p["latency_ms"]["p95"], format_ms, "ratio"),
        ("p99", lambda p: p["latency_ms"]["p99"], format_ms, "ratio"),
        (
            "successful req/s",
            lambda p: p["throughput_rps"],
            lambda v: "-" if v is None else f"{v:.1f}",
            "share",
        ),
    ]
    lines = [
        "## What the fault changed",
        "",
        "| | " + " | ".join(order) + " |",
        "|---|" + "---:|" * len(order),
    ]
    for label, value, show, kind in rows:
        before = value(phases["baseline"])
        cells = [show(before)] + [
            show(value(phases[n])) + _change(before, value(phases[n]), kind) for n in order[1:]
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _change(before: float | None, after: float | None, kind: str) -> str:
    if before is None or after is None or before == after:
        return ""
    if kind == "points":
        return f" ({100 * (after - before):+.2f} points)"
    if before == 0:
        return ""
    if kind == "ratio":
        return f" ({after / before:.1f} times)" if after else ""
    return f" ({100 * (after / before - 1):+.0f}%)"


SPARKS = "▁▂▃▄▅▆▇█"


def _seconds(report: dict[str, Any]) -> list[str]:
    """Second by second: a sparkline of each figure, and the table itself for whoever opens it."""
    series = [row for row in report["series"] if row["t_s"] >= 0]
    if not series:
        return []
    lines = [
        "## Second by second",
        "",
        "From the start of the warmup; each column one second, by the second requests were sent.",
        "",
        "```",
        f"sent      {_spark([row['requests'] for row in series])}",
        f"failures  {_spark([row['failures'] for row in series])}",
        f"p95       {_spark([row['p95_ms'] for row in series])}",
        f"waiting   {_spark([row['waiting'] for row in series])}",
        "```",
        "",
        "<details><summary>The table</summary>",
        "",
        "| t | sent | failures | answered | waiting | p50 | p95 | p99 | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in series:
        lines.append(
            f"| {row['t_s']:+.0f}s | {row['requests']} | {row['failures']} | {row['answered']} | "
            f"{row['waiting']} | "
            f"{format_ms(row['p50_ms'])} | {format_ms(row['p95_ms'])} | {format_ms(row['p99_ms'])} | "
            f"{format_ms(row['max_ms'])} |"
        )
    return [*lines, "", "</details>", ""]


def _spark(values: list[float | None]) -> str:
    top = max((v for v in values if v is not None), default=0) or 1
    return (
        "".join(" " if v is None else SPARKS[min(7, round(7 * v / top))] for v in values) + f"  (max {top:g})"
    )


def _objectives(report: dict[str, Any]) -> list[str]:
    objectives = [o for phase in report["phases"] for o in phase["objectives"]]
    if report["recovery"]["objective"]:
        objectives.append(report["recovery"]["objective"])
    if not objectives:
        return []
    lines = ["## Objectives", "", "| phase | objective | result | measured |", "|---|---|---|---|"]
    for o in objectives:
        lines.append(
            f"| {o['phase']} | {o['label']} | {'held' if o['held'] else '**violated**'} | {o['detail']} |"
        )
    return [*lines, ""]


def _recovery(report: dict[str, Any]) -> list[str]:
    lines = []
    ttr = report["recovery"]["time_to_recover_s"]
    if report["phases"]:
        text = report["recovery"]["note"] or "not reached" if ttr is None else format_duration(ttr)
        ended = report["recovery"]["fault_ended_s"]
        since = "" if ended is None else f" (at {ended:+.1f}s)"
        lines.append(
            f"**Time to recover** after the fault ended{since}: {text} "
            f"(SLO holding for {format_duration(report['slo']['recovery_window_s'])})."
        )
    budget = report["error_budget"]
    if budget is not None:
        consumed = _budget_share(budget["consumed"])
        if budget["exhausted"]:
            consumed += " (exhausted)"
        burns = ", ".join(f"{name} {_burn(rate)}" for name, rate in budget["burn_rate"].items())
        lines.append(
            f"**Error budget** over the judged phases: {budget['failures']} failed requests of "
            f"{budget['allowed_failures']:g} allowed, {consumed} consumed; burn rate {burns}."
        )
    return [*lines, ""] if lines else []


def _budget_share(consumed: float | str | None) -> str:
    if consumed == "infinite":
        return "∞"
    return "-" if consumed is None else format_percent(float(consumed), 1)


def _burn(rate: float | str | None) -> str:
    if rate == "infinite":
        return "∞"
    return "-" if rate is None else f"{float(rate):.1f}x"


def _guard(report: dict[str, Any]) -> list[str]:
    guard = report["guard"]
    if guard is None:
        return []
    reverted = (
        "the revert did not complete"
        if guard["breach_to_revert_s"] is None
        else f"every fault reverted {guard['breach_to_revert_s']:.2f}s after the breach "
        f"(at {guard['reverted_at_s']:+.2f}s)"
    )
    return [
        "## Guard tripped",
        "",
        f"**{guard['guard']}**: {guard['observed']}. Breach at {guard['breach_at_s']:+.2f}s, "
        f"seen at {guard['detected_at_s']:+.2f}s; {reverted}.",
        "",
    ]


def _breaches(report: dict[str, Any]) -> list[str]:
    if not report["breaches"]:
        return []
    lines = [
        "## When the SLO was breached (second by second)",
        "",
        "| from | to | phase | worst availability | worst latency | users waiting, no answer |",
        "|---|---|---|---:|---:|---|",
    ]
    for b in report["breaches"][:30]:
        lines.append(
            f"| {b['start_s']:+.0f}s | {b['end_s']:+.0f}s | {b['phase']} | "
            f"{format_percent(b['worst_availability'])} | {format_ms(b['worst_latency_ms'])} | "
            f"{'yes' if b['stalled'] else ''} |"
        )
    if len(report["breaches"]) > 30:
        lines.append(f"| … | | {len(report['breaches']) - 30} more in report.json | | |")
    return [*lines, ""]


def _endpoints(report: dict[str, Any]) -> list[str]:
    rows = [(p["name"], e) for p in report["phases"] if p["judged"] for e in p["endpoints"]]
    if len({e["name"] for _, e in rows}) < 2:
        return []  # a single endpoint says nothing the phase table does not
    lines = [
        "## Endpoints",
        "",
        "| phase | endpoint | requests | availability | p95 | p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for phase, e in rows:
        lines.append(
            f"| {phase} | `{e['name']}` | {e['requests']} | {format_percent(e['availability'])} | "
            f"{format_ms(e['latency_ms']['p95'])} | {format_ms(e['latency_ms']['p99'])} |"
        )
    return [*lines, ""]


def _workers(report: dict[str, Any]) -> list[str]:
    workers = report["load"]["workers"]
    if not workers:
        return []
    lines = [
        "## Load workers",
        "",
        "Clock offset: the worker's clock minus the master's, ± half the round trip it was measured over; "
        "its requests were filed on the master's clock.",
        "",
        "| worker | state | most users | requests | req/s | clock offset |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for worker in workers:
        offset = worker["clock_offset_ms"]
        clock = "-" if offset is None else f"{offset:+.3f} ± {worker['clock_uncertainty_ms']:.3f} ms"
        state = worker["state"] + (f": {worker['reason']}" if worker["reason"] else "")
        rate = "-" if worker["requests_per_s"] is None else f"{worker['requests_per_s']:g}"
        lines.append(
            f"| {worker['worker']} | {state} | {worker['users']} | {worker['requests']} | {rate} | {clock} |"
        )
    return [*lines, ""]


def _faults(report: dict[str, Any]) -> list[str]:
    lines = ["## Fault timeline", ""]
    for fault in report["faults"]:
        lines.append(f"- #{fault['index']} {fault['description']}")
    events = [e for e in report["timeline"] if e["source"] in ("fault", "service", "engine")]
    if events:
        lines += ["", "| at | source | event | subject | detail |", "|---:|---|---|---|---|"]
        for e in events:
            detail = ", ".join(f"{k}={v}" for k, v in e["detail"].items() if v is not None)
            lines.append(f"| {e['at_s']:+.1f}s | {e['source']} | {e['action']} | {e['subject']} | {detail} |")
    return [*lines, ""]


def _steady_state(report: dict[str, Any]) -> list[str]:
    lines = []
    for when in ("before", "after"):
        for probe in report["steady_state"][when]:
            mark = "✅" if probe["ok"] else "❌"
            lines.append(f"- {when}: {mark} {probe['name']}: {probe['detail']}")
    return ["## Steady state", "", *lines, ""] if lines else []


def _errors(report: dict[str, Any]) -> list[str]:
    if not report["errors"]:
        return []
    lines = ["## Most frequent errors", "", "| count | kind | error |", "|---:|---|---|"]
    lines += [
        f"| {e['count']} | {e['kind']} | `{e['message'].replace('|', '/')}` |" for e in report["errors"][:10]
    ]
    return [*lines, ""]
