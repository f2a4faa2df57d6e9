"""Verdicts that cannot be fooled: hung requests, coordinated omission, exact boundaries.

Closed-loop users against a simulated service (tests/simulation.py) go through gameday's real
recorder, store and judge on a simulated clock; boundaries are checked on hand-made samples.
Each case was judged wrongly before requests were filed by send time, timed out, corrected for
omission and counted exactly.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from exact_verdict import ExactSlo, phase_held
from simulation import T0, Answer, hang, simulate, steady

from chaoslib_ext.measure.histogram import Histogram
from chaoslib_ext.measure.samples import Aggregate, EndpointSample, LoadSecond, SampleStore
from chaoslib_ext.measure.slo import Window, judge
from chaoslib_ext.spec.model import Objectives, SloSpec

DEMO_LIMITS = (250_000, 1_000_000)


def demo_slo(**overrides) -> SloSpec:
    """The demo experiments' SLO: availability 99.5%, p95 250ms, p99 1s."""
    values = dict(availability=0.995, latency={"p95": 0.25, "p99": 1.0}, recovery_window=5.0, max_stall=1.0)
    values.update(overrides)
    return SloSpec(**values)


def phases(baseline=(0, 10), fault=(10, 20), recovery=(20, 30)) -> list[Window]:
    return [
        Window(name, T0 + a, T0 + b)
        for name, (a, b) in (("baseline", baseline), ("fault", fault), ("recovery", recovery))
    ]


def phase(verdict, name):
    return next(p for p in verdict.phases if p.window.name == name)


# -- 1. a total outage whose requests hang ---------------------------------------------------------


def test_a_hang_that_swallows_every_request_is_violated_and_says_the_load_starved(monkeypatch):
    # 10 users at 10 req/s; every request sent from +13s on hangs until the revert at +20s
    run = simulate(monkeypatch, hang(13, 20), users=10, interval=0.1, seconds=30, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(recovery_within=5.0), run.samples, phases())
    assert not verdict.held
    fault = phase(verdict, "fault")
    # 30 requests a user before the hang and the one that hung (and one carried over from the
    # baseline, still in flight when the fault phase began)
    assert fault.sli.sent == pytest.approx(310, abs=2)
    # answered by when the answer came: the hung ones came at the revert, in the recovery phase
    assert fault.answered == pytest.approx(300, abs=2)
    stall = next(o for o in fault.objectives if o.name == "stall")
    assert not stall.held and stall.detail.startswith(
        f"load starved: {fault.sli.sent} requests sent, {fault.answered} answered"
    )
    assert fault.stalled_seconds == tuple(range(int(T0) + 14, int(T0) + 20))
    # the hung requests count in the phase that sent them, with how long they hung
    assert fault.sli.measured_latency_ms["max"] == pytest.approx(7000, rel=0.01)
    recovery = phase(verdict, "recovery")
    assert recovery.sli.measured_latency_ms["max"] < 100  # none of the hang leaks into recovery
    assert any(b.stalled and b.phase == "fault" for b in verdict.breaches)


def test_a_hang_longer_than_the_timeout_fails_the_hung_requests_with_their_own_error_kind(monkeypatch):
    never = hang(3, 1_000)  # nothing is answered from +3s on
    run = simulate(monkeypatch, never, users=4, interval=0.1, seconds=20, timeout=2.0, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(availability=0.5, latency={}), run.samples, phases((0, 3), (3, 10), (10, 20)))
    fault = phase(verdict, "fault")
    assert fault.sli.timeouts == fault.sli.failures > 0
    assert run.samples.window(T0, T0 + 30).errors.most_common(1)[0][0][0] == "timeout"
    assert not verdict.held


