"""Guards: stop conditions watched while the load runs. When one trips, the engine aborts the run
and reverts every fault at once; the report says which guard, what it saw, and how long it took
from the breach to the revert being complete.

Metric guards (error rate, a latency percentile) judge whole seconds as the recorder delivers
them: the condition must hold in each of the last `seconds` complete seconds. A second with no
completed request proves nothing either way, so it does not count as a breach. Probe guards run
their probe on a thread of their own, so a slow probe never delays the engine.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .errors import RunAborted
from .probes import run_probe
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
        self._probe_trip: GuardTrip | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start_probes(self) -> None:
        for guard in self.guards:
            if guard.kind == "probe":
                thread = threading.Thread(
                    target=self._watch_probe, args=(guard,), name="guard-probe", daemon=True
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
            if self._probe_trip is not None:
                self._probe_trip.detected_at = max(self._probe_trip.detected_at, now)
                return self._probe_trip
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
                ended = time.time()
                with self._lock:
                    self._probe_trip = GuardTrip(describe(guard), outcome.detail, ended, ended)
                return
            self._stopping.wait(guard.every)
