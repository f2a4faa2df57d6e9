"""The kernel path, as root: replicas in namespaces of their own, faults as iptables rules and tc
qdiscs there, measured from the host with real connections; revert and `gameday recover` leave
nothing behind."""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, connects, free_port_block, gameday, start_run, wait_for_line

from chaoslib_ext.faults import KINDS
from chaoslib_ext.netfault.kernel import Namespace, NamespaceFactory, fault_rules, run
from chaoslib_ext.state.ledger import Ledger, ledgers
from chaoslib_ext.state.undo import KillProcessGroup, parse

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the kernel path needs root (network namespaces, iptables, tc)"
    ),
    pytest.mark.skipif(
        shutil.which("iptables") is None, reason="iptables is not installed (apt-get install iptables)"
    ),
]

TRIES = 1000
Z_999 = 3.29


def leftovers() -> dict[str, list[str]]:
    """What a run may have made: gameday namespaces and veth interfaces, and gameday rules in the host's
    own tables (a run puts its rules inside namespaces; see rules_in_namespace)."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
    return {
        "namespaces": [n.split()[0] for n in namespaces if n.startswith("gd-")],  # "NAME (id: N)"
        "links": [line for line in links if ": gd" in line],
        "rules": [line for line in rules if "gameday:" in line],
    }


@pytest.fixture
def namespace(tmp_path: Path):
    ledger = Ledger.create("kernel-test", tmp_path / "state")
    factory = NamespaceFactory(f"t{os.getpid() % 1000:03d}", ledger)
    namespace = factory.create("svc", 0)
    yield namespace, ledger
    for entry_id, entry in reversed(list(ledger.pending.items())):  # rules a failed test left
        if entry["undo"]["kind"] not in ("netns", "link"):
            parse(entry["undo"], "test").perform()
            ledger.done(entry_id)
    problems = factory.remove_all()
    assert problems == []
    ledger.close()
    assert not ledger.path.exists()


def serve_in(namespace: Namespace, port: int, directory: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *namespace.exec_prefix(),
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            namespace.address,
            "--directory",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            http.client.HTTPConnection(namespace.address, port, timeout=1).connect()
            return process
        except OSError:
            assert time.monotonic() < deadline, "server in the namespace did not start"
            time.sleep(0.05)


ACCEPTOR = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(4096)
while True:
    server.accept()[0].close()
"""


def acceptor_in(namespace: Namespace, port: int) -> subprocess.Popen[bytes]:
    """A listener with a deep backlog, so that only the fault (not a full queue) drops SYNs."""
    process = subprocess.Popen(
        [*namespace.exec_prefix(), sys.executable, "-c", ACCEPTOR, namespace.address, str(port)]
    )
    deadline = time.monotonic() + 10
    while connects(namespace.address, port, 1, timeout=1.0)["ok"] != 1:
        assert time.monotonic() < deadline, "listener in the namespace did not start"
        time.sleep(0.05)
    return process


def apply(namespace: Namespace, ledger: Ledger, kind: str, port: int, **options) -> list:
    fault = KINDS[kind](direction=options.pop("direction", "upstream"), **options)
    rules = fault_rules(namespace, fault, port, "gameday:test:fault-1")
    applied = []
    for rule in rules:
        applied.append((ledger.record(rule.what, rule.undo), rule))
        run(rule.add, rule.place)
    return applied


def revert(ledger: Ledger, applied: list) -> None:
    for entry, rule in reversed(applied):
        assert rule.undo.perform() is None
        ledger.done(entry)


def rules_in(namespace: Namespace) -> list[str]:
    saved = subprocess.run([*namespace.exec_prefix(), "iptables-save"], capture_output=True, text=True).stdout
    return [line for line in saved.splitlines() if "gameday:" in line]


def test_kernel_loss_drops_the_asked_share_of_packets(namespace, tmp_path):
    ns, ledger = namespace
    port = 8080
    server = acceptor_in(ns, port)
    try:
        applied = apply(ns, ledger, "network-loss", port, probability=0.3)
        assert len(rules_in(ns)) == 1
        # a connect fails within 0.5 s exactly when its SYN is dropped (the retry comes after 1 s)
        outcomes = connects(ns.address, port, TRIES, timeout=0.5)
        spread = Z_999 * math.sqrt(TRIES * 0.3 * 0.7)
        assert TRIES * 0.3 - spread <= outcomes["timeout"] <= TRIES * 0.3 + spread, outcomes
        revert(ledger, applied)
        assert rules_in(ns) == []
        assert connects(ns.address, port, 100, timeout=1.0)["ok"] == 100
    finally:
        server.terminate()
        server.wait(timeout=5)


