"""What follows a run's verdict before its report is written: the regression gate against the
history, the notifications, and then the run's entry in the history.

The gate can only turn a held run into a failed one (verdict "regressed", exit code 1); a
notification or a history that fails is written into the report and changes nothing else.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chaoslib_ext.errors import ExitCode, SpecError
from chaoslib_ext.history.compare import Bound, changes, regressions
from chaoslib_ext.history.store import History, Run, run_from_report, skipped_run
from chaoslib_ext.notify import Notification, send_all, summary_of
from chaoslib_ext.report.document import iso
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.trust import RunDirectory, Untrusted
from chaoslib_ext.units import format_ms, format_percent

LAST_HELD = "last-held"


@dataclass(frozen=True)
class Gate:
    """`--baseline last-held|RUN --max-regression ...`."""

    baseline: str
    bounds: tuple[Bound, ...]


@dataclass(frozen=True)
class FollowUp:
    history: History | None = None
    gate: Gate | None = None
    notify: tuple[Notification, ...] = ()
    suite_run_id: str | None = None

    def amend(self, report: dict[str, Any], report_dir: Path, mask: Callable[[str], str]) -> None:
        """Judge the regression, send the notifications and record the run in the history; what
        came of each goes into the report (which is written next, in `report_dir`)."""
        if self.history is None and self.gate is None and not self.notify:
            return
        # once: its key and git commit take git subprocesses; the gate may change its verdict
        current = run_from_report(report, report_dir / "report.json", self.suite_run_id)
        if self.gate is not None and self.history is not None:
            try:
                report["regression"] = self._regression(report, current)
            except SpecError as error:  # the history went away mid-run: judged on the SLO alone
                report["warnings"].append(mask(f"regression gate not applied: {error}"))
        if self.notify:
            report["notifications"] = send_all(self.notify, experiment_summary(report, report_dir), mask)
        if self.history is not None:
            judged = replace(
                current,
                verdict=report["verdict"],
                exit_code=report["exit_code"],
                reasons=list(report["reasons"]),
            )
            try:
                self.history.record_run(judged)
            except Exception as error:
                report["warnings"].append(mask(f"not recorded in the history {self.history.where}: {error}"))

    def skipped(self, experiment: Experiment, run_id: str, report_dir: Path, reason: str) -> None:
        """A run that did not start because another held its target: `skipped.json` and `report.md`
        in its run directory, and a `skipped` entry in the history."""
        now = time.time()
        document = {
            "schema": "gameday-skipped/1",
            "run_id": run_id,
            "experiment": {
                "title": experiment.title,
                "file": str(experiment.path),
                "sha256": experiment.sha256,
            },
            "skipped_at": iso(now),
            "reason": reason,
            "exit_code": int(ExitCode.ABORTED),
        }
        document = experiment.secrets.mask_data(document)
        try:
            directory = RunDirectory.create(report_dir, run_id)
        except Untrusted:
            return  # the one-line error about the busy target still reaches the user
        try:
            directory.write("skipped.json", json.dumps(document, indent=2) + "\n")
            directory.write(
                "report.md", f"# ⏭️ Skipped: {document['experiment']['title']}\n\n{document['reason']}\n"
            )
        finally:
            directory.close()
        if self.history is not None:
            with contextlib.suppress(Exception):  # the run is skipped either way, and says so above
                self.history.record_run(skipped_run(document, experiment, directory.path / "skipped.json"))

    def _regression(self, report: dict[str, Any], current: Run) -> dict[str, Any]:
        assert self.gate is not None and self.history is not None
        if self.gate.baseline == LAST_HELD:
            baseline = self.history.last_held(current.experiment_key)
        else:
            baseline = self.history.run(self.gate.baseline)
        section: dict[str, Any] = {
            "baseline": None if baseline is None else baseline.run_id,
            "bounds": [str(bound) for bound in self.gate.bounds],
            "changes": [],
            "regressions": [],
        }
        if baseline is None:
            report["warnings"].append(
                "regression gate: no earlier run of this experiment held, so nothing was compared"
            )
            return section
        section["changes"] = [change.describe() for change in changes(baseline, current)]
        if report["verdict"] == "held":
            found = regressions(list(self.gate.bounds), baseline, current)
            section["regressions"] = found
            if found:
                report["verdict"], report["exit_code"] = "regressed", int(ExitCode.VIOLATED)
                report["reasons"] += [f"regressed against {baseline.run_id}: {text}" for text in found]
        return section


def experiment_summary(report: dict[str, Any], report_dir: Path) -> dict[str, Any]:
    """What a notification says of a run: verdict, reasons, each judged phase's key SLIs, the report."""
    slis = {
        phase["name"]: f"availability {format_percent(phase['availability'])}, "
        f"p95 {format_ms(phase['latency_ms']['p95'])}"
        for phase in report["phases"]
        if phase["judged"]
    }
    title, ttr = report["experiment"]["title"], report["recovery"]["time_to_recover_s"]
    return summary_of("experiment", title, report, slis, report_dir / "report.json", time_to_recover_s=ttr)
