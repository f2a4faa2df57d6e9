"""Entry point of the Locust child process: install the recorder, then run Locust's own main.

Run as `python -m chaoslib_ext.load.child <locust options>`: by the runner (one process, or a
master and its forked workers), or by `gameday worker` (a worker that joins a master elsewhere and
takes its settings from it). Locust is never imported into the runner itself, because importing it
monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import cast

import locust.main

from chaoslib_ext.load.handshake import Settings
from chaoslib_ext.load.plugin import install
from chaoslib_ext.load.protocol import (
    DEFAULT_MAX_CLOCK_OFFSET,
    DEFAULT_TIMEOUT,
    FD_VARIABLE,
    LIMITS_VARIABLE,
    MAX_CLOCK_OFFSET_VARIABLE,
    PACING_VARIABLE,
    REQUEST_LOG_VARIABLE,
    TIMEOUT_VARIABLE,
    pipe_writer,
)
from chaoslib_ext.load.recorder import Recorder


def main() -> None:
    fd = os.environ.get(FD_VARIABLE)
    if fd is None and "--worker" not in sys.argv:
        sys.exit("gameday's Locust child runs under `gameday run`, or as `gameday worker`")
    pacing = os.environ.get(PACING_VARIABLE)
    settings = Settings(
        tuple(int(limit) for limit in os.environ.get(LIMITS_VARIABLE, "").split(",") if limit),
        float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)),
        float(pacing) if pacing else None,
    )
    log_path = os.environ.get(REQUEST_LOG_VARIABLE)
    # line-buffered: worker processes append to the same file, each line in one write
    log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None  # noqa: SIM115 (lives as long as Locust)
    # a worker's role sends its seconds to the master instead of writing them to a pipe
    emit = pipe_writer(int(fd)) if fd is not None else (lambda _line: None)
    recorder = Recorder(emit, settings.limits_us, settings.timeout, log)
    install(recorder, settings, float(os.environ.get(MAX_CLOCK_OFFSET_VARIABLE, DEFAULT_MAX_CLOCK_OFFSET)))
    sys.argv = ["locust", *sys.argv[1:]]
    run_locust = cast(Callable[[], None], locust.main.main)  # Locust leaves its main unannotated
    run_locust()


if __name__ == "__main__":
    main()
