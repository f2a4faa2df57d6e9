"""slo: SLIs from the recorded samples, judged per phase, with time to recover and error budget.

A phase is judged on the requests *sent* during it (a request that hangs belongs to the phase
that asked for it). Verdicts are exact: availability in integers (failures <= (1 - a) * n), each
latency objective on exact counts of requests above it, throughput on successful requests.
Latency objectives are judged on successful requests, plus the requests that paced users could
not send while one was slow (the coordinated-omission correction) and unfinished ones for as long
as they lasted. A judged phase without requests is not held, and neither is one in which users
waited longer than `max_stall` with no answer at all: a gate must never pass on missing evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

from chaoslib_ext.measure.histogram import Histogram
from chaoslib_ext.measure.samples import Aggregate, EndpointSample, SampleStore
from chaoslib_ext.spec.model import LATENCY_QUANTILES, Objectives, SloSpec
from chaoslib_ext.units import exactly, format_duration, format_ms, format_percent

THROUGHPUT_DROP = 0.5  # a phase whose request rate falls below half the baseline's is flagged


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
    requests: int  # requests sent in the window that finished (succeeded or failed)
    failures: int
    timeouts: int  # failures that were the client giving up
    unfinished: int  # still waiting when last seen: no outcome, but their wait counts as latency
    availability: float | None
    throughput: float | None  # successful requests per second of window
    latency_ms: dict[str, float | None]  # as judged: see `latency`
    measured_latency_ms: dict[str, float | None]  # successful requests only, as measured
    omitted: int  # requests inferred by the coordinated-omission correction
    paced: int  # requests from users whose pacing is known
    latency: Histogram = field(compare=False, repr=False)  # successful + omitted + unfinished
    successes: int = 0
    seconds: int = 0

    @property
    def sent(self) -> int:
        return self.requests + self.unfinished


@dataclass(frozen=True)
class ObjectiveResult:
    phase: str
    name: str  # availability, p95, throughput, stall, time_to_recover ...
    target: float
    actual: float | None
    unit: str  # ratio, ms, rps, s
    held: bool
    detail: str
    endpoint: str | None = None  # for an objective of one endpoint


@dataclass(frozen=True)
class ThroughputDrop:
    """A phase whose request rate fell well below the baseline's: with closed-loop users, fewer
    requests were sent, so latency percentiles understate what an open stream would have seen."""

    baseline_rps: float
    phase_rps: float
    corrected: bool  # every request came from a paced user, so the omission was corrected


@dataclass(frozen=True)
class PhaseResult:
    window: Window
    judged: bool
    sli: Sli
    objectives: tuple[ObjectiveResult, ...]
    endpoints: dict[str, Sli]  # the same SLIs per endpoint ("GET /checkout"): the report's "where"
    answered: int = 0  # requests that got an answer during the phase, whenever they were sent
    stalled_seconds: tuple[int, ...] = ()
    throughput_drop: ThroughputDrop | None = None


@dataclass(frozen=True)
class Breach:
    """Consecutive seconds in which the SLO did not hold, measured second by second."""

    start: float
    end: float
    phase: str
    worst_availability: float | None
    worst_latency_ms: float | None
    stalled: bool = False  # some of its seconds had users waiting and no answer at all


@dataclass(frozen=True)
class ErrorBudget:
    allowed_failures: float
    failures: int
    consumed: float | None  # share of the budget used over the judged phases (1.0 = all; inf: none allowed)
    burn_rate: dict[str, float | None]  # per phase: error rate / allowed error rate (inf: none allowed)


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
    warnings: tuple[str, ...] = ()
    recovery_note: str = ""  # why there is no time to recover, when there is none

    @property
    def objectives(self) -> tuple[ObjectiveResult, ...]:
        return tuple(o for phase in self.phases for o in phase.objectives) + self.recovery_objectives


@dataclass(frozen=True)
class Attribution:
    """Which requests a phase, or a second, is judged on: those sent during it; except that a
    request sent in the baseline that finished after it met the fault, so it belongs to the fault
    phase (to its first second), not to the baseline that gates the fault."""

    samples: SampleStore
    baseline: Window | None = None
    fault: Window | None = None

    @classmethod
    def of(cls, samples: SampleStore, windows: list[Window]) -> Attribution:
        by_name = {w.name: w for w in windows}
        if "baseline" in by_name and "fault" in by_name:
            return cls(samples, by_name["baseline"], by_name["fault"])
        return cls(samples)

    def phase(self, window: Window) -> Aggregate:
        if self.baseline is None or self.fault is None:
            return self.samples.window(window.start, window.end)
        boundary = self.baseline.end
        if window.name == "baseline":
            return self.samples.window(window.start, window.end, finished_before=boundary)
        total = self.samples.window(window.start, window.end)
        if window.name == "fault" and window.start <= self.fault.start:
            total.add(self.samples.window(self.baseline.start, boundary, finished_from=boundary))
        return total

    def second(self, second: int) -> Aggregate | None:
        """The requests one second is judged on; None if none was sent in it."""
        if self.baseline is None or self.fault is None:
            return self.samples.sent(second)
        boundary = self.baseline.end
        if self.baseline.start <= second + 0.5 < boundary:
            return (
                self.samples.window(second, second + 1, finished_before=boundary)
                if self.samples.sent(second)
                else None
            )
        sent = self.samples.sent(second)
        if second == math.ceil(self.fault.start - 0.5):
            carried = self.samples.window(self.baseline.start, boundary, finished_from=boundary)
            if carried.endpoints:
                sent = sent or Aggregate()
                sent.add(carried)
        return sent


def whole_seconds(start: float, end: float) -> int:
    """How many per-second samples belong to [start, end): those whose midpoint lies inside."""
    return max(0, math.ceil(end - 0.5) - math.ceil(start - 0.5))


def measure(aggregate: Aggregate, seconds: int) -> Sli:
    """SLIs of an aggregate that spans `seconds` whole seconds (for throughput)."""
    return measure_sample(aggregate.total(), seconds)


def measure_sample(sample: EndpointSample, seconds: int) -> Sli:
    latency = sample.latency()
    judged = {name: latency.percentile_ms(q) for name, q in LATENCY_QUANTILES.items()}
    measured = {name: sample.ok.percentile_ms(q) for name, q in LATENCY_QUANTILES.items()}
    judged["max"], measured["max"] = latency.max_ms(), sample.ok.max_ms()  # exact, not a bucket midpoint
    requests = sample.requests
    return Sli(
        requests=requests,
        failures=sample.failures,
        timeouts=sample.timeouts,
        unfinished=sample.unfinished.count,
        availability=None if requests == 0 else sample.successes / requests,
        throughput=None if seconds <= 0 else sample.successes / seconds,
        latency_ms={"mean": latency.mean_ms(), **judged},
        measured_latency_ms={"mean": sample.ok.mean_ms(), **measured},
        omitted=sample.omitted.count,
        paced=sample.paced,
        latency=latency,
        successes=sample.successes,
        seconds=seconds,
    )


def check(
    objectives: Objectives, sli: Sli, phase: str, endpoint: str | None = None
) -> tuple[ObjectiveResult, ...]:
    """Each objective against one window's SLIs, decided exactly."""
    results = []
    if objectives.availability is not None:
        results.append(_availability(objectives.availability, sli, phase, endpoint))
    for name, limit in objectives.latency.items():
        results.append(_latency(name, limit, sli, phase, endpoint))
    if objectives.throughput_min is not None:
        minimum = objectives.throughput_min
        held = sli.seconds > 0 and sli.successes >= exactly(minimum) * sli.seconds
        detail = (
            "no time to measure"
            if sli.throughput is None
            else f"{sli.throughput:.1f} successful req/s, objective {minimum:g} req/s"
        )
        results.append(
            ObjectiveResult(phase, "throughput", minimum, sli.throughput, "rps", held, detail, endpoint)
        )
    return tuple(results)


