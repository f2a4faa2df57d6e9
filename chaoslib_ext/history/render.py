"""The history as text: a list of runs with the trend of one experiment, and a comparison."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from chaoslib_ext.history.compare import changes
from chaoslib_ext.history.store import Run
from chaoslib_ext.units import format_duration, format_ms, format_percent


def render_runs(runs: list[Run]) -> str:
    """Newest first: when, run id, verdict, time to recover, fault-phase availability and p95; for
    one experiment, the trend of those over the runs listed (oldest to newest)."""
    if not runs:
        return "no runs in the history yet"
    header = f"{'started (UTC)':<20} {'run':<44} {'verdict':<11} {'recover':>8} "
    header += f"{'fault avail':>11} {'fault p95':>10}"
    lines = [header]
    for run in runs:
        fault = run.phase("fault")
        availability, p95 = (fault.availability, fault.p95_ms) if fault else (None, None)
        lines.append(
            f"{run.started_at[:19].replace('T', ' '):<20} {run.run_id:<44} "
            f"{run.verdict + (' (dry)' if run.dry_run else ''):<11} {_duration(run.time_to_recover_s):>8} "
            f"{_percent(availability):>11} {_ms(p95):>10}"
        )
    if len({run.experiment_key for run in runs}) == 1 and len(runs) > 1:
        oldest_first = [run for run in reversed(runs) if not run.dry_run]
        lines += [
            "",
            f"trend of {runs[0].experiment_title!r} over {len(oldest_first)} run(s), oldest to newest:",
        ]
        lines.append(_trend("time to recover", [r.time_to_recover_s for r in oldest_first], _duration))
        faults = [r.phase("fault") for r in oldest_first]
        availabilities = [f.availability if f else None for f in faults]
        lines.append(_trend("fault availability", availabilities, _percent, higher_is_better=True))
        lines.append(_trend("fault p95", [f.p95_ms if f else None for f in faults], _ms))
    return "\n".join(lines)


def _trend(
    name: str, values: list[float | None], show: Callable[[float | None], str], higher_is_better: bool = False
) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return f"  {name}: not measured"
    best, worst = (max, min) if higher_is_better else (min, max)
    return (
        f"  {name}: {' -> '.join(show(v) for v in values)} "
        f"(median {show(statistics.median(known))}, best {show(best(known))}, worst {show(worst(known))})"
    )


def render_comparison(before: Run, after: Run) -> str:
    lines = [
        f"{before.run_id} ({before.verdict}) -> {after.run_id} ({after.verdict})",
        f"experiment: {after.experiment_title} ({after.experiment_key})",
    ]
    if before.experiment_sha256 != after.experiment_sha256:
        lines.append("  ! the experiment file changed between the two runs (its sha256 differs)")
    if before.experiment_key != after.experiment_key:
        lines.append("  ! these are runs of two different experiments")
    current = None
    for change in changes(before, after):
        if change.phase != current:
            current = change.phase
            lines.append(f"{current or 'whole run'}:")
        lines.append(f"  {change.describe().removeprefix(f'{current} ' if current else '')}")
    return "\n".join(lines)


def _duration(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else format_percent(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else format_ms(value)
