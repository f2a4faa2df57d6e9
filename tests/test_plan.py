"""`gameday plan`: the resolved timeline and targets, and a guarantee that nothing changes."""

from __future__ import annotations

import os
import socket

from conftest import MINIMAL, REPO, free_port_block, gameday

from chaoslib_ext.plan.blast import blast_radius
from chaoslib_ext.plan.make import make_plan
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
        "+200ms ±50ms (uniform) latency on responses (+200ms per request/response exchange) "
        "on the traffic to 1 of 1 replica(s)" in latency.description
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


def test_a_seed_in_the_experiment_names_the_first_victims_and_without_one_the_run_draws_it(experiment_file):
    port = free_port_block(4)
    path = experiment_file(WITH_FAULTS.replace("PORT", str(port)))
    plan = make_plan(load_experiment(path))
    first, second = plan.faults
    assert first.first_victims == ("backend-0", "backend-3") and len(second.first_victims) == 1
    out = gameday("plan", str(path)).stdout
    assert "first injection hits: backend-0, backend-3 (seed 42)" in out
    assert "chosen at random (seed drawn at run time, recorded in the report)" in out  # fault #2 has no seed
    assert out.count("first injection hits") == 1


def test_plan_warns_when_a_fault_hits_a_replica_no_traffic_reaches(experiment_file):
    # two replicas, the load goes straight to backend-0, and nothing else calls backend
    port = free_port_block(2)
    text = MINIMAL.replace('host: "http://127.0.0.1:9"', f'host: "http://127.0.0.1:{port}"').replace(
        "phases: {baseline: 1s, fault: 1s, recovery: 1s}",
        f"""\
services:
  backend:
    command: ["{{python}}", "-m", "chaoslib_ext.demo.backend", "--port", "{{port}}"]
    replicas: 2
    port: {port}
phases: {{baseline: 2s, fault: 4s, recovery: 2s}}
faults:
  - pod-kill: {{selector: {{service: backend}}, count: 1, seed: SEED}}""",
    )
    hits_backend_1 = gameday(
        "plan", str(experiment_file(text.replace("SEED", "0")))
    )  # seed 0 picks backend-1
    assert "first injection hits: backend-1 (seed 0)" in hits_backend_1.stdout
    assert (
        "fault #1 pod-kill hits backend-1, which nothing in this experiment sends traffic to "
        f"(the load goes to 127.0.0.1:{port} and no service is given backend's address)"
        in hits_backend_1.stdout
    )
    hits_backend_0 = gameday(
        "plan", str(experiment_file(text.replace("SEED", "1")))
    )  # seed 1: the load's own
    assert "first injection hits: backend-0 (seed 1)" in hits_backend_0.stdout
    assert "Warnings:" not in hits_backend_0.stdout
    unseeded = gameday("plan", str(experiment_file(text.replace(", seed: SEED", ""))))
    assert "fault #1 pod-kill may hit backend-1, which nothing" in unseeded.stdout


def test_plan_shows_the_defaults_it_takes_and_the_ports_already_taken(experiment_file):
    port = free_port_block(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        out = gameday("plan", str(experiment_file(WITH_FAULTS.replace("PORT", str(port))))).stdout
    assert "restart always after 1s" in out
    assert "ready when its port accepts connections (within 15s); runs in " in out
    assert "limit: none (target.max_share is not set)" in out
    assert f"port {port + 1} (backend-1) is in use now by pid {os.getpid()} (" in out
