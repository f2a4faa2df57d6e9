"""Run a suite (a game day): each experiment through the same path as `gameday run` (app.prepare
and app.run, its own report under the suite's directory), then the suite's report.

A signal stops the experiment that is running the way it stops a single run (its faults reverted,
its report written) and skips the rest; so does `stop_on` and a deadline the next experiment would
overrun. The suite report says which ran, which were skipped and why.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from chaoslib_ext import app
from chaoslib_ext.errors import ExitCode, GamedayError, SpecError
from chaoslib_ext.events import Subscriber
from chaoslib_ext.follow_up import FollowUp, Gate
from chaoslib_ext.history.store import History
from chaoslib_ext.spec.model import STARTUP_SECONDS, Experiment
from chaoslib_ext.spec.suite import Suite
from chaoslib_ext.state.trust import RunDirectory, Untrusted
from chaoslib_ext.units import format_duration

# what stops the day after an experiment's verdict, for each stop_on
STOPS = {"violated": {"violated", "regressed", "aborted"}, "aborted": {"aborted"}, "never": set()}


@dataclass(frozen=True)
class Entry:
    """One experiment of the day: what came of it (its report), or why it did not run."""

    experiment: Experiment
    report: dict[str, Any] | None = None
    report_dir: Path | None = None
    skipped: str = ""  # why it did not run
    error: str = ""  # why it could not start (its host check failed, its target was in use)

    @property
    def verdict(self) -> str:
        if self.report is not None:
            return str(self.report["verdict"])
        return "skipped" if self.skipped else "aborted"


@dataclass(frozen=True)
class SuiteRun:
    """A finished day: each entry in the order it came, when it started and ended, and why it
    stopped early (if it did)."""

    suite: Suite
    run_id: str
    directory: RunDirectory
    entries: list[Entry]
    started_at: float
    ended_at: float
    stopped: str  # why the day ended before its last experiment ("" if it did not)
    cut_short: bool  # by a signal or the deadline, rather than by stop_on after a verdict


def run_suite(
    suite: Suite,
    report_dir: Path,
    watchers_for: Callable[[Experiment], Sequence[Subscriber]] = lambda _: (),
    dry_run: bool = False,
    announce: Callable[[str], None] = lambda _: None,
    history: History | None = None,
    gate: Gate | None = None,
) -> SuiteRun:
    """Run every experiment in order, each recorded in `history` and gated by `gate` as a single
    run would be; `announce` hears when each starts and why the day stops."""
    from chaoslib_ext.engine.run import new_run_id

    run_id = new_run_id(suite.secrets.mask(suite.title))
    try:
        directory = RunDirectory.create(report_dir, run_id)
    except Untrusted as error:
        raise SpecError(error.message, where=error.where, hint=error.hint) from None
    started = time.time()
    entries: list[Entry] = []
    stopped, cut_short = "", False
    with signals_held() as stop:
        for number, experiment in enumerate(suite.experiments, 1):
            if not stopped and stop.reason:
                stopped, cut_short = stop.reason, True
            if not stopped and suite.deadline is not None:
                needed = experiment.phases.total + STARTUP_SECONDS
                if time.time() - started + needed > suite.deadline:
                    cut_short = True
                    stopped = (
                        f"the deadline ({format_duration(suite.deadline)}) would pass during "
                        f"{experiment.title!r}, which needs about {format_duration(needed)}"
                    )
            if stopped:
                entries.append(Entry(experiment, skipped=stopped))
                continue
            announce(f"[{number}/{len(suite.experiments)}] {experiment.title} ({experiment.path})")
            follow_up = FollowUp(history, gate, experiment.notify, suite_run_id=run_id)
            entry = _run_one(experiment, directory.path, watchers_for(experiment), dry_run, follow_up, stop)
            entries.append(entry)
            if stop.reason:  # during the run (which stopped for it), or while it was stopping anyway
                stopped, cut_short = f"{experiment.title!r}: {stop.reason}", True
            elif entry.verdict in STOPS[suite.stop_on]:
                stopped = f"stop_on: {suite.stop_on}, and {experiment.title!r} was {entry.verdict}"
            if not stopped and number < len(suite.experiments) and suite.pause > 0:
                stop.wait(suite.pause)
            if stopped:
                announce(f"stopping the day: {stopped}")
    return SuiteRun(suite, run_id, directory, entries, started, time.time(), stopped, cut_short)


def _run_one(
    experiment: Experiment,
    report_dir: Path,
    watchers: Sequence[Subscriber],
    dry_run: bool,
    follow_up: FollowUp,
    stop: Stop,
) -> Entry:
    try:
        prepared = app.prepare(experiment)
        if stop.reason:  # a signal while its host was checked: it does not start
            return Entry(experiment, skipped=stop.reason)
        outcome = app.run(
            prepared, report_dir, watchers=watchers, dry_run=dry_run, follow_up=follow_up, heard=stop.heard
        )
    except GamedayError as error:  # it could not start: the day goes on, and its row says why
        return Entry(experiment, error=experiment.secrets.mask(str(error).splitlines()[0]))
    report_file = outcome.written[0]
    return Entry(experiment, report=outcome.report, report_dir=report_file.parent)


class Stop:
    """A SIGINT or SIGTERM during the day: remembered (the day goes no further), and it ends a
    pause at once. A run in progress hears it too, and stops safely on its own."""

    def __init__(self) -> None:
        self.reason = ""
        self._event = threading.Event()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    def heard(self, name: str) -> None:
        self.reason = self.reason or f"interrupted by {name}"
        self._event.set()

    def signalled(self, number: int, _frame: FrameType | None) -> None:
        self.heard(signal.Signals(number).name)


@contextmanager
def signals_held() -> Iterator[Stop]:
    """SIGINT and SIGTERM while no run is in progress (between experiments, while the day's report
    is written): remembered, not fatal. A run installs its own handlers, which stop it safely."""
    stop = Stop()
    previous = {sig: signal.signal(sig, stop.signalled) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def suite_exit_code(run: SuiteRun) -> ExitCode:
    """3 if any experiment was aborted or could not start, or a signal or the deadline cut the day
    short; else 1 if any was violated; else 4 if any was not tested; else 0."""
    verdicts = {entry.verdict for entry in run.entries}
    if "aborted" in verdicts or run.cut_short:
        return ExitCode.ABORTED
    if verdicts & {"violated", "regressed"}:
        return ExitCode.VIOLATED
    if "not-tested" in verdicts:
        return ExitCode.NOT_TESTED
    return ExitCode.HELD
