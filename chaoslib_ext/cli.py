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
from typing import Any, NoReturn

from chaoslib_ext import __version__, app
from chaoslib_ext.errors import ExitCode, GamedayError
from chaoslib_ext.spec import SpecErrors, load_experiment, parse_overrides
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import state_dir
from chaoslib_ext.units import format_duration, format_ms, format_percent


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
        "worker": _worker,
        "k8s-workers": _k8s_workers,
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
        self._masks.append(experiment.secrets.mask)
        return experiment

    def __call__(self, text: str) -> str:
        for mask in self._masks:
            text = mask(text)
        return text


def _validate(args: argparse.Namespace, masks: Masks) -> ExitCode:
    overrides = parse_overrides(args.var)
    worst = ExitCode.HELD
    for file in args.files:
        try:
            experiment = masks.add(app.validate(file, overrides))
        except SpecErrors as errors:
            for error in errors.errors:
                print(f"gameday: error: {error}", file=sys.stderr)
            worst = ExitCode.INVALID_INPUT
        except GamedayError as error:
            print(f"gameday: error: {error}", file=sys.stderr)
            worst = ExitCode.INVALID_INPUT
        else:
            print(masks(f"ok  {file}: {experiment.title}"))
    return worst


def _plan(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext.plan.render import render_plan

    prepared = app.prepare(masks.add(load_experiment(args.file, parse_overrides(args.var))))
    print(masks(render_plan(prepared.plan, prepared.driver)))
    return ExitCode.HELD


def _run(args: argparse.Namespace, masks: Masks) -> ExitCode:
    from chaoslib_ext.engine.progress import Progress

    prepared = app.prepare(masks.add(load_experiment(args.file, parse_overrides(args.var))))
    progress = Progress(quiet=args.quiet, mask=masks)
    outcome = app.run(prepared, args.report_dir, watchers=[progress], dry_run=args.dry_run)
    tell(masks(summary(outcome.report, outcome.written)))
    return outcome.exit_code


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
    from chaoslib_ext.load.manifests import render, worker_manifests
    from chaoslib_ext.load.remote import parse_master

    if args.master is not None:
        parse_master(args.master)
    experiment = masks.add(load_experiment(args.file, parse_overrides(args.var)))
    print(render(worker_manifests(experiment, args.image, args.namespace, args.master)), end="")
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
