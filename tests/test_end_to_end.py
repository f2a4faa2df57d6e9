"""Whole runs of the real `gameday` command: real services, real Locust load, real kills."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO, free_port_block, gameday

from chaoslib_ext.spec.schema import load_schema

pytestmark = pytest.mark.slow

SHORT = ["--var", "baseline=3s", "--var", "fault=5s", "--var", "recovery=10s", "--var", "users=5"]


def demo_ports() -> list[str]:
    block = free_port_block(4)
    return ["--var", f"frontend_port={block}", "--var", f"backend_port={block + 1}"]


def run_experiment(
    path: Path | str, report_dir: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, dict]:
    result = gameday("run", str(path), "--report-dir", str(report_dir), *extra)
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


def test_killing_every_backend_violates_availability_in_the_fault_phase(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-kill-all-backends.yaml", tmp_path, *SHORT, *demo_ports()
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["verdict"] == "violated"
    assert len(report["faults"][0]["actions"]) == 3
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


def test_a_deliberately_tight_slo_is_violated_from_the_baseline_on(tmp_path):
    result, report = run_experiment(
        REPO / "experiments" / "demo-tight-slo.yaml", tmp_path, *SHORT, *demo_ports()
    )
    assert result.returncode == 1
    failed = {(o["phase"], o["name"]) for p in report["phases"] for o in p["objectives"] if not o["held"]}
    assert {("baseline", "p95"), ("fault", "p95"), ("recovery", "p95")} <= failed
    assert ("baseline", "availability") not in failed


def test_a_failing_steady_state_gate_injects_nothing(tmp_path):
    port = free_port_block(1)
    result, report = run_experiment(
        REPO / "tests" / "data" / "gate-fails.yaml", tmp_path, "--var", f"backend_port={port}"
    )
    assert result.returncode == 1
    assert report["status"] == "steady-state-failed"
    assert report["faults"][0]["actions"] == []
    assert report["load"]["started_at"] is None and report["phases"] == []
    assert [p["ok"] for p in report["steady_state"]["before"]] == [True, False]
    assert report["reasons"][0].startswith("steady state before the experiment did not hold")
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


def test_sigterm_mid_run_stops_everything_and_still_writes_the_report(tmp_path):
    ports = demo_ports()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chaoslib_ext",
            "run",
            str(REPO / "experiments" / "demo-pod-kill.yaml"),
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
    deadline = time.monotonic() + 60
    for line in process.stdout:  # wait for the fault phase, bounded by the run's own length
        if "-- fault phase" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 3, output
    [run_dir] = list(tmp_path.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "interrupted" and "SIGTERM" in report["reasons"][0]
    assert all(port_free(port) for port in ports_of(report))
    assert "Traceback" not in output
