"""Game days and CI gates with the real command: suites of real experiments, the history they
leave, the regression gate, notifications to a real receiver, GitHub's step summary and --junit."""

from __future__ import annotations

import json
import signal
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, gameday, start_run, wait_for_line
from test_end_to_end import SHORT, demo_ports, port_free, ports_of
from test_notify import Receiver

from chaoslib_ext.history.store import History

EXPERIMENTS = REPO / "experiments"


def write_suite(directory: Path, experiments: list[str | dict], **settings: object) -> Path:
    """A suite file next to copies of nothing: its paths point at the repository's experiments."""
    lines = ["version: 1", "kind: suite", "title: Test day"]
    lines += ["experiments:"] + [f"  - {json.dumps(entry)}" for entry in experiments]
    lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    path = directory / "day.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def suite_document(report_dir: Path) -> tuple[Path, dict]:
    [suite_dir] = [p for p in report_dir.iterdir() if p.is_dir()]
    return suite_dir, json.loads((suite_dir / "suite.json").read_text())


@pytest.mark.slow
def test_a_game_day_runs_each_experiment_then_judges_the_day(tmp_path, monkeypatch):
    receiver = Receiver([])
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    history = tmp_path / "history.sqlite"
    day = write_suite(
        tmp_path,
        [
            str(EXPERIMENTS / "demo-pod-kill.yaml"),
            {"path": str(EXPERIMENTS / "demo-latency.yaml"), "vars": {"users": 4}},
        ],
        pause="1s",
        notify=[
            {"webhook": receiver.url, "on": ["always"]},
            {"webhook": "http://127.0.0.1:1/nobody-listens", "on": ["always"], "retries": 1},
        ],
    )
    reports = tmp_path / "reports"
    result = gameday(
        "run",
        str(day),
        "--report-dir",
        str(reports),
        "--history",
        str(history),
        "--junit",
        str(tmp_path / "ci" / "junit.xml"),
        *SHORT,
        *demo_ports(),
        timeout=400,
    )
    assert result.returncode == 1, result.stderr  # one held, one violated: the day is violated
    assert "Traceback" not in result.stderr
    suite_dir, document = suite_document(reports)
    assert [row["verdict"] for row in document["experiments"]] == ["held", "violated"]
    assert document["verdict"] == "violated" and document["exit_code"] == 1 and document["ran"] == 2
    held, violated = document["experiments"]
    assert held["what_broke"] == [] and "p95" in violated["what_broke"][0]
    for row in document["experiments"]:  # each experiment's own report, in the suite's directory
        report = json.loads((suite_dir / row["report"]).with_name("report.json").read_text())
        assert report["run_id"] == row["run_id"] and report["verdict"] == row["verdict"]
    assert held["time_to_recover_s"] is not None and held["fault"]["availability"] >= 0.995
    assert "GAME DAY VIOLATED: Test day" in result.stdout and "[2/2]" in result.stdout

    # the day's notifications: one received, one failed, and neither changed the verdict
    sent, failed = document["notifications"]
    assert sent["sent"] is True and failed["sent"] is False and failed["attempts"] == 2
    day_message = [body for _, body, _ in receiver.received if body["kind"] == "suite"]
    assert day_message and day_message[0]["verdict"] == "violated"
    assert list(day_message[0]["slis"].values()) == ["held", "violated"]
    receiver.server.shutdown()

    # CI: the step summary and the JUnit XML at the path asked for
    assert summary.read_text().startswith("# VIOLATED: Test day")
    junit = ET.parse(tmp_path / "ci" / "junit.xml").getroot()
    assert (
        junit.tag == "testsuites" and len(junit.findall("testsuite")) == 2 and int(junit.get("failures")) >= 1
    )
    assert (tmp_path / "ci" / "junit.xml").read_text() == (suite_dir / "junit.xml").read_text()

    # the history: both runs, tied to the day, and the day itself
    with sqlite3.connect(history) as connection:
        rows = connection.execute("SELECT verdict, suite_run_id FROM runs ORDER BY started_at").fetchall()
        days = connection.execute("SELECT run_id, verdict, exit_code FROM suites").fetchall()
    assert rows == [("held", document["run_id"]), ("violated", document["run_id"])]
    assert days == [(document["run_id"], "violated", 1)]


@pytest.mark.slow
def test_stop_on_violated_skips_the_rest_of_the_day(tmp_path):
    day = write_suite(
        tmp_path,
        [str(EXPERIMENTS / "demo-latency.yaml"), str(EXPERIMENTS / "demo-pod-kill.yaml")],
        stop_on="violated",
    )
    result = gameday("run", str(day), "--report-dir", str(tmp_path / "r"), *SHORT, *demo_ports(), timeout=300)
    assert result.returncode == 1, result.stderr
    _, document = suite_document(tmp_path / "r")
    first, second = document["experiments"]
    assert first["verdict"] == "violated" and second["verdict"] == "skipped"
    assert second["what_broke"] == [f"stop_on: violated, and {first['title']!r} was violated"]
    assert document["ran"] == 1 and document["skipped"] == 1


