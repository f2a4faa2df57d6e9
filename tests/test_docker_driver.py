"""The docker driver against real containers (busybox httpd), effects measured from the host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import LOCUSTFILE, connects, gameday, wait_for_line
from docker_support import (
    address,
    answers,
    docker_client_or_reason,
    labelled,
    run_web_containers,
    start_labelled_run,
    wait_until,
)

from chaoslib_ext.drivers.base import RunContext
from chaoslib_ext.drivers.docker.driver import DockerDriver
from chaoslib_ext.drivers.docker.engine import engine_endpoint
from chaoslib_ext.drivers.docker.undo import RestoreContainer
from chaoslib_ext.events import Timeline
from chaoslib_ext.faults.injection import FaultError, Injection
from chaoslib_ext.spec import load_experiment
from chaoslib_ext.state.ledger import Ledger, ledgers
from chaoslib_ext.state.trust import RunDirectory

CLIENT, REASON = docker_client_or_reason()
pytestmark = [pytest.mark.docker, pytest.mark.skipif(CLIENT is None, reason=REASON)]

EXPERIMENT = """\
version: 1
title: docker {kind}
variables: {{label: x, host: "http://127.0.0.1:9"}}
safety_variables: [label]  # each test's own random label
target:
  driver: docker
  allow: {{labels: {{gameday.test: "${{label}}"}}}}
load: {{locustfile: {locustfile}, host: "${{host}}", users: 4}}
slo: {{availability: 99%}}
phases: {{warmup: 1s, baseline: 2s, fault: {fault}, recovery: 2s}}
faults:
  - {kind}: {{selector: {{labels: {{role: back}}}}, count: 1, seed: 1{extra}}}
