"""`gameday schedule`: what runs an experiment or a suite on a schedule, rendered, never applied.

- Kubernetes: a CronJob (concurrencyPolicy Forbid, backoffLimit 0, activeDeadlineSeconds from the
  plan) whose pod first runs `gameday recover` on the state kept on the reports volume, then the
  run; its ServiceAccount, a Role granting exactly what the faults need, and the volume's claim.
- systemd: a oneshot service (recover, then run; TimeoutStartSec from the plan) and its timer.
- cron: one crontab line.
Two scheduled runs on one target never overlap: the run takes the target's lock, and a run that
finds it taken does not start (exit code 3, naming the run that holds it).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslib_ext.errors import SpecError
from chaoslib_ext.spec.model import STARTUP_SECONDS, Experiment

SLACK_SECONDS = 300  # recover, reports, notifications, a slow image pull
CRON_HINT = "five fields: minute hour day-of-month month day-of-week, for example '0 3 * * 1' (Mondays 03:00)"
FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class Scheduled:
    """What a schedule runs: an experiment file or a suite file, its experiments, and how long it may take."""

    name: str  # a DNS-1123 label: gameday-<slug>
    file: str  # as the command will be given it (relative to the working directory)
    experiments: tuple[Experiment, ...]
    seconds: float  # the longest it should take: the plan's phases, or the suite's deadline

    @classmethod
    def of(
        cls,
        file: str,
        experiments: tuple[Experiment, ...],
        title: str,
        deadline: float | None = None,
        pause: float = 0.0,
    ) -> Scheduled:
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].rstrip("-") or "run"
        planned = sum(e.phases.total + STARTUP_SECONDS for e in experiments) + pause * (len(experiments) - 1)
        return cls(f"gameday-{slug}", file, experiments, deadline if deadline is not None else planned)

    @property
    def deadline_seconds(self) -> int:
        return math.ceil(self.seconds) + SLACK_SECONDS


def cron_fields(expression: str) -> list[str]:
    """The five fields of a cron expression, each checked (numbers, *, lists, ranges, steps)."""
    fields = expression.split()
    if len(fields) != 5:
        raise SpecError(f"--cron {expression!r}: {len(fields)} field(s), not 5", hint=CRON_HINT)
    for text, (name, low, high) in zip(fields, FIELDS, strict=True):
        for part in text.split(","):
            match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
            bounds = [int(n) for n in (match.group(2, 3) if match else ()) if n is not None]
            if match is None or any(not low <= n <= high for n in bounds) or match.group(4) in ("0", "00"):
                raise SpecError(
                    f"--cron {expression!r}: the {name} field {text!r} is not valid (from {low} to {high})",
                    hint=CRON_HINT,
                )
    return fields


def on_calendar(expression: str) -> str:
    """The systemd OnCalendar= form of a cron expression."""
    minute, hour, day, month, weekday = cron_fields(expression)
    if day != "*" and weekday != "*":
        raise SpecError(
            f"--cron {expression!r}: cron runs when the day of month OR the day of week matches, which a "
            "systemd timer cannot say",
            hint="restrict one of the two, and leave the other *",
        )
    days = "" if weekday == "*" else _weekdays(weekday) + " "
    calendar = f"*-{_calendar(month, 1)}-{_calendar(day, 1)} {_calendar(hour, 0)}:{_calendar(minute, 0)}:00"
    return days + calendar


def _calendar(field: str, first: int) -> str:
    """One cron field in OnCalendar's syntax: 1-5 -> 01..05, */15 -> 00/15 (from the field's
    first value, as cron counts, then every 15)."""
    parts = []
    for part in field.split(","):
        value, _, step = part.partition("/")
        if step and value != "*" and "-" in value:
            raise SpecError(
                f"--cron: a range with a step ({part!r}) has no systemd form", hint="list the values"
            )
        if value == "*":
            parts.append(f"{first:02d}/{step}" if step else "*")
        else:
            low, _, high = value.partition("-")
            text = f"{int(low):02d}" + (f"..{int(high):02d}" if high else "")
            parts.append(text + (f"/{step}" if step else ""))
    return ",".join(parts)


def _weekdays(field: str) -> str:
    """Cron's days of the week (0 and 7 are Sunday, ranges, lists) as systemd's names, listed."""
    days: set[int] = set()
    for part in field.split(","):
        if "/" in part:
            raise SpecError(
                f"--cron: a step in the day of week ({part!r}) has no systemd form", hint="list the days"
            )
        low, _, high = part.partition("-")
        days |= {day % 7 for day in range(int(low), int(high or low) + 1)}
    return ",".join(WEEKDAYS[day] for day in sorted(days))


def command(scheduled: Scheduled, gameday: list[str], report_dir: str, extra: list[str]) -> list[str]:
    return [*gameday, "run", scheduled.file, "--report-dir", report_dir, "--quiet", *extra]


def crontab_line(
    scheduled: Scheduled, expression: str, workdir: str, gameday: list[str], report_dir: str, extra: list[str]
) -> str:
    """One line: recover, then run, in the working directory; cron reads % as a newline: escaped."""
    cron_fields(expression)
    run = shlex.join(command(scheduled, gameday, report_dir, extra))
    log = shlex.quote(f"{report_dir}/{scheduled.name}.log")
    recover = shlex.join([*gameday, "recover"])
    steps = (
        f"cd {shlex.quote(workdir)} && mkdir -p {shlex.quote(report_dir)} && {recover} && {run} >> {log} 2>&1"
    )
    return f"{expression} {steps.replace('%', chr(92) + '%')}\n"


def systemd_units(
    scheduled: Scheduled,
    expression: str,
    workdir: str,
    gameday: list[str],
    report_dir: str,
    extra: list[str],
    env_file: str | None = None,
) -> dict[str, str]:
    """`<name>.service` (oneshot: recover, then run; the secrets' variables from `env_file`) and
    `<name>.timer`."""
    environment = "" if env_file is None else f"\nEnvironmentFile={env_file}"
    service = f"""[Unit]
Description=gameday: {scheduled.file}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={workdir}
ExecStartPre={_systemd(shlex.join([*gameday, "recover"]))}
ExecStart={_systemd(shlex.join(command(scheduled, gameday, report_dir, extra)))}{environment}
TimeoutStartSec={scheduled.deadline_seconds}
# any verdict but held fails the unit (exit codes 1 to 4): systemctl --failed shows it, OnFailure= can alert
"""
    timer = f"""[Unit]
Description=gameday on a schedule: {scheduled.file}

[Timer]
OnCalendar={on_calendar(expression)}
Persistent=true
Unit={scheduled.name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{scheduled.name}.service": service, f"{scheduled.name}.timer": timer}


def _systemd(command_line: str) -> str:
    """A command line as systemd reads it: % starts a specifier, %% is a %."""
    return command_line.replace("%", "%%")


def kubernetes_objects(
    scheduled: Scheduled,
    expression: str,
    image: str,
    namespace: str,
    workdir: str,
    extra: list[str],
    secret: str | None = None,
) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding (what the faults need, and reading the workloads they
    watch, in their namespaces), the reports' PersistentVolumeClaim and the CronJob; `secret`: a
    Secret whose keys become the pod's environment (the experiments' `secrets: {env: ...}`)."""
    cron_fields(expression)
    labels = {"app.kubernetes.io/name": "gameday", "app.kubernetes.io/instance": scheduled.name}
    meta = {"name": scheduled.name, "namespace": namespace, "labels": labels}
    objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}]
    for role_namespace, rules in _rules(scheduled).items():
        role_meta = {**meta, "namespace": role_namespace}
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": role_meta,
                "rules": rules,
            }
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": role_meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": scheduled.name},
                "subjects": [{"kind": "ServiceAccount", "name": scheduled.name, "namespace": namespace}],
            }
        )
    claim = f"{scheduled.name}-reports"
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {**meta, "name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }
    )
    env = [
        {"name": "GAMEDAY_STATE_DIR", "value": "/reports/.state"},  # the ledger outlives a dead pod
        {"name": "CHAOSTOOLKIT_IN_POD", "value": "true"},  # the cluster's own credentials (chaosk8s)
    ]
    mounts = [{"name": "reports", "mountPath": "/reports"}]
    container: dict[str, Any] = {"image": image, "workingDir": workdir, "env": env, "volumeMounts": mounts}
    if secret is not None:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    pod = {
        "serviceAccountName": scheduled.name,
        "restartPolicy": "Never",
        "initContainers": [{**container, "name": "recover", "command": ["gameday", "recover"]}],
        "containers": [
            {**container, "name": "run", "command": command(scheduled, ["gameday"], "/reports", extra)}
        ],
        "volumes": [{"name": "reports", "persistentVolumeClaim": {"claimName": claim}}],
    }
    objects.append(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {
                "schedule": expression,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "backoffLimit": 0,  # a failed game day is a result, not something to retry
                        "activeDeadlineSeconds": scheduled.deadline_seconds,
                        "template": {"metadata": {"labels": labels}, "spec": pod},
                    },
                },
            },
        }
    )
    return objects


READS = (("", "pods"), ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets"))


def _rules(scheduled: Scheduled) -> dict[str, list[dict[str, Any]]]:
    """Per namespace, what the kubernetes faults of the experiments need, and reading (get, list,
    watch) the workloads there, which the steady-state probes and the run's timeline do; nothing else."""
    from chaoslib_ext.drivers.kubernetes.driver import permissions_needed

    wanted: dict[str, dict[tuple[str, str], set[str]]] = {}
    for experiment in scheduled.experiments:
        if experiment.driver != "kubernetes":
            continue
        for fault in experiment.faults:
            for verb, group, resource, namespace in permissions_needed(fault):
                wanted.setdefault(namespace, {}).setdefault((group, resource), set()).add(verb)
        for namespace in {experiment.target_settings.get("namespace", "default"), *wanted}:
            for group, resource in READS:
                wanted.setdefault(namespace, {}).setdefault((group, resource), set()).update(
                    ("get", "list", "watch")
                )
    return {
        namespace: [
            {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
            for (group, resource), verbs in sorted(rules.items())
        ]
        for namespace, rules in sorted(wanted.items())
    }


def relative_to(file: str | Path, workdir: str) -> str:
    """The file as the scheduled command names it: relative to the working directory when inside it."""
    path = Path(file).resolve()
    try:
        return str(path.relative_to(Path(workdir).resolve()))
    except ValueError:
        return str(path)