@pytest.mark.slow
def test_a_signal_during_a_game_day_stops_that_experiment_safely_and_skips_the_rest(tmp_path):
    day = write_suite(
        tmp_path, [str(EXPERIMENTS / "demo-pod-kill.yaml"), str(EXPERIMENTS / "demo-partition.yaml")]
    )
    reports = tmp_path / "r"
    process, lines = start_run(day, reports, *SHORT, *demo_ports())
    wait_for_line(lines, "-- fault phase")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 3
    suite_dir, document = suite_document(reports)
    interrupted, skipped = document["experiments"]
    assert interrupted["verdict"] == "aborted" and "SIGTERM" in interrupted["what_broke"][0]
    assert skipped["verdict"] == "skipped" and "interrupted by SIGTERM" in skipped["what_broke"][0]
    assert document["exit_code"] == 3 and "stopped early" in document["reasons"][-1]
    report = json.loads((suite_dir / interrupted["report"]).with_name("report.json").read_text())
    assert report["status"] == "interrupted"
    assert all(port_free(port) for port in ports_of(report))  # its services and proxies are gone


@pytest.mark.slow
def test_the_regression_gate_fails_a_run_that_held_but_got_slower(tmp_path):
    experiment = REPO / "tests" / "data" / "slower-backend.yaml"
    history = str(tmp_path / "history.sqlite")
    ports = demo_ports()
    gate = ["--history", history, "--max-regression", "fault.p95: 50%"]
    first = gameday("run", str(experiment), "--report-dir", str(tmp_path / "1"), *gate, *ports)
    assert first.returncode == 0, first.stderr  # nothing to compare with yet: it holds, and says so
    assert "nothing was compared" in first.stdout
    second = gameday(
        "run", str(experiment), "--report-dir", str(tmp_path / "2"), *gate, *ports, "--var", "delay=250ms"
    )
    assert second.returncode == 1, second.stderr
    [run_dir] = [p for p in (tmp_path / "2").iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "regressed" and all(
        o["held"] for p in report["phases"] for o in p["objectives"]
    )
    baseline = History.open(history).runs()[-1]
    assert report["regression"]["baseline"] == baseline.run_id
    [finding] = report["regression"]["regressions"]
    assert finding.startswith("fault p95 ") and "more than fault.p95: 50% allows" in finding
    assert f"regressed against {baseline.run_id}: fault p95" in report["reasons"][-1]
    assert "SLO HELD, BUT REGRESSED AGAINST ITS BASELINE" in second.stdout
    assert (run_dir / "report.md").read_text().startswith("# 📉 SLO held, but regressed")
    cases = ET.parse(run_dir / "junit.xml").getroot().iter("testcase")
    [case] = [case for case in cases if case.get("classname", "").endswith(".regression")]
    assert case.find("failure") is not None
    # the same again against the regressed run as an explicit baseline (the new normal): it holds
    third = gameday(
        "run",
        str(experiment),
        "--report-dir",
        str(tmp_path / "3"),
        "--history",
        history,
        "--baseline",
        report["run_id"],
        "--max-regression",
        "fault.p95: 50%",
        *ports,
        "--var",
        "delay=250ms",
    )
    assert third.returncode == 0, third.stdout + third.stderr


@pytest.mark.parametrize(
    ("entries", "extra", "message"),
    [
        ([f"{EXPERIMENTS}/demo-missing.yaml"], [], "file not found"),
        ([f"{EXPERIMENTS}/demo-*-nothing.yaml"], [], "matches no file"),
        (
            [{"path": f"{EXPERIMENTS}/demo-pod-kill.yaml", "vars": {"userz": 3}}],
            [],
            "declares no variable 'userz'",
        ),
        ([f"{EXPERIMENTS}/demo-pod-kill.yaml"], ["--var", "nobody=1"], "no experiment of the suite declares"),
    ],
)
def test_a_suite_with_a_bad_experiment_runs_nothing_and_names_the_place(tmp_path, entries, extra, message):
    day = write_suite(tmp_path, entries)
    result = gameday("run", str(day), "--report-dir", str(tmp_path / "r"), *extra)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()  # nothing ran, nothing written


def test_a_bad_suite_field_is_named_with_its_line(tmp_path):
    day = write_suite(tmp_path, [str(EXPERIMENTS / "demo-pod-kill.yaml")], stop_on="sometimes")
    result = gameday("validate", str(day))
    assert result.returncode == 2
    assert f"{day}:6:10" in result.stderr and "stop_on: violated, aborted or never" in result.stderr


def test_a_deadline_the_first_experiment_would_overrun_skips_the_day(tmp_path):
    day = write_suite(tmp_path, [str(EXPERIMENTS / "demo-pod-kill.yaml")], deadline="5s")
    result = gameday("run", str(day), "--report-dir", str(tmp_path / "r"), *SHORT)
    assert result.returncode == 3, result.stderr
    _, document = suite_document(tmp_path / "r")
    [row] = document["experiments"]
    assert row["verdict"] == "skipped" and "the deadline (5s) would pass during" in row["what_broke"][0]


def test_the_shipped_game_day_is_valid():
    result = gameday("validate", str(EXPERIMENTS / "game-day.yaml"))
    assert result.returncode == 0 and "suite Demo shop monthly game day (4 experiments)" in result.stdout


def test_a_suite_checks_each_experiments_blast_radius_as_validate_does(tmp_path):
    text = (EXPERIMENTS / "demo-kill-all-backends.yaml").read_text()
    text = text.replace("target: {driver: local}", "target: {driver: local, max_share: 34%}")
    text = text.replace("../loadtests/", f"{REPO}/loadtests/")
    wide = tmp_path / "too-wide.yaml"
    wide.write_text(text)
    alone = gameday("validate", str(wide))
    assert alone.returncode == 2 and "max_share" in alone.stderr
    day = write_suite(tmp_path, ["*.yaml"])  # the glob leaves out day.yaml itself, a suite
    in_a_suite = gameday("validate", str(day))
    assert in_a_suite.returncode == 2 and in_a_suite.stderr == alone.stderr
