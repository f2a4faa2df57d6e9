"""The `gameday` command: validate, plan and run experiments.

Every error meant for a user is printed as one line and turned into an exit code; a traceback
only ever means a bug in gameday itself.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from chaoslib_ext import __version__, app
from chaoslib_ext.errors import ExitCode, GamedayError, SpecError
from chaoslib_ext.spec import SpecErrors, load_experiment, parse_overrides
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import state_dir
from chaoslib_ext.units import format_duration, format_ms, format_percent

if TYPE_CHECKING:
    from chaoslib_ext.follow_up import Gate
    from chaoslib_ext.history.store import History
    from chaoslib_ext.masking import Secrets


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in gameday's one-line form and a "did you mean" for options."""

    def error(self, message: str) -> NoReturn:
        hint = f"gameday {self.prog.removeprefix('gameday').strip()} --help".replace("  ", " ")
        unknown = re.match(r"unrecognized arguments: (-\S+)", message)
        if unknown:
            options = [o for a in _all_actions(self) for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(unknown.group(1).split("=")[0], options, n=1)
            message = f"unknown option {unknown.group(1)}"
            hint = f"did you mean {close[0]}?" if close else hint
        print(f"gameday: error: {message} (hint: {hint})", file=sys.stderr)
        sys.exit(int(ExitCode.INVALID_INPUT))


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's options and every subcommand's (unknown options reach the top-level parser)."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += sub._actions
    return actions


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gameday",
        description="Run chaos experiments under load and judge whether the system held its SLO.",
        epilog="exit codes: 0 SLO held, 1 SLO violated (or the steady state not restored after), "
        "2 invalid input, 3 aborted (a guard tripped, a fault could not be applied or reverted, the load "
        "failed, the target is in use, interrupted), 4 not tested (the steady state or the baseline did "
        "not hold before the fault, so nothing was injected; or no fault touched the load's traffic)",
    )
    parser.add_argument("--version", action="version", version=f"gameday {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check experiment files against the schema")
    validate.add_argument("files", nargs="+", metavar="FILE")
    _add_var(validate)

    plan = commands.add_parser("plan", help="print the timeline and targets; changes nothing")
    plan.add_argument("file", metavar="FILE")
    _add_var(plan)

    run = commands.add_parser("run", help="run an experiment and write its report")
    run.add_argument("file", metavar="FILE")
    _add_var(run)
    run.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where reports/<run-id>/ is written (default: ./reports)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress output, only the summary")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="run everything (services, load, steady state, phases, judging) but inject no fault",
    )
    _add_history(run)
    run.add_argument(
        "--max-regression",
        metavar="BOUNDS",
        help="fail (exit 1, verdict regressed) a run that held but got worse than its baseline by more than "
        "this: 'p95: 20%%, fault.availability: 0.5%%, time_to_recover: 50%%' (latency, time to recover and "
        "error budget relative; availability in percentage points)",
    )
    run.add_argument(
        "--baseline",
        metavar="last-held|RUN",
        help="the run --max-regression compares with: the latest held run of the same experiment "
        "(last-held, the default) or a run id from the history",
    )
    run.add_argument(
        "--junit",
        type=Path,
        metavar="PATH",
        help="also write the JUnit XML here (a fixed path for CI test reporters)",
    )

    history = commands.add_parser("history", help="list past runs (of one experiment) with their trend")
    history.add_argument("experiment", nargs="?", metavar="EXPERIMENT", help="an experiment file")
    history.add_argument("--last", type=_positive, default=20, metavar="N", help="how many runs (default 20)")
    _add_history(history)

    compare = commands.add_parser("compare", help="what changed between two runs, phase by phase")
    compare.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a run id (or a unique prefix); with one, "
        "it is compared with the run of the same experiment before it",
    )
    _add_history(compare)

    worker = commands.add_parser(
        "worker",
        help="join a run's Locust master as a load worker (load.workers in the experiment)",
        description="Runs a Locust worker with gameday's recorder that joins the master of a run whose "
        "experiment has load.workers. The master refuses a worker with another locustfile, gameday or "
        "Locust version, or a clock too far off its own (exit code 2).",
    )
    worker.add_argument("--master", required=True, metavar="HOST:PORT", help="where the run's master listens")
    worker.add_argument(
        "-f",
        "--locustfile",
        required=True,
        type=Path,
        help="the run's load.locustfile",
    )
    worker.add_argument(
        "--processes",
        default="1",
        metavar="N",
        help="Locust worker processes on this machine: a number, or auto (one per core); default 1",
    )

    k8s_workers = commands.add_parser(
        "k8s-workers",
        help="print Kubernetes objects that run an experiment's load.workers as pods",
        description="Prints a ConfigMap (the locustfile), a Job of load.workers.expect pods running "
        "`gameday worker`, and, unless --master is given, the Service in front of a gameday master running "
        "in the cluster (pods labelled app.kubernetes.io/component: gameday-master). Apply with kubectl.",
    )
    k8s_workers.add_argument("file", metavar="FILE")
    _add_var(k8s_workers)
    k8s_workers.add_argument("--image", required=True, help="an image with gameday installed")
    k8s_workers.add_argument("--namespace", default="default")
    k8s_workers.add_argument(
        "--master",
        metavar="HOST:PORT",
        help="where the master listens, if not in the cluster behind the Service",
    )

    schedule = commands.add_parser(
        "schedule",
        help="print what runs an experiment or a suite on a schedule: a Kubernetes CronJob, systemd units "
        "or a crontab line",
        description="Renders, never applies. Runs on one target never overlap: a run that finds the target's "
        "lock taken does not start (exit code 3). Each schedule runs `gameday recover` first.",
    )
    schedule.add_argument("file", metavar="FILE", help="an experiment or a suite (kind: suite)")
    schedule.add_argument("--cron", required=True, metavar="'M H DOM MON DOW'", help="when, as cron says it")
    schedule.add_argument("--format", choices=("cronjob", "systemd", "cron"), default="cronjob")
    schedule.add_argument(
        "--image", help="cronjob: an image with gameday and the experiment files at --workdir"
    )
    schedule.add_argument("--namespace", default="default", help="cronjob: where the CronJob runs (default)")
    schedule.add_argument(
        "--workdir",
        help="where the command runs: the repository with the experiments (here; in an image: /work)",
    )
    schedule.add_argument(
        "--report-dir", default="reports", help="systemd and cron: where reports go (reports)"
    )
    schedule.add_argument(
        "--secret", help="cronjob: a Secret whose keys become the run's environment (secrets: {env: ...})"
    )
    schedule.add_argument(
        "--env-file", help="systemd: an EnvironmentFile= with the variables the secrets are read from"
    )
    schedule.add_argument("--output-dir", type=Path, help="write the files there instead of printing them")
    _add_var(schedule)

    recover = commands.add_parser(
        "recover",
        help="undo what runs that died (even by SIGKILL) left behind, from their ledgers",
        description="Reads the ledgers in $GAMEDAY_STATE_DIR (default ~/.local/state/gameday) and undoes "
        "every change of runs that are no longer alive: fault rules, namespaces, services, load.",
    )
    recover.add_argument(
        "--kubernetes",
        action="store_true",
        help="also delete Chaos Mesh objects gameday made whose run is over, found by label in the current "
        "context (a run on another machine, say)",
    )
    return parser


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _add_history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--history",
        metavar="PATH|URL",
        help="the history of runs: an SQLite file or a postgresql:// URL (default: $GAMEDAY_HISTORY, "
        "else history.sqlite in the state directory, $GAMEDAY_STATE_DIR or ~/.local/state/gameday)",
    )