"""


@pytest.fixture
def label():
    yield from labelled(CLIENT)


def experiment_path(tmp_path: Path, kind: str, fault: str = "3s", extra: str = "") -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(EXPERIMENT.format(kind=kind, locustfile=LOCUSTFILE, fault=fault, extra=extra))
    return path


def driver(tmp_path: Path, kind: str, label: str, extra: str = "") -> tuple[object, DockerDriver, Ledger]:
    experiment = load_experiment(experiment_path(tmp_path, kind, extra=extra), {"label": label})
    ledger = Ledger.create(f"docker-test-{label}-{kind}", tmp_path / "state")
    target = DockerDriver(experiment)
    target.start(RunContext(RunDirectory.create(tmp_path / "reports", ledger.run_id), Timeline(), ledger))
    return Injection(0, experiment.faults[0], 1), target, ledger


@pytest.mark.parametrize("kind", ["container-stop", "container-pause"])
def test_stop_and_pause_take_a_container_away_and_revert_brings_it_back(tmp_path, label, kind):
    [back] = run_web_containers(CLIENT, 1, "back", label)
    ip = address(back)
    wait_until(lambda: answers(ip))
    fault, target, ledger = driver(tmp_path, kind, label)
    [record] = fault.apply(target)
    assert record.target == back.name and record.detail["status"] == (
        "exited" if kind == "container-stop" else "paused"
    )
    assert not answers(ip, timeout=0.5)  # seen from outside: no answer
    assert len(ledger.pending) == 1  # the undo is on disk while the fault lasts
    [undone] = fault.revert(target)
    assert undone.detail["status"] == "running"
    wait_until(lambda: answers(address(back)))
    ledger.close()
    assert not ledger.path.exists()


def test_kill_sends_the_signal_and_restart_restarts(tmp_path, label):
    [back] = run_web_containers(CLIENT, 1, "back", label)
    started = back.attrs["State"]["StartedAt"]
    fault, target, _ = driver(tmp_path, "container-restart", label)
    fault.apply(target)
    back.reload()
    assert back.status == "running" and back.attrs["State"]["StartedAt"] != started
    fault, target, _ = driver(tmp_path, "container-kill", label, extra=", signal: SIGKILL")
    [record] = fault.apply(target)
    assert record.detail["signal"] == "SIGKILL"
    wait_until(lambda: (back.reload() or back.status) == "exited")
    assert back.attrs["State"]["ExitCode"] == 137


def test_plan_lists_the_containers_and_refuses_what_is_outside_the_allowlist(tmp_path, label):
    backs = run_web_containers(CLIENT, 2, "back", label)
    path = experiment_path(tmp_path, "container-stop")
    plan = gameday("plan", str(path), "--var", f"label={label}")
    assert plan.returncode == 0, plan.stderr
    assert f"candidates: {backs[0].name}, {backs[1].name}" in plan.stdout
    assert "stop, then start again 1 of 2 running container(s) matching role=back" in plan.stdout
    outside = gameday("plan", str(path), "--var", "label=someone-else")
    assert outside.returncode == 2 and "outside target.allow" in outside.stderr
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace("role: back", "role: nothing-here"))
    none = gameday("plan", str(other), "--var", f"label={label}")
    assert none.returncode == 2 and "no running container matches role=nothing-here" in none.stderr


def test_no_docker_engine_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    result = gameday("plan", str(experiment_path(tmp_path, "container-stop")))
    assert result.returncode == 3
    assert "Docker is not running" in result.stderr and "Traceback" not in result.stderr


def test_a_run_stops_a_backend_holds_the_front_and_leaves_all_running(tmp_path, label):
    [front] = run_web_containers(CLIENT, 1, "front", label)
    backs = run_web_containers(CLIENT, 2, "back", label)
    host = f"http://{address(front)}:8080"
    wait_until(lambda: answers(address(front)))
    result = gameday(
        "run",
        str(experiment_path(tmp_path, "container-stop")),
        "--var",
        f"label={label}",
        "--var",
        f"host={host}",
        "--report-dir",
        str(tmp_path / "reports"),
        "--quiet",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(next((tmp_path / "reports").glob("*/report.json")).read_text())
    actions = [(a["action"], a["target"]) for a in report["faults"][0]["actions"]]
    assert [a for a, _ in actions] == ["stop", "start"] and actions[0][1] in {b.name for b in backs}
    assert all((c.reload() or c.status) == "running" for c in [front, *backs])


def test_a_container_that_exits_during_a_fault_aborts_the_run_and_the_report_says_how(tmp_path, label):
    process, lines, back = paused_run(tmp_path, label, fault="4s")
    try:
        back.kill()  # SIGKILL while paused: it exits with 137 and cannot be unpaused
        assert process.wait(timeout=60) == 3
    finally:
        process.kill()
    output = "".join(lines.queue)
    assert f"container {back.name} exited (exit code 137) during fault #1 container-pause" in output, output
    report = json.loads(next((tmp_path / "reports").glob("*/report.json")).read_text())
    assert report["status"] == "aborted"
    [pause, exited] = report["faults"][0]["actions"]
    assert (pause["action"], exited["action"], exited["detail"]["exit_code"]) == ("pause", "exited", 137)
    assert ledgers() == []  # nothing left to undo: the container is gone, not left paused


def paused_run(tmp_path: Path, label: str, fault: str = "30s"):
    """A run that pauses the back container for `fault`, caught at its pause: the process, its
    output lines, and that container."""
    [front] = run_web_containers(CLIENT, 1, "front", label)
    [back] = run_web_containers(CLIENT, 1, "back", label)
    path = experiment_path(tmp_path, "container-pause", fault=fault)
    process, lines = start_labelled_run(path, tmp_path / "reports", label, front)
    wait_for_line(lines, "container-pause: pause")
    return process, lines, back


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_pause_unpauses_before_the_run_ends(tmp_path, label, sig):
    process, _, back = paused_run(tmp_path, label)
    try:
        assert (back.reload() or back.status) == "paused"
        process.send_signal(sig)
        assert process.wait(timeout=60) == 3
    finally:
        process.kill()
    assert (back.reload() or back.status) == "running" and answers(address(back))
    report = json.loads(next((tmp_path / "reports").glob("*/report.json")).read_text())
    assert report["status"] == "interrupted" and ledgers() == []
    assert [a["action"] for a in report["faults"][0]["actions"]] == ["pause", "unpause"]


def test_a_signal_in_the_middle_of_a_stop_still_starts_the_container_again(tmp_path, label):
    # busybox httpd as PID 1 ignores SIGTERM: docker stop takes its 3 s grace, and is interrupted
    [front] = run_web_containers(CLIENT, 1, "front", label)
    [back] = run_web_containers(CLIENT, 1, "back", label)
    path = experiment_path(tmp_path, "container-stop", fault="30s")
    process, lines = start_labelled_run(path, tmp_path / "reports", label, front)
    try:
        wait_for_line(lines, "-- fault phase")
        wait_until(lambda: (back.reload() or back.attrs["State"]["Status"]) == "running")
        time.sleep(1.0)  # the stop is under way: dockerd finishes it whatever happens to the call
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 3
    finally:
        process.kill()
    wait_until(lambda: (back.reload() or back.status) == "running")
    assert answers(address(back)) and ledgers() == []


def test_recover_starts_a_container_on_the_engine_it_was_stopped_on(tmp_path, label, monkeypatch):
    [back] = run_web_containers(CLIENT, 1, "back", label)
    back.stop(timeout=0)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    dead_run = {"run": "died", "pid": 999_999, "start_ticks": 1}
    undo = RestoreContainer("start", back.id, engine_endpoint()).to_data()
    (state / "died.ledger").write_text(
        json.dumps(dead_run) + "\n" + json.dumps({"id": 1, "what": "stop", "undo": undo}) + "\n"
    )
    monkeypatch.setenv("GAMEDAY_STATE_DIR", str(state))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # where recover runs, another engine (none)
    recovered = gameday("recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert (back.reload() or back.status) == "running"


def test_sigkill_during_a_pause_then_recover_unpauses(tmp_path, label):
    process, _, back = paused_run(tmp_path, label)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    back.reload()
    assert back.status == "paused"
    [state] = ledgers()
    assert not state.alive
    recovered = gameday("recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    back.reload()
    assert back.status == "running" and ledgers() == []


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network faults in containers need root (nsenter, iptables)")
def test_network_faults_inside_a_container_are_seen_from_the_host_and_reverted(tmp_path, label):
    [back] = run_web_containers(CLIENT, 1, "back", label)
    ip = address(back)
    wait_until(lambda: answers(ip))
    fault, target, ledger = driver(tmp_path, "network-partition", label, extra=", mode: refuse")
    [record] = fault.apply(target)
    assert record.detail["path"] == "kernel"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, 8080), timeout=2).close()
    fault.revert(target)
    assert answers(ip)
    fault, target, ledger = driver(
        tmp_path, "network-loss", label, extra=", probability: 30%, direction: upstream"
    )
    fault.apply(target)
    # a connect fails when its SYN is dropped; few at a time, under busybox httpd's short backlog
    failures = connects(ip, 8080, 600, timeout=0.5, at_once=6)["timeout"]
    fault.revert(target)
    spread = 3.29 * (600 * 0.3 * 0.7) ** 0.5
    assert 180 - spread <= failures <= 180 + spread, failures
    rules = subprocess.run(
        ["nsenter", "-t", str(back.attrs["State"]["Pid"]), "-n", "iptables-save"],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0 and "*filter" in rules.stdout, rules.stderr
    assert "gameday:" not in rules.stdout
    assert ledger.pending == {}


def qdiscs(device: str) -> str:
    shown = subprocess.run(["tc", "qdisc", "show", "dev", device], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network faults in containers need root (nsenter, tc)")
def test_bandwidth_on_a_container_shapes_its_own_veth_pair_and_never_the_hosts_interfaces(tmp_path, label):
    [back] = run_web_containers(CLIENT, 1, "back", label)
    ip = address(back)
    wait_until(lambda: answers(ip))
    made = back.exec_run(["sh", "-c", "dd if=/dev/zero of=/www/blob bs=1000 count=300"])
    assert made.exit_code == 0, made.output
    # the host end of the container's eth0, read inside the container (its own sysfs)
    peer_index = back.exec_run(["cat", "/sys/class/net/eth0/iflink"]).output.decode().strip()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[0]: line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    host_veth = names.pop(peer_index)
    others = list(names.values())
    before = {device: qdiscs(device) for device in others}
    fault, target, ledger = driver(
        tmp_path, "network-bandwidth", label, extra=", rate: 100KB/s, direction: both"
    )
    fault.apply(target)
    try:
        assert "tbf" in qdiscs(host_veth)
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://{ip}:8080/blob", timeout=30) as response:
            size = len(response.read())
        rate = size / (time.perf_counter() - started)
        assert {device: qdiscs(device) for device in others} == before  # the host's own: untouched
    finally:
        fault.revert(target)
    assert size == 300_000 and abs(rate - 100_000) <= 0.15 * 100_000, rate
    assert "tbf" not in qdiscs(host_veth) and ledger.pending == {}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network faults in containers need root (nsenter, iptables)")
def test_a_network_fault_on_a_container_that_restarts_is_reported_and_leaves_nothing(tmp_path, label):
    [back] = run_web_containers(CLIENT, 1, "back", label)
    wait_until(lambda: answers(address(back)))
    fault, target, ledger = driver(tmp_path, "network-partition", label, extra=", mode: blackhole")
    fault.apply(target)
    assert not answers(address(back), timeout=0.5)
    back.restart(timeout=1)  # a new network namespace, which never had the rules
    wait_until(lambda: answers(address(back)))
    [record] = fault.revert(target)
    assert (record.action, record.target) == ("restarted", back.name)
    assert ledger.pending == {}
    fault.apply(target)
    back.kill()
    with pytest.raises(
        FaultError, match=r"exited \(exit code 137\) during fault #1 network-partition"
    ) as lost:
        fault.revert(target)
    assert [r.action for r in lost.value.records] == ["exited"] and ledger.pending == {}
