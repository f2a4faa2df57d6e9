"""slo: SLIs from the recorded samples, judged per phase, with time to recover and error budget.

Latency objectives are judged on successful requests (failed ones count against availability).
A judged phase without requests is not held: a gate must never pass on missing evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .samples import Aggregate, SampleStore
from .spec.model import LATENCY_QUANTILES, SloSpec
from .units import format_duration, format_ms, format_percent


@dataclass(frozen=True)
class Window:
    """A named stretch of wall-clock time, in epoch seconds."""

    name: str
    start: float
    end: float

    @property
    def length(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class Sli:
    requests: int
    failures: int
    availability: float | None
    throughput: float | None  # requests per second of window
    latency_ms: dict[str, float | None]  # mean, p50 ... p999 and max: successful requests only


@dataclass(frozen=True)
class ObjectiveResult:
    phase: str
    name: str  # availability, p95, throughput, time_to_recover ...
    target: float
    actual: float | None
    unit: str  # ratio, ms, rps, s
    held: bool
    detail: str


@dataclass(frozen=True)
class PhaseResult:
    window: Window
    judged: bool
    sli: Sli
    objectives: tuple[ObjectiveResult, ...]
    endpoints: dict[str, Sli]  # the same SLIs per endpoint ("GET /checkout"): the report's "where"


@dataclass(frozen=True)
class Breach:
    """Consecutive seconds in which the SLO did not hold, measured second by second."""

    start: float
    end: float
    phase: str
    worst_availability: float | None
    worst_latency_ms: float | None


@dataclass(frozen=True)
class ErrorBudget:
    allowed_failures: float
    failures: int
    consumed: float | None  # share of the budget used over the judged phases (1.0 = all of it)
    burn_rate: dict[str, float | None]  # per phase: error rate / allowed error rate


@dataclass(frozen=True)
class Verdict:
    held: bool
    reasons: tuple[str, ...]
    phases: tuple[PhaseResult, ...]
    time_to_recover: float | None
    fault_ended: float | None
    error_budget: ErrorBudget | None
    breaches: tuple[Breach, ...]
    recovery_objectives: tuple[ObjectiveResult, ...] = ()

    @property
    def objectives(self) -> tuple[ObjectiveResult, ...]:
        return tuple(o for phase in self.phases for o in phase.objectives) + self.recovery_objectives


def whole_seconds(start: float, end: float) -> int:
    """How many per-second samples belong to [start, end): those whose midpoint lies inside."""
    return max(0, math.ceil(end - 0.5) - math.ceil(start - 0.5))


def measure(aggregate: Aggregate, seconds: int) -> Sli:
    """SLIs of an aggregate that spans `seconds` whole seconds (for throughput)."""
    ok = aggregate.ok
    requests = aggregate.requests
    latency = {name: ok.percentile_ms(q) for name, q in LATENCY_QUANTILES.items()}
    latency["max"] = ok.max_ms()  # exact, not a bucket midpoint
    return Sli(
        requests=requests,
        failures=aggregate.failures,
        availability=None if requests == 0 else (requests - aggregate.failures) / requests,
        throughput=None if seconds <= 0 else requests / seconds,
        latency_ms={"mean": ok.mean_ms(), **latency},
    )


def check(slo: SloSpec, sli: Sli, phase: str) -> tuple[ObjectiveResult, ...]:
    """Each objective of the SLO against one window's SLIs."""
    results = []
    if slo.availability is not None:
        actual = sli.availability
        held = actual is not None and actual >= slo.availability
        if actual is None:
            detail = "no requests were recorded"
        else:
            detail = (
                f"{format_percent(actual)} ({sli.failures} of {sli.requests} failed), "
                f"objective {format_percent(slo.availability)}"
            )
            if not held:
                detail += f": {100 * (slo.availability - actual):.2f} points short"
        results.append(
            ObjectiveResult(phase, "availability", slo.availability, actual, "ratio", held, detail)
        )
    for name, limit in slo.latency.items():
        actual_ms = sli.latency_ms[name]
        limit_ms = limit * 1000
        held = actual_ms is not None and actual_ms <= limit_ms
        if actual_ms is None:
            detail = "no successful request to measure"
        else:
            detail = f"{format_ms(actual_ms)}, objective {format_ms(limit_ms)}"
            if not held:
                detail += f": {100 * (actual_ms / limit_ms - 1):.0f}% over"
        results.append(ObjectiveResult(phase, name, limit_ms, actual_ms, "ms", held, detail))
    if slo.throughput_min is not None:
        actual = sli.throughput
        held = actual is not None and actual >= slo.throughput_min
        detail = (
            "no time to measure"
            if actual is None
            else f"{actual:.1f} req/s, objective {slo.throughput_min:g} req/s"
        )
        results.append(ObjectiveResult(phase, "throughput", slo.throughput_min, actual, "rps", held, detail))
    return tuple(results)


def holds(slo: SloSpec, samples: SampleStore, start: float, end: float) -> bool:
    sli = measure(samples.window(start, end), whole_seconds(start, end))
    return all(result.held for result in check(slo, sli, ""))


