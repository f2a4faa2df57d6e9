"""Locust plugin that records every request into per-second histograms and streams them out.

Runs inside the Locust process (gevent). Each completed second is written as one JSON line to
the file descriptor named by GAMEDAY_RECORDER_FD: {"type": "second", "t": <epoch second>,
"endpoints": {"GET /x": {"ok": <histogram>, "failed": <histogram>}}, "errors": {...}}.
Lifecycle lines ("started", "spawned", "stopped") let the runner follow the test.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import gevent
from locust import events
from locust.env import Environment

from ..histogram import Histogram

FLUSH_SECONDS = 0.2
MAX_ERROR_KINDS = 20


class Recorder:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seconds: dict[int, dict[str, tuple[Histogram, Histogram]]] = {}
        self.errors: dict[int, Counter[str]] = {}

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        second = int(time.time())
        endpoints = self.seconds.get(second)
        if endpoints is None:
            endpoints = self.seconds[second] = {}
        key = f"{request_type} {name}"
        pair = endpoints.get(key)
        if pair is None:
            pair = endpoints[key] = (Histogram(), Histogram())
        pair[1 if exception else 0].record_ms(response_time or 0.0)
        if exception is not None:
            errors = self.errors.setdefault(second, Counter())
            text = f"{key}: {type(exception).__name__}: {exception}"[:200]
            if text in errors or len(errors) < MAX_ERROR_KINDS:
                errors[text] += 1

    def flush(self, everything: bool = False) -> None:
        """Write out each second that is over (or all of them when the test stops)."""
        now = int(time.time())
        for second in sorted(s for s in self.seconds if everything or s < now):
            endpoints = self.seconds.pop(second)
            self.emit(
                {
                    "type": "second",
                    "t": second,
                    "endpoints": {
                        k: {"ok": ok.to_dict(), "failed": bad.to_dict()} for k, (ok, bad) in endpoints.items()
                    },
                    "errors": dict(self.errors.pop(second, {})),
                }
            )

    def emit(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_SECONDS)
            self.flush()


def install(fd: int) -> Recorder:
    """Register the recorder on Locust's event hooks (before Locust parses its options)."""
    recorder = Recorder(fd)

    @events.init.add_listener
    def _init(environment: Environment, **_: Any) -> None:
        gevent.spawn(recorder.flush_forever)

    @events.test_start.add_listener
    def _started(**_: Any) -> None:
        recorder.emit({"type": "started", "t": time.time()})

    @events.spawning_complete.add_listener
    def _spawned(user_count: int, **_: Any) -> None:
        recorder.emit({"type": "spawned", "t": time.time(), "users": user_count})

    @events.test_stop.add_listener
    def _stopped(**_: Any) -> None:
        recorder.flush(everything=True)
        recorder.emit({"type": "stopped", "t": time.time()})

    @events.quit.add_listener
    def _quit(**_: Any) -> None:  # requests that ended while users were being stopped
        recorder.flush(everything=True)

    events.request.add_listener(recorder.on_request)
    return recorder
