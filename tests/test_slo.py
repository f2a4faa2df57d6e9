"""SLO judgement on synthetic samples with known answers, edge cases included."""

from __future__ import annotations

import pytest

from chaoslib_ext.measure.histogram import Histogram
from chaoslib_ext.measure.samples import Aggregate, EndpointSample, LoadSecond, SampleStore
from chaoslib_ext.measure.slo import Window, judge, measure, time_to_recover, whole_seconds
from chaoslib_ext.spec.model import SloSpec

T0 = 1_800_000_000


def slo(**overrides) -> SloSpec:
    values = dict(
        availability=0.99,
        latency={"p95": 0.1},
        throughput_min=None,
        recovery_within=None,
        recovery_window=2.0,
        judge=("baseline", "fault", "recovery"),
    )
    values.update(overrides)
    return SloSpec(**values)


def second(ok_ms: list[float], failed: int = 0) -> Aggregate:
    sample = EndpointSample(Histogram(), Histogram())
    for ms in ok_ms:
        sample.ok.record_ms(ms)
    for _ in range(failed):
        sample.failed.record_ms(1.0)
    return Aggregate(endpoints={"GET /x": sample})


def store(per_second: dict[int, Aggregate]) -> SampleStore:
    """Requests answered within the second they were sent in, nobody left waiting."""
    samples = SampleStore()
    for offset, aggregate in per_second.items():
        samples.add_sent(T0 + offset, aggregate)
        samples.add_second(T0 + offset, LoadSecond(aggregate.finished_only(), 0, None))
    return samples


def windows(baseline=(0, 10), fault=(10, 20), recovery=(20, 30)) -> list[Window]:
    return [
        Window(name, T0 + start, T0 + end)
        for name, (start, end) in (("baseline", baseline), ("fault", fault), ("recovery", recovery))
    ]


def healthy(seconds: range) -> dict[int, Aggregate]:
    return {s: second([10.0] * 100) for s in seconds}


def test_a_healthy_run_holds_every_objective():
    verdict = judge(slo(), store(healthy(range(30))), windows())
    assert verdict.held
    assert verdict.reasons == ()
    assert [p.sli.requests for p in verdict.phases] == [1000, 1000, 1000]
    assert verdict.time_to_recover == 0.0
    assert verdict.error_budget.consumed == 0.0
    assert verdict.breaches == ()


def test_failures_in_the_fault_phase_violate_availability_and_say_by_how_much():
    data = healthy(range(30))
    data[12] = second([10.0] * 50, failed=50)
    verdict = judge(slo(), store(data), windows())
    assert not verdict.held
    fault = verdict.phases[1]
    assert fault.sli.requests == 1000 and fault.sli.failures == 50
    assert fault.sli.availability == pytest.approx(0.95)
    [reason] = verdict.reasons
    assert reason.startswith("fault phase: availability not held: 95% (50 of 1000 failed)")
    assert "4.00 points short" in reason
    [breach] = verdict.breaches
    assert (breach.start, breach.end, breach.phase) == (T0 + 12, T0 + 13, "fault")
    assert breach.worst_availability == pytest.approx(0.5)
    budget = verdict.error_budget
    assert budget.allowed_failures == pytest.approx(30.0)
    assert budget.consumed == pytest.approx(50 / 30)
    assert budget.burn_rate["fault"] == pytest.approx(5.0)
    assert budget.burn_rate["baseline"] == 0.0


def test_latency_is_judged_on_successful_requests_only():
    data = healthy(range(30))
    data[15] = second([10.0] * 90 + [500.0] * 10)
    verdict = judge(slo(availability=None), store(data), windows())
    assert verdict.held  # 10 slow requests of 1000 in the fault phase: p95 still 10ms
    data[16] = second([500.0] * 100)
    verdict = judge(slo(availability=None), store(data), windows())
    assert not verdict.held
    p95 = next(o for o in verdict.phases[1].objectives if o.name == "p95")
    assert p95.actual == pytest.approx(500, rel=0.01)
    assert "400% over" in p95.detail


def test_a_phase_without_traffic_is_not_held():
    data = {s: a for s, a in healthy(range(30)).items() if not 10 <= s < 20}
    verdict = judge(slo(), store(data), windows())
    assert not verdict.held
    fault = verdict.phases[1]
    assert fault.sli.requests == 0 and fault.sli.availability is None
    assert {o.detail for o in fault.objectives if o.name != "stall"} == {
        "no requests were recorded",
        "no successful request to measure",
    }


def test_all_requests_failing_violates_both_availability_and_latency():
    data = healthy(range(30))
    for s in range(10, 20):
        data[s] = second([], failed=100)
    verdict = judge(slo(), store(data), windows())
    fault = verdict.phases[1]
    assert fault.sli.availability == 0.0
    assert all(not o.held for o in fault.objectives if o.name != "stall")
    [breach] = verdict.breaches
    assert (breach.start, breach.end) == (T0 + 10, T0 + 20)
    assert verdict.error_budget.burn_rate["fault"] == pytest.approx(100.0)


