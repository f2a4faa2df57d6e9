"""`gameday schedule`: the CronJob read back through the `kubernetes` package's API models (no
cluster runs here), the systemd units checked by systemd-analyze, the timer's next runs against
cron's own meaning of the expression, and the crontab line."""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import REPO, assert_kubernetes_object, gameday

from chaoslib_ext.drivers.kubernetes.driver import permissions_needed
from chaoslib_ext.errors import SpecError
from chaoslib_ext.schedule import READS, SLACK_SECONDS, cron_fields, on_calendar
from chaoslib_ext.spec import load_experiment
from chaoslib_ext.spec.model import STARTUP_SECONDS

PARTITION = REPO / "experiments" / "kubernetes" / "partition-one-back.yaml"
POD_KILL = REPO / "experiments" / "kubernetes" / "pod-kill-one-back.yaml"
GAME_DAY = REPO / "experiments" / "game-day.yaml"
MODELS = {
    "ServiceAccount": "V1ServiceAccount",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
    "PersistentVolumeClaim": "V1PersistentVolumeClaim",
    "CronJob": "V1CronJob",
}


def schedule(*args: str) -> str:
    result = gameday("schedule", *args, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result
    return result.stdout


@pytest.mark.parametrize("experiment", [PARTITION, POD_KILL], ids=lambda p: p.stem)
def test_the_cronjob_and_its_rbac_are_valid_and_grant_exactly_what_the_faults_need(experiment):
    text = schedule(
        str(experiment),
        "--cron",
        "0 3 * * 1",
        "--image",
        "registry.example/gameday:1",
        "--namespace",
        "chaos",
    )
    assert "&id" not in text  # no YAML anchors: what kubectl applies is what is read
    objects = list(yaml.safe_load_all(text))
    for document in objects:
        assert_kubernetes_object(document, MODELS[document["kind"]])
    by_kind = {document["kind"]: document for document in objects}
    loaded = load_experiment(experiment)
    wanted: dict[tuple[str, str, str], set[str]] = {}
    for fault in loaded.faults:
        for verb, group, resource, namespace in permissions_needed(fault):
            wanted.setdefault((group, resource, namespace), set()).add(verb)
    for group, resource in READS:  # what its steady-state probes and the run's timeline read
        wanted.setdefault((group, resource, "shop"), set()).update({"get", "list", "watch"})
    granted = {
        (group, resource, role["metadata"]["namespace"]): set(rule["verbs"])
        for role in objects
        if role["kind"] == "Role"
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == wanted  # what the preflight checks for, reading the workloads, nothing else
    job = by_kind["CronJob"]["spec"]
    assert job["schedule"] == "0 3 * * 1" and job["concurrencyPolicy"] == "Forbid"
    spec = job["jobTemplate"]["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == math.ceil(loaded.phases.total + STARTUP_SECONDS) + SLACK_SECONDS
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == by_kind["ServiceAccount"]["metadata"]["name"]
    assert pod["restartPolicy"] == "Never"
    [recover] = pod["initContainers"]
    [run] = pod["containers"]
    assert recover["command"] == ["gameday", "recover"]
    assert run["command"][:3] == ["gameday", "run", str(experiment.relative_to(REPO))]
    env = {variable["name"]: variable["value"] for variable in run["env"]}
    assert env["GAMEDAY_STATE_DIR"].startswith(
        run["volumeMounts"][0]["mountPath"]
    )  # the ledger outlives the pod
    assert env["CHAOSTOOLKIT_IN_POD"] == "true"  # the pod's service account, not a kubeconfig
    assert recover["env"] == run["env"] and recover["volumeMounts"] == run["volumeMounts"]
    [volume] = pod["volumes"]
    assert (
        volume["persistentVolumeClaim"]["claimName"] == by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    )
    # the command is one gameday accepts
    from chaoslib_ext.cli import build_parser

    parsed = build_parser().parse_args(run["command"][1:])
    assert parsed.command == "run" and parsed.quiet


def test_a_local_suite_gets_a_cronjob_without_any_role_and_the_suites_deadline():
    objects = list(yaml.safe_load_all(schedule(str(GAME_DAY), "--cron", "0 3 1 * *", "--image", "g:1")))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "PersistentVolumeClaim", "CronJob"]
    spec = objects[-1]["spec"]["jobTemplate"]["spec"]
    assert spec["activeDeadlineSeconds"] == 600 + SLACK_SECONDS  # deadline: 10m


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_verify_and_run_the_suite_after_recover(tmp_path):
    out = tmp_path / "units"
    schedule(str(GAME_DAY), "--cron", "30 2 * * 1-5", "--format", "systemd", "--output-dir", str(out))
    service, timer = sorted(out.iterdir())
    assert (service.suffix, timer.suffix) == (".service", ".timer")
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(service), str(timer)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    units = service.read_text()
    pre = shlex.split(re.search(r"^ExecStartPre=(.*)$", units, re.M).group(1))
    start = shlex.split(re.search(r"^ExecStart=(.*)$", units, re.M).group(1))
    assert pre == [sys.executable, "-m", "chaoslib_ext", "recover"]
    assert start[:5] == [sys.executable, "-m", "chaoslib_ext", "run", "experiments/game-day.yaml"]
    assert f"WorkingDirectory={REPO}" in units and "TimeoutStartSec=900" in units
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00" in timer.read_text()


def cron_times(expression: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` minutes after `after` that the expression matches, as cron means it (day
    of month OR day of week, when both are set)."""

    def values(field: str, low: int, high: int) -> set[int]:
        found: set[int] = set()
        for part in field.split(","):
            span, _, step = part.partition("/")
            start, end = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
            found |= set(range(start, end + 1, int(step or 1)))
        return found

    minute, hour, day, month, weekday = expression.split()
    minutes, hours, months = values(minute, 0, 59), values(hour, 0, 23), values(month, 1, 12)
    days, weekdays = values(day, 1, 31), {d % 7 for d in values(weekday, 0, 7)}
    either = day != "*" and weekday != "*"
    found, at = [], after.replace(second=0) + timedelta(minutes=1)
    while len(found) < count:
        day_ok, weekday_ok = at.day in days, at.isoweekday() % 7 in weekdays
        if (
            at.minute in minutes
            and at.hour in hours
            and at.month in months
            and ((day_ok or weekday_ok) if either else (day_ok and weekday_ok))
        ):
            found.append(at)
        at += timedelta(minutes=1)
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize(
    "expression",
    ["0 3 * * 1", "*/15 * * * *", "30 2 1 * *", "0 9-17 * * 1-5", "5,35 */2 * 1,7 *", "0 0 * * 0,6"],
)
def test_the_timer_fires_exactly_when_cron_would(expression):
    """From a fixed moment, the next 12 times systemd computes for the timer are the next 12 minutes
    the cron expression matches."""
    base = datetime(2026, 12, 3, 10, 7)
    shown = subprocess.run(
        [
            "systemd-analyze",
            "calendar",
            f"--base-time={base:%Y-%m-%d %H:%M:%S}",
            "--iterations",
            "12",
            on_calendar(expression),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout
    times = [
        datetime.strptime(match, "%Y-%m-%d %H:%M:%S")
        for match in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", shown)
    ]
    assert times == cron_times(expression, base, 12)


def test_the_crontab_line_recovers_then_runs_in_the_repository():
    line = schedule(
        str(REPO / "experiments" / "demo-pod-kill.yaml"), "--cron", "0 3 * * 1", "--format", "cron"
    )
    fields, command = line.split(maxsplit=5)[:5], line.split(maxsplit=5)[5]
    assert fields == ["0", "3", "*", "*", "1"] and line.endswith("2>&1\n")
    steps = [shlex.split(step) for step in command.split(" && ")]
    assert steps[0] == ["cd", str(REPO)] and steps[1] == ["mkdir", "-p", "reports"]
    assert steps[2] == [sys.executable, "-m", "chaoslib_ext", "recover"]
    assert steps[3][:5] == [sys.executable, "-m", "chaoslib_ext", "run", "experiments/demo-pod-kill.yaml"]


def systemd_service(tmp_path: Path, file: str, *extra: str) -> str:
    """The text of the service unit `gameday schedule --format systemd` writes for `file`."""
    out = tmp_path / "units"
    schedule(file, "--cron", "0 3 * * 1", "--format", "systemd", *extra, "--output-dir", str(out))
    [service] = out.glob("*.service")
    return service.read_text()


def test_a_percent_sign_reaches_the_command_as_written(tmp_path):
    """cron reads % as a newline and systemd as a specifier: both are escaped."""
    text = (REPO / "experiments" / "demo-pod-kill.yaml").read_text()
    text = text.replace("variables:\n", "variables:\n  objective: 99.5%\n", 1)
    text = text.replace("availability: 99.5%", "availability: ${objective}")
    text = text.replace("../loadtests/checkout.py", str(REPO / "loadtests" / "checkout.py"))
    file = tmp_path / "percent.yaml"
    file.write_text(text)
    line = schedule(str(file), "--cron", "0 3 * * 1", "--format", "cron", "--var", "objective=99.9%")
    assert "objective=99.9\\%" in line and line.count("%") == line.count("\\%")
    assert "objective=99.9%%" in systemd_service(tmp_path, str(file), "--var", "objective=99.9%")


def test_secrets_reach_a_scheduled_run_from_a_secret_or_an_environment_file(tmp_path):
    objects = list(
        yaml.safe_load_all(
            schedule(str(GAME_DAY), "--cron", "0 3 * * 1", "--image", "g:1", "--secret", "gameday-env")
        )
    )
    run = objects[-1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert run["envFrom"] == [{"secretRef": {"name": "gameday-env"}}]
    assert "EnvironmentFile=/etc/gameday.env" in systemd_service(
        tmp_path, str(GAME_DAY), "--env-file", "/etc/gameday.env"
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "4 field(s), not 5"),
        ("61 3 * * 1", "the minute field '61' is not valid"),
        ("0 3 * * mon", "the day of week field 'mon' is not valid"),
        ("*/0 * * * *", "the minute field '*/0' is not valid"),
    ],
)
def test_a_bad_cron_expression_is_one_line_with_the_form_expected(expression, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        cron_fields(expression)
    result = gameday("schedule", str(GAME_DAY), "--cron", expression, "--format", "cron")
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_what_a_systemd_timer_cannot_say_is_refused():
    with pytest.raises(SpecError, match="day of month OR the day of week"):
        on_calendar("0 3 1 * 1")


def test_a_cronjob_needs_an_image(tmp_path):
    result = gameday("schedule", str(GAME_DAY), "--cron", "0 3 * * 1")
    assert result.returncode == 2 and "--format cronjob needs --image" in result.stderr


def test_schedule_accepts_only_existing_files():
    result = gameday("schedule", str(Path("nope.yaml")), "--cron", "0 3 * * 1", "--format", "cron")
    assert result.returncode == 2 and "file not found" in result.stderr
