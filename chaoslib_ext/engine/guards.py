"""Guards: stop conditions watched while the load runs. When one trips, the engine aborts the run
and reverts every fault at once; the report says which guard, what it saw, and how long it took
from the breach to the revert being complete.

Metric guards (error rate, a latency percentile) judge every second of the run exactly once, in
order, on a thread of their own, as the recorder delivers it (so a breach is seen even while the
engine is busy applying or reverting a fault): a second is bad when what finished during it was
over the limit, or when nothing was answered while users had been waiting longer than the SLO's
`max_stall`; good when what finished was within the limit; and a second with nothing finished
and nobody waiting long proves nothing either way. A guard trips after `seconds` bad seconds with
no good second between them. Probe and Prometheus guards run on threads of their own too. A
Prometheus guard that cannot read its query counts that as a breach: a guard that cannot see
stops the run rather than let it go on blind.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaoslib_ext.engine.probes import run_probe
from chaoslib_ext.engine.prometheus import QueryFailed, instant_query
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.measure.samples import LoadSecond, SampleStore
from chaoslib_ext.spec.model import (
    LATENCY_QUANTILES,
    DeadlineGuard,
    ErrorRateGuard,
    Guard,
    LatencyGuard,
    ProbeGuard,
    PrometheusGuard,
)
from chaoslib_ext.units import exactly, format_ms, format_percent


@dataclass
class GuardTrip:
    guard: str  # what the guard says, e.g. "error rate above 20% for 2s"
    observed: str  # what it saw
    breach_at: float  # when the condition became true: the end of the last bad second, a probe's end
    detected_at: float
    reverted_at: float | None = None  # when every fault was reverted after it


class GuardTripped(RunAborted):
    def __init__(self, trip: GuardTrip) -> None:
        super().__init__(f"guard tripped: {trip.guard} ({trip.observed})")
        self.trip = trip


class MetricWatch:
    """One error-rate or latency guard: fed every second of the run once, in order."""

    def __init__(self, guard: ErrorRateGuard | LatencyGuard, max_stall: float) -> None:
        self.guard = guard
        self.max_stall = max_stall
        self.bad: list[str] = []  # what the bad seconds since the last good one showed

    def observe(self, second: int, happened: LoadSecond) -> GuardTrip | None:
        seen = self._bad(second, happened)
        if seen is None:
            return None  # no evidence either way
        if not seen:
            self.bad.clear()
            return None
        self.bad.append(seen)
        if len(self.bad) < self.guard.seconds:
            return None
        observed = f"{', '.join(self.bad[-self.guard.seconds :])} in {self.guard.seconds} second(s) of load"
        return GuardTrip(self.guard.describe(), observed, float(second + 1), time.time())

    def _bad(self, second: int, happened: LoadSecond) -> str | None:
        """What made the second bad; "" if it was good; None if it proves nothing."""
        finished = happened.finished
        guard = self.guard
        if isinstance(guard, ErrorRateGuard) and finished.requests:
            over = finished.failures > exactly(guard.limit) * finished.requests
            return format_percent(finished.failures / finished.requests) if over else ""
        ok = finished.total().ok
        if isinstance(guard, LatencyGuard) and ok.count:
            quantile, limit_us = LATENCY_QUANTILES[guard.percentile], round(guard.limit * 1e6)
            return "" if ok.within(quantile, limit_us) else format_ms(ok.percentile_ms(quantile))
        if happened.stalled(second, self.max_stall):
            assert happened.oldest_waiting_since is not None
            waited = second + 1 - happened.oldest_waiting_since
            return f"no answer ({happened.waiting} waiting, for {waited:.1f}s)"
        return None


class GuardWatch:
    """Evaluates an experiment's guards on threads of their own; the engine asks `check` several
    times a second whether one has tripped."""

    def __init__(
        self, guards: tuple[Guard, ...], samples: SampleStore, started_at: float, max_stall: float = 1.0
    ) -> None:
        self.guards = guards
        self.samples = samples
        self.started_at = started_at
        self.max_stall = max_stall
        self._watched_trip: GuardTrip | None = None  # set by a watching thread
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start_watching(self, since: float) -> None:
        """Start the threads: one for the metric guards (from the second `since`, the load's
        start), one per probe and Prometheus guard."""
        metrics = [
            MetricWatch(g, self.max_stall)
            for g in self.guards
            if isinstance(g, ErrorRateGuard | LatencyGuard)
        ]
        targets: list[tuple[str, Callable[[], None]]] = []
        if metrics:
            targets.append(("guard-metrics", lambda: self._watch_seconds(metrics, math.ceil(since))))
        for guard in self.guards:
            if isinstance(guard, ProbeGuard):
                targets.append(("guard-probe", functools.partial(self._watch_probe, guard)))
            elif isinstance(guard, PrometheusGuard):
                targets.append(("guard-prometheus", functools.partial(self._watch_prometheus, guard)))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)  # a probe in flight finishes within its own timeout

    def check(self, now: float) -> GuardTrip | None:
        """The first guard that has tripped, if any."""
        with self._lock:
            if self._watched_trip is not None:
                self._watched_trip.detected_at = max(self._watched_trip.detected_at, now)
                return self._watched_trip
        for guard in self.guards:
            if isinstance(guard, DeadlineGuard) and now >= self.started_at + guard.limit:
                return GuardTrip(
                    guard.describe(),
                    f"the run has lasted {now - self.started_at:.1f}s",
                    self.started_at + guard.limit,
                    now,
                )
        return None

    def _watch_seconds(self, metrics: list[MetricWatch], second: int) -> None:
        """Every second once, in order, as soon as the recorder has delivered it."""
        while not self._stopping.is_set():
            happened = self.samples.wait_for_second(second, timeout=0.2)
            if happened is None:
                continue
            for watch in metrics:
                trip = watch.observe(second, happened)
                if trip is not None:
                    self._record(trip)
                    return
            second += 1

    def _watch_probe(self, guard: ProbeGuard) -> None:
        failed_in_a_row = 0
        while not self._stopping.is_set():
            outcome = run_probe(guard.probe)
            failed_in_a_row = 0 if outcome.ok else failed_in_a_row + 1
            if failed_in_a_row >= guard.failures:
                self._tripped(guard, outcome.detail)
                return
            self._stopping.wait(guard.every)

    def _watch_prometheus(self, guard: PrometheusGuard) -> None:
        bad_since: float | None = None
        while not self._stopping.is_set():
            asked = time.time()
            try:
                values = instant_query(guard.url, guard.query, timeout=min(5.0, max(1.0, guard.every)))
                bad = [v for v in values if _beyond(guard, v)]
                if guard.below and not values:
                    bad = [float("nan")]  # nothing at all is under any floor
                seen = f"{guard.query} = {', '.join(f'{v:g}' for v in bad or values) or 'no series'}"
            except Exception as error:  # whatever went wrong, the guard is blind: that is a breach
                bad, seen = [float("nan")], str(error) if isinstance(error, QueryFailed) else repr(error)
            bad_since = (bad_since or asked) if bad else None
            if bad_since is not None and time.time() - bad_since >= guard.seconds:
                self._tripped(guard, seen)
                return
            self._stopping.wait(guard.every)

    def _tripped(self, guard: Guard, observed: str) -> None:
        now = time.time()
        self._record(GuardTrip(guard.describe(), observed, now, now))

    def _record(self, trip: GuardTrip) -> None:
        with self._lock:
            if self._watched_trip is None:  # the first trip is the one that stops the run
                self._watched_trip = trip


def _beyond(guard: PrometheusGuard, value: float) -> bool:
    """Over the limit (under it, for `below`); not a number (0/0, say) always counts."""
    if math.isnan(value):
        return True
    return value < guard.limit if guard.below else value > guard.limit
