"""DNS faults inside real containers, measured by lookups made from inside their network namespace
(the path their own processes take) and by their own tools (`docker exec ... nslookup`).

The containers sit on a network the test creates, so their resolver is Docker's embedded one
(127.0.0.11) and every name looked up is one of the test's own containers: no query leaves the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LOCUSTFILE, gameday, wait_for_line
from docker_support import (
    LOOKUPS,
    address,
    answers,
    docker_client_or_reason,
    labelled,
    lookups,
    run_web_containers,
    sandbox,
    start_labelled_run,
    wait_until,
)

from chaoslib_ext.drivers.base import RunContext
from chaoslib_ext.drivers.docker.driver import DockerDriver
from chaoslib_ext.errors import RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.faults.injection import Injection
from chaoslib_ext.spec import load_experiment
from chaoslib_ext.state.ledger import Ledger, ledgers
from chaoslib_ext.state.trust import RunDirectory

CLIENT, REASON = docker_client_or_reason()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.skipif(CLIENT is None, reason=REASON),
    pytest.mark.skipif(os.geteuid() != 0, reason="DNS faults in containers need root (setns, iptables)"),
]

EXPERIMENT = """\
version: 1
title: docker dns
variables: {{label: x, host: "http://127.0.0.1:9"}}
safety_variables: [label]  # each test's own random label
target: {{driver: docker, allow: {{labels: {{gameday.test: "${{label}}"}}}}}}
load: {{locustfile: {locustfile}, host: "${{host}}", users: 2}}
slo: {{availability: 99%}}
phases: {{warmup: 1s, baseline: 2s, fault: {fault}, recovery: 2s}}
faults:
  - {kind}: {{selector: {{labels: {{role: {role}}}}}, names: ["gdtest-*-back-*"], seed: 7{extra}}}
