"""Closed-loop users against a simulated service, on a simulated clock, through gameday's real
recorder (the same code that runs inside Locust) into a real SampleStore.

A test gives the service as a function of the time a request is sent: how long its answer takes
(math.inf: it never comes) and whether it succeeds. Users are paced like Locust's
constant_pacing / constant_throughput: each sends, waits for the answer (or its timeout), then
sends again as soon as its interval since the last send is over.
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from chaoslib_ext.load import recorder as recorder_module
from chaoslib_ext.load.recorder import Recorder
from chaoslib_ext.load.runner import store_second
from chaoslib_ext.measure.samples import SampleStore

T0 = 1_800_000_000.0  # a whole epoch second: the simulated load starts here


@dataclass(frozen=True)
class Answer:
    after: float  # seconds until the answer; math.inf: never
    ok: bool = True
    error: str = "HTTPError: 502 Server Error"


Service = Callable[[float], Answer]


@dataclass
class Simulated:
    samples: SampleStore
    requests: list[dict[str, Any]] = field(default_factory=list)  # the recorder's per-request log


def simulate(
    monkeypatch: pytest.MonkeyPatch,
    service: Service,
    *,
    users: int,
    interval: float | None,
    seconds: float,
    timeout: float = 10.0,
    limits_us: tuple[int, ...] = (),
    stop_after: float | None = None,
    endpoint: str = "/x",
) -> Simulated:
    """Run `users` paced users (every `interval` s; None: no pacing known, back to back) for
    `seconds` of simulated time from T0, then stop the load (at `stop_after`, default: when the
    last user's last request ended). Returns what the recorder delivered."""
    clock = SimpleNamespace(now=T0)
    current = SimpleNamespace(user=None)
    monkeypatch.setattr(recorder_module, "time", SimpleNamespace(time=lambda: clock.now))
    monkeypatch.setattr(
        recorder_module, "gevent", SimpleNamespace(getcurrent=lambda: current.user, sleep=lambda _: None)
    )
    samples = SampleStore()
    log = io.StringIO()
    recorder = Recorder(lambda message: store_second(samples, message), limits_us, timeout, log)
    events: list[tuple[float, int, str, Any]] = []
    order = itertools.count()

    def at(when: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(events, (when, next(order), kind, payload))

    for user in range(users):  # spread over the first interval, as a spawn rate would
        at(T0 + (interval or 0.01) * user / users, "send", user)
    end = T0 + seconds
    tick = T0
    while tick < end + timeout + 2:
        tick += recorder_module.FLUSH_SECONDS
        at(tick, "flush")
    last_end = T0
    while events:
        when, _, kind, payload = heapq.heappop(events)
        if stop_after is not None and when >= T0 + stop_after:
            break
        clock.now = when
        if kind == "flush":
            recorder.flush()
        elif kind == "send":
            if when >= end:
                continue
            current.user = payload
            recorder.sending(f"GET {endpoint}", None if interval is None else round(interval * 1e6))
            answer = service(when)
            waited = min(answer.after, timeout)
            at(when + waited, "answer", (payload, when, answer, waited < answer.after))
        else:
            user, sent, answer, timed_out = payload
            current.user = user
            error = None
            if timed_out:
                error = TimeoutError(f"read timed out after {timeout:g}s")
            elif not answer.ok:
                error = RuntimeError(answer.error)
            recorder.on_request("GET", endpoint, (when - sent) * 1000, exception=error, start_time=sent)
            last_end = max(last_end, when)
            at(max(when, sent + (interval or 0.0)), "send", user)
    clock.now = T0 + stop_after if stop_after is not None else max(last_end, end) + 0.001
    recorder.flush(everything=True)
    return Simulated(samples, [json.loads(line) for line in log.getvalue().splitlines()])


def steady(latency: float) -> Service:
    return lambda sent: Answer(latency)


def hang(start: float, end: float, latency: float = 0.01) -> Service:
    """Requests sent during [start, end) seconds after T0 get no answer until `end`."""
    return lambda sent: Answer(T0 + end - sent) if T0 + start <= sent < T0 + end else Answer(latency)