def test_kernel_partition_refuses_or_blackholes_every_attempt(namespace, tmp_path):
    ns, ledger = namespace
    port = 8081
    server = acceptor_in(ns, port)
    try:
        applied = apply(ns, ledger, "network-partition", port, mode="refuse")
        assert connects(ns.address, port, 100, timeout=1.0)["refused"] == 100
        revert(ledger, applied)
        applied = apply(ns, ledger, "network-partition", port, mode="blackhole")
        assert connects(ns.address, port, 50, timeout=0.3)["timeout"] == 50
        revert(ledger, applied)
        assert connects(ns.address, port, 50, timeout=1.0)["ok"] == 50
        assert rules_in(ns) == []
    finally:
        server.terminate()
        server.wait(timeout=5)


def test_kernel_bandwidth_limit_holds_within_15_percent(namespace, tmp_path):
    ns, ledger = namespace
    (tmp_path / "blob.bin").write_bytes(b"x" * 600_000)
    port = 8082
    server = serve_in(ns, port, tmp_path)
    try:
        applied = apply(ns, ledger, "network-bandwidth", port, direction="downstream", rate=200_000)
        qdiscs = subprocess.run(
            [*ns.exec_prefix(), "tc", "qdisc", "show", "dev", ns.inner_veth], capture_output=True, text=True
        ).stdout
        assert "tbf" in qdiscs
        started = time.perf_counter()
        connection = http.client.HTTPConnection(ns.address, port, timeout=30)
        connection.request("GET", "/blob.bin")
        size = len(connection.getresponse().read())
        connection.close()
        rate = size / (time.perf_counter() - started)
        assert abs(rate - 200_000) <= 0.15 * 200_000, rate
        revert(ledger, applied)
        qdiscs = subprocess.run(
            [*ns.exec_prefix(), "tc", "qdisc", "show", "dev", ns.inner_veth], capture_output=True, text=True
        ).stdout
        assert "tbf" not in qdiscs
    finally:
        server.terminate()
        server.wait(timeout=5)


def kernel_run(report_dir: Path, fault: str, block: int) -> list[str]:
    """Arguments of a `gameday run` of the root kernel-loss demo on free ports."""
    return [
        "run",
        str(REPO / "experiments" / "root-kernel-loss.yaml"),
        "--report-dir",
        str(report_dir),
        "--var",
        "baseline=2s",
        "--var",
        f"fault={fault}",
        "--var",
        f"frontend_port={block}",
        "--var",
        f"backend_port={block + 1}",
    ]


def test_a_kernel_run_leaves_nothing_behind(tmp_path):
    before = leftovers()
    block = free_port_block(4)
    result = gameday(*kernel_run(tmp_path, "4s", block), "--quiet")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(next(tmp_path.glob("*/report.json")).read_text())
    assert {a["detail"]["path"] for a in report["faults"][0]["actions"]} == {"kernel"}
    assert leftovers() == before
    assert ledgers() == []


def test_sigkill_then_recover_removes_namespaces_rules_and_processes(tmp_path):
    before = leftovers()
    block = free_port_block(4)
    variables = kernel_run(tmp_path, "20s", block)[4:]  # the --var pairs
    process, lines = start_run(REPO / "experiments" / "root-kernel-loss.yaml", tmp_path, *variables)
    try:
        wait_for_line(lines, "inject backend-2")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    try:
        _check_leftovers_then_recover(before)
    finally:
        gameday("recover")  # whatever an assertion above interrupted, leave the machine clean


def _check_leftovers_then_recover(before: dict[str, list[str]]) -> None:
    # the kill really left things behind: namespaces with their rules, and running processes
    [state] = ledgers()
    assert not state.alive and state.pending
    groups = [e.action.pgid for e in state.pending if isinstance(e.action, KillProcessGroup)]
    assert len(groups) == 5  # three backends, the frontend, Locust
    assert all(_group_alive(pgid) for pgid in groups)
    made = [n for n in leftovers()["namespaces"] if n not in before["namespaces"]]
    assert len(made) == 3
    assert all(len(rules_in_namespace(name)) == 1 for name in made)
    refused = gameday("run", str(REPO / "experiments" / "root-kernel-loss.yaml"))
    assert refused.returncode == 3 and "gameday recover" in refused.stderr
    recovered = gameday("recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "undone:" in recovered.stdout
    assert leftovers() == before
    assert ledgers() == []
    assert not any(_group_alive(pgid) for pgid in groups)
    again = gameday("recover")
    assert again.returncode == 0 and "nothing to recover" in again.stdout  # idempotent


def rules_in_namespace(name: str) -> list[str]:
    saved = subprocess.run(
        ["ip", "netns", "exec", name, "iptables-save"], capture_output=True, text=True
    ).stdout
    return [line for line in saved.splitlines() if "gameday:" in line]


def _group_alive(pgid: int) -> bool:
    """Some process of the group still runs (zombies, waiting for a parent that died, do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
