"""`gameday plan`: the resolved timeline and targets, and a guarantee that nothing changes."""

from __future__ import annotations

import socket

from conftest import MINIMAL, REPO, free_port_block, gameday

from chaoslib_ext.plan import make_plan
from chaoslib_ext.spec import load_experiment

WITH_FAULTS = MINIMAL.replace(
    "phases: {baseline: 1s, fault: 1s, recovery: 1s}",
    """\
services:
  backend:
    command: ["{python}", "-m", "chaoslib_ext.demo.backend", "--port", "{port}"]
    replicas: 4
    port: PORT
phases: {warmup: 1s, baseline: 2s, fault: 10s, recovery: 3s}
faults:
  - pod-kill: {selector: {service: backend}, percent: 50%, interval: 4s, after: 1s, seed: 42}
  - pod-kill: {selector: {service: backend}, count: 1, signal: SIGTERM, after: 9s}""",
)


def test_injections_are_scheduled_inside_the_fault_phase(experiment_file):
    plan = make_plan(load_experiment(experiment_file(WITH_FAULTS.replace("PORT", "18400"))))
    assert [(p.name, p.start, p.end) for p in plan.phases] == [
        ("warmup", 0, 1),
        ("baseline", 1, 3),
        ("fault", 3, 13),
        ("recovery", 13, 16),
    ]
    assert [(i.at, i.fault_index) for i in plan.injections] == [(4, 0), (8, 0), (12, 0), (12, 1)]
    first, second = plan.faults
    assert first.per_injection == 2 and first.seed == 42
    assert first.candidates == ("backend-0", "backend-1", "backend-2", "backend-3")
    assert second.per_injection == 1 and "SIGTERM" in second.description
    assert plan.duration == 16


def test_plan_prints_targets_and_timeline_and_starts_nothing(experiment_file):
    port = free_port_block(4)
    path = experiment_file(WITH_FAULTS.replace("PORT", str(port)))
    result = gameday("plan", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"backend: 4 replica(s) [backend-0 :{port}, backend-1 :{port + 1}" in out
    assert "00:04.0  inject fault #1 pod-kill" in out
    assert (
        "#1 pod-kill: SIGKILL 50% of 4 live replica(s) of backend (2 now), "
        "chosen at random with seed 42, every 4s" in out
    )
    assert "candidates: backend-0, backend-1, backend-2, backend-3" in out
    assert "availability >= 99%" in out
    assert "Nothing was changed (dry run)." in out
    for offset in range(4):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port + offset)) != 0, "plan started a service"


def test_plan_of_the_demo_matches_its_file():
    result = gameday("plan", str(REPO / "experiments" / "demo-pod-kill.yaml"), "--var", "fault=20s")
    assert result.returncode == 0
    assert "00:10.0 - 00:30.0  fault     (judged)" in result.stdout
