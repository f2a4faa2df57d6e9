"""Guards: stop conditions watched while the load runs. When one trips, the engine aborts the run
and reverts every fault at once; the report says which guard, what it saw, and how long it took
from the breach to the revert being complete.

Metric guards (error rate, a latency percentile) judge whole seconds as the recorder delivers
them: the condition must hold in each of the last `seconds` complete seconds. A second with no
completed request proves nothing either way, so it does not count as a breach. Probe and
Prometheus guards run on threads of their own, so a slow probe or query never delays the engine.
A Prometheus guard that cannot read its query counts that as a breach: a guard that cannot see
stops the run rather than let it go on blind.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from .errors import RunAborted
from .probes import run_probe
from .prometheus import QueryFailed, instant_query
from .samples import FLUSH_LAG_SECONDS, SampleStore
from .slo import measure
from .spec.model import Guard
from .units import format_duration, format_ms, format_percent


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


def describe(guard: Guard) -> str:
    lasting = f" for {guard.seconds}s"
    if guard.kind == "error_rate":
        return f"error rate above {format_percent(guard.limit)}{lasting}"
    if guard.kind == "latency":
        return f"{guard.percentile} latency above {format_duration(guard.limit)}{lasting}"
    if guard.kind == "prometheus":
        side = "below" if guard.below else "above"
        return f"prometheus {guard.query} {side} {guard.limit:g}{lasting}"
    if guard.kind == "probe":
        assert guard.probe is not None
        times = "once" if guard.failures == 1 else f"{guard.failures} times in a row"
        return f"probe {guard.probe.name} failing {times} (every {format_duration(guard.every)})"
    return f"deadline of {format_duration(guard.limit)} from the start of the run"


class GuardWatch:
    """Evaluates an experiment's guards; `check` is called by the engine several times a second."""

    def __init__(self, guards: tuple[Guard, ...], samples: SampleStore, started_at: float) -> None:
        self.guards = guards
        self.samples = samples
        self.started_at = started_at
        self._watched_trip: GuardTrip | None = None  # set by a probe or Prometheus guard's thread
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start_watching(self) -> None:
        """Start the threads of the guards that poll something: probes, Prometheus queries."""
        watchers = {"probe": self._watch_probe, "prometheus": self._watch_prometheus}
        for guard in self.guards:
            if guard.kind in watchers:
                thread = threading.Thread(
                    target=watchers[guard.kind], args=(guard,), name=f"guard-{guard.kind}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)  # a probe in flight finishes within its own timeout

    def check(self, now: float, since: float) -> GuardTrip | None:
        """The first guard that has tripped, judging the seconds from `since` (the load's start)."""
        with self._lock:
            if self._watched_trip is not None:
                self._watched_trip.detected_at = max(self._watched_trip.detected_at, now)
                return self._watched_trip
        for guard in self.guards:
            if guard.kind == "deadline" and now >= self.started_at + guard.limit:
                return GuardTrip(
                    describe(guard),
                    f"the run has lasted {now - self.started_at:.1f}s",
                    self.started_at + guard.limit,
                    now,
                )
            if guard.kind in ("error_rate", "latency"):
                trip = self._check_seconds(guard, now, since)
                if trip is not None:
                    return trip
        return None

    def _check_seconds(self, guard: Guard, now: float, since: float) -> GuardTrip | None:
        end = int(now - FLUSH_LAG_SECONDS)  # seconds before this one are complete
        seconds = range(end - guard.seconds, end)
        if seconds.start < since:
            return None
        seen = []
        for second in seconds:
            aggregate = self.samples.get(second)
            if aggregate is None or aggregate.requests == 0:
                return None
            sli = measure(aggregate, 1)
            if guard.kind == "error_rate":
                value = 1 - (sli.availability or 0.0)
                if value <= guard.limit:
                    return None
                seen.append(format_percent(value))
            else:
                latency = sli.latency_ms[guard.percentile]
                if latency is None or latency <= guard.limit * 1000:
                    return None
                seen.append(format_ms(latency))
        observed = f"{', '.join(seen)} in the last {guard.seconds} second(s)"
        return GuardTrip(describe(guard), observed, float(end), now)

    def _watch_probe(self, guard: Guard) -> None:
        assert guard.probe is not None
        failed_in_a_row = 0
        while not self._stopping.is_set():
            outcome = run_probe(guard.probe)
            failed_in_a_row = 0 if outcome.ok else failed_in_a_row + 1
            if failed_in_a_row >= guard.failures:
                self._tripped(guard, outcome.detail)
                return
            self._stopping.wait(guard.every)

    def _watch_prometheus(self, guard: Guard) -> None:
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
        with self._lock:
            if self._watched_trip is None:  # the first trip is the one that stops the run
                self._watched_trip = GuardTrip(describe(guard), observed, now, now)


def _beyond(guard: Guard, value: float) -> bool:
    """Over the limit (under it, for `below`); not a number (0/0, say) always counts."""
    if math.isnan(value):
        return True
    return value < guard.limit if guard.below else value > guard.limit
