"""Entry point of the Locust child process: install the recorder, then run Locust's own main.

Run as `python -m chaoslib_ext.load.child <locust options>`. Locust is never imported into the
runner itself, because importing it monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import cast

import locust.main

from chaoslib_ext.load.plugin import install
from chaoslib_ext.load.protocol import (
    DEFAULT_TIMEOUT,
    FD_VARIABLE,
    LIMITS_VARIABLE,
    PACING_VARIABLE,
    REQUEST_LOG_VARIABLE,
    TIMEOUT_VARIABLE,
    pipe_writer,
)
from chaoslib_ext.load.recorder import Recorder


def main() -> None:
    limits = tuple(int(limit) for limit in os.environ.get(LIMITS_VARIABLE, "").split(",") if limit)
    log_path = os.environ.get(REQUEST_LOG_VARIABLE)
    # line-buffered: worker processes append to the same file, each line in one write
    log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None  # noqa: SIM115 (lives as long as Locust)
    recorder = Recorder(
        pipe_writer(int(os.environ[FD_VARIABLE])),
        limits,
        float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT)),
        log,
    )
    pacing = os.environ.get(PACING_VARIABLE)
    install(recorder, float(pacing) if pacing else None)
    sys.argv = ["locust", *sys.argv[1:]]
    run_locust = cast(Callable[[], None], locust.main.main)  # Locust leaves its main unannotated
    run_locust()


if __name__ == "__main__":
    main()
