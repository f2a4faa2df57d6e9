"""`gameday plan`: the resolved timeline and targets, and a guarantee that nothing changes."""

from __future__ import annotations

import socket

from conftest import MINIMAL, REPO, free_port_block, gameday

from chaoslib_ext.blast import blast_radius
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
    assert [(a.at, a.fault_index, a.kind) for a in plan.actions] == [
        (4, 0, "apply"),
        (8, 0, "apply"),
        (12, 0, "apply"),
        (12, 1, "apply"),
    ]
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
    assert "3 of 4 replicas of backend (75%) at once, at +12s (fault #1, #2)" in out  # the blast radius
    assert not any(listening(port + offset) for offset in range(4)), "plan started a service"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_plan_of_the_demo_matches_its_file():
    result = gameday("plan", str(REPO / "experiments" / "demo-pod-kill.yaml"), "--var", "fault=20s")
    assert result.returncode == 0
    assert "00:10.0 - 00:30.0  fault     (judged)" in result.stdout


def test_lasting_faults_are_reverted_at_the_end_of_their_duration_or_of_the_fault_phase(experiment_file):
    text = MINIMAL.replace(
        "load: {",
        """\
services:
  backend: {command: ["{python}", "-m", "chaoslib_ext.demo.backend", "--port", "{port}"], port: 18400}
  frontend: {command: ["{python}", "-c", "pass", "{proxied:backend}", "{dns}"]}
load: {""",
    ).replace(
        "phases: {baseline: 1s, fault: 1s, recovery: 1s}",
        """\
phases: {warmup: 1s, baseline: 2s, fault: 10s, recovery: 3s}
faults:
  - network-latency: {to: backend, delay: 200ms, jitter: 50ms, after: 2s, duration: 3s}
  - dns-error: {names: ["*.gameday.internal"], rcode: NXDOMAIN, after: 4s}""",
    )
    plan = make_plan(load_experiment(experiment_file(text)))
    assert [(a.at, a.fault_index, a.kind) for a in plan.actions] == [
        (5, 0, "apply"),
        (7, 1, "apply"),
        (8, 0, "revert"),
        (13, 1, "revert"),
    ]
    latency, dns = plan.faults
    assert (
        "+200ms ±50ms (uniform) latency (both directions) on the traffic to 1 of 1 replica(s)"
        in latency.description
    )
    assert dns.description == "dns-error: NXDOMAIN for *.gameday.internal"


def test_blast_radius_counts_killed_replicas_as_held_until_their_restart(experiment_file):
    # 50 % of 4 every 4 s: with a 5 s restart delay the victims of +4 s are still down at +8 s
    text = WITH_FAULTS.replace("PORT", "18400").replace(
        "replicas: 4", "replicas: 4\n    restart: {delay: 5s}"
    )
    [radius] = blast_radius(make_plan(load_experiment(experiment_file(text))))
    assert (radius.at_most, radius.of, radius.at, radius.faults) == (4, 4, 8, (1,))
    quick = text.replace("delay: 5s", "delay: 1s")
    [radius] = blast_radius(make_plan(load_experiment(experiment_file(quick))))
    assert (radius.at_most, radius.at, radius.faults) == (3, 12, (1, 2))  # both faults fire at +12 s


def test_a_plan_over_max_share_is_refused_before_anything_starts(experiment_file):
    port = free_port_block(4)
    text = WITH_FAULTS.replace("PORT", str(port)).replace(
        "title: minimal", "title: m\ntarget: {max_share: 60%}"
    )
    path = experiment_file(text)
    for command in ("validate", "plan", "run"):
        refused = gameday(command, str(path))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (
            "over target.max_share 60%" in refused.stderr and ":3:" in refused.stderr
        )  # the line of max_share
    assert not any(listening(port + i) for i in range(4))
    assert gameday("validate", str(experiment_file(text.replace("60%", "75%")))).returncode == 0


def test_faults_on_a_service_outside_the_allowlist_are_refused(experiment_file):
    text = WITH_FAULTS.replace("PORT", "18400").replace(
        "title: minimal", "title: m\ntarget: {allow: {services: [frontend]}}"
    )
    refused = gameday("validate", str(experiment_file(text)))
    assert refused.returncode == 2
    assert (
        "faults[0]: pod-kill on service 'backend', which is outside target.allow.services" in refused.stderr
    )