def test_requests_still_waiting_when_the_load_stops_are_judged_by_how_long_they_waited(monkeypatch):
    # the load is stopped at +8s in the middle of a hang that started at +3s: timeout 4s
    run = simulate(
        monkeypatch,
        hang(3, 100),
        users=2,
        interval=0.5,
        seconds=8,
        timeout=4.0,
        stop_after=8.5,
        limits_us=DEMO_LIMITS,
    )
    sent = run.samples.window(T0, T0 + 10).total()
    assert sent.unfinished.count == 2  # the second request of each user (sent at +7s) waited 1.5s
    assert sent.unfinished.max_ms() == pytest.approx(1500, rel=0.02)
    assert sent.timeouts == 2  # the first ones timed out at +7s
    verdict = judge(demo_slo(latency={"max": 1.0}), run.samples, phases((0, 3), (3, 9), (9, 10)))
    assert not verdict.held  # the unfinished requests already waited longer than max 1s
    assert phase(verdict, "fault").sli.unfinished == 2


def test_requests_in_flight_when_the_fault_starts_count_for_the_fault_not_for_the_baseline(monkeypatch):
    # every backend is killed at +10s: the requests sent just before, still waiting, fail then
    def service(sent: float) -> Answer:
        if T0 + 9.8 <= sent < T0 + 10:
            return Answer(T0 + 10.05 - sent, ok=False)
        return Answer(0.01, ok=not T0 + 10 <= sent < T0 + 13)

    run = simulate(monkeypatch, service, users=10, interval=0.1, seconds=30, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(), run.samples, phases())
    baseline, fault = phase(verdict, "baseline"), phase(verdict, "fault")
    assert baseline.sli.failures == 0 and all(o.held for o in baseline.objectives)
    assert fault.sli.failures == 10 + 300  # each user's request cut at +10s, then 3 s of failures
    sent_before_recovery = [r for r in run.requests if r["sent"] < T0 + 20]
    assert baseline.sli.requests + fault.sli.requests == len(sent_before_recovery)
    assert not any(b.phase == "baseline" for b in verdict.breaches)


# -- 2. coordinated omission ---------------------------------------------------------------------


def stall(start: float, length: float, latency: float = 0.01):
    """A stall of `length` s from `start`: requests sent during it wait until it is over."""
    return lambda sent: (
        Answer(T0 + start + length - sent) if T0 + start <= sent < T0 + start + length else Answer(latency)
    )


def test_a_stall_is_not_hidden_by_closed_loop_users(monkeypatch):
    # 1.5s stall in a 10s fault phase, 10 users at 10 req/s, p95 objective 250ms
    run = simulate(monkeypatch, stall(14, 1.5), users=10, interval=0.1, seconds=30, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(availability=None, latency={"p95": 0.25}), run.samples, phases())
    fault = phase(verdict, "fault")
    assert fault.sli.measured_latency_ms["p95"] < 20  # what the closed loop measured
    assert fault.sli.latency_ms["p95"] > 250  # what the users would have seen, corrected
    assert fault.sli.omitted > 100
    p95 = next(o for o in fault.objectives if o.name == "p95")
    assert not p95.held and "corrected for coordinated omission" in p95.detail
    assert not verdict.held


def test_without_a_known_pacing_a_throughput_drop_is_flagged_not_corrected(monkeypatch):
    run = simulate(monkeypatch, stall(13, 6), users=10, interval=None, seconds=30, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(), run.samples, phases())
    fault = phase(verdict, "fault")
    assert fault.sli.omitted == 0
    assert fault.throughput_drop is not None and not fault.throughput_drop.corrected
    [warning] = verdict.warnings
    assert warning.startswith("fault phase: throughput fell from")
    assert "latency percentiles are understated (closed-loop load" in warning


def test_a_paced_run_without_a_stall_needs_no_correction(monkeypatch):
    run = simulate(monkeypatch, steady(0.02), users=10, interval=0.1, seconds=30, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(), run.samples, phases())
    assert verdict.held and verdict.warnings == ()
    assert all(p.sli.omitted == 0 for p in verdict.phases)
    assert phase(verdict, "fault").sli.requests == pytest.approx(1000, abs=10)


