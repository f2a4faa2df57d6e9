"""The live progress line and event lines a person watches during a run."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from chaoslib_ext.measure.slo import Sli
from chaoslib_ext.units import format_clock, format_ms

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

    def event(self, text: str) -> None:
        if self.quiet:
            return
        self._write(self.mask(text) + "\n")

    def status(
        self, phase: str, elapsed: float, total: float, so_far: Sli, recent: Sli, slo_ok: bool | None
    ) -> None:
        """The phase's own figures since it began (and whether its SLO holds so far), then the
        last seconds' rate, errors and p95."""
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


def _errors(sli: Sli) -> str:
    return "-" if sli.availability is None else f"{1 - sli.availability:.1%}"
