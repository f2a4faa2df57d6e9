"""An exact, deliberately plain judgement of one run from its per-request log (the recorder's
test-only hook): every latency kept, sorted, ranked. It shares no code with gameday's judging, so
that comparing the two checks the histograms, the exact counts, the omission correction, the
attribution to phases and the stall rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

QUANTILES = {
    "p50": Fraction(1, 2),
    "p90": Fraction(9, 10),
    "p95": Fraction(95, 100),
    "p99": Fraction(99, 100),
}
QUANTILES |= {"p999": Fraction(999, 1000), "max": Fraction(1)}


@dataclass(frozen=True)
class ExactSlo:
    availability: Fraction | None  # e.g. Fraction(995, 1000)
    latency_us: dict[str, int]  # p95 -> limit
    throughput_min: Fraction | None  # successful requests per second
    max_stall: float


def phase_held(
    requests: list[dict[str, Any]], slo: ExactSlo, windows: dict[str, tuple[float, float]], name: str
) -> dict[str, bool]:
    """Each objective of one phase, decided on every request. A request belongs to the phase in
    which it was sent, but one sent in the baseline that finished after it, to the fault phase."""
    first, last = (math.ceil(edge - 0.5) for edge in windows[name])  # seconds whose midpoint is inside
    boundary = (
        math.ceil(windows["baseline"][1] - 0.5) if "baseline" in windows and "fault" in windows else None
    )

    def seconds_of(phase: str) -> range:
        start, end = windows[phase]
        return range(math.ceil(start - 0.5), math.ceil(end - 0.5))

    def in_phase(sent: float, ended: float) -> bool:
        sent_second, end_second = math.floor(sent), math.floor(ended)
        if boundary is None or name not in ("baseline", "fault"):
            return first <= sent_second < last
        carried = sent_second in seconds_of("baseline") and end_second >= boundary
        if name == "baseline":
            return first <= sent_second < last and not carried
        return first <= sent_second < last or carried

    sent = [r for r in requests if in_phase(r["sent"], r["end"])]
    finished = [r for r in sent if r["ok"] is not None]
    failures = sum(1 for r in finished if not r["ok"])
    result: dict[str, bool] = {}
    if slo.availability is not None:
        result["availability"] = bool(finished) and failures <= (1 - slo.availability) * len(finished)
    latencies = [r["us"] for r in sent if r["ok"] is not False and r["us"] is not None]
    latencies += [value for r in requests for due, value in _omitted(r) if in_phase(due, r["end"])]
    latencies.sort()
    for objective, limit in slo.latency_us.items():
        if not latencies:
            result[objective] = False
            continue
        wanted = max(1, math.ceil(QUANTILES[objective] * len(latencies)))
        result[objective] = latencies[wanted - 1] <= limit
    if slo.throughput_min is not None:
        successes = sum(1 for r in finished if r["ok"])
        result["throughput"] = last > first and successes >= slo.throughput_min * (last - first)
    result["stall"] = not any(_stalled(requests, s, slo.max_stall) for s in range(first, last))
    return result


def _omitted(request: dict[str, Any]) -> Iterable[tuple[float, int]]:
    """HdrHistogram's expected-interval correction, one value at a time: (when it was due, latency)."""
    interval, value = request.get("interval_us"), request["us"]
    if not request["ok"] or interval is None or value is None:
        return
    k = 1
    while value - k * interval >= interval:
        yield (round(request["sent"] * 1e6) + k * interval) / 1e6, value - k * interval
        k += 1


def _stalled(requests: list[dict[str, Any]], second: int, grace: float) -> bool:
    answered = any(
        second <= r["end"] < second + 1 and r["ok"] is not None and r["kind"] != "timeout" for r in requests
    )
    waiting = [r["sent"] for r in requests if r["sent"] < second + 1 <= r["end"]]
    return not answered and bool(waiting) and second + 1 - min(waiting) >= grace