# -- 4. exact judgement at the boundary -----------------------------------------------------------


def store_of(samples_by_second: dict[int, EndpointSample]) -> SampleStore:
    samples = SampleStore()
    for offset, sample in samples_by_second.items():
        aggregate = Aggregate({"GET /x": sample})
        samples.add_sent(int(T0) + offset, aggregate)
        samples.add_second(int(T0) + offset, LoadSecond(aggregate.finished_only(), 0, None))
    return samples


def sample(ok_us: list[int], failed: int = 0, limits: tuple[int, ...] = ()) -> EndpointSample:
    result = EndpointSample(Histogram(limits), Histogram(limits), Histogram(limits), Histogram(limits))
    for value in ok_us:
        result.ok.record_us(value)
    for _ in range(failed):
        result.failed.record_us(1000)
    return result


def one_phase(s: EndpointSample, slo: SloSpec):
    verdict = judge(slo, store_of({0: s}), [Window("fault", T0, T0 + 1)])
    return verdict.phases[0]


def test_one_failure_in_a_thousand_holds_99_9_percent():
    result = one_phase(sample([10_000] * 999, failed=1), SloSpec(availability=0.999, max_stall=1.0))
    assert all(o.held for o in result.objectives)
    result = one_phase(sample([10_000] * 998, failed=2), SloSpec(availability=0.999, max_stall=1.0))
    availability = result.objectives[0]
    assert not availability.held and "2 failures, at most 1 allowed" in availability.detail


def test_a_maximum_exactly_at_the_objective_holds():
    result = one_phase(sample([10_000] * 99 + [1_000_000]), SloSpec(latency={"max": 1.0}, max_stall=1.0))
    assert result.objectives[0].held
    result = one_phase(sample([10_000] * 99 + [1_000_001]), SloSpec(latency={"max": 1.0}, max_stall=1.0))
    assert not result.objectives[0].held


@pytest.mark.parametrize(
    ("slow_us", "limit_s", "held"),
    [(200_500, 0.2, False), (999_500, 1.0, True), (200_000, 0.2, True), (200_001, 0.2, False)],
)
def test_a_percentile_next_to_its_objective_is_judged_on_exact_counts(slow_us, limit_s, held):
    # p95 of 1000 requests is the 950th: 949 fast ones, then 51 at slow_us
    limits = (round(limit_s * 1e6),)
    result = one_phase(
        sample([10_000] * 949 + [slow_us] * 51, limits=limits), SloSpec(latency={"p95": limit_s})
    )
    p95 = result.objectives[0]
    assert p95.held is held
    # the figure shown is on the same side of the objective as the verdict
    assert (p95.actual <= limit_s * 1000) is held


def test_throughput_counts_successful_requests_only():
    refused = sample([], failed=500)
    assert not one_phase(refused, SloSpec(throughput_min=50.0)).objectives[0].held
    assert one_phase(sample([1000] * 60), SloSpec(throughput_min=50.0)).objectives[0].held


def test_a_100_percent_objective_with_failures_has_an_exhausted_budget():
    slo = SloSpec(availability=1.0)
    verdict = judge(slo, store_of({0: sample([1000] * 99, failed=1)}), [Window("fault", T0, T0 + 1)])
    assert verdict.error_budget.consumed == math.inf
    assert verdict.error_budget.burn_rate["fault"] == math.inf
    verdict = judge(slo, store_of({0: sample([1000] * 100)}), [Window("fault", T0, T0 + 1)])
    assert verdict.error_budget.consumed == 0.0


def test_a_success_without_a_response_time_does_not_pull_percentiles_down():
    s = sample([500_000] * 10)
    s.ok_untimed = 90
    result = one_phase(s, SloSpec(availability=0.99, latency={"p50": 0.1}))
    assert result.sli.requests == 100 and result.sli.availability == 1.0
    assert not next(o for o in result.objectives if o.name == "p50").held  # 500ms, not 0


