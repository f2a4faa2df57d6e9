"""What the recorder plugin and the runner agree on. Imports nothing from Locust (or gevent)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

FD_VARIABLE = "GAMEDAY_RECORDER_FD"  # the pipe the recorder writes its lines to
TIMEOUT_VARIABLE = "GAMEDAY_REQUEST_TIMEOUT"  # seconds; applied where the locustfile sets none
DEFAULT_TIMEOUT = "10"  # without the variable (the child run by hand)
LIMITS_VARIABLE = "GAMEDAY_LATENCY_LIMITS_US"  # comma-separated: counted exactly above each
PACING_VARIABLE = "GAMEDAY_PACING"  # open model: every user runs a task every this many seconds
MAX_CLOCK_OFFSET_VARIABLE = "GAMEDAY_MAX_CLOCK_OFFSET"  # seconds: a worker's clock further off is refused
DEFAULT_MAX_CLOCK_OFFSET = "1"
REQUEST_LOG_VARIABLE = "GAMEDAY_REQUEST_LOG"  # test-only: a file for one JSON line per request


def pipe_writer(fd: int) -> Callable[[dict[str, Any]], None]:
    """Writes each message to the runner's pipe as one JSON line."""

    def write(message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(fd, data) :]

    return write