def _availability(objective: float, sli: Sli, phase: str, endpoint: str | None) -> ObjectiveResult:
    allowed = (1 - exactly(objective)) * sli.requests  # failures <= floor(this), exactly
    held = sli.requests > 0 and sli.failures <= allowed
    if sli.requests == 0:
        detail = "no requests were recorded"
    else:
        actual = sli.availability or 0.0
        detail = (
            f"{format_percent(actual)} ({sli.failures} of {sli.requests} failed), "
            f"objective {format_percent(objective)}"
        )
        if not held:
            detail += (
                f": {100 * (objective - actual):.2f} points short "
                f"({sli.failures} failures, at most {math.floor(allowed)} allowed)"
            )
    return ObjectiveResult(
        phase, "availability", objective, sli.availability, "ratio", held, detail, endpoint
    )


def _latency(name: str, limit: float, sli: Sli, phase: str, endpoint: str | None) -> ObjectiveResult:
    limit_us = round(limit * 1e6)
    histogram = sli.latency
    actual = sli.latency_ms[name]
    held = histogram.within(LATENCY_QUANTILES[name], limit_us)
    if actual is None:
        detail = "no successful request to measure"
    else:
        detail = f"{format_ms(actual)}, objective {format_ms(limit_us / 1000)}"
        if not held:
            above = histogram.above(limit_us)
            allowed = histogram.count - math.ceil(LATENCY_QUANTILES[name] * histogram.count)
            over = max(0.0, 100 * (actual / (limit_us / 1000) - 1))
            detail += (
                f": {over:.0f}% over ({above} of {histogram.count} latencies above "
                f"{format_ms(limit_us / 1000)}, at most {allowed} allowed)"
            )
        if sli.omitted:
            detail += (
                f"; corrected for coordinated omission ({sli.omitted} requests paced users could not "
                f"send meanwhile), measured {format_ms(sli.measured_latency_ms[name])}"
            )
        if sli.unfinished:
            detail += f"; {sli.unfinished} unfinished counted as long as they waited"
    return ObjectiveResult(phase, name, limit_us / 1000, actual, "ms", held, detail, endpoint)