def test_per_endpoint_objectives_are_judged_besides_the_overall_ones():
    pay = sample([10_000] * 90, failed=10)
    checkout = sample([10_000] * 900)
    samples = SampleStore()
    aggregate = Aggregate({"GET /pay": pay, "GET /checkout": checkout})
    samples.add_sent(int(T0), aggregate)
    samples.add_second(int(T0), LoadSecond(aggregate.finished_only(), 0, None))
    slo = SloSpec(
        availability=0.98,
        endpoints={"GET /pay": Objectives(availability=0.99), "GET /cart": Objectives(availability=0.9)},
    )
    verdict = judge(slo, samples, [Window("fault", T0, T0 + 1)])
    failed = {(o.endpoint, o.name) for o in verdict.objectives if not o.held}
    assert failed == {("GET /pay", "availability"), ("GET /cart", "availability")}  # overall 99% holds
    assert "fault phase: GET /pay: availability not held" in verdict.reasons[0]
    assert "no requests were recorded" in verdict.reasons[1]


# -- 6. time to recover: one definition, the breaches' ----------------------------------------------


def test_time_to_recover_zero_means_no_breach_in_the_first_window_after_the_fault(monkeypatch):
    # failures for 2s after the fault ends, then clean: recovered 2s after the fault
    def service(sent: float) -> Answer:
        return Answer(0.01, ok=not (T0 + 20 <= sent < T0 + 22))

    run = simulate(monkeypatch, service, users=10, interval=0.1, seconds=30, limits_us=DEMO_LIMITS)
    verdict = judge(demo_slo(recovery_window=3.0), run.samples, phases())
    assert verdict.time_to_recover == 2.0
    recovery_breaches = [b for b in verdict.breaches if b.phase == "recovery"]
    assert [(b.start - T0, b.end - T0) for b in recovery_breaches] == [(20, 22)]


# -- the judge agrees with an exact offline judgement ---------------------------------------------


def random_service(rng: random.Random):
    stall_at, stall_for = rng.uniform(10, 18), rng.choice([0.0, 0.3, 1.2, 2.5])
    error_rate, slow = rng.choice([0.0, 0.003, 0.02]), rng.uniform(0.005, 0.3)

    def service(sent: float) -> Answer:
        if T0 + stall_at <= sent < T0 + stall_at + stall_for:
            return Answer(T0 + stall_at + stall_for - sent + slow)
        return Answer(rng.expovariate(1 / slow), ok=rng.random() >= error_rate)

    return service


@pytest.mark.parametrize("seed", range(12))
def test_gamedays_verdict_agrees_with_an_exact_judgement_of_every_request(monkeypatch, seed):
    rng = random.Random(seed)
    users, interval = rng.choice([(5, 0.2), (10, 0.1), (3, None)])
    # objectives placed around what this service does, so that some hold and some do not
    limits = {
        name: rng.choice([20_000, 100_000, 250_000, 700_000, 1_500_000])
        for name in ("p50", "p95", "p99", "max")
    }
    availability = rng.choice(["0.99", "0.995", "0.999", "1"])
    slo = SloSpec(
        availability=float(availability),
        latency={name: us / 1e6 for name, us in limits.items()},
        throughput_min=rng.choice([None, 20.0, 45.0]),
        max_stall=rng.choice([1.0, 2.0]),
    )
    run = simulate(
        monkeypatch,
        random_service(rng),
        users=users,
        interval=interval,
        seconds=30,
        limits_us=slo.latency_limits_us,
    )
    verdict = judge(slo, run.samples, phases())
    exact = ExactSlo(
        Fraction(availability),
        limits,
        None if slo.throughput_min is None else Fraction(slo.throughput_min),
        slo.max_stall,
    )
    spans = {w.name: (w.start, w.end) for w in phases()}
    for result in verdict.phases:
        offline = phase_held(run.requests, exact, spans, result.window.name)
        assert {o.name: o.held for o in result.objectives} == offline, result.window.name
