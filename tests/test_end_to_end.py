"""Whole runs of the real `gameday` command: real services, real Locust load, real kills."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

import jsonschema
import pytest
from conftest import REPO, free_port, free_port_block, gameday, start_run, wait_for_line

from chaoslib_ext.drivers import driver_for
from chaoslib_ext.history.store import History
from chaoslib_ext.spec import load_experiment, parse_overrides
from chaoslib_ext.spec.schema import load_schema
from chaoslib_ext.state.ledger import ledgers
from chaoslib_ext.state.locks import TargetLock
from chaoslib_ext.state.undo import KillProcessGroup

pytestmark = pytest.mark.slow

SHORT = ["--var", "baseline=3s", "--var", "fault=5s", "--var", "recovery=10s", "--var", "users=5"]


def demo_ports() -> list[str]:
    block = free_port_block(4)
    return ["--var", f"frontend_port={block}", "--var", f"backend_port={block + 1}"]


def run_experiment(
    path: Path | str, report_dir: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, dict]:
    result = gameday("run", str(path), "--report-dir", str(report_dir), *extra)
    assert report_dir.is_dir(), f"no report (exit code {result.returncode}): {result.stderr}"
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    jsonschema.validate(report, load_schema("report"))
    assert "Traceback" not in result.stderr, result.stderr
    return result, report


def port_free(port: int) -> bool:
    """Nothing listens there any more (a bind test would trip over TIME_WAIT sockets)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def ports_of(report: dict) -> list[int]:
    return [
        e["detail"]["port"]
        for e in report["timeline"]
        if e["action"] == "started" and e["detail"].get("port")
    ]