def _stall(
    slo: SloSpec, samples: SampleStore, window: Window, sli: Sli, origin: float
) -> tuple[ObjectiveResult, tuple[int, ...], int]:
    """Users waiting with no answer at all: a total outage whose requests hang sends almost
    nothing and completes less, so it is judged on the waiting itself."""
    stalled = tuple(samples.stalled_seconds(window.start, window.end, slo.max_stall))
    answered = samples.answered(window.start, window.end)
    held = not stalled
    detail = f"{sli.sent} requests sent, {answered} answered"
    if not held:
        detail = (
            f"load starved: {detail}; for {len(stalled)}s users waited and nothing was answered "
            f"({_spans(stalled, origin)}), longer than the {format_duration(slo.max_stall)} allowed"
        )
    return (
        ObjectiveResult(window.name, "stall", slo.max_stall, float(len(stalled)), "s", held, detail),
        stalled,
        answered,
    )


def _spans(seconds: tuple[int, ...], origin: float) -> str:
    runs: list[list[int]] = []
    for second in seconds:
        if runs and runs[-1][1] == second:
            runs[-1][1] = second + 1
        else:
            runs.append([second, second + 1])
    return ", ".join(f"{a - origin:+.0f}s … {b - origin:+.0f}s" for a, b in runs)


def judge(
    slo: SloSpec,
    samples: SampleStore,
    windows: list[Window],
    fault_ended: float | None = None,
    cut_short: bool = False,
) -> Verdict:
    """The verdict over the run's phase windows (warmup, baseline, fault, recovery).

    `fault_ended` is when the last fault action took effect (the last kill, or the revert of a
    fault that lasts); time to recover counts from there, and the recovery phase is judged only
    after the `recovery_within` allowance that follows it. Without it, the fault phase's end is used.
    `cut_short`: the run ended before its plan did (aborted, interrupted), so windows are partial.
    """
    by_name = {w.name: w for w in windows}
    requests = Attribution.of(samples, windows)
    if fault_ended is None and "fault" in by_name:
        fault_ended = by_name["fault"].end
    phases = []
    for window in windows:
        judged_window = window
        if window.name == "recovery" and slo.recovery_within is not None and fault_ended is not None:
            start = min(window.end, max(window.start, fault_ended + slo.recovery_within))
            judged_window = Window("recovery", start, window.end)
        phases.append(_phase(slo, requests, window, judged_window, windows[0].start))
    phases = _flag_throughput_drops(phases)
    recovery_objectives: tuple[ObjectiveResult, ...] = ()
    ttr, note = None, ""
    if fault_ended is not None and "recovery" in by_name:
        ttr = time_to_recover(slo, samples, fault_ended, by_name["recovery"].end, windows)
        if ttr is None:
            note = "the run ended before the recovery phase did" if cut_short else "not reached"
        if slo.recovery_within is not None and "recovery" in slo.judge and not cut_short:
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
    elif cut_short and "fault" in by_name:
        note = "the run ended before the recovery phase"
    failed = [o for p in phases for o in p.objectives if not o.held] + [
        o for o in recovery_objectives if not o.held
    ]
    judged = [w for w in windows if w.name in slo.judge]
    return Verdict(
        held=not failed,
        reasons=tuple(_reason(o) for o in failed),
        phases=tuple(phases),
        time_to_recover=ttr,
        fault_ended=fault_ended,
        error_budget=_error_budget(slo, requests, judged),
        breaches=tuple(_breaches(slo, requests, judged)),
        recovery_objectives=recovery_objectives,
        warnings=tuple(_drop_warning(p) for p in phases if p.throughput_drop is not None),
        recovery_note=note,
    )


