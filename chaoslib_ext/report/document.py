"""The canonical report: one JSON document built from a run, validated against its own schema."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import jsonschema

from chaoslib_ext import __version__
from chaoslib_ext.engine.guards import GuardTrip
from chaoslib_ext.engine.probes import ProbeResult
from chaoslib_ext.engine.run import RunResult
from chaoslib_ext.errors import ExitCode
from chaoslib_ext.measure.samples import Aggregate, SampleStore
from chaoslib_ext.measure.slo import ObjectiveResult, measure
from chaoslib_ext.spec.schema import load_schema
from chaoslib_ext.units import format_duration, format_ms, format_percent

SCHEMA_ID = "gameday-report/1"
SERIES_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms")


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


def verdict_word(run: RunResult) -> str:
    words = {ExitCode.HELD: "held", ExitCode.VIOLATED: "violated", ExitCode.NOT_TESTED: "not-tested"}
    return words.get(run.exit_code, "aborted")


def build_report(run: RunResult) -> dict[str, Any]:
    experiment = run.plan.experiment
    origin = run.load_started_at or run.started_at

    def rel(epoch: float) -> float:
        return round(epoch - origin, 3)

    verdict = run.verdict
    reasons = list(verdict.reasons) if verdict else []
    if run.status == "steady-state-failed":
        failing = "; ".join(f"{p.name}: {p.detail}" for p in run.steady_before if not p.ok)
        reasons.insert(
            0, f"steady state before the experiment did not hold ({failing}), so nothing was injected"
        )
    reasons += [
        f"steady state after the experiment: {p.name}: {p.detail}" for p in run.steady_after if not p.ok
    ]
    if run.error:
        reasons.insert(0, run.error)
    reasons += [problem for problem in run.cleanup_problems if problem != run.error]
    reasons += run.untouched() + _crashes(run)
    slo = experiment.slo
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "gameday_version": __version__,
        "run_id": run.run_id,
        "experiment": {
            "title": experiment.title,
            "description": experiment.description,
            "file": str(experiment.path),
            "sha256": experiment.sha256,
            "variables": {k: v for k, v in experiment.variables.items()},
            "overrides": dict(experiment.overrides),
        },
        "status": run.status,
        "dry_run": run.dry_run,
        "verdict": verdict_word(run),
        "exit_code": int(run.exit_code),
        "reasons": reasons,
        "warnings": [w for fault in run.plan.faults for w in fault.warnings]
        + (list(verdict.warnings) if verdict else [])
        + [
            f"the fault proxies refused {e.detail['refused']} connection(s): more at once than the run's "
            f"{e.detail['limit']} could hold (descriptors)"
            for e in run.timeline.events()
            if e.action == "capped"
        ]
        + [
            f"Locust worker {e.subject} was lost at {format_duration(e.at - origin)}: its users' load "
            "stopped with it, and the run went on (load.on_worker_loss: continue) with less load than planned"
            for e in run.timeline.events()
            if e.action == "worker lost" and experiment.load.on_worker_loss == "continue"
        ],
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "origin": iso(origin),
        "duration_s": round(run.ended_at - run.started_at, 3),
        "load": {
            "locustfile": str(experiment.load.locustfile),
            "host": experiment.load.host,
            "users": experiment.load.users,
            "spawn_rate": experiment.load.spawn_rate,
            "request_timeout_s": experiment.load.request_timeout,
            "arrival_rate": experiment.load.arrival_rate,
            "processes": experiment.load.process_count(),
            "workers": run.load_workers,
            "started_at": iso(run.load_started_at),
        },
        "slo": {
            "availability": slo.availability,
            "latency_ms": {name: limit * 1000 for name, limit in slo.latency.items()},
            "throughput_min": slo.throughput_min,
            "recovery_within_s": slo.recovery_within,
            "recovery_window_s": slo.recovery_window,
            "judged_phases": list(slo.judge),
            "max_stall_s": slo.max_stall,
            "endpoints": {
                name: {
                    "availability": o.availability,
                    "latency_ms": {q: limit * 1000 for q, limit in o.latency.items()},
                    "throughput_min": o.throughput_min,
                }
                for name, o in slo.endpoints.items()
            },
        },
        "phases": [],
        "recovery": {"fault_ended_s": None, "time_to_recover_s": None, "objective": None, "note": ""},
        "error_budget": None,
        "breaches": [],
        "guard": _guard(run.guard_trip, rel),
        "steady_state": {
            "before": [_probe(p) for p in run.steady_before],
            "after": [_probe(p) for p in run.steady_after],
        },
        "faults": [
            {
                "index": fault.index + 1,
                "kind": fault.spec.kind,
                "description": fault.description,
                "seed": fault.seed,
                "candidates": list(fault.candidates),
                "actions": [
                    {"at_s": rel(r.at), "action": r.action, "target": r.target, "detail": r.detail}
                    for r in run.fault_records
                    if r.fault_index == fault.index
                ],
            }
            for fault in run.plan.faults
        ],
        "timeline": [
            {
                "at_s": rel(e.at),
                "source": e.source,
                "action": e.action,
                "subject": e.subject,
                "detail": e.detail,
            }
            for e in run.timeline.events()
        ],
        "series": _series(run, rel),
        "errors": _errors(run),
    }
    if verdict is not None:
        report["phases"] = [
            {
                "name": phase.window.name,
                "start_s": rel(phase.window.start),
                "end_s": rel(phase.window.end),
                "judged": phase.judged,
                "requests": phase.sli.requests,
                "failures": phase.sli.failures,
                "sent": phase.sli.sent,
                "answered": phase.answered,
                "timeouts": phase.sli.timeouts,
                "unfinished": phase.sli.unfinished,
                "omitted": phase.sli.omitted,
                "availability": phase.sli.availability,
                "throughput_rps": phase.sli.throughput,
                "latency_ms": phase.sli.latency_ms,
                "latency_measured_ms": phase.sli.measured_latency_ms,
                "stalled_s": [rel(second) for second in phase.stalled_seconds],
                "throughput_drop": None if phase.throughput_drop is None else asdict(phase.throughput_drop),
                "objectives": [_objective(o) for o in phase.objectives],
                "endpoints": [
                    {
                        "name": name,
                        "requests": sli.requests,
                        "failures": sli.failures,
                        "availability": sli.availability,
                        "latency_ms": sli.latency_ms,
                    }
                    for name, sli in phase.endpoints.items()
                ],
            }
            for phase in verdict.phases
        ]
        report["recovery"] = {
            "fault_ended_s": None if verdict.fault_ended is None else rel(verdict.fault_ended),
            "time_to_recover_s": verdict.time_to_recover,
            "objective": _objective(verdict.recovery_objectives[0]) if verdict.recovery_objectives else None,
            "note": verdict.recovery_note,
        }
        if verdict.error_budget is not None:
            budget = verdict.error_budget
            report["error_budget"] = {
                "allowed_failures": budget.allowed_failures,
                "failures": budget.failures,
                "consumed": _finite(budget.consumed),
                "exhausted": budget.consumed is not None and budget.consumed >= 1,
                "burn_rate": {name: _finite(rate) for name, rate in budget.burn_rate.items()},
            }
        report["breaches"] = [
            {
                "phase": b.phase,
                "start_s": rel(b.start),
                "end_s": rel(b.end),
                "worst_availability": b.worst_availability,
                "worst_latency_ms": b.worst_latency_ms,
                "stalled": b.stalled,
            }
            for b in verdict.breaches
        ]
    jsonschema.validate(report, load_schema("report"))
    return report


def _probe(result: ProbeResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "kind": result.kind,
        "ok": result.ok,
        "detail": result.detail,
        "seconds": round(result.seconds, 4),
    }


def objective_label(result: ObjectiveResult) -> str:
    """ "availability >= 99.5%", "GET /pay p95 <= 250ms": the objective as a test name."""
    where = f"{result.endpoint} " if result.endpoint else ""
    if result.name == "stall":
        return f"answers keep coming (no wait over {format_duration(result.target)} without one)"
    if result.unit == "ratio":
        return f"{where}{result.name} >= {format_percent(result.target)}"
    if result.unit == "ms":
        return f"{where}{result.name} <= {format_ms(result.target)}"
    if result.unit == "rps":
        return f"{where}{result.name} >= {result.target:g} req/s"
    return f"{where}{result.name} <= {format_duration(result.target)}"


def _finite(value: float | None) -> float | str | None:
    """JSON has no infinity: a budget of 0 that was spent is "infinite"."""
    return "infinite" if value is not None and math.isinf(value) else value


def _objective(result: ObjectiveResult) -> dict[str, Any]:
    return {
        "phase": result.phase,
        "name": result.name,
        "label": objective_label(result),
        "target": result.target,
        "actual": result.actual,
        "unit": result.unit,
        "held": result.held,
        "detail": result.detail,
        "endpoint": result.endpoint,
    }


def _series(run: RunResult, rel: Any) -> list[dict[str, Any]]:
    """Per second: the requests sent in it (as phases are judged), what was answered during it
    and how many were still waiting at its end."""
    samples = run.samples
    seconds = sorted(set(samples.sent_seconds()) | set(range(*_span(samples))))
    rows = []
    for second in seconds:
        sli = measure(samples.sent(second) or Aggregate(), 1)
        happened = samples.second(second)
        row: dict[str, Any] = {
            "t_s": rel(second),
            "requests": sli.requests,
            "failures": sli.failures,
            "answered": 0 if happened is None else happened.answered,
            "waiting": 0 if happened is None else happened.waiting,
        }
        row.update({key: sli.latency_ms[key.removesuffix("_ms")] for key in SERIES_KEYS})
        rows.append(row)
    return rows


def _span(samples: SampleStore) -> tuple[int, int]:
    latest = samples.latest_second()
    sent = samples.sent_seconds()
    return (sent[0], latest + 1) if sent and latest is not None else (0, 0)


def _errors(run: RunResult) -> list[dict[str, Any]]:
    total = run.samples.window(float("-inf"), float("inf")).errors
    return [
        {"kind": kind, "message": message, "count": count} for (kind, message), count in total.most_common(20)
    ]


def _guard(trip: GuardTrip | None, rel: Callable[[float], float]) -> dict[str, Any] | None:
    if trip is None:
        return None
    reverted = trip.reverted_at
    return {
        "guard": trip.guard,
        "observed": trip.observed,
        "breach_at_s": rel(trip.breach_at),
        "detected_at_s": rel(trip.detected_at),
        "reverted_at_s": None if reverted is None else rel(reverted),
        "breach_to_revert_s": None if reverted is None else round(reverted - trip.breach_at, 3),
    }


def _crashes(run: RunResult) -> list[str]:
    """Replicas that exited by themselves during the run (not killed by a fault): worth a reason
    whatever the verdict, since the SLO may have held only thanks to restarts."""
    exits: dict[str, list[dict[str, Any]]] = {}
    for event in run.timeline.events():
        if event.source == "service" and event.action == "exited" and event.detail.get("by") == "itself":
            exits.setdefault(event.subject, []).append(event.detail)
    reasons = []
    for name, details in exits.items():
        last = details[-1]
        how = f"signal {last['signal']}" if last.get("signal") else f"exit code {last['code']}"
        times = "once" if len(details) == 1 else f"{len(details)} times"
        reasons.append(
            f"service {name} exited by itself {times} during the run (last: {how}; see logs/{name}.log)"
        )
    return reasons
