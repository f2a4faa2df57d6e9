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
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from chaoslib_ext import __version__
from chaoslib_ext.errors import ExitCode, GamedayError, RunAborted, SpecError
from chaoslib_ext.spec import SpecErrors, load_experiment, parse_overrides
from chaoslib_ext.state.ledger import Ledger, ledgers, recover, state_dir
from chaoslib_ext.state.locks import TargetLock, target_key
from chaoslib_ext.state.trust import RunDirectory, Untrusted
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

    commands.add_parser(
        "recover",
        help="undo what runs that died (even by SIGKILL) left behind, from their ledgers",
        description="Reads the ledgers in $GAMEDAY_STATE_DIR (default ~/.local/state/gameday) and undoes "
        "every change of runs that are no longer alive: fault rules, namespaces, services, load.",
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
    handlers = {"validate": _validate, "plan": _plan, "run": _run, "recover": _recover}
    try:
        return int(handlers[args.command](args))
    except GamedayError as error:
        for line in str(error).splitlines():
            print(f"gameday: error: {masked(line)}", file=sys.stderr)
        return int(error.exit_code)


_masks: list[Callable[[str], str]] = []  # the secrets of the experiments this command loaded


def loaded(file: str, overrides: dict[str, Any]) -> Any:
    """load_experiment, remembering its secrets so that nothing this command prints shows them."""
    experiment = load_experiment(file, overrides)
    _masks.append(experiment.secrets.mask)
    return experiment


def masked(text: str) -> str:
    for mask in _masks:
        text = mask(text)
    return text


def _validate(args: argparse.Namespace) -> ExitCode:
    overrides = parse_overrides(args.var)
    worst = ExitCode.HELD
    for file in args.files:
        try:
            experiment = loaded(file, overrides)
            if experiment.driver == "local":  # the docker driver needs the engine to know its targets
                planned(experiment)
        except SpecErrors as errors:
            for error in errors.errors:
                print(f"gameday: error: {error}", file=sys.stderr)
            worst = ExitCode.INVALID_INPUT
        except GamedayError as error:
            print(f"gameday: error: {error}", file=sys.stderr)
            worst = ExitCode.INVALID_INPUT
        else:
            print(masked(f"ok  {file}: {experiment.title}"))
    return worst


def _plan(args: argparse.Namespace) -> ExitCode:
    from chaoslib_ext.plan.make import render_plan

    experiment = loaded(args.file, parse_overrides(args.var))
    print(masked(render_plan(planned(experiment))))
    return ExitCode.HELD


def planned(experiment: Any) -> Any:
    """The experiment's plan, its targets resolved and its blast radius within target.max_share."""
    from chaoslib_ext.plan.blast import check_blast_radius
    from chaoslib_ext.plan.make import make_plan

    plan = make_plan(experiment, containers=container_resolver(experiment))
    check_blast_radius(plan)
    return plan


def _run(args: argparse.Namespace) -> ExitCode:
    from chaoslib_ext.engine.run import new_run_id

    experiment = loaded(args.file, parse_overrides(args.var))
    plan = planned(experiment)
    run_id = new_run_id(experiment.secrets.mask(experiment.title))  # it names files and rules
    lock = TargetLock.acquire(target_key(experiment, docker_engine_id(experiment)), run_id, experiment.path)
    try:
        left_behind = [state for state in ledgers() if state.blocks]
        if left_behind:  # checked holding the lock: no other run can be leaving some right now
            raise RunAborted(
                f"run {left_behind[0].run_id} (pid {left_behind[0].pid}) died and left "
                f"{len(left_behind[0].pending)} change(s) behind",
                where=str(left_behind[0].path),
                hint="run `gameday recover` first",
            )
        return _run_locked(args, plan, run_id)
    finally:
        lock.release()


def docker_engine_id(experiment: Any) -> str:
    if experiment.driver != "docker":
        return ""
    from chaoslib_ext.drivers.docker.driver import connect

    client = connect()
    try:
        return str(client.info().get("ID", ""))
    finally:
        client.close()


def _run_locked(args: argparse.Namespace, plan: Any, run_id: str) -> ExitCode:
    from chaoslib_ext.engine.progress import Progress
    from chaoslib_ext.engine.run import Engine, Interrupted
    from chaoslib_ext.report import write_reports

    try:
        run_dir = RunDirectory.create(args.report_dir, run_id)
    except Untrusted as error:  # a bad --report-dir is bad input
        raise SpecError(error.message, where=error.where, hint=error.hint) from None
    progress = Progress(quiet=args.quiet, mask=masked)
    engine = Engine(plan, run_id, run_dir, progress, dry_run=args.dry_run)
    received: list[str] = []

    def on_signal(number: int, _frame: FrameType | None) -> None:
        """The first signal stops the run (clean-up included); the second is acknowledged; the
        third forces the exit."""
        name = signal.Signals(number).name
        received.append(name)
        if len(received) == 1 and engine.cancellable:
            raise Interrupted(name)
        if len(received) < 3:
            say(
                f"gameday: {name}: already stopping: reverting, stopping services and writing the report "
                f"(send it {3 - len(received)} more time(s) to force an exit, which may leave faults behind)"
            )
            return
        force_exit(name, engine.ledger)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = engine.run()
        report, written = write_reports(result, run_dir)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        run_dir.close()
    tell(masked(summary(report, written)))
    return result.exit_code


def force_exit(signal_name: str, ledger: Ledger | None) -> NoReturn:
    """Leave now, saying what may be left behind: the ledger keeps it for `gameday recover`."""
    pending = list(ledger.pending.values()) if ledger is not None else []
    lines = [f"gameday: {signal_name} again: forced exit, without finishing the clean-up"]
    lines += [f"gameday: may be left behind: {masked(entry['what'])}" for entry in pending]
    if ledger is not None and pending:
        lines.append(f"gameday: run `gameday recover` to undo it (ledger: {ledger.path})")
    say(*lines)
    os._exit(int(ExitCode.ABORTED))


def tell(text: str) -> None:
    """To stdout, best effort: if nobody reads it any more, the exit code still tells."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):  # and no "Exception ignored" when Python flushes it at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def say(*lines: str) -> None:
    """To stderr, best effort: a closed pipe must not keep a signal handler from its work."""
    try:
        for line in lines:
            print(line, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def container_resolver(experiment: Any) -> Callable[[Any, str], list[str]] | None:
    """For the docker driver: the names of the running containers a selector picks (and allows)."""
    if experiment.driver != "docker":
        return None
    from chaoslib_ext.drivers.docker.driver import connect, select

    client = connect()
    return lambda selector, where: [c.name for c in select(client, selector, experiment.allow, where)]


def _recover(_args: argparse.Namespace) -> ExitCode:
    me = os.geteuid()
    for state in ledgers():
        if state.alive:
            print(f"still running, left alone: run {state.run_id} (pid {state.pid})")
        elif state.owner != me and me != 0 and state.pending:
            print(f"left alone: run {state.run_id} belongs to uid {state.owner} (they, or root, recover it)")
    done, failed = recover()
    for line in done:
        print(f"undone: {line}")
    for line in failed:
        print(f"gameday: error: could not undo: {line}", file=sys.stderr)
    if not done and not failed:
        print(f"nothing to recover in {state_dir()}")
    return ExitCode.ABORTED if failed else ExitCode.HELD


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
