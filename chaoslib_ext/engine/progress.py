"""The live progress line and event lines a person watches during a run: a subscriber to the
run's events (events.Timeline), which says which of them a person sees, and how."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from chaoslib_ext.events import Event
from chaoslib_ext.measure.slo import Sli
from chaoslib_ext.units import format_clock, format_duration, format_ms

NON_TTY_EVERY_SECONDS = 5.0


class Progress:
    """On a terminal the status line redraws in place; in CI logs it is printed every few seconds."""

    def __init__(
        self, stream: TextIO | None = None, quiet: bool = False, mask: Callable[[str], str] | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.mask = mask or (lambda text: text)  # the experiment's secrets never reach the screen
        self.interactive = self.stream.isatty()
        self._last_printed = 0.0
        self._pending = False

    def __call__(self, event: Event) -> None:
        """Show a run event, if it is one a person watches."""
        if event.action == "finished":
            self.close()
        elif event.action == "status":
            self.status(event.subject, **event.detail)
        elif event.action == "phase-over":
            self.phase_over(event.subject, event.detail["sli"])
        else:
            line = _line(event)
            if line is not None:
                self.event(line)

    def event(self, text: str) -> None:
        if self.quiet:
            return
        self._write(self.mask(text) + "\n")

    def status(
        self,
        phase: str,
        elapsed: float,
        total: float,
        so_far: Sli,
        recent: Sli,
        slo_ok: bool | None,
        workers: Sequence[tuple[int, float]] = (),
    ) -> None:
        """The phase's own figures since it began (and whether its SLO holds so far), then the
        last seconds' rate, errors and p95, and each Locust worker's users and requests per second."""
        if self.quiet:
            return
        slo = "-" if slo_ok is None else ("ok" if slo_ok else "BREACHED")
        rate = "-" if recent.throughput is None else f"{recent.throughput:.0f}"
        text = (
            f"[{phase:<8} {format_clock(elapsed)}/{format_clock(total)}] this phase: {so_far.requests} req, "
            f"errors {_errors(so_far)}, p95 {format_ms(so_far.latency_ms['p95'])}, SLO {slo} | "
            f"last {recent.seconds}s: {rate} ok/s, errors {_errors(recent)}, "
            f"p95 {format_ms(recent.latency_ms['p95'])}"
        )
        if workers:
            users = "+".join(str(count) for count, _ in workers)
            rates = "+".join(f"{rate:.0f}" for _, rate in workers)
            text += f" | {len(workers)} workers: {users} users, {rates} req/s"
        now = time.monotonic()
        if self.interactive:
            self._write("\r\033[K" + text, pending=True)
        elif now - self._last_printed >= NON_TTY_EVERY_SECONDS:
            self._write(text + "\n")
            self._last_printed = now

    def phase_over(self, phase: str, sli: Sli) -> None:
        self.event(
            f"   {phase} phase over: {sli.requests} req answered, errors {_errors(sli)}, "
            f"p95 {format_ms(sli.latency_ms['p95'])}, p99 {format_ms(sli.latency_ms['p99'])}"
        )

    def close(self) -> None:
        if self._pending:
            self._write("\n")

    def _write(self, text: str, pending: bool = False) -> None:
        """Write, clearing a status line first. A closed output (a pipe whose reader was stopped by
        the same Ctrl-C) must not stop a run from reverting its faults: output is best effort."""
        try:
            if self._pending:
                self.stream.write("\r\033[K")
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            pass
        self._pending = pending


def _line(event: Event) -> str | None:
    """The line a run event prints, or None for one a person need not watch."""
    detail = event.detail
    match event.source, event.action:
        case "engine", "run":
            return f"gameday: {detail['title']}  (run {event.subject})"
        case "engine", "starting-services":
            return f"starting services: {event.subject}"
        case "load", "starting":
            return f"starting load: {detail['users']} users on {event.subject}"
        case "load", "waiting-workers":
            return (
                f"waiting up to {format_duration(detail['timeout'])} for {detail['expect']} Locust worker(s) "
                f"on {event.subject}; start each with: {detail['command']}"
            )
        case "load", "worker joined":
            offset, within = detail["clock_offset_s"] * 1000, detail["clock_uncertainty_s"] * 1000
            return f"   load: worker {event.subject} joined (clock offset {offset:+.3f} ± {within:.3f} ms)"
        case "load", "worker refused":
            return f"!  load: worker {event.subject} refused: {detail['reason']}"
        case "load", ("worker lost" | "worker back") as action:
            return f"!  load: {action} {event.subject}"
        case "engine", "phase":
            return f"-- {event.subject} phase ({detail['length']:g}s)"
        case "engine", ("aborted" | "interrupted" | "baseline-failed") as status:
            return f"! {status}: {detail['detail']}"
        case "fault", "revert-failed":
            return f"! could not revert {event.subject}: {detail['error']}"
        case "fault", action:
            rest = {key: value for key, value in detail.items() if key != "fault"}
            return f"   {detail['fault']}: {action} {event.subject} {rest}"
        case "probe", ("passed" | "failed") as outcome:
            mark = "ok  " if outcome == "passed" else "FAIL"
            return f"steady state {detail['when']}: {mark} {event.subject}: {detail['detail']}"
    return None


def _errors(sli: Sli) -> str:
    return "-" if sli.availability is None else f"{1 - sli.availability:.1%}"
