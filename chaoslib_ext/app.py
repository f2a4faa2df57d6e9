"""What gameday does, as functions: validate a file, plan an experiment, run it, recover. The
command line (cli.py) only parses, calls these and prints; a suite runner or a scheduler calls
the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslib_ext.drivers import driver_class, driver_for, load_undo_forms
from chaoslib_ext.drivers.base import Driver
from chaoslib_ext.errors import ExitCode, RunAborted, SpecError, TargetBusy
from chaoslib_ext.events import Subscriber
from chaoslib_ext.follow_up import FollowUp
from chaoslib_ext.plan.blast import check_blast_radius
from chaoslib_ext.plan.make import Plan, make_plan
from chaoslib_ext.spec import SpecErrors, load_experiment
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.spec.suite import Suite
from chaoslib_ext.spec.suite import load_suite as load_suite_file
from chaoslib_ext.state.ledger import ledgers
from chaoslib_ext.state.locks import TargetLock
from chaoslib_ext.state.trust import RunDirectory, Untrusted


@dataclass(frozen=True)
class Prepared:
    """An experiment ready to run here: its plan and its driver, the host checked."""

    plan: Plan
    driver: Driver

    @property
    def experiment(self) -> Experiment:
        return self.plan.experiment


@dataclass(frozen=True)
class Outcome:
    """A finished run: its exit code, its report document and the files written."""

    exit_code: ExitCode
    report: dict[str, Any]
    written: list[Path]


def validate(file: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """The experiment, if the file alone is valid (whatever the host): schema, references and,
    where the driver knows its targets from the file, the blast radius. Raises SpecError(s)."""
    experiment = load_experiment(file, overrides)
    if driver_class(experiment.driver).offline:
        check_blast_radius(make_plan(experiment))
    return experiment


def load_suite(file: str | Path, overrides: dict[str, Any] | None = None) -> Suite:
    """A suite whose every experiment passed `validate` (its blast radius too), before anything runs."""
    return load_suite_file(file, overrides, load=validate)


def prepare(experiment: Experiment) -> Prepared:
    """Check the host (the driver's preflight), resolve every fault's targets and check the blast
    radius; nothing is changed."""
    driver = driver_for(experiment)
    problems = driver.preflight()
    if problems:
        raise SpecErrors(problems)
    plan = make_plan(experiment, driver)
    check_blast_radius(plan)
    return Prepared(plan, driver)


def run(
    prepared: Prepared,
    report_dir: Path,
    watchers: Sequence[Subscriber] = (),
    dry_run: bool = False,
    follow_up: FollowUp | None = None,
    heard: Callable[[str], None] | None = None,
) -> Outcome:
    """Run a prepared experiment to its end and write its reports, alone on its target: the
    target's lock held, and no dead run's changes left behind. `follow_up`: the regression gate,
    notifications and history entry (by default, the experiment's own notifications only);
    `heard`: told of each SIGINT/SIGTERM the run receives (its name)."""
    follow_up = follow_up or FollowUp(notify=prepared.experiment.notify)
    from chaoslib_ext.engine.run import new_run_id

    experiment = prepared.experiment
    run_id = new_run_id(experiment.secrets.mask(experiment.title))  # it names files and rules
    try:
        lock = TargetLock.acquire(prepared.driver.lock_key(), run_id, experiment.path)
    except TargetBusy as busy:  # a scheduled run that found another on its target: it says so
        follow_up.skipped(experiment, run_id, report_dir, busy.message)
        raise
    try:
        load_undo_forms()
        left_behind = [state for state in ledgers() if state.blocks]
        if left_behind:  # checked holding the lock: no other run can be leaving some right now
            raise RunAborted(
                f"run {left_behind[0].run_id} (pid {left_behind[0].pid}) died and left "
                f"{len(left_behind[0].pending)} change(s) behind",
                where=str(left_behind[0].path),
                hint="run `gameday recover` first",
            )
        return _run_locked(prepared, run_id, report_dir, watchers, dry_run, follow_up, heard)
    finally:
        lock.release()


def _run_locked(
    prepared: Prepared,
    run_id: str,
    report_dir: Path,
    watchers: Sequence[Subscriber],
    dry_run: bool,
    follow_up: FollowUp,
    heard: Callable[[str], None] | None,
) -> Outcome:
    from chaoslib_ext.engine.run import Engine
    from chaoslib_ext.engine.signals import interruptible
    from chaoslib_ext.report import write_reports

    try:
        run_dir = RunDirectory.create(report_dir, run_id)
    except Untrusted as error:  # a bad report directory is bad input
        raise SpecError(error.message, where=error.where, hint=error.hint) from None
    engine = Engine(prepared.plan, prepared.driver, run_id, run_dir, watchers, dry_run=dry_run)
    try:
        with interruptible(engine, prepared.experiment.secrets.mask, heard):
            result = engine.run()
            mask = prepared.experiment.secrets.mask
            report, written = write_reports(
                result, run_dir, amend=lambda report: follow_up.amend(report, run_dir.path, mask)
            )
    finally:
        run_dir.close()
    return Outcome(ExitCode(report["exit_code"]), report, written)


@dataclass(frozen=True)
class Recovery:
    """What `recover` did: runs it left alone (still running, or another user's), what it undid
    and what it could not."""

    left_alone: list[str]
    undone: list[str]
    failed: list[str]


def recover(sweep: Sequence[str] = ()) -> Recovery:
    """Undo what dead runs left behind, from their ledgers (only the forms gameday writes); with
    `sweep`, also what those drivers find without a ledger (objects of a run on another machine)."""
    import os

    from chaoslib_ext.state.ledger import recover as undo_left_behind

    load_undo_forms()
    me = os.geteuid()
    left_alone = []
    for state in ledgers():
        if state.alive:
            left_alone.append(f"still running, left alone: run {state.run_id} (pid {state.pid})")
        elif state.owner != me and me != 0 and state.pending:
            left_alone.append(
                f"left alone: run {state.run_id} belongs to uid {state.owner} (they, or root, recover it)"
            )
    undone, failed = undo_left_behind()
    for name in sweep:
        swept, not_swept = driver_class(name).sweep()
        undone, failed = undone + swept, failed + not_swept
    return Recovery(left_alone, undone, failed)