def test_killing_one_of_three_backends_holds_the_slo(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-pod-kill.yaml", tmp_path, *SHORT, *demo_ports()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["verdict"] == "held" and report["status"] == "completed"
    assert "SLO HELD" in result.stdout
    [fault] = report["faults"]
    [kill] = fault["actions"]
    assert kill["action"] == "kill" and kill["target"].startswith("backend-")
    victim = kill["target"]
    events = [(e["action"], e["at_s"]) for e in report["timeline"] if e["subject"] == victim]
    actions = [action for action, _ in events]
    assert actions[-3:] == ["exited", "restarted", "ready"], events
    fault_phase = next(p for p in report["phases"] if p["name"] == "fault")
    assert fault_phase["requests"] > 100 and fault_phase["availability"] >= 0.995
    assert report["recovery"]["objective"]["held"]
    assert all(port_free(port) for port in ports_of(report)), "a service outlived the run"
    run_dir = next(tmp_path.iterdir())
    junit = ET.parse(run_dir / "junit.xml").getroot()
    assert junit.get("failures") == "0" and int(junit.get("tests")) >= 10
    assert (run_dir / "report.md").read_text().startswith("# ✅ SLO held")
    assert (run_dir / "logs" / "locust.log").is_file()


def test_two_locust_processes_are_judged_as_one(tmp_path):
    """load.processes: 2 — Locust forks two workers; gameday's master merges their seconds, and
    the verdict, the failures and the report are those of one load."""
    text = (REPO / "experiments" / "demo-kill-all-backends.yaml").read_text()
    path = tmp_path / "two-processes.yaml"
    path.write_text(
        text.replace("  spawn_rate: 10\n", "  spawn_rate: 10\n  processes: 2\n").replace(
            "../loadtests/", f"{REPO}/loadtests/"
        )
    )
    result, report = run_experiment(path, tmp_path / "reports", *SHORT, *demo_ports())
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["load"]["processes"] == 2
    joined = [e for e in report["timeline"] if e["action"] == "worker joined"]
    assert len(joined) == 2 and all(e["detail"]["clock_offset_s"] == 0 for e in joined), joined
    workers = report["load"]["workers"]
    assert [w["state"] for w in workers] == ["joined", "joined"] and all(w["requests"] > 0 for w in workers)
    assert result.stderr.count("joined (clock offset") == 2, result.stderr
    phases = {p["name"]: p for p in report["phases"]}
    assert phases["baseline"]["availability"] == 1.0 and phases["baseline"]["requests"] > 20
    assert phases["fault"]["availability"] < 0.9 and phases["fault"]["failures"] > 5
    assert report["verdict"] == "violated"


def test_load_from_two_workers_started_on_their_own_is_judged_as_one(tmp_path):
    """demo-workers.yaml as its description says: the run waits for two `gameday worker` processes
    (started after it says how), and judges their merged load like one."""
    master_port = str(free_port())
    process, lines = start_run(
        REPO / "experiments" / "demo-workers.yaml",
        tmp_path,
        *SHORT,
        *demo_ports(),
        "--var",
        f"master_port={master_port}",
    )
    workers = []
    try:
        said = wait_for_line(lines, "start each with: gameday worker")[-1]
        command = said.split("start each with: ")[1].split()
        assert command[:3] == ["gameday", "worker", "--master"] and command[3] == f"127.0.0.1:{master_port}"
        for _ in range(2):
            workers.append(subprocess.Popen([sys.executable, "-m", "chaoslib_ext", *command[1:]], cwd=REPO))
        assert process.wait(timeout=180) == 1
        assert all(worker.wait(timeout=30) == 0 for worker in workers)  # the master told them to quit
    finally:
        for child in [process, *workers]:
            if child.poll() is None:
                child.kill()
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    jsonschema.validate(report, load_schema("report"))
    assert report["load"]["processes"] == 2
    assert [w["state"] for w in report["load"]["workers"]] == ["joined", "joined"]
    phases = {p["name"]: p for p in report["phases"]}
    assert phases["baseline"]["availability"] == 1.0 and phases["baseline"]["requests"] > 20
    assert phases["fault"]["availability"] < 0.9 and phases["fault"]["failures"] > 5
    assert report["verdict"] == "violated"
    assert "## Load workers" in (run_dir / "report.md").read_text()


def test_killing_every_backend_violates_availability_in_the_fault_phase(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-kill-all-backends.yaml", tmp_path, *SHORT, *demo_ports()
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["verdict"] == "violated"
    assert len(report["faults"][0]["actions"]) == 3
    baseline = next(p for p in report["phases"] if p["name"] == "baseline")
    assert all(o["held"] for o in baseline["objectives"]), "the fault leaked into the baseline"
    fault_phase = next(p for p in report["phases"] if p["name"] == "fault")
    availability = next(o for o in fault_phase["objectives"] if o["name"] == "availability")
    assert not availability["held"] and fault_phase["failures"] > 50
    assert any(r.startswith("fault phase: availability not held") for r in report["reasons"])
    assert any(b["phase"] == "fault" and b["worst_availability"] < 0.5 for b in report["breaches"])
    run_dir = next(tmp_path.iterdir())
    junit = ET.parse(run_dir / "junit.xml").getroot()
    failed = [case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None]
    assert "availability >= 99.5%" in failed
    assert (run_dir / "report.md").read_text().startswith("# ❌ SLO violated")


def test_a_slo_the_system_misses_before_any_fault_stops_the_run_before_the_fault(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-tight-slo.yaml", tmp_path, *SHORT, *demo_ports()
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert report["status"] == "baseline-failed" and report["verdict"] == "not-tested"
    assert report["reasons"][0].startswith("baseline did not hold: p95 ")
    assert report["reasons"][0].endswith("nothing was injected")
    assert report["faults"][0]["actions"] == []
    assert [p["name"] for p in report["phases"]] == ["warmup", "baseline"]
    assert "BASELINE DID NOT HOLD, NOTHING INJECTED" in result.stdout
    assert (next(tmp_path.iterdir()) / "report.md").read_text().startswith("# ⛔ Baseline did not hold")


def test_latency_to_the_backends_violates_the_p95_objective_only_while_it_lasts(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-latency.yaml", tmp_path, *SHORT, *demo_ports()
    )
    assert result.returncode == 1, result.stdout + result.stderr
    phases = {p["name"]: p for p in report["phases"]}
    assert all(o["held"] for o in phases["baseline"]["objectives"])
    p95 = next(o for o in phases["fault"]["objectives"] if o["name"] == "p95")
    assert not p95["held"] and 300 <= p95["actual"] <= 400
    assert all(o["held"] for o in phases["recovery"]["objectives"])
    actions = report["faults"][0]["actions"]
    assert [a["action"] for a in actions] == ["inject"] * 3 + ["revert"] * 3
    assert all(a["detail"]["connections"] > 0 for a in actions if a["action"] == "revert")


def test_a_dns_outage_is_survived_thanks_to_the_frontends_stale_cache(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-dns-servfail.yaml", tmp_path, *SHORT, "--var", "fault=8s", *demo_ports()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    revert = report["faults"][0]["actions"][-1]
    assert revert["action"] == "revert" and revert["detail"]["SERVFAIL"] > 0  # SERVFAIL really was served
    assert revert["at_s"] - report["faults"][0]["actions"][0]["at_s"] == pytest.approx(6, abs=0.5)


PROBE_GUARD = (
    "  - abort_if: {probe: {http: {url: 'http://127.0.0.1:${frontend_port}/checkout', timeout: 1s}}, "
    "every: 200ms, failures: 2}\n"
)


@pytest.mark.parametrize("guard", ["error_rate", "probe"])
def test_a_guard_aborts_the_run_and_reverts_within_two_seconds_of_the_breach(tmp_path, guard):
    path = REPO / "experiments" / "demo-guard.yaml"
    if guard == "probe":
        text = path.read_text().replace("  - abort_if: {error_rate: 50%, for: 1s}\n", PROBE_GUARD)
        path = tmp_path / "probe-guard.yaml"
        text = text.replace("../loadtests/", f"{REPO}/loadtests/")
        path.write_text(f"safety_variables: [frontend_port]  # the probe follows the port\n{text}")
    result, report = run_experiment(path, tmp_path / "reports", *SHORT, *demo_ports())
    assert result.returncode == 3, result.stdout + result.stderr
    assert report["status"] == "aborted" and report["reasons"][0].startswith("guard tripped: ")
    tripped = report["guard"]
    assert tripped["guard"].startswith("error rate above 50%" if guard == "error_rate" else "probe http GET")
    fault_phase = next(p for p in report["phases"] if p["name"] == "fault")
    assert fault_phase["start_s"] <= tripped["breach_at_s"] <= tripped["detected_at_s"]
    assert tripped["breach_to_revert_s"] <= 2.0, tripped
    actions = [a["action"] for a in report["faults"][0]["actions"]]
    assert actions == ["inject"] * 3 + ["revert"] * 3
    assert fault_phase["end_s"] - fault_phase["start_s"] < 5  # it did not sit out the 5 s fault phase
    assert "every fault reverted" in result.stdout
    assert all(port_free(port) for port in ports_of(report))


def test_a_dry_run_runs_everything_but_the_injection(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-kill-all-backends.yaml", tmp_path, *SHORT, *demo_ports(), "--dry-run"
    )
    assert result.returncode == 0, result.stdout + result.stderr  # without the kills, the SLO holds
    assert report["dry_run"] and "dry run: no fault was injected" in result.stdout
    [dry] = report["faults"][0]["actions"]
    assert dry["action"] == "dry-run" and dry["target"] == "backend-0, backend-1, backend-2"
    assert "SIGKILL 100% of 3 live replica(s) of backend" in dry["detail"]["would"]
    fault_phase = next(p for p in report["phases"] if p["name"] == "fault")
    assert fault_phase["requests"] > 100 and fault_phase["availability"] == 1.0
    assert not [e for e in report["timeline"] if e["action"] == "exited"]  # no replica died
    assert all(port_free(port) for port in ports_of(report))


def test_a_failing_steady_state_gate_injects_nothing(tmp_path):
    port = free_port_block(1)
    result, report = run_experiment(
        REPO / "tests" / "data" / "gate-fails.yaml", tmp_path, "--var", f"backend_port={port}"
    )
    assert result.returncode == 4  # not "violated under the fault": nothing was injected
    assert report["status"] == "steady-state-failed" and report["verdict"] == "not-tested"
    assert "STEADY STATE FAILED BEFORE THE FAULT, NOTHING INJECTED" in result.stdout
    assert report["faults"][0]["actions"] == []
    assert report["load"]["started_at"] is None and report["phases"] == []
    assert [p["ok"] for p in report["steady_state"]["before"]] == [True, False]
    assert report["reasons"][0].startswith("steady state before the experiment did not hold (http GET")
    assert "body does not match /^all systems go$/" in report["reasons"][0]  # the probe's own words
    assert port_free(port)


def test_a_fault_that_cannot_be_applied_aborts_with_exit_code_3(tmp_path):
    port = free_port_block(2)
    result, report = run_experiment(
        REPO / "tests" / "data" / "fault-cannot-apply.yaml", tmp_path, "--var", f"backend_port={port}"
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert report["status"] == "aborted" and report["verdict"] == "aborted"
    assert "no live replica of 'backend' to kill" in report["reasons"][0]
    assert len(report["faults"][0]["actions"]) == 2  # the first injection killed both replicas
    assert port_free(port) and port_free(port + 1)


def finished_report(process: subprocess.Popen[str], report_dir: Path) -> dict:
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:  # say where it stands: its threads, and the logs so far
        dump = subprocess.run(["py-spy", "dump", "-p", str(process.pid)], capture_output=True, text=True)
        logs = [f"{log}:\n{log.read_text(errors='replace')[-3000:]}" for log in report_dir.glob("*/logs/*")]
        process.kill()
        pytest.fail(f"still running 90 s after the signal:\n{dump.stdout}{dump.stderr}\n" + "\n".join(logs))
    [run_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    jsonschema.validate(report, load_schema("report"))
    return report


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_fault_stops_everything_and_still_writes_the_report(tmp_path, sig):
    ports = demo_ports()
    process, lines = start_run(REPO / "experiments" / "demo-pod-kill.yaml", tmp_path, *SHORT, *ports)
    wait_for_line(lines, "-- fault phase")
    process.send_signal(sig)
    report = finished_report(process, tmp_path)
    assert process.returncode == 3
    assert report["status"] == "interrupted" and sig.name in report["reasons"][0]
    assert all(port_free(port) for port in ports_of(report))


def test_a_signal_after_the_output_pipe_closed_still_reverts_and_writes_the_report(tmp_path):
    """`gameday run … | tee log`, and Ctrl-C stops tee first: writes to the pipe fail from then on."""
    ports = demo_ports()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chaoslib_ext",
            "run",
            str(REPO / "experiments" / "demo-latency.yaml"),
            "--report-dir",
            str(tmp_path),
            *SHORT,
            *ports,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "network-latency: inject backend-2" in line:  # the last of the three
            break
    process.stdout.close()  # the reader is gone
    process.send_signal(signal.SIGINT)
    report = finished_report(process, tmp_path)
    assert process.returncode == 3
    assert report["status"] == "interrupted"
    assert [a["action"] for a in report["faults"][0]["actions"]][-3:] == ["revert"] * 3
    assert all(port_free(port) for port in ports_of(report))


def test_a_signal_during_the_steady_state_probe_is_not_swallowed(tmp_path, experiment_file):
    port = free_port_block(1)
    text = (
        (REPO / "tests" / "data" / "gate-fails.yaml")
        .read_text()
        .replace(
            "steady_state:",
            "steady_state:\n  - activity: {type: probe, name: slow, provider: "
            "{type: process, path: sleep, arguments: ['30']}}",
        )
    )
    path = experiment_file(text.replace("../../loadtests", str(REPO / "loadtests")))
    process, lines = start_run(path, tmp_path / "reports", "--var", f"backend_port={port}")
    wait_for_line(lines, "starting services")
    deadline = time.monotonic() + 30
    while not any(_is_probe_sleep(_cmdline(pid)) for pid in _children(process.pid)):
        assert time.monotonic() < deadline, "the probe never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    report = finished_report(process, tmp_path / "reports")
    assert process.returncode == 3
    assert report["status"] == "interrupted"
    assert port_free(port)


def _is_probe_sleep(command: list[str]) -> bool:
    return len(command) == 2 and Path(command[0]).name == "sleep" and command[1] == "30"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def test_an_unwritable_report_directory_is_invalid_input(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = gameday("run", str(REPO / "experiments" / "demo-pod-kill.yaml"), "--report-dir", str(blocker))
    assert result.returncode == 2
    assert "cannot use the report directory" in result.stderr and "Traceback" not in result.stderr


def test_a_third_signal_forces_the_exit_and_says_what_may_be_left(tmp_path, experiment_file):
    port = free_port_block(1)
    text = (REPO / "tests" / "data" / "stubborn.yaml").read_text()
    text = text.replace("stubborn_server.py", str(REPO / "tests" / "data" / "stubborn_server.py"))
    path = experiment_file(text.replace("../../loadtests", str(REPO / "loadtests")))
    process, lines = start_run(path, tmp_path / "reports", "--var", f"port={port}")
    try:
        wait_for_line(lines, "-- baseline phase")
        process.send_signal(signal.SIGINT)  # 1: stop; stopping the stubborn service takes 5 s
        wait_for_line(lines, "! interrupted")
        process.send_signal(signal.SIGINT)  # 2: acknowledged, the clean-up goes on
        wait_for_line(lines, "send it 1 more time(s) to force an exit")
        process.send_signal(signal.SIGINT)  # 3: out now
        said = wait_for_line(lines, "gameday recover")
        assert process.wait(timeout=10) == 3
    finally:
        process.kill()
    assert any("may be left behind: process group of stubborn-0" in line for line in said), said
    assert not port_free(port), "the stubborn service should still be there, as the exit said"
    recovered = gameday("recover")
    assert recovered.returncode == 0 and "process group of stubborn-0" in recovered.stdout
    deadline = time.monotonic() + 10
    while not port_free(port):
        assert time.monotonic() < deadline, "recover did not stop the stubborn service"
        time.sleep(0.05)


def test_a_second_run_on_the_same_target_is_refused_naming_the_holder(tmp_path, own_state_dir):
    ports = demo_ports()
    experiment = load_experiment(REPO / "experiments" / "demo-pod-kill.yaml", parse_overrides(ports[1::2]))
    port = ports[1].split("=")[1]
    same_target = replace(experiment, load=replace(experiment.load, host=f"http://localhost:{port}"))
    lock = TargetLock.acquire(driver_for(same_target).lock_key(), "the-holding-run", experiment.path)
    try:
        refused = gameday("run", str(experiment.path), *ports, "--report-dir", str(tmp_path))
    finally:
        lock.release()
    assert refused.returncode == 3
    assert (
        f"local 127.0.0.1:{ports[1].split('=')[1]} is in use by another experiment: run the-holding-run"
        in (refused.stderr)
    )
    assert f"pid {os.getpid()}" in refused.stderr
    [run_dir] = list(tmp_path.iterdir())  # nothing started, and the skipped run says so
    assert {p.name for p in run_dir.iterdir()} == {"skipped.json", "report.md", "logs"}
    skipped = json.loads((run_dir / "skipped.json").read_text())
    assert skipped["run_id"] == run_dir.name and "run the-holding-run" in skipped["reason"]
    assert skipped["exit_code"] == 3 and skipped["experiment"]["title"] == experiment.title
    [recorded] = History.open(own_state_dir / "history.sqlite").runs()
    assert (recorded.run_id, recorded.verdict, recorded.status) == (run_dir.name, "skipped", "target-busy")
    holder = subprocess.Popen(  # a holder that dies by SIGKILL: the kernel frees its lock
        [sys.executable, "-c", HOLD_THE_LOCK, driver_for(experiment).lock_key(), str(experiment.path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=10)
    TargetLock.acquire(driver_for(experiment).lock_key(), "the-next-run", experiment.path).release()


HOLD_THE_LOCK = """
import sys, time
from chaoslib_ext.state.locks import TargetLock
TargetLock.acquire(sys.argv[1], "a-doomed-run", sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("moment", ["starting services", "starting load", "-- fault phase", "! interrupted"])
def test_sigkill_at_any_moment_then_recover_leaves_nothing_and_the_next_run_waits_for_it(tmp_path, moment):
    ports = demo_ports()
    experiment = REPO / "experiments" / "demo-pod-kill.yaml"
    process, lines = start_run(experiment, tmp_path / "reports", *SHORT, *ports)
    try:
        wait_for_line(lines, "-- fault phase" if moment == "! interrupted" else moment)
        if moment == "! interrupted":  # in the middle of the clean-up that SIGINT started
            process.send_signal(signal.SIGINT)
            wait_for_line(lines, moment)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    pending = [(state.run_id, entry) for state in ledgers() for entry in state.pending]
    groups = [entry.action.pgid for _, entry in pending if isinstance(entry.action, KillProcessGroup)]
    if moment in ("starting load", "-- fault phase"):
        assert groups, "a run killed with its services up left no record of them"
    if pending:  # (killed before its ledger existed, or late in its clean-up, a run may leave none)
        refused = gameday("run", str(experiment), *SHORT, *ports, "--report-dir", str(tmp_path / "again"))
        assert refused.returncode == 3 and f"run {pending[0][0]}" in refused.stderr, refused.stderr
        assert "gameday recover" in refused.stderr
    recovered = gameday("recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert all(not group_alive(pgid) for pgid in groups)
    assert all(port_free(int(value.split("=")[1])) for value in ports[1::2])
    assert ledgers() == [] and "nothing to recover" in gameday("recover").stdout


def group_alive(pgid: int) -> bool:
    deadline = time.monotonic() + 5  # SIGKILL is delivered at once; reaping takes a moment
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def test_secrets_never_appear_in_the_output_the_reports_or_the_logs(tmp_path, monkeypatch):
    # escaped differently by JSON, XML, repr() and URLs: every written form must be masked
    token, password = f"t'o\"k&<{os.urandom(6).hex()}>ö", f"pw-{os.urandom(8).hex()}"
    monkeypatch.setenv("GAMEDAY_TEST_TOKEN", token)
    text = (REPO / "tests" / "data" / "secrets.yaml").read_text()
    experiment = tmp_path / "experiment" / "secrets.yaml"
    experiment.parent.mkdir()
    experiment.write_text(text.replace("../../loadtests", str(REPO / "loadtests")))
    (experiment.parent / "password.txt").write_text(password + "\n")
    port = free_port_block(2)
    ports = ["--var", f"port={port}", "--var", f"backend_port={port + 1}"]
    process, lines = start_run(experiment, tmp_path / "reports", *ports)
    wait_for_line(lines, "-- baseline phase")  # Locust runs: its command line shows no secret
    secret_bytes = (token.encode(), password.encode())
    assert not [pid for pid in Path("/proc").iterdir() if any(s in _cmdline_bytes(pid) for s in secret_bytes)]
    report = finished_report(process, tmp_path / "reports")
    output = "".join(lines.queue)
    assert process.returncode == 0, output
    result = subprocess.CompletedProcess(process.args, 0, output, "")
    written = [path for path in (tmp_path / "reports").rglob("*") if path.is_file()]
    assert {"report.json", "report.md", "junit.xml", "locust.log", "backend-0.log"} <= {
        p.name for p in written
    }
    for output in [result.stdout, result.stderr, *(path.read_text(errors="replace") for path in written)]:
        for secret in (token, password):
            assert not any(form in output for form in written_forms(secret)), output[:2000]
    assert report["load"]["host"] == f"http://gameday:***@127.0.0.1:{port}"  # masked, not missing
    assert "backend token ***" in next(p for p in written if p.name == "backend-0.log").read_text()
    assert report["steady_state"]["before"][0]["name"].endswith("/healthz?token=***")
    broken = experiment.read_text().replace("users: 2", "users: '${token}'")  # an error quoting it
    experiment.write_text(broken)
    refused = gameday("validate", str(experiment))
    assert refused.returncode == 2 and "***" in refused.stderr and token not in refused.stderr
    leaked = gameday("validate", str(experiment), "--var", f"token={token}")
    assert leaked.returncode == 2 and "--var token: token is a secret" in leaked.stderr


def _cmdline_bytes(pid: Path) -> bytes:
    try:
        return (pid / "cmdline").read_bytes()
    except OSError:  # not a process, or it just ended
        return b""


def written_forms(secret: str) -> list[str]:
    """The secret as it is, and as JSON, XML and URLs would escape it, and its first 8 characters."""
    return [
        secret,
        json.dumps(secret)[1:-1],
        xml_escape(secret),
        xml_escape(secret, {'"': "&quot;"}),
        quote(secret, safe=""),
        secret[:8],
    ]