def _phase(
    slo: SloSpec, requests: Attribution, window: Window, judged_window: Window, origin: float
) -> PhaseResult:
    aggregate = requests.phase(judged_window)
    seconds = whole_seconds(judged_window.start, judged_window.end)
    sli = measure(aggregate, seconds)
    endpoints = {
        name: measure_sample(sample, seconds) for name, sample in sorted(aggregate.endpoints.items())
    }
    stall, stalled, answered = _stall(slo, requests.samples, judged_window, sli, origin)
    objectives: tuple[ObjectiveResult, ...] = ()
    if window.name in slo.judge:
        objectives = (*check(slo, sli, window.name), stall)
        for name, wanted in slo.endpoints.items():
            empty = measure_sample(EndpointSample(), seconds)
            objectives += check(wanted, endpoints.get(name, empty), window.name, endpoint=name)
    return PhaseResult(judged_window, window.name in slo.judge, sli, objectives, endpoints, answered, stalled)


def _flag_throughput_drops(phases: list[PhaseResult]) -> list[PhaseResult]:
    """Flag the phases whose request rate fell below THROUGHPUT_DROP of the baseline's."""
    baseline = next((p for p in phases if p.window.name == "baseline"), None)
    if baseline is None or not baseline.sli.seconds or not baseline.sli.sent:
        return phases
    base_rps = baseline.sli.sent / baseline.sli.seconds
    flagged = []
    for phase in phases:
        sli = phase.sli
        if (
            phase.window.name in ("fault", "recovery")
            and sli.seconds
            and sli.sent / sli.seconds < THROUGHPUT_DROP * base_rps
        ):
            corrected = sli.requests > 0 and sli.paced >= sli.requests
            drop = ThroughputDrop(base_rps, sli.sent / sli.seconds, corrected)
            phase = replace(phase, throughput_drop=drop)
        flagged.append(phase)
    return flagged


def _drop_warning(phase: PhaseResult) -> str:
    drop = phase.throughput_drop
    assert drop is not None
    text = (
        f"{phase.window.name} phase: throughput fell from {drop.baseline_rps:.1f} to "
        f"{drop.phase_rps:.1f} req/s: "
    )
    if drop.corrected:
        return text + "latency corrected for coordinated omission from each user's pacing (see the report)"
    return text + "latency percentiles are understated (closed-loop load whose pacing gameday does not know)"


def _reason(objective: ObjectiveResult) -> str:
    where = f"{objective.phase} phase: " + (f"{objective.endpoint}: " if objective.endpoint else "")
    if objective.name == "stall":
        return where + objective.detail
    return f"{where}{objective.name} not held: {objective.detail}"


def second_breached(slo: SloSpec, requests: Attribution, second: int) -> tuple[bool, Sli | None, bool]:
    """Whether one second breached the SLO: (breached, its SLIs if it had requests, stalled)."""
    happened = requests.samples.second(second)
    stalled = happened is not None and happened.stalled(second, slo.max_stall)
    aggregate = requests.second(second)
    if aggregate is None or aggregate.requests + aggregate.total().unfinished.count == 0:
        return stalled, None, stalled
    sli = measure(aggregate, 1)
    results = [o for o in check(slo, sli, "") if o.name != "throughput"]
    for name, wanted in slo.endpoints.items():
        if name in aggregate.endpoints:
            results += [
                o
                for o in check(wanted, measure_sample(aggregate.endpoints[name], 1), "")
                if o.name != "throughput"
            ]
    return stalled or any(not o.held for o in results), sli, stalled


