"""SIGINT and SIGTERM during a run: the first stops it (clean-up included), the second is
acknowledged, the third forces the exit, saying what may be left behind for `gameday recover`."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from chaoslib_ext.engine.run import Engine, Interrupted
from chaoslib_ext.errors import ExitCode
from chaoslib_ext.state.ledger import Ledger


@contextmanager
def interruptible(
    engine: Engine, mask: Callable[[str], str], heard: Callable[[str], None] | None = None
) -> Iterator[None]:
    """`heard` hears of every signal, also those that come while the run is already stopping
    (a suite: it must not go on to its next experiment)."""
    received: list[str] = []

    def on_signal(number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        received.append(name)
        if heard is not None:
            heard(name)
        if len(received) == 1 and engine.cancellable:
            raise Interrupted(name)
        if len(received) < 3:
            say(
                f"gameday: {name}: already stopping: reverting, stopping services and writing the report "
                f"(send it {3 - len(received)} more time(s) to force an exit, which may leave faults behind)"
            )
            return
        force_exit(name, engine.ledger, mask)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def force_exit(signal_name: str, ledger: Ledger | None, mask: Callable[[str], str]) -> NoReturn:
    """Leave now, saying what may be left behind: the ledger keeps it for `gameday recover`."""
    pending = list(ledger.pending.values()) if ledger is not None else []
    lines = [f"gameday: {signal_name} again: forced exit, without finishing the clean-up"]
    lines += [f"gameday: may be left behind: {mask(entry['what'])}" for entry in pending]
    if ledger is not None and pending:
        lines.append(f"gameday: run `gameday recover` to undo it (ledger: {ledger.path})")
    say(*lines)
    os._exit(int(ExitCode.ABORTED))


def say(*lines: str) -> None:
    """To stderr, best effort: a closed pipe must not keep a signal handler from its work."""
    try:
        for line in lines:
            print(line, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
