"""Errors a user can meet, each carrying where it happened, a hint and the exit code to leave with."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes CI pipelines depend on (documented in the README)."""

    HELD = 0
    VIOLATED = 1
    INVALID_INPUT = 2
    ABORTED = 3
    NOT_TESTED = (
        4  # nothing was learned about the fault: the system did not hold before it, or it touched no traffic
    )


@dataclass(frozen=True)
class Location:
    """A place in an input file; line and column are 1-based."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


class GamedayError(Exception):
    """Base of every error meant for a user: rendered as one line, never as a traceback."""

    exit_code: ExitCode = ExitCode.ABORTED

    def __init__(self, message: str, *, where: Location | str | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text


class SpecError(GamedayError):
    """The experiment (or a value given for it) is invalid: exit code 2."""

    exit_code = ExitCode.INVALID_INPUT


class RunAborted(GamedayError):
    """The run could not go on (a fault could not be applied, the load did not start): exit code 3."""

    exit_code = ExitCode.ABORTED


class TargetBusy(RunAborted):
    """Another run holds the target's lock, so this one did not start: exit code 3."""