def time_to_recover(
    slo: SloSpec, samples: SampleStore, fault_end: float, run_end: float, windows: list[Window] | None = None
) -> float | None:
    """From the end of the fault to the first second that starts `recovery_window` seconds in a
    row with requests in which no second breached (the same seconds the breach table lists);
    None if that never happens before the run ends. 0 means the first seconds after the fault
    were already clean."""
    requests = Attribution.of(samples, windows or [])
    needed = max(1, math.ceil(slo.recovery_window - 1e-9))
    first, end = math.ceil(fault_end - 0.5), math.ceil(run_end - 0.5)
    clean, evidence = 0, False
    for second in range(first, end):
        breached, sli, _ = second_breached(slo, requests, second)
        if breached:
            clean, evidence = 0, False
            continue
        clean, evidence = clean + 1, evidence or sli is not None
        if clean >= needed and evidence:
            return max(0.0, float(second - needed + 1) - fault_end)
    return None


def top_error(aggregate: Aggregate) -> str | None:
    """The most frequent error and how many requests it took: for a one-line reason."""
    if not aggregate.errors:
        return None
    (kind, message), count = aggregate.errors.most_common(1)[0]
    share = format_percent(count / max(1, aggregate.requests), 1)
    return f"{share} of requests: {kind} ({message[:160]})"


def _error_budget(slo: SloSpec, requests: Attribution, judged: list[Window]) -> ErrorBudget | None:
    """Failures against the budget over the whole judged phases (recovery allowance included)."""
    if slo.availability is None:
        return None
    allowed_rate = 1 - exactly(slo.availability)
    slis = {w.name: measure(requests.phase(w), whole_seconds(w.start, w.end)) for w in judged}
    total = sum(sli.requests for sli in slis.values())
    failures = sum(sli.failures for sli in slis.values())
    allowed = allowed_rate * total
    burn = {
        name: _ratio(Fraction(sli.failures, sli.requests), allowed_rate) if sli.requests else None
        for name, sli in slis.items()
    }
    consumed = None if total == 0 else _ratio(Fraction(failures), allowed)
    return ErrorBudget(float(allowed), failures, consumed, burn)


def _ratio(used: Fraction, allowed: Fraction) -> float:
    """used / allowed, infinite when nothing was allowed but something was used."""
    if allowed == 0:
        return math.inf if used > 0 else 0.0
    return float(used / allowed)


def _breaches(slo: SloSpec, requests: Attribution, windows: list[Window]) -> list[Breach]:
    """Second-by-second view of when the SLO was not met (for the report's "when")."""
    breaches: list[Breach] = []
    first = min((math.ceil(w.start - 0.5) for w in windows), default=0)
    last = max((math.ceil(w.end - 0.5) for w in windows), default=0)
    for second in range(first, last):
        phase = next((w.name for w in windows if w.start <= second + 0.5 < w.end), None)
        if phase is None:
            continue
        breached, sli, stalled = second_breached(slo, requests, second)
        if not breached:
            continue
        availability = latency = None
        if sli is not None:
            failed = [o for o in check(slo, sli, phase) if not o.held and o.name != "throughput"]
            latency = max((o.actual for o in failed if o.unit == "ms" and o.actual is not None), default=None)
            availability = sli.availability if any(o.name == "availability" for o in failed) else None
        last_breach = breaches[-1] if breaches else None
        if last_breach and last_breach.end == second and last_breach.phase == phase:
            breaches[-1] = Breach(
                last_breach.start,
                second + 1,
                phase,
                _lowest(last_breach.worst_availability, availability),
                _highest(last_breach.worst_latency_ms, latency),
                last_breach.stalled or stalled,
            )
        else:
            breaches.append(Breach(second, second + 1, phase, availability, latency, stalled))
    return breaches


def _lowest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _highest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