def time_to_recover(slo: SloSpec, samples: SampleStore, fault_end: float, run_end: float) -> float | None:
    """Seconds from the end of the fault to the first second from which the SLO holds for
    `recovery_window`; None if that never happens before the run ends."""
    window = slo.recovery_window
    steps = math.floor(run_end - fault_end - window + 1e-9)
    for step in range(max(0, steps) + 1):
        start = fault_end + step
        if start + window > run_end + 1e-9:
            break
        if holds(slo, samples, start, start + window):
            return float(step)
    return None


def judge(
    slo: SloSpec, samples: SampleStore, windows: list[Window], fault_ended: float | None = None
) -> Verdict:
    """The verdict over the run's phase windows (warmup, baseline, fault, recovery).

    `fault_ended` is when the last fault action took effect (the last kill, or the revert of a
    fault that lasts); time to recover counts from there, and the recovery phase is judged only
    after the `recovery_within` allowance that follows it. Without it, the fault phase's end is used.
    """
    by_name = {w.name: w for w in windows}
    if fault_ended is None and "fault" in by_name:
        fault_ended = by_name["fault"].end
    phases = []
    for window in windows:
        judged_window = window
        if window.name == "recovery" and slo.recovery_within is not None and fault_ended is not None:
            start = min(window.end, max(window.start, fault_ended + slo.recovery_within))
            judged_window = Window("recovery", start, window.end)
        aggregate = samples.window(judged_window.start, judged_window.end)
        seconds = whole_seconds(judged_window.start, judged_window.end)
        sli = measure(aggregate, seconds)
        endpoints = {
            name: measure(Aggregate({name: sample}), seconds)
            for name, sample in sorted(aggregate.endpoints.items())
        }
        judged = window.name in slo.judge
        objectives = check(slo, sli, window.name) if judged else ()
        phases.append(PhaseResult(judged_window, judged, sli, objectives, endpoints))
    recovery_objectives: tuple[ObjectiveResult, ...] = ()
    ttr = None
    if fault_ended is not None and "recovery" in by_name:
        ttr = time_to_recover(slo, samples, fault_ended, by_name["recovery"].end)
        if slo.recovery_within is not None and "recovery" in slo.judge:
            held = ttr is not None and ttr <= slo.recovery_within
            detail = (
                f"SLO held again {format_duration(ttr)} after the fault ended"
                if ttr is not None
                else "the SLO did not hold again before the end of the run"
            )
            detail += f", allowed {format_duration(slo.recovery_within)}"
            recovery_objectives = (
                ObjectiveResult("recovery", "time_to_recover", slo.recovery_within, ttr, "s", held, detail),
            )
    verdict_phases = tuple(phases)
    failed = [o for p in verdict_phases for o in p.objectives if not o.held] + [
        o for o in recovery_objectives if not o.held
    ]
    reasons = tuple(f"{o.phase} phase: {o.name} not held: {o.detail}" for o in failed)
    return Verdict(
        held=not failed,
        reasons=reasons,
        phases=verdict_phases,
        time_to_recover=ttr,
        fault_ended=fault_ended,
        error_budget=_error_budget(slo, samples, [w for w in windows if w.name in slo.judge]),
        breaches=tuple(_breaches(slo, samples, [w for w in windows if w.name in slo.judge])),
        recovery_objectives=recovery_objectives,
    )


def _error_budget(slo: SloSpec, samples: SampleStore, judged: list[Window]) -> ErrorBudget | None:
    """Failures against the budget over the whole judged phases (recovery allowance included)."""
    if slo.availability is None:
        return None
    allowed_rate = 1 - slo.availability
    slis = {w.name: measure(samples.window(w.start, w.end), whole_seconds(w.start, w.end)) for w in judged}
    requests = sum(sli.requests for sli in slis.values())
    failures = sum(sli.failures for sli in slis.values())
    allowed = allowed_rate * requests
    consumed = None if allowed == 0 else failures / allowed
    burn = {
        name: (
            None if sli.requests == 0 or allowed_rate == 0 else (sli.failures / sli.requests) / allowed_rate
        )
        for name, sli in slis.items()
    }
    return ErrorBudget(allowed, failures, consumed, burn)


def _breaches(slo: SloSpec, samples: SampleStore, windows: list[Window]) -> list[Breach]:
    """Second-by-second view of when the SLO was not met (for the report's "when")."""
    breaches: list[Breach] = []
    for second in samples.seconds():
        middle = second + 0.5
        phase = next((w.name for w in windows if w.start <= middle < w.end), None)
        if phase is None:
            continue
        aggregate = samples.get(second)
        assert aggregate is not None
        sli = measure(aggregate, 1)
        failed = [o for o in check(slo, sli, phase) if not o.held and o.name != "throughput"]
        if not failed:
            continue
        latency = max((o.actual for o in failed if o.unit == "ms" and o.actual is not None), default=None)
        availability = sli.availability if any(o.name == "availability" for o in failed) else None
        last = breaches[-1] if breaches else None
        if last and last.end == second and last.phase == phase:
            breaches[-1] = Breach(
                last.start,
                second + 1,
                phase,
                _lowest(last.worst_availability, availability),
                _highest(last.worst_latency_ms, latency),
            )
        else:
            breaches.append(Breach(second, second + 1, phase, availability, latency))
    return breaches


def _lowest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _highest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