"""


class Client:
    """A long-lived resolver client inside a container's network namespace."""

    def __init__(self, container) -> None:
        self.process = subprocess.Popen(
            ["nsenter", f"--net={sandbox(container)}", sys.executable, "-c", LOOKUPS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def lookups(self, name: str, count: int) -> tuple[dict[str, int], float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{name} {count}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the lookup client died"
        found = json.loads(line)
        return found["tally"], found["slowest"]

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def label():
    yield from labelled(CLIENT)


@pytest.fixture
def stack(label):
    """A front and a back container on a network of the test's own."""
    network = CLIENT.networks.create(f"gdtest-{label}", labels={"gameday.test": label})
    [front] = run_web_containers(CLIENT, 1, "front", label, network=network.name)
    [back] = run_web_containers(CLIENT, 1, "back", label, network=network.name)
    wait_until(lambda: answers(address(back)))
    return front, back


def redirects(container) -> list[str]:
    rules = subprocess.run(
        ["nsenter", f"--net={sandbox(container)}", "iptables-save", "-t", "nat"],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0 and "*nat" in rules.stdout, rules.stderr
    return [line for line in rules.stdout.splitlines() if "gameday:" in line]


def experiment_path(
    tmp_path: Path, kind: str, fault: str = "3s", extra: str = "", role: str = "front"
) -> Path:
    path = tmp_path / f"{kind}.yaml"
    text = EXPERIMENT.format(kind=kind, locustfile=LOCUSTFILE, fault=fault, extra=extra, role=role)
    path.write_text(text)
    return path


def driver(
    tmp_path: Path, kind: str, label: str, extra: str, role: str = "front"
) -> tuple[object, DockerDriver, Ledger]:
    experiment = load_experiment(experiment_path(tmp_path, kind, extra=extra, role=role), {"label": label})
    ledger = Ledger.create(f"docker-dns-{label}-{kind}", tmp_path / "state")
    target = DockerDriver(experiment)
    target.start(RunContext(RunDirectory.create(tmp_path / "reports", ledger.run_id), Timeline(), ledger))
    return Injection(0, experiment.faults[0], 7), target, ledger


def test_dns_error_fails_the_named_share_of_a_containers_lookups_and_revert_restores_them(
    tmp_path, label, stack
):
    front, back = stack
    real = f"NOERROR={address(back)}"
    client = Client(front)  # one socket throughout: its flow to the resolver exists before the fault
    try:
        assert client.lookups(back.name, 20)[0] == {real: 20}
        fault, target, ledger = driver(tmp_path, "dns-error", label, ", rcode: SERVFAIL, probability: 40%")
        try:
            [record] = fault.apply(target)
            assert record.target == front.name and record.detail["upstream"] == "127.0.0.11"
            assert len(redirects(front)) == 1 and len(ledger.pending) == 2  # the redirect, the flows
            tally, _ = client.lookups(back.name, 1000)
            spread = 3.29 * (1000 * 0.4 * 0.6) ** 0.5  # binomial, 99.9 %
            assert 400 - spread <= tally.get("SERVFAIL", 0) <= 400 + spread, tally
            assert set(tally) == {"SERVFAIL", real}, tally  # the rest are the true answer, forwarded
            assert lookups(front, front.name, 20)[0] == {f"NOERROR={address(front)}": 20}  # not named
            assert lookups(back, back.name, 20)[0] == {real: 20}  # not selected
            [reverted] = fault.revert(target)
        finally:
            target.stop()
        assert reverted.action == "revert" and reverted.detail["matched"] == 1000
        assert client.lookups(back.name, 50)[0] == {real: 50}  # the same socket is let go of
    finally:
        client.close()
    assert redirects(front) == [] and ledger.pending == {}


def test_spoof_and_delay_are_what_the_containers_own_tools_see(tmp_path, label, stack):
    front, back = stack
    fault, target, _ = driver(tmp_path, "dns-spoof", label, ", addresses: [192.0.2.7]")
    try:
        fault.apply(target)
        seen = front.exec_run(["nslookup", back.name]).output.decode()
        assert "192.0.2.7" in seen and address(back) not in seen, seen
        fault.revert(target)
        seen = front.exec_run(["nslookup", back.name]).output.decode()
        assert address(back) in seen and "192.0.2.7" not in seen, seen
    finally:
        target.stop()
    fault, target, _ = driver(tmp_path, "dns-delay", label, ", delay: 400ms")
    try:
        fault.apply(target)
        _, slowest_during = lookups(front, back.name, 3)
        fault.revert(target)
    finally:
        target.stop()
    _, slowest_after = lookups(front, back.name, 3)
    assert 0.4 <= slowest_during < 1.0 and slowest_after < 0.2, (slowest_during, slowest_after)


def test_a_restart_between_two_dns_faults_loses_the_first_not_the_second(tmp_path, label, stack):
    front, back = stack
    first, target, ledger = driver(tmp_path, "dns-error", label, "")
    spec = first.spec
    second = Injection(1, spec, 8)
    try:
        first.apply(target)
        assert lookups(front, back.name, 3)[0] == {"SERVFAIL": 3}
        front.restart(timeout=1)  # a new namespace: the first fault's redirect went with the old one
        assert lookups(front, back.name, 3)[0] == {f"NOERROR={address(back)}": 3}
        second.apply(target)  # the same container, started again: a server in its new namespace
        assert lookups(front, back.name, 3)[0] == {"SERVFAIL": 3}
        [lost] = first.revert(target)
        assert lookups(front, back.name, 3)[0] == {"SERVFAIL": 3}  # the second fault is untouched
        [reverted] = second.revert(target)
    finally:
        target.stop()
    assert (lost.action, lost.target, reverted.action) == ("restarted", front.name, "revert")
    assert redirects(front) == [] and ledger.pending == {}
    assert lookups(front, back.name, 5)[0] == {f"NOERROR={address(back)}": 5}


def test_a_container_on_the_host_network_is_refused_and_the_host_is_untouched(tmp_path, label, stack):
    image = stack[0].image
    CLIENT.containers.run(
        image,
        ["sleep", "300"],
        detach=True,
        name=f"gdtest-{label}-hostnet",
        network_mode="host",
        labels={"gameday.test": label, "role": "hostnet"},
    )
    host_rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True)
    fault, target, ledger = driver(tmp_path, "dns-error", label, "", role="hostnet")
    try:
        with pytest.raises(RunAborted, match=r"has no network namespace of its own \(network mode 'host'\)"):
            fault.apply(target)
    finally:
        target.stop()
    after = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True)
    assert "gameday:" not in after.stdout and ledger.pending == {}
    assert len(after.stdout.splitlines()) == len(host_rules.stdout.splitlines())


def test_sigkill_during_a_dns_fault_then_recover_gives_the_container_its_resolver_back(
    tmp_path, label, stack
):
    front, back = stack
    client = Client(front)
    assert client.lookups(back.name, 1)[0] == {f"NOERROR={address(back)}": 1}
    process, lines = start_labelled_run(
        experiment_path(tmp_path, "dns-error", fault="30s"), tmp_path / "reports", label, front
    )
    try:
        wait_for_line(lines, "dns-error: inject")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    try:
        assert len(redirects(front)) == 1
        assert client.lookups(back.name, 2)[0] == {"no answer": 2}  # redirected to a server that died
        [state] = ledgers()
        assert not state.alive
        recovered = gameday("recover")
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert redirects(front) == [] and ledgers() == []
        assert client.lookups(back.name, 3)[0] == {f"NOERROR={address(back)}": 3}  # also the old socket
    finally:
        client.close()


def test_plan_lists_the_containers_whose_lookups_are_hit(tmp_path, label, stack):
    front, _ = stack
    path = experiment_path(tmp_path, "dns-error", extra=", rcode: NXDOMAIN")
    plan = gameday("plan", str(path), "--var", f"label={label}")
    assert plan.returncode == 0, plan.stderr
    assert f"candidates: {front.name}" in plan.stdout
    assert "NXDOMAIN for gdtest-*-back-* for the UDP lookups of 1 of 1 running container(s)" in plan.stdout
