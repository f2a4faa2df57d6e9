"""engine: run a plan. Services up, steady state, load, phases, faults in and out, verdict.

Whatever happens (a fault that cannot be applied, a probe that raises, Ctrl-C, SIGTERM), the
`finally` path reverts applied faults, stops the load and stops every service gameday started.
"""

from __future__ import annotations

import math
import re
import secrets
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from chaoslib_ext.drivers.base import Driver, RunContext
from chaoslib_ext.engine.guards import GuardTrip, GuardTripped, GuardWatch
from chaoslib_ext.engine.probes import ProbeResult, run_probe
from chaoslib_ext.errors import ExitCode, RunAborted
from chaoslib_ext.events import Subscriber, Timeline
from chaoslib_ext.faults.injection import FaultError, FaultRecord, Injection
from chaoslib_ext.load.runner import LoadRunner
from chaoslib_ext.measure.samples import FLUSH_LAG_SECONDS, SampleStore
from chaoslib_ext.measure.slo import (
    ObjectiveResult,
    Sli,
    Verdict,
    Window,
    check,
    judge,
    measure,
    top_error,
    whole_seconds,
)
from chaoslib_ext.plan.make import Plan
from chaoslib_ext.state.ledger import Ledger
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import UndoAction

LIVE_WINDOW_SECONDS = 5
GUARD_CHECK_SECONDS = 0.1  # how often the engine asks the guards whether one has tripped
DRAIN_MARGIN_SECONDS = 2.0  # waited for the judged phases' last requests, on top of their timeout
LATE_MEASUREMENTS_SECONDS = 10.0  # seconds of load unmeasured (guards blind) before the run aborts
GATE_WAIT_SECONDS = 1.0  # how long the gate waits for the baseline's seconds before the fault is due


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    STEADY_STATE_FAILED = "steady-state-failed"  # before the fault: nothing was injected
    BASELINE_FAILED = "baseline-failed"  # before the fault: nothing was injected
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"


NOT_TESTED = (RunStatus.STEADY_STATE_FAILED, RunStatus.BASELINE_FAILED)
STOPPED = (RunStatus.ABORTED, RunStatus.INTERRUPTED)


class BaselineFailed(Exception):
    """The baseline did not hold: the system was not healthy before the fault, so none is injected."""


