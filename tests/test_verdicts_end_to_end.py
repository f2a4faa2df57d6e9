"""Verdicts that cannot be fooled, end to end: real services, real Locust load, real faults."""

from __future__ import annotations

import pytest
from conftest import REPO, free_port, free_port_block
from test_end_to_end import port_free, ports_of, run_experiment

pytestmark = pytest.mark.slow

DATA = REPO / "tests" / "data"


def ports() -> list[str]:
    block = free_port_block(4)  # a frontend, and up to three backend replicas
    return ["--var", f"frontend_port={block}", "--var", f"backend_port={block + 1}"]


@pytest.mark.parametrize("after", ["0s", "3s"])
def test_a_front_hanging_on_a_blackholed_backend_is_violated_and_says_the_load_starved(tmp_path, after):
    result, report = run_experiment(
        DATA / "hanging-front.yaml", tmp_path, *ports(), "--var", f"after={after}"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    fault = next(p for p in report["phases"] if p["name"] == "fault")
    assert fault["stalled_s"], fault
    assert any(r.startswith("fault phase: load starved: ") for r in report["reasons"]), report["reasons"]
    # every hung request was sent during the fault and waited for the revert: none is judged in recovery
    recovery = next(p for p in report["phases"] if p["name"] == "recovery")
    assert recovery["latency_measured_ms"]["max"] < 1000
    assert fault["latency_measured_ms"]["max"] > 3000
    assert "load starved" in result.stdout and "SLO VIOLATED" in result.stdout
    assert all(port_free(port) for port in ports_of(report))


def test_an_error_rate_guard_trips_when_completions_are_sparse(tmp_path):
    result, report = run_experiment(DATA / "slow-errors.yaml", tmp_path, *ports())
    assert result.returncode == 3, result.stdout + result.stderr
    guard = report["guard"]
    assert guard is not None and guard["guard"] == "error rate above 50% for 2s"
    inject = report["faults"][0]["actions"][0]["at_s"]
    # the first 502s come back 2 s after the cut; two bad seconds later the guard has tripped
    assert guard["detected_at_s"] - guard["breach_at_s"] <= 2.0, guard
    assert guard["breach_at_s"] - inject <= 6.0, (guard, inject)
    assert guard["breach_to_revert_s"] <= 2.0


def test_a_system_that_is_broken_before_the_fault_gets_no_fault_and_its_own_exit_code(tmp_path):
    dead = free_port()  # nothing listens there: every request is refused from the first one
    text = (
        (DATA / "hanging-front.yaml")
        .read_text()
        .replace("host: http://127.0.0.1:${frontend_port}", f"host: http://127.0.0.1:{dead}")
    )
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace("../../loadtests/", f"{REPO}/loadtests/"))
    result, report = run_experiment(path, tmp_path / "reports", *ports())
    assert result.returncode == 4, result.stdout + result.stderr
    assert report["status"] == "baseline-failed"
    [reason] = [r for r in report["reasons"] if r.startswith("baseline did not hold")]
    assert "no request succeeded" in reason and "connection refused" in reason
    assert reason.endswith("nothing was injected")
    assert report["faults"][0]["actions"] == []
    assert "top error:" in result.stdout and "connection refused" in result.stdout


def variant(tmp_path, name: str, *replacements: tuple[str, str]):
    """A copy of a shipped demo with some text replaced, its locustfile path made absolute."""
    text = (REPO / "experiments" / name).read_text().replace("../loadtests/", f"{REPO}/loadtests/")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


SHORT = ["--var", "baseline=3s", "--var", "fault=5s", "--var", "recovery=8s"]


def test_a_fault_that_touches_no_traffic_makes_a_held_run_not_tested(tmp_path):
    # the DNS fault is for names the frontend never looks up: the SLO holds, and that proves nothing
    path = variant(
        tmp_path,
        "demo-dns-servfail.yaml",
        ('names: ["backend-*.gameday.internal"]', 'names: ["pay-*.gameday.internal"]'),
    )
    result, report = run_experiment(path, tmp_path / "reports", *SHORT, *ports())
    assert result.returncode == 4, result.stdout + result.stderr
    assert report["verdict"] == "not-tested" and report["status"] == "completed"
    assert all(o["held"] for p in report["phases"] for o in p["objectives"])
    [reason] = report["reasons"]
    assert reason.startswith(
        "fault #1 dns-error touched no traffic: nothing went through pay-*.gameday.internal"
    )
    assert "NOT TESTED: THE FAULT TOUCHED NO TRAFFIC" in result.stdout


def test_an_open_model_keeps_its_arrival_rate_through_added_latency(tmp_path):
    # closed-loop users slow down with the service; an arrival rate does not, so nothing is omitted
    path = variant(
        tmp_path,
        "demo-latency.yaml",
        ("users: ${users}\n  spawn_rate: 10", "arrival_rate: 50\n  request_timeout: 2s"),
    )
    result, report = run_experiment(path, tmp_path / "reports", *SHORT, *ports())
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["load"]["arrival_rate"] == 50 and report["load"]["users"] == 100
    phases = {p["name"]: p for p in report["phases"]}
    for name in ("baseline", "fault", "recovery"):
        start, end = phases[name]["start_s"], phases[name]["end_s"]
        sent = [row["requests"] for row in report["series"] if start <= row["t_s"] + 0.5 < end]
        assert 45 <= sum(sent) / len(sent) <= 55, (name, sent)  # 50 a second, with 300 ms added or not
    fault = phases["fault"]
    assert fault["omitted"] == 0 and fault["throughput_drop"] is None and report["warnings"] == []
    assert 300 <= fault["latency_measured_ms"]["p95"] <= 450
