"""The live progress line and event lines a person watches during a run."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from .units import format_clock, format_ms

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
        self,
        phase: str,
        elapsed: float,
        total: float,
        rps: float | None,
        p95_ms: float | None,
        error_rate: float | None,
        slo_ok: bool | None,
    ) -> None:
        if self.quiet:
            return
        slo = "-" if slo_ok is None else ("ok" if slo_ok else "BREACHED")
        errors = "-" if error_rate is None else f"{error_rate:.1%}"
        text = (
            f"[{phase:<8} {format_clock(elapsed)}/{format_clock(total)}] "
            f"{'-' if rps is None else f'{rps:.0f}'} req/s  p95 {format_ms(p95_ms)}  "
            f"errors {errors}  SLO {slo}"
        )
        now = time.monotonic()
        if self.interactive:
            self._write("\r\033[K" + text, pending=True)
        elif now - self._last_printed >= NON_TTY_EVERY_SECONDS:
            self._write(text + "\n")
            self._last_printed = now

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
