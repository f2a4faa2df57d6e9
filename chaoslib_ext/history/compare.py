"""What changed between two runs of an experiment, phase by phase, and the regression gate.

A bound is relative (`p95: 20%`: at most 1.2 times the baseline's), absolute for latency and time
to recover (`time_to_recover: 2s`, `p95: 50ms`: at most that much more), and in percentage points
for availability (`availability: 0.5%`: 99.9 % -> 99.4 % is the most allowed), because a relative
change of a number near 100 % says little. From a baseline of 0 (a run that recovered at once,
or used none of its budget) any increase exceeds a relative bound: give an absolute one to allow
some. A run that did not recover, after a baseline that did, exceeds every time_to_recover bound.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from chaoslib_ext.errors import SpecError
from chaoslib_ext.history.store import Run
from chaoslib_ext.units import format_duration, format_ms, format_percent, parse_duration

LATENCIES = ("p50", "p95", "p99")
RUN_METRICS = ("time_to_recover", "error_budget")  # one per run, not per phase
PHASE_METRICS = (*LATENCIES, "availability")
PHASES = ("baseline", "fault", "recovery")
TIMED = (*LATENCIES, "time_to_recover")  # the metrics an absolute bound (a duration) can apply to
EPSILON = 1e-9  # 99.9 % - 99.4 % is 0.5000000000000004 points in floating point: still 0.5
BOUNDS_HINT = "for example --max-regression 'fault.p95: 20%, fault.availability: 0.5%, time_to_recover: 2s'"


@dataclass(frozen=True)
class Bound:
    """How much worse a metric may get: a fraction, percentage points (availability), or seconds
    (`absolute`, latency and time to recover); `phase` None: every phase."""

    metric: str
    limit: float
    phase: str | None = None
    absolute: bool = False

    def __str__(self) -> str:
        where = f"{self.phase}." if self.phase else ""
        if self.absolute:
            return f"{where}{self.metric}: +{format_duration(self.limit)}"
        unit = " points" if self.metric == "availability" else ""
        return f"{where}{self.metric}: {format_percent(self.limit)}{unit}"

    def exceeded_by(self, change: Change) -> bool:
        if change.before is None:
            return False  # nothing to compare with
        if change.after is None:  # not measured; for time to recover: it never recovered
            return change.metric == "time_to_recover"
        if self.absolute:
            scale = 1.0 if change.metric == "time_to_recover" else 1000.0  # latencies are in ms
            return change.after - change.before > self.limit * scale + EPSILON
        worse = change.worse_by
        return worse is not None and worse > self.limit + EPSILON


@dataclass(frozen=True)
class Change:
    phase: str | None  # None: a whole-run metric
    metric: str
    before: float | None
    after: float | None

    @property
    def worse_by(self) -> float | None:
        """How much worse the after is: a fraction (inf from 0 to more), or percentage points
        (availability); negative when better; None when either side is unknown."""
        if self.before is None or self.after is None:
            return None
        if self.metric == "availability":
            return self.before - self.after
        if self.before == 0:
            return math.inf if self.after > 0 else 0.0
        return self.after / self.before - 1

    def describe(self) -> str:
        where = f"{self.phase} " if self.phase else ""
        worse = self.worse_by
        if self.metric == "time_to_recover" and self.before is not None and self.after is None:
            change = "did not recover"
        elif worse is None:
            change = "not comparable"
        elif self.metric == "availability":
            change = f"{-worse * 100:+.2f} points"
        elif math.isinf(worse):
            change = "from 0"
        else:
            change = f"{worse:+.1%}"
        before, after = _value(self.metric, self.before), _value(self.metric, self.after)
        return f"{where}{self.metric} {before} -> {after} ({change})"


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "availability" or metric == "error_budget":
        return format_percent(value)
    if metric == "time_to_recover":
        return format_duration(value)
    return format_ms(value)


def changes(before: Run, after: Run) -> list[Change]:
    """Every metric of every phase both runs have, then the whole-run ones."""
    found = []
    for name in PHASES:
        old, new = before.phase(name), after.phase(name)
        if old is None or new is None:
            continue
        for metric in PHASE_METRICS:
            key = "availability" if metric == "availability" else f"{metric}_ms"
            found.append(Change(name, metric, getattr(old, key), getattr(new, key)))
    found.append(Change(None, "time_to_recover", before.time_to_recover_s, after.time_to_recover_s))
    found.append(Change(None, "error_budget", before.error_budget_consumed, after.error_budget_consumed))
    return found


def regressions(bounds: list[Bound], before: Run, after: Run) -> list[str]:
    """Each change that is worse than its bound allows, in words."""
    found = []
    for change in changes(before, after):
        for bound in bounds:
            if (
                bound.metric == change.metric
                and bound.phase in (None, change.phase)
                and bound.exceeded_by(change)
            ):
                found.append(f"{change.describe()}, more than {bound} allows")
    return found


def parse_bounds(text: str) -> list[Bound]:
    """'fault.p95: 20%, time_to_recover: 2s' -> bounds; a one-line error otherwise."""
    bounds = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"(?:(\w+)\.)?(\w+)\s*:\s*(\d+(?:\.\d+)?)\s*(%|ms|s|m)", item)
        if match is None:
            raise SpecError(f"--max-regression: {item!r} is not metric: N% (or a duration)", hint=BOUNDS_HINT)
        phase, metric, number, unit = match.groups()
        if metric not in PHASE_METRICS + RUN_METRICS:
            known = ", ".join(PHASE_METRICS + RUN_METRICS)
            raise SpecError(f"--max-regression: unknown metric {metric!r}", hint=f"one of {known}")
        if phase is not None and (phase not in PHASES or metric in RUN_METRICS):
            raise SpecError(
                f"--max-regression: {item!r}: {phase!r} is not a phase of {metric}",
                hint=f"a phase is one of {', '.join(PHASES)}, and time_to_recover and error_budget have none",
            )
        if unit == "%":
            bounds.append(Bound(metric, float(number) / 100, phase))
        elif metric in TIMED:
            bounds.append(Bound(metric, parse_duration(number + unit), phase, absolute=True))
        else:
            raise SpecError(f"--max-regression: {item!r}: {metric} takes a percentage", hint=BOUNDS_HINT)
    if not bounds:
        raise SpecError("--max-regression is empty", hint=BOUNDS_HINT)
    return bounds