class Interrupted(BaseException):
    """Raised in the main thread by the SIGINT/SIGTERM handlers while a run can be cancelled.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` (in a probe, say)
    swallows it.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@dataclass
class RunResult:
    run_id: str
    plan: Plan
    report_dir: Path
    started_at: float
    timeline: Timeline
    status: RunStatus = RunStatus.RUNNING
    ended_at: float = 0.0
    error: str | None = None
    load_started_at: float | None = None
    windows: list[Window] = field(default_factory=list)
    samples: SampleStore = field(default_factory=SampleStore)
    steady_before: list[ProbeResult] = field(default_factory=list)
    steady_after: list[ProbeResult] = field(default_factory=list)
    fault_records: list[FaultRecord] = field(default_factory=list)
    verdict: Verdict | None = None
    guard_trip: GuardTrip | None = None
    dry_run: bool = False
    cleanup_problems: list[str] = field(default_factory=list)  # for the report's reasons
    load_workers: list[dict[str, Any]] = field(default_factory=list)  # as Locust's master saw them

    @property
    def exit_code(self) -> ExitCode:
        if self.status in STOPPED:
            return ExitCode.ABORTED
        if self.status in NOT_TESTED:
            return ExitCode.NOT_TESTED
        steady_ok = all(result.ok for result in self.steady_after)
        held = self.verdict is not None and self.verdict.held and steady_ok
        if held and self.untouched() and not self.dry_run:
            return ExitCode.NOT_TESTED  # held, but what the fault hit carried no traffic: nothing was tested
        return ExitCode.HELD if held else ExitCode.VIOLATED

    def untouched(self) -> list[str]:
        """The faults that touched no traffic, where that was measured (fault proxies, the DNS
        server), as reasons."""
        reasons = []
        for fault in self.plan.faults:
            measured = [
                r for r in self.fault_records if r.fault_index == fault.index and "traffic" in r.detail
            ]
            if measured and not any(r.detail["traffic"] for r in measured):
                hit = ", ".join(sorted({r.target for r in measured}))
                reasons.append(
                    f"fault #{fault.index + 1} {fault.spec.kind} touched no traffic: nothing went through "
                    f"{hit} while it acted, so the verdict says nothing about this fault"
                )
        return reasons


def _objective_text(objective: ObjectiveResult) -> str:
    if objective.name == "stall":
        return objective.detail
    return f"{objective.name} {objective.detail}"


def new_run_id(title: str, now: float | None = None) -> str:
    """20261127-054100-checkout-keeps-its-slo-3fa9: sortable, readable, and unique (random tail)."""
    stamp = datetime.fromtimestamp(now or time.time(), tz=UTC).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:36].rstrip("-")
    return f"{stamp}-{slug or 'run'}-{secrets.token_hex(2)}"


class Engine:
    def __init__(
        self,
        plan: Plan,
        driver: Driver,
        run_id: str,
        run_dir: RunDirectory,
        watchers: Sequence[Subscriber] = (),
        dry_run: bool = False,
    ) -> None:
        """`watchers` see every run event as it happens (the progress lines, say)."""
        self.plan = plan
        self.driver = driver
        self.dry_run = dry_run  # everything but the injection: faults say what they would do
        self.experiment = plan.experiment
        self.result = RunResult(run_id, plan, run_dir.path, time.time(), Timeline(), dry_run=dry_run)
        self.timeline = self.result.timeline
        for watcher in watchers:
            self.timeline.subscribe(watcher)
        self.logs = run_dir
        self.ledger: Ledger | None = None  # made when the run starts changing things
        self.started = False  # the driver has set up what the faults act through
        slo = self.experiment.slo
        self.load = LoadRunner(
            self.experiment.load,
            plan.duration,
            run_dir,
            self.timeline,
            slo.latency_limits_us,
        )
        self.result.samples = self.load.samples
        self.guards = GuardWatch(
            self.experiment.guards, self.load.samples, self.result.started_at, slo.max_stall
        )
        self.faults = [Injection(f.index, f.spec, f.seed) for f in plan.faults]
        self.applied: set[int] = set()
        self.cancellable = False  # True while a signal may interrupt the run (not during clean-up)
        self.load_entry: int | None = None

    def run(self) -> RunResult:
        """Run to the end; whatever happens, clean up and judge what was observed."""
        result = self.result
        try:
            self.cancellable = True
            self._run()
        except BaselineFailed as failed:
            self.cancellable = False
            self._stop_with(RunStatus.BASELINE_FAILED, str(failed))
        except GuardTripped as tripped:
            self.cancellable = False
            self.result.guard_trip = tripped.trip
            self._stop_with(RunStatus.ABORTED, str(tripped))
        except RunAborted as error:
            self.cancellable = False
            self._stop_with(RunStatus.ABORTED, str(error))
        except (Interrupted, KeyboardInterrupt) as interrupt:
            self.cancellable = False
            name = interrupt.signal_name if isinstance(interrupt, Interrupted) else "SIGINT"
            self._stop_with(RunStatus.INTERRUPTED, f"interrupted by {name}")
        except Exception as error:  # a bug in gameday: still revert, clean up and report it
            self.cancellable = False
            self.timeline.add("engine", "internal-error", detail=traceback.format_exc()[-2000:])
            self._stop_with(
                RunStatus.ABORTED, f"internal error (a bug in gameday, please report it): {error!r}"
            )
        finally:
            self.cancellable = False
            self._clean_up()
            result.ended_at = time.time()
            if result.load_started_at is not None and result.verdict is None:
                if result.status == RunStatus.BASELINE_FAILED:  # judged up to the fault that never came
                    self._judge(until=next(w.start for w in result.windows if w.name == "fault"))
                else:
                    self._judge(until=self.load.stopped_at or result.ended_at, cut_short=True)
        return result

    def _clean_up(self) -> None:
        """Revert, stop the load, stop the services: each step runs even if one before it failed."""
        for step in (
            self._revert_all,
            self.guards.stop,
            self._stop_load,
            self._stop_target,
            self._mask_logs,
            self._close_ledger,
            self._finished,
        ):
            try:
                step()
            except Exception as error:  # keep going: the next step may be the one that matters
                self.timeline.add("engine", "cleanup-failed", step.__name__, error=repr(error))
                self.result.cleanup_problems.append(f"clean-up step {step.__name__} failed: {error}")
                if self.result.status not in STOPPED:
                    self._stop_with(RunStatus.ABORTED, f"clean-up step {step.__name__} failed: {error}")

    def _finished(self) -> None:
        self.timeline.publish("engine", "finished")

    def _stop_with(self, status: RunStatus, error: str) -> None:
        self.result.status, self.result.error = status, error
        self.timeline.add("engine", status, detail=error)

    def _run(self) -> None:
        result = self.result
        self.timeline.add("engine", "run", result.run_id, title=self.experiment.title)
        if self.experiment.services:
            self.timeline.add("engine", "starting-services", ", ".join(self.experiment.services))
        self.ledger = Ledger.create(result.run_id)
        self.started = True  # from now on, whatever start did before it failed is stopped
        self.driver.start(RunContext(self.logs, self.timeline, self.ledger))
        self.load.host = self.driver.load_host(self.experiment.load.host)
        result.steady_before = self._steady_state("before")
        if not all(probe.ok for probe in result.steady_before):
            result.status = RunStatus.STEADY_STATE_FAILED
            return
        self.timeline.add("load", "starting", self.experiment.load.host, users=self.experiment.load.users)
        ledger = self.ledger

        def remember_load(undo: UndoAction) -> None:
            self.load_entry = ledger.record("the Locust load generator", undo)

        self.load.start(on_spawn=remember_load)
        # Phases start on a whole second, so that each per-second sample falls in one phase.
        origin = float(math.ceil(time.time()))
        time.sleep(max(0.0, origin - time.time()))
        result.load_started_at = origin
        result.windows = [Window(p.name, origin + p.start, origin + p.end) for p in self.plan.phases]
        self.guards.start_watching(since=origin)
        self._follow_timeline(origin)
        self._revert_all()
        result.steady_after = self._steady_state("after")
        if not self.load.wait_drained(
            result.windows[-1].end, self.experiment.load.request_timeout + DRAIN_MARGIN_SECONDS
        ):
            self.timeline.add(
                "load", "not-drained", detail="requests of the judged phases were still waiting"
            )
        self._stop_load()
        result.status = RunStatus.COMPLETED
        self._judge(until=None)

    def _follow_timeline(self, origin: float) -> None:
        """Sleep from event to event (phase changes, fault applies and reverts), publishing status."""
        pending = [(origin + action.at, action) for action in self.plan.actions]
        phases = list(self.result.windows)
        end = origin + self.plan.duration
        next_status = 0.0
        while True:
            now = time.time()
            while phases and phases[0].start <= now:
                phase = phases.pop(0)
                ended = [w for w in self.result.windows if w.end == phase.start]
                if ended:
                    self._phase_over(ended[0])
                baseline = next(w for w in self.result.windows if w.name == "baseline")
                if phase.name == "fault" and self.plan.faults and whole_seconds(baseline.start, baseline.end):
                    self._gate(baseline)
                self.timeline.add("engine", "phase", phase.name, length=phase.length)
            while pending and pending[0][0] <= now:
                _, action = pending.pop(0)
                if action.kind == "apply":
                    self._apply(action.fault_index)
                else:
                    self._revert(action.fault_index)
            if now >= end:
                self._phase_over(self.result.windows[-1])
                return
            trip = self.guards.check(now)
            if trip is not None:
                self.timeline.add("guard", "tripped", trip.guard, observed=trip.observed)
                raise GuardTripped(trip)
            if self.load.problem:
                raise RunAborted(
                    f"the load measurements broke: {self.load.problem}", hint=f"see {self.load.log_path}"
                )
            if not self.load.running():
                raise RunAborted(
                    f"the load generator exited early: {self.load.last_log_line()}",
                    hint=f"see {self.load.log_path}",
                )
            latest = self.load.samples.latest_second()
            if latest is not None and now - (latest + 1) > LATE_MEASUREMENTS_SECONDS:
                raise RunAborted(  # the guards, and the gate, would be judging seconds nobody saw
                    f"the load's measurements stopped: the latest second is {now - latest - 1:.0f}s old",
                    hint=f"see {self.load.log_path} (Locust's master names a worker that holds them back)",
                )
            if now >= next_status:
                self._show_status(origin, now)
                next_status = now + 1.0
            upcoming = [end, next_status] + [t for t, _ in pending[:1]] + [p.start for p in phases[:1]]
            nap = GUARD_CHECK_SECONDS if self.experiment.guards else 0.5
            time.sleep(max(0.0, min(min(upcoming) - time.time(), nap)))

    def _gate(self, baseline: Window) -> None:
        """Inject nothing into a system that did not hold its SLO before the fault (or that no
        request reached): judged on the baseline's seconds the recorder has delivered by now, all
        but the last at least (normally there already). If they are late, the run stops rather
        than judge a baseline nobody saw (waiting longer would move the fault off its schedule)."""
        samples = self.load.samples
        needed = max(int(baseline.start), int(baseline.end) - 2)  # the last one may be on its way
        if samples.wait_for_second(needed, timeout=GATE_WAIT_SECONDS) is None:
            latest = samples.latest_second()
            behind = (
                "none arrived" if latest is None else f"the latest is {baseline.end - latest - 1:.0f}s old"
            )
            raise RunAborted(
                f"the load's measurements are late at the baseline's end ({behind}): nothing was injected",
                hint=f"see {self.load.log_path} (Locust's master names a worker that holds them back)",
            )
        latest = samples.latest_second()
        end = baseline.start if latest is None else min(baseline.end, latest + 1.0)
        slo = self.experiment.slo
        phase = judge(slo, samples, [Window("baseline", baseline.start, end)]).phases[0]
        if phase.sli.successes == 0:
            problem = "no request succeeded" if phase.sli.requests else "no request reached the host"
        elif "baseline" in slo.judge and not all(o.held for o in phase.objectives):
            problem = next(_objective_text(o) for o in phase.objectives if not o.held)
        else:
            self.timeline.add("engine", "gate", "baseline", held=True)
            return
        error = top_error(samples.window(baseline.start, end))
        raise BaselineFailed(
            f"baseline did not hold: {problem}"
            + (f"; top error: {error}" if error else "")
            + "; nothing was injected"
        )

    def _stop_load(self) -> None:
        self.load.stop()
        self.result.load_workers = self.load.worker_book.report()
        if self.ledger is not None and self.load_entry is not None:
            self.ledger.done(self.load_entry)

    def _stop_target(self) -> None:
        if self.started:
            self.driver.stop()

    def _mask_logs(self) -> None:
        """The services and Locust wrote their logs themselves: mask the secrets there now."""
        self.logs.rewrite_logs(self.experiment.secrets.mask)

    def _close_ledger(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
            if self.ledger.pending:
                raise RunAborted(
                    f"{len(self.ledger.pending)} change(s) could not be undone",
                    hint=f"run `gameday recover` (ledger: {self.ledger.path})",
                )

    def _apply(self, index: int) -> None:
        fault = self.faults[index]
        if self.dry_run:
            planned = self.plan.faults[index]
            targets = ", ".join(planned.candidates) or "the run's DNS server"
            self._record([fault.record("dry-run", targets, {"would": planned.description})])
            return
        if fault.lasting:
            self.applied.add(index)  # before it acts: a half-applied fault is reverted too
        try:
            records = fault.apply(self.driver)
        except FaultError as error:  # part-way: what it did is reverted below, and reported
            self._record(error.records)
            raise
        self._record(records)

    def _revert(self, index: int) -> None:
        if index not in self.applied:
            return
        fault = self.faults[index]
        try:
            records = fault.revert(self.driver)
        except FaultError as error:
            self._record(error.records)
            if error.lost:  # reverted, but a target it held did not stay: say so, then stop
                self.applied.discard(index)
                raise
            # reverted in part: report that part; clean-up tries the rest again
            self.timeline.add("fault", "revert-failed", fault.label, error=str(error))
            raise RunAborted(f"could not revert fault #{index + 1} {fault.label}: {error}") from error
        except Exception as error:
            self.timeline.add("fault", "revert-failed", fault.label, error=repr(error))
            raise RunAborted(f"could not revert fault #{index + 1} {fault.label}: {error!r}") from error
        self.applied.discard(index)
        self._record(records)

    def _revert_all(self) -> None:
        failures: list[Exception] = []
        for index in sorted(self.applied):
            try:
                self._revert(index)
            except Exception as error:  # the next fault still gets its revert
                failures.append(error)
        trip = self.result.guard_trip
        if trip is not None and trip.reverted_at is None and not self.applied:  # all of them, done
            trip.reverted_at = time.time()
            self.timeline.add(
                "guard", "reverted", trip.guard, after_breach_s=trip.reverted_at - trip.breach_at
            )
        if failures:
            raise failures[0]

    def _record(self, records: list[FaultRecord]) -> None:
        self.result.fault_records += records
        for record in records:
            self.timeline.add("fault", record.action, record.target, fault=record.fault, **record.detail)

    def _steady_state(self, when: str) -> list[ProbeResult]:
        results = []
        for probe in self.experiment.steady_state:
            outcome = run_probe(probe)
            results.append(outcome)
            self.timeline.add(
                "probe", "passed" if outcome.ok else "failed", outcome.name, when=when, detail=outcome.detail
            )
        return results

    def _show_status(self, origin: float, now: float) -> None:
        """The current phase's own figures since it began, and its last seconds', as answered."""
        window = next((w for w in self.result.windows if w.start <= now < w.end), None)
        stop = int(now - FLUSH_LAG_SECONDS)  # seconds before this one have reached the runner
        if window is None or stop <= window.start:
            return  # not one whole second of this phase yet: its end prints its figures anyway
        so_far = self._phase_so_far(window, stop)
        start = max(stop - LIVE_WINDOW_SECONDS, int(window.start))
        recent = measure(self.load.samples.finished_window(start, stop), stop - start)
        slo_ok = (
            all(o.held for o in check(self.experiment.slo, so_far, window.name)) if so_far.requests else None
        )
        self.timeline.publish(
            "engine",
            "status",
            window.name,
            elapsed=now - origin,
            total=self.plan.duration,
            so_far=so_far,
            recent=recent,
            slo_ok=slo_ok,
            workers=self.load.worker_book.live(),
        )

    def _phase_so_far(self, window: Window, stop: float) -> Sli:
        seconds = max(0, int(stop) - int(window.start))
        return measure(self.load.samples.finished_window(window.start, min(stop, window.end)), seconds)

    def _phase_over(self, window: Window) -> None:
        """One line per phase when it ends, whatever the output: its own figures."""
        self.load.samples.wait_for_second(int(window.end) - 1, timeout=FLUSH_LAG_SECONDS)
        self.timeline.publish("engine", "phase-over", window.name, sli=self._phase_so_far(window, window.end))

    def _judge(self, until: float | None, cut_short: bool = False) -> None:
        windows = self.result.windows
        if until is not None:  # an unfinished run: judge only what was observed
            windows = [Window(w.name, w.start, min(w.end, until)) for w in windows if w.start < until]
        self.result.verdict = judge(
            self.experiment.slo, self.load.samples, windows, self._fault_ended(), cut_short=cut_short
        )

    def _fault_ended(self) -> float | None:
        """When the last fault action took effect; None (the fault phase's end) if none did."""
        acted = [record.at for record in self.result.fault_records if record.action != "dry-run"]
        return max(acted, default=None)
