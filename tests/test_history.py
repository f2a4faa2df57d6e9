"""The history store (SQLite, and a real PostgreSQL server), comparisons and the regression bounds.

Runs here are report documents with the fields the history keeps; whole runs recorded by the real
command are in test_game_day.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, gameday
from postgres_support import postgres_server, postgres_url  # noqa: F401 (fixtures)

from chaoslib_ext.errors import SpecError
from chaoslib_ext.history.compare import Bound, parse_bounds, regressions
from chaoslib_ext.history.store import MIGRATIONS, History, experiment_key, redact, run_from_report

EXPERIMENT = REPO / "experiments" / "demo-pod-kill.yaml"
KEY = f"{REPO.name}/experiments/demo-pod-kill.yaml"  # the repository's directory name, then the path in it


def report_like(
    run_id: str,
    started: str,
    *,
    verdict: str = "held",
    p95: float = 100.0,
    availability: float = 0.999,
    recover: float | None = 2.0,
    dry_run: bool = False,
    file: Path = EXPERIMENT,
) -> dict:
    """The parts of a report document the history reads."""

    def phase(name: str, p95_ms: float, ratio: float) -> dict:
        return {
            "name": name,
            "judged": name != "warmup",
            "objectives": [{"held": verdict == "held"}],
            "sent": 1000,
            "failures": round(1000 * (1 - ratio)),
            "availability": ratio,
            "throughput_rps": 99.5,
            "latency_ms": {"p50": p95_ms / 2, "p95": p95_ms, "p99": p95_ms * 1.5},
        }

    return {
        "run_id": run_id,
        "experiment": {"file": str(file), "title": "Kill a backend", "sha256": "a" * 64},
        "started_at": started,
        "ended_at": started,
        "verdict": verdict,
        "exit_code": {"held": 0, "violated": 1}.get(verdict, 3),
        "status": "finished",
        "dry_run": dry_run,
        "recovery": {"time_to_recover_s": recover},
        "error_budget": {"consumed": 0.25},
        "reasons": [] if verdict == "held" else ["fault: p95 over 250 ms"],
        "phases": [
            phase("baseline", 50.0, 1.0),
            phase("fault", p95, availability),
            phase("recovery", 60.0, 1.0),
        ],
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> History:
    if request.param == "sqlite":
        history = History.open(tmp_path / "history.sqlite")
    else:
        pytest.importorskip("psycopg")
        history = History.open(request.getfixturevalue("postgres_url"))
    yield history
    history.close()


def record(history: History, report: dict) -> None:
    history.record_run(run_from_report(report, Path("/reports") / report["run_id"] / "report.json"))


def test_a_new_store_is_migrated_to_the_latest_schema_once(store):
    assert store.version() == len(MIGRATIONS)
    record(store, report_like("20261201-100000-kill-aaaa", "2026-12-01T10:00:00.000+00:00"))
    store._migrate()  # opening it again: nothing to do, nothing lost
    assert store.version() == len(MIGRATIONS)
    assert [run.run_id for run in store.runs()] == ["20261201-100000-kill-aaaa"]


def test_a_run_reads_back_as_its_report_told_it(store):
    report = report_like(
        "20261201-100000-kill-aaaa", "2026-12-01T10:00:00.000+00:00", p95=123.4, recover=None
    )
    expected = run_from_report(report, Path("/reports/20261201-100000-kill-aaaa/report.json"))
    store.record_run(expected)
    assert store.run("20261201-100000-kill-aaaa") == expected
    fault = expected.phase("fault")
    assert fault is not None and fault.p95_ms == 123.4 and fault.held is True
    assert expected.experiment_key == KEY


def test_runs_are_listed_newest_first_and_the_baseline_is_the_last_held_real_run(store):
    held = report_like("20261201-100000-kill-aaaa", "2026-12-01T10:00:00.000+00:00")
    violated = report_like("20261202-100000-kill-bbbb", "2026-12-02T10:00:00.000+00:00", verdict="violated")
    dry = report_like("20261203-090000-kill-cccc", "2026-12-03T09:00:00.000+00:00", dry_run=True)
    current = report_like("20261203-100000-kill-dddd", "2026-12-03T10:00:00.000+00:00")
    other = report_like("20261203-110000-other-eeee", "2026-12-03T11:00:00.000+00:00", file=REPO / "x.yaml")
    for report in (held, violated, dry, other):
        record(store, report)
    baseline = store.last_held(KEY)  # neither the violated run nor the dry run after it
    assert baseline is not None and baseline.run_id == "20261201-100000-kill-aaaa"
    record(store, current)
    assert [r.run_id[:17] for r in store.runs(str(EXPERIMENT))] == [
        "20261203-100000-k",
        "20261203-090000-k",
        "20261202-100000-k",
        "20261201-100000-k",
    ]
    assert len(store.runs(limit=2)) == 2
    current_run = store.run("20261203-100000")
    assert current_run is not None
    previous = store.previous(current_run)
    assert previous is not None and previous.run_id == "20261203-090000-kill-cccc"
    assert store.run("20261203") is None  # three runs start so: ambiguous
    assert store.run("20261203-1%") is None  # not a run id: nothing LIKE could match


def test_a_store_from_a_newer_gameday_is_refused_not_misread(tmp_path):
    path = tmp_path / "history.sqlite"
    History.open(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO gameday_schema (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    with pytest.raises(SpecError, match="newer than this gameday's") as raised:
        History.open(path)
    assert str(path) in str(raised.value)


def test_a_postgresql_history_that_cannot_be_reached_is_one_line_naming_it_without_its_password():
    pytest.importorskip("psycopg")
    with pytest.raises(SpecError) as raised:
        History.open("postgresql://someone:hunter22@127.0.0.1:1/history")
    text = str(raised.value)
    assert "cannot connect to the history" in text and "hunter22" not in text and "***" in text


def test_runs_of_the_same_file_share_a_key_wherever_the_command_runs_from(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO / "experiments")
    assert experiment_key("demo-pod-kill.yaml") == experiment_key(str(EXPERIMENT)) == KEY
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "e.yaml"
    outside.write_text("")
    assert experiment_key("e.yaml") == str(outside.resolve())  # no repository: the absolute path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p95: 20%", [Bound("p95", 0.2)]),
        (
            "fault.availability: 0.5%, time_to_recover: 50%",
            [Bound("availability", 0.005, "fault"), Bound("time_to_recover", 0.5)],
        ),
        ("recovery.p99:10 %", [Bound("p99", 0.1, "recovery")]),
    ],
)
def test_regression_bounds_are_read(text, expected):
    assert parse_bounds(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95 20%", "is not metric: N%"),
        ("p95: 20", "is not metric: N%"),
        ("p96: 20%", "unknown metric 'p96'"),
        ("warmup.p95: 20%", "is not a phase of p95"),
        ("fault.time_to_recover: 20%", "is not a phase of time_to_recover"),
        (" , ", "is empty"),
    ],
)
def test_bad_regression_bounds_are_one_line_errors_with_a_hint(text, message):
    with pytest.raises(SpecError, match=message) as raised:
        parse_bounds(text)
    assert "--max-regression" in str(raised.value) and "hint" in str(raised.value)


def runs_of(before: dict, after: dict):
    return run_from_report(before, None), run_from_report(after, None)


def test_a_regression_beyond_its_bound_is_named_and_one_within_it_is_not():
    before, after = runs_of(
        report_like("a", "2026-12-01T10:00:00+00:00", p95=200.0, recover=2.0, availability=0.999),
        report_like("b", "2026-12-02T10:00:00+00:00", p95=250.0, recover=2.9, availability=0.990),
    )
    assert (
        regressions(parse_bounds("fault.p95: 30%, time_to_recover: 50%, availability: 1%"), before, after)
        == []
    )
    found = regressions(
        parse_bounds("fault.p95: 20%, time_to_recover: 40%, fault.availability: 0.5%"), before, after
    )
    assert found == [
        "fault p95 200ms -> 250ms (+25.0%), more than fault.p95: 20% allows",
        "fault availability 99.9% -> 99% (-0.90 points), more than fault.availability: 0.5% points allows",
        "time_to_recover 2s -> 2.9s (+45.0%), more than time_to_recover: 40% allows",
    ]


def test_getting_better_or_not_measured_is_never_a_regression():
    before, after = runs_of(
        report_like("a", "2026-12-01T10:00:00+00:00", p95=300.0, recover=None),
        report_like("b", "2026-12-02T10:00:00+00:00", p95=100.0, recover=5.0),
    )
    assert regressions(parse_bounds("p95: 0%, time_to_recover: 0%"), before, after) == []


def test_history_and_compare_on_the_command_line(tmp_path):
    path = tmp_path / "history.sqlite"
    history = History.open(path)
    for day, p95 in ((1, 100.0), (2, 140.0), (3, 90.0)):
        record(
            history,
            report_like(f"2026120{day}-100000-kill-000{day}", f"2026-12-0{day}T10:00:00+00:00", p95=p95),
        )
    history.close()
    listed = gameday("history", str(EXPERIMENT), "--history", str(path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[2] for line in lines[1:4]] == [
        "20261203-100000-kill-0003",
        "20261202-100000-kill-0002",
        "20261201-100000-kill-0001",
    ]
    assert "fault p95: 100ms -> 140ms -> 90.0ms (median 100ms, best 90.0ms, worst 140ms)" in listed.stdout
    compared = gameday("compare", "20261202", "--history", str(path))
    assert compared.returncode == 0, compared.stderr
    assert "20261201-100000-kill-0001 (held) -> 20261202-100000-kill-0002 (held)" in compared.stdout
    assert "  p95 100ms -> 140ms (+40.0%)" in compared.stdout
    unknown = gameday("compare", "20261209", "--history", str(path))
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "no run '20261209'" in unknown.stderr and "Traceback" not in unknown.stderr
    first = gameday("compare", "20261201", "--history", str(path))
    assert first.returncode == 2 and "is the first run of its experiment" in first.stderr


def test_from_a_baseline_of_zero_any_increase_exceeds_a_relative_bound_but_not_an_absolute_one():
    before, after = runs_of(
        report_like("a", "2026-12-01T10:00:00+00:00", recover=0.0),
        report_like("b", "2026-12-02T10:00:00+00:00", recover=1.5),
    )
    assert regressions(parse_bounds("time_to_recover: 50%"), before, after) == [
        "time_to_recover 0ms -> 1.5s (from 0), more than time_to_recover: 50% allows"
    ]
    assert regressions(parse_bounds("time_to_recover: 2s"), before, after) == []
    assert regressions(parse_bounds("time_to_recover: 1s"), before, after) == [
        "time_to_recover 0ms -> 1.5s (from 0), more than time_to_recover: +1s allows"
    ]


def test_not_recovering_after_a_baseline_that_did_exceeds_every_bound_on_time_to_recover():
    before, after = runs_of(
        report_like("a", "2026-12-01T10:00:00+00:00", recover=2.0),
        report_like("b", "2026-12-02T10:00:00+00:00", recover=None),
    )
    assert regressions(parse_bounds("time_to_recover: 1000%"), before, after) == [
        "time_to_recover 2s -> - (did not recover), more than time_to_recover: 1000% allows"
    ]


def test_a_change_exactly_at_its_bound_is_allowed_whatever_floating_point_says():
    before, after = runs_of(
        report_like("a", "2026-12-01T10:00:00+00:00", availability=0.999, p95=200.0),
        report_like("b", "2026-12-02T10:00:00+00:00", availability=0.994, p95=250.0),
    )
    assert (
        regressions(parse_bounds("fault.availability: 0.5%, fault.p95: 25%, fault.p95: 50ms"), before, after)
        == []
    )


def test_two_runs_creating_one_history_at_once_both_succeed(tmp_path):
    path = tmp_path / "history.sqlite"
    opener = f"from chaoslib_ext.history.store import History; History.open({str(path)!r}).close()"
    processes = [
        subprocess.Popen([sys.executable, "-c", opener], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors
    assert History.open(path).version() == len(MIGRATIONS)


def test_another_programs_database_is_refused_untouched(tmp_path):
    path = tmp_path / "theirs.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(SpecError, match=r"not a gameday history: it holds other tables \(accounts\)"):
        History.open(path)
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["accounts"]


def test_reading_a_history_that_does_not_exist_creates_nothing(tmp_path):
    result = gameday("history", "--history", str(tmp_path / "none" / "history.sqlite"))
    assert result.returncode == 2 and "no history here yet" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_database_url_never_shows_its_password():
    assert redact("postgresql://u:s3cr3t@db/h") == "postgresql://u:***@db/h"
    assert redact("host=db password=s3cr3t user=u") == "host=db password=*** user=u"
    with pytest.raises(SpecError) as raised:
        History.open("postgresql://u:s3cr3t@[::1")  # not even a valid URL
    assert "s3cr3t" not in str(raised.value)