def _add_var(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a variable declared under variables: (repeatable)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "validate": _validate,
        "plan": _plan,
        "run": _run,
        "history": _history,
        "compare": _compare,
        "worker": _worker,
        "k8s-workers": _k8s_workers,
        "schedule": _schedule,
        "recover": _recover,
    }
    masks = Masks()
    try:
        return int(handlers[args.command](args, masks))
    except GamedayError as error:
        for line in str(error).splitlines():
            print(f"gameday: error: {masks(line)}", file=sys.stderr)
        return int(error.exit_code)


class Masks:
    """The secrets of the experiments this command loaded: nothing it prints shows them."""

    def __init__(self) -> None:
        self._masks: list[Callable[[str], str]] = []

    def add(self, experiment: Experiment) -> Experiment:
        self.add_secrets(experiment.secrets)
        return experiment

    def add_secrets(self, secrets: Secrets) -> None:
        self._masks.append(secrets.mask)

    def __call__(self, text: str) -> str:
        for mask in self._masks:
            text = mask(text)
        return text


def _validate(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext.spec.suite import is_suite

    overrides = parse_overrides(args.var)
    worst = ExitCode.HELD
    for file in args.files:
        try:
            if is_suite(file):
                suite = app.load_suite(file, overrides)
                masks.add_secrets(suite.secrets)
                what = f"suite {suite.title} ({len(suite.experiments)} experiments)"
            else:
                what = masks.add(app.validate(file, overrides)).title
        except SpecErrors as errors:
            for error in errors.errors:
                print(f"gameday: error: {error}", file=sys.stderr)
            worst = ExitCode.INVALID_INPUT
        except GamedayError as error:
            print(f"gameday: error: {error}", file=sys.stderr)
            worst = ExitCode.INVALID_INPUT
        else:
            print(masks(f"ok  {file}: {what}"))
    return worst


def _plan(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext.plan.render import render_plan

    prepared = app.prepare(masks.add(load_experiment(args.file, parse_overrides(args.var))))
    print(masks(render_plan(prepared.plan, prepared.driver)))
    return ExitCode.HELD


def _run(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext.engine.progress import Progress
    from chaoslib_ext.follow_up import FollowUp
    from chaoslib_ext.spec.suite import is_suite

    gate = _gate(args)
    history = _history_for_run(args, gate)
    if is_suite(args.file):
        return _run_suite(args, masks, history, gate)
    experiment = masks.add(load_experiment(args.file, parse_overrides(args.var)))
    if gate is not None:
        assert history is not None  # a gate needs it: _history_for_run raised otherwise
        _check_baseline(gate, history, experiment)
    prepared = app.prepare(experiment)
    progress = Progress(quiet=args.quiet, mask=masks)
    follow_up = FollowUp(history, gate, experiment.notify)
    outcome = app.run(
        prepared, args.report_dir, watchers=[progress], dry_run=args.dry_run, follow_up=follow_up
    )
    tell(masks(summary(outcome.report, outcome.written)))
    from chaoslib_ext.report.junit import render_junit
    from chaoslib_ext.report.markdown import render_markdown

    _publish(args, render_markdown(outcome.report), lambda: render_junit(outcome.report))
    return outcome.exit_code


def _run_suite(
    args: argparse.Namespace, masks: Masks, history: History | None, gate: Gate | None
) -> ExitCode:
    from chaoslib_ext.engine.progress import Progress
    from chaoslib_ext.follow_up import LAST_HELD
    from chaoslib_ext.report.suite import render_suite_junit, render_suite_markdown, write_suite_reports
    from chaoslib_ext.suite import run_suite, signals_held

    suite = app.load_suite(args.file, parse_overrides(args.var))
    masks.add_secrets(suite.secrets)
    for experiment in suite.experiments:
        masks.add(experiment)
    if gate is not None and gate.baseline != LAST_HELD:
        raise SpecError(
            "--baseline RUN names one run: a suite compares each experiment with its own",
            hint="use --baseline last-held (the default) with a suite",
        )
    run = run_suite(
        suite,
        args.report_dir,
        watchers_for=lambda _: [Progress(quiet=args.quiet, mask=masks)],
        dry_run=args.dry_run,
        announce=lambda line: tell(masks(line)),
        history=history,
        gate=gate,
    )
    try:
        with signals_held():  # the day's report is written, whatever arrives meanwhile
            document, written = write_suite_reports(run, history)
    finally:
        run.directory.close()
    tell(masks(suite_summary_text(document, written)))
    _publish(args, render_suite_markdown(document), lambda: render_suite_junit(document, run))
    return ExitCode(document["exit_code"])


def suite_summary_text(document: dict[str, Any], written: list[Path]) -> str:
    lines = [
        "",
        f"GAME DAY {document['verdict'].upper()}: {document['suite']['title']}  "
        f"(exit code {document['exit_code']}, {document['ran']} of {len(document['experiments'])} ran)",
    ]
    for row in document["experiments"]:
        why = "" if row["verdict"] == "held" else f"  {'; '.join(row['what_broke'])[:160]}"
        lines.append(f"  {row['index']:>2}. {row['verdict']:<10} {row['title']}{why}")
    lines += [f"  - {reason}" for reason in document["reasons"]]
    lines += [f"  report: {path}" for path in written]
    return "\n".join(lines)


def _publish(args: argparse.Namespace, markdown: str, junit: Callable[[], str]) -> None:
    """The Markdown report into GitHub's step summary (when set); the JUnit XML to --junit."""
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            with open(summary_file, "a", encoding="utf-8") as stream:
                stream.write(markdown + "\n")
        except OSError as error:
            print(
                f"gameday: warning: cannot write GITHUB_STEP_SUMMARY {summary_file}: {error.strerror}",
                file=sys.stderr,
            )
    if args.junit is not None:
        try:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            args.junit.write_text(junit())
        except OSError as error:  # the verdict stands: the report directory has junit.xml too
            print(f"gameday: warning: cannot write --junit {args.junit}: {error.strerror}", file=sys.stderr)


def _open_history(args: argparse.Namespace, create: bool = True) -> History:
    from chaoslib_ext.history.store import History, default_location

    return History.open(args.history or os.environ.get("GAMEDAY_HISTORY") or default_location(), create)


def _history_for_run(args: argparse.Namespace, gate: Gate | None) -> History | None:
    """The history a run is recorded in. One that cannot be opened stops a run only when the run
    needs it (a regression gate, or --history given); otherwise the run goes on without it."""
    from chaoslib_ext.state.trust import Untrusted

    try:
        return _open_history(args)
    except GamedayError as error:
        if gate is not None or args.history is not None or isinstance(error, Untrusted):
            raise  # needed, or the state directory the run needs too is not to be trusted
        print(f"gameday: warning: this run is not recorded in the history: {error}", file=sys.stderr)
        return None


def _gate(args: argparse.Namespace) -> Gate | None:
    from chaoslib_ext.follow_up import LAST_HELD, Gate
    from chaoslib_ext.history.compare import parse_bounds

    if args.max_regression is None:
        if args.baseline is not None:
            raise SpecError("--baseline without --max-regression", hint="add --max-regression 'p95: 20%'")
        return None
    return Gate(args.baseline or LAST_HELD, tuple(parse_bounds(args.max_regression)))


def _check_baseline(gate: Gate, history: History, experiment: Experiment) -> None:
    """A --baseline RUN must be a run of this experiment in the history."""
    from chaoslib_ext.follow_up import LAST_HELD
    from chaoslib_ext.history.store import experiment_key

    if gate.baseline == LAST_HELD:
        return
    baseline = history.run(gate.baseline)
    if baseline is None:
        raise SpecError(
            f"--baseline {gate.baseline}: no such run (or more than one) in the history",
            where=history.where,
            hint="see gameday history EXPERIMENT",
        )
    if (
        baseline.verdict not in ("held", "regressed") or baseline.dry_run
    ):  # regressed: accepted as the new normal
        raise SpecError(
            f"--baseline {gate.baseline} was {baseline.verdict}{' (a dry run)' if baseline.dry_run else ''}: "
            "a baseline is a run that held its SLO",
            where=history.where,
            hint="see gameday history EXPERIMENT, or use --baseline last-held",
        )
    if baseline.experiment_key != experiment_key(str(experiment.path)):
        raise SpecError(
            f"--baseline {gate.baseline} is a run of {baseline.experiment_key}, not of this experiment",
            where=history.where,
            hint="see gameday history EXPERIMENT",
        )


def _history(args: argparse.Namespace, _masks: Masks) -> ExitCode:
    from chaoslib_ext.history.render import render_runs

    history = _open_history(args, create=False)
    print(render_runs(history.runs(args.experiment, limit=args.last)))
    return ExitCode.HELD


def _compare(args: argparse.Namespace, _masks: Masks) -> ExitCode:
    from chaoslib_ext.history.render import render_comparison

    if len(args.runs) > 2:
        raise SpecError("compare takes one or two runs", hint="gameday compare RUN [RUN]")
    history = _open_history(args, create=False)
    runs = []
    for run_id in args.runs:
        run = history.run(run_id)
        if run is None:
            raise SpecError(
                f"no run {run_id!r} (or more than one) in the history",
                where=history.where,
                hint="see gameday history",
            )
        runs.append(run)
    if len(runs) == 1:
        before = history.previous(runs[0])
        if before is None:
            raise SpecError(
                f"{runs[0].run_id} is the first run of its experiment in the history",
                where=history.where,
                hint="name a second run: gameday compare RUN RUN",
            )
        runs.insert(0, before)
    print(render_comparison(runs[0], runs[1]))
    return ExitCode.HELD


def tell(text: str) -> None:
    """To stdout, best effort: if nobody reads it any more, the exit code still tells."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):  # and no "Exception ignored" when Python flushes it at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _worker(args: argparse.Namespace, _masks: Masks) -> ExitCode:
    from chaoslib_ext.load.remote import become_worker

    become_worker(args.master, args.locustfile, args.processes)


def _k8s_workers(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext.kube_yaml import render
    from chaoslib_ext.load.manifests import worker_manifests
    from chaoslib_ext.load.remote import parse_master

    if args.master is not None:
        parse_master(args.master)
    experiment = masks.add(load_experiment(args.file, parse_overrides(args.var)))
    print(render(worker_manifests(experiment, args.image, args.namespace, args.master)), end="")
    return ExitCode.HELD


def _schedule(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext import schedule
    from chaoslib_ext.kube_yaml import render
    from chaoslib_ext.spec.suite import is_suite

    overrides = parse_overrides(args.var)
    if is_suite(args.file):
        suite = app.load_suite(args.file, overrides)
        experiments, title, deadline, pause = suite.experiments, suite.title, suite.deadline, suite.pause
    else:
        experiment = load_experiment(args.file, overrides)
        experiments, title, deadline, pause = (experiment,), experiment.title, None, 0.0
    for experiment in experiments:
        masks.add(experiment)
    extra = [item for pair in args.var for item in ("--var", pair)]
    files: dict[str, str]
    if args.format == "cronjob":
        if not args.image:
            raise SpecError(
                "--format cronjob needs --image", hint="an image with gameday and your experiments in it"
            )
        workdir = args.workdir or "/work"
        scheduled = schedule.Scheduled.of(
            schedule.relative_to(args.file, os.getcwd()), experiments, title, deadline, pause
        )
        objects = schedule.kubernetes_objects(
            scheduled, args.cron, args.image, args.namespace, workdir, extra, args.secret
        )
        files = {f"{scheduled.name}.yaml": render(objects)}
    else:
        workdir = str(Path(args.workdir or os.getcwd()).resolve())
        scheduled = schedule.Scheduled.of(
            schedule.relative_to(args.file, workdir), experiments, title, deadline, pause
        )
        gameday = [
            sys.executable,
            "-m",
            "chaoslib_ext",
        ]  # absolute: what systemd and cron find without a PATH
        if args.format == "systemd":
            files = schedule.systemd_units(
                scheduled, args.cron, workdir, gameday, args.report_dir, extra, args.env_file
            )
        else:
            line = schedule.crontab_line(scheduled, args.cron, workdir, gameday, args.report_dir, extra)
            files = {f"{scheduled.name}.crontab": line}
    if args.output_dir is None:
        for name, text in files.items():
            print(
                masks(f"# {name}\n{text}") if len(files) > 1 else masks(text),
                end="" if len(files) == 1 else "\n",
            )
        return ExitCode.HELD
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.output_dir / name).write_text(masks(text))
            print(f"wrote {args.output_dir / name}")
    except OSError as error:
        raise SpecError(f"cannot write there: {error.strerror}", where=str(args.output_dir)) from None
    return ExitCode.HELD


def _recover(args: argparse.Namespace, _masks: Masks) -> ExitCode:
    recovery = app.recover(sweep=("kubernetes",) if args.kubernetes else ())
    for line in recovery.left_alone:
        print(line)
    for line in recovery.undone:
        print(f"undone: {line}")
    for line in recovery.failed:
        print(f"gameday: error: could not undo: {line}", file=sys.stderr)
    if not recovery.undone and not recovery.failed:
        print(f"nothing to recover in {state_dir()}")
    return ExitCode.ABORTED if recovery.failed else ExitCode.HELD


HEADLINES = {
    "held": "SLO HELD",
    "violated": "SLO VIOLATED",
    "aborted": "ABORTED",
    "steady-state-failed": "STEADY STATE FAILED BEFORE THE FAULT, NOTHING INJECTED",
    "baseline-failed": "BASELINE DID NOT HOLD, NOTHING INJECTED",
    "not-tested": "NOT TESTED: THE FAULT TOUCHED NO TRAFFIC",
    "regressed": "SLO HELD, BUT REGRESSED AGAINST ITS BASELINE",
}


def summary(report: dict[str, Any], written: list[Path]) -> str:
    """The final words of a run: verdict, per-phase numbers, why, and where the report is."""
    from chaoslib_ext.report.markdown import headline_key

    headline = HEADLINES[headline_key(report)]
    lines = ["", f"{headline}: {report['experiment']['title']}  (exit code {report['exit_code']})"]
    if report["dry_run"]:
        lines.append("  dry run: no fault was injected")
    for phase in report["phases"]:
        state = (
            ""
            if not phase["judged"]
            else ("  held" if all(o["held"] for o in phase["objectives"]) else "  VIOLATED")
        )
        lines.append(
            f"  {phase['name']:<9} {phase['sent']:>7} sent  availability "
            f"{format_percent(phase['availability']):>8}  p95 {format_ms(phase['latency_ms']['p95']):>8}  "
            f"p99 {format_ms(phase['latency_ms']['p99']):>8}{state}"
        )
    ttr = report["recovery"]["time_to_recover_s"]
    if report["phases"] and any(p["name"] == "recovery" for p in report["phases"]):
        note = report["recovery"]["note"] or "not reached"
        lines.append(f"  time to recover: {note if ttr is None else format_duration(ttr)}")
    lines += [f"  - {reason}" for reason in report["reasons"]]
    lines += [f"  ! {warning}" for warning in report["warnings"]]
    if report["errors"] and report["verdict"] != "held":
        top = report["errors"][0]
        lines.append(f"  top error: {top['count']}x {top['kind']}: {top['message'][:160]}")
    guard = report["guard"]
    if guard is not None and guard["breach_to_revert_s"] is not None:
        lines.append(f"  guard: every fault reverted {guard['breach_to_revert_s']:.2f}s after the breach")
    lines += [f"  report: {path}" for path in written]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