def test_a_phase_shorter_than_a_second_has_no_whole_second_and_is_not_held():
    verdict = judge(slo(), store(healthy(range(30))), windows(fault=(10, 10.4), recovery=(10.4, 30)))
    fault = verdict.phases[1]
    assert fault.sli.requests == 0
    assert not verdict.held
    assert any(r.startswith("fault phase: availability not held: no requests") for r in verdict.reasons)


def test_unjudged_phases_are_measured_but_never_fail_the_verdict():
    data = healthy(range(30))
    data[3] = second([], failed=100)
    verdict = judge(slo(judge=("fault", "recovery")), store(data), windows())
    assert verdict.held
    assert verdict.phases[0].sli.failures == 100 and verdict.phases[0].objectives == ()


def test_time_to_recover_is_the_first_second_from_which_the_slo_holds_for_the_window():
    data = healthy(range(30))
    for s in (20, 21, 22, 24):  # bad, bad, bad, good, bad, then good from 25 on
        data[s] = second([10.0] * 10, failed=90)
    samples = store(data)
    assert time_to_recover(slo(), samples, T0 + 20, T0 + 30) == 5.0
    verdict = judge(slo(recovery_within=4.0), samples, windows())
    ttr = verdict.recovery_objectives[0]
    assert not ttr.held and ttr.actual == 5.0
    assert "held again 5s after the fault ended, allowed 4s" in ttr.detail
    # the recovery phase itself is judged only after its allowance: from +24s
    assert verdict.phases[2].window.start == T0 + 24
    assert judge(slo(recovery_within=6.0), samples, windows()).recovery_objectives[0].held


def test_time_to_recover_counts_from_the_last_fault_action_when_it_is_known():
    data = healthy(range(30))
    for s in (12, 13, 14):  # a kill at +12s hurts for three seconds, inside the fault phase
        data[s] = second([], failed=100)
    verdict = judge(slo(recovery_within=5.0), store(data), windows(), fault_ended=T0 + 12)
    assert verdict.time_to_recover == 3.0
    assert verdict.recovery_objectives[0].held
    assert verdict.phases[2].window.start == T0 + 20  # allowance already over when recovery starts
    assert not verdict.phases[1].objectives[0].held  # the fault phase itself is still judged in full


def test_never_recovering_is_reported_as_such():
    data = healthy(range(30))
    for s in range(20, 30):
        data[s] = second([], failed=10)
    verdict = judge(slo(recovery_within=5.0), store(data), windows())
    assert verdict.time_to_recover is None
    assert "did not hold again before the end of the run" in verdict.recovery_objectives[0].detail


def test_throughput_objective_counts_requests_per_second_of_the_whole_window():
    data = healthy(range(30))
    for s in range(10, 15):
        del data[s]
    verdict = judge(slo(throughput_min=60.0), store(data), windows())
    fault = next(o for o in verdict.phases[1].objectives if o.name == "throughput")
    assert fault.actual == pytest.approx(50.0) and not fault.held
    assert measure(store(healthy(range(2))).window(T0, T0 + 2), 2).throughput == pytest.approx(100.0)


def test_each_phase_says_which_endpoint_failed():
    data = healthy(range(30))
    broken = EndpointSample(Histogram(), Histogram())
    for _ in range(20):
        broken.failed.record_ms(2.0)
    data[15].endpoints["GET /pay"] = broken
    verdict = judge(slo(), store(data), windows())
    fault = verdict.phases[1]
    assert set(fault.endpoints) == {"GET /pay", "GET /x"}
    assert fault.endpoints["GET /pay"].availability == 0.0
    assert fault.endpoints["GET /x"].availability == 1.0
    assert fault.sli.failures == 20


def test_samples_belong_to_the_phase_holding_their_midpoint_and_throughput_counts_whole_seconds():
    assert whole_seconds(T0, T0 + 10) == 10
    assert whole_seconds(T0 + 0.6, T0 + 1.2) == 0  # no midpoint inside: a phase shorter than a second
    assert whole_seconds(T0 + 0.4, T0 + 1.6) == 2
    data = healthy(range(30))
    verdict = judge(slo(recovery_within=2.5), store(data), windows(), fault_ended=T0 + 20)
    recovery = verdict.phases[2]
    assert recovery.window.start == T0 + 22.5
    assert recovery.sli.requests == 800  # seconds 22 ... 29: the midpoint of 22 is 22.5, inside
    assert recovery.sli.throughput == pytest.approx(100.0)


def test_max_latency_objective_uses_the_exact_maximum():
    data = healthy(range(30))
    data[15] = second([10.0] * 99 + [1005.0])
    verdict = judge(slo(availability=None, latency={"max": 1.0}), store(data), windows())
    max_objective = verdict.phases[1].objectives[0]
    assert max_objective.actual == pytest.approx(1005.0)
    assert not max_objective.held


def test_error_budget_counts_the_recovery_allowance_too():
    data = healthy(range(30))
    data[20] = second([10.0] * 50, failed=50)  # inside the 5 s allowance after the fault
    verdict = judge(slo(recovery_within=5.0), store(data), windows())
    assert verdict.held  # the allowance is not judged ...
    assert verdict.error_budget.failures == 50  # ... but its failures still spend the budget
    assert verdict.breaches[0].phase == "recovery"
