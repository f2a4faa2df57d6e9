"""Locust plugin that records every request and streams one JSON line per second of the run.

Runs inside the Locust process (gevent). A request is filed under the second it was *sent*, so
that a phase's evidence is what was asked of the system during it; the line for a second of the
run carries the requests that *finished* during it (grouped by the second they were sent) and how
many were still waiting at its end, with the oldest one's send time, so that a hang is seen
while it lasts. Lines:

    {"type": "second", "t": <epoch second>, "waiting": n, "oldest": <epoch>|null,
     "sent": [[<epoch second>, {"endpoints": {...}, "errors": [[kind, message, n]]}], ...]}

and the lifecycle lines "started", "spawned", "stopped". When the test stops, requests still
waiting are filed as unfinished with how long they waited (as failures once past the timeout).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import gevent

from chaoslib_ext.measure.histogram import Histogram
from chaoslib_ext.measure.samples import Aggregate, EndpointSample

FLUSH_SECONDS = 0.2
MAX_ERROR_KINDS = 20
RECENT_SECONDS = 3.0  # how long finished requests are kept to count who was waiting at a second's end

Emit = Callable[[dict[str, Any]], None]


@dataclass(eq=False, slots=True)
class Pending:
    """A request on its way: known from the moment a client sends it until Locust reports it."""

    sent: float  # epoch seconds
    endpoint: str  # "GET /checkout", as far as it is known before the request ends
    interval_us: int | None  # its user's pacing, for the coordinated-omission correction
    greenlet: Any  # the one that sent it: Locust reports it there


def error_kind(exception: BaseException, response: Any = None) -> str:
    """timeout, connection refused, connection reset, HTTP <status>, or the exception's type."""
    names = {cls.__name__ for cls in type(exception).__mro__}
    text = str(exception).lower()
    if isinstance(exception, TimeoutError) or any("Timeout" in name for name in names) or "timed out" in text:
        return "timeout"
    if isinstance(exception, ConnectionRefusedError) or "refused" in text:
        return "connection refused"
    if isinstance(exception, ConnectionResetError) or "reset by peer" in text:
        return "connection reset"
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return f"HTTP {status}"
    return type(exception).__name__


class Recorder:
    """Files requests by send second, per second of the run, and hands each second to `emit` once
    it is over (the pipe to the runner, or, in a Locust worker, the batch for the master)."""

    def __init__(
        self, emit: Emit, limits_us: tuple[int, ...], timeout: float, log: IO[str] | None = None
    ) -> None:
        self.emit = emit
        self.limits = limits_us  # latency objectives: counted exactly above each
        self.timeout = timeout  # the load's request timeout: unfinished past it is a failure
        self.log = log  # test-only: one JSON line per request, for an exact offline judgement
        self.pending: dict[Any, list[Pending]] = {}  # by greenlet: each sends one request at a time
        self.seconds: dict[int, dict[int, Aggregate]] = {}  # second of the run -> send second -> requests
        self.recent: deque[tuple[float, float]] = (
            deque()
        )  # (sent, finished) of the last seconds, in the order they finished
        self.requests = 0  # reported so far (a worker tells the master, for its status)
        self.clock_offset = 0.0  # a remote worker's clock minus the master's: every time is on the master's
        self.next_second = int(self.now())  # the first second not written out yet

    def now(self) -> float:
        return time.time() - self.clock_offset

    def configure(self, limits_us: tuple[int, ...], timeout: float, clock_offset: float) -> None:
        """A worker's settings, as the master sent them when it welcomed it (handshake)."""
        self.limits, self.timeout, self.clock_offset = limits_us, timeout, clock_offset

    # -- a client sends, Locust reports -------------------------------------------------------

    def sending(self, endpoint: str, interval_us: int | None) -> Pending:
        greenlet = gevent.getcurrent()
        pending = Pending(time.time() - self.clock_offset, endpoint, interval_us, greenlet)
        mine = self.pending.get(greenlet)
        if mine is None:
            self.pending[greenlet] = [pending]
        else:
            mine.append(pending)
        return pending

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        response: Any = None,
        **_: Any,
    ) -> None:
        now = time.time() - self.clock_offset  # self.now(), inlined: this runs for every request
        self.requests += 1
        if start_time is not None:  # Locust's, on this machine's clock
            start_time -= self.clock_offset
        pending = self._take(start_time)
        if pending is not None:
            sent, interval = pending.sent, pending.interval_us
        else:  # a request no tracked client sent (a custom client firing the event itself)
            sent = start_time if start_time else now - (response_time or 0.0) / 1000
            interval = None
        endpoint = f"{request_type} {name}"
        sample = self._sample(now, sent, endpoint)
        micros = None if response_time is None else max(0, round(response_time * 1000))
        if interval is not None:
            sample.paced += 1
        if exception is None:
            if micros is None:
                sample.ok_untimed += 1
            else:
                sample.ok.record_us(micros)
                if interval is not None and micros >= 2 * interval:  # else none was omitted
                    self._omitted(now, sent, endpoint, micros, interval)
        else:
            kind = error_kind(exception, response)
            self._failed(
                now, sent, endpoint, micros, kind, f"{endpoint}: {type(exception).__name__}: {exception}"
            )
        self.recent.append((sent, now))
        if self.log is not None:
            kind_logged = None if exception is None else kind
            self._log(sent, now, endpoint, exception is None, micros, interval, kind=kind_logged)

    def gave_up(self, pending: Pending, error: BaseException | None) -> None:
        """A request that will never be reported: its user was stopped mid-request (None), or it
        raised before Locust could report it (a failure)."""
        if not self._forget(pending):
            return  # Locust reported it after all
        now = self.now()
        if error is None:
            self._unfinished(now, pending)
        else:
            kind = error_kind(error)
            text = f"{pending.endpoint}: {type(error).__name__}: {error}"
            waited = max(0, round((now - pending.sent) * 1e6))  # the wall clock may step back
            self._failed(now, pending.sent, pending.endpoint, waited, kind, text)
            self._log(pending.sent, now, pending.endpoint, False, None, pending.interval_us, kind=kind)

    def _take(self, start_time: float | None) -> Pending | None:
        """The pending request this report is about: of this greenlet's, the latest one sent
        before Locust's own start time (nested catch_response blocks report inner ones first)."""
        mine = self.pending.get(gevent.getcurrent())
        if not mine:
            return None
        if len(mine) == 1:  # the usual case: one request of this user's on its way
            pending = mine[0]
            del self.pending[pending.greenlet]
            return pending
        candidates = [p for p in mine if start_time is None or p.sent <= start_time + 0.001] or mine
        pending = max(candidates, key=lambda p: p.sent)
        self._forget(pending)
        return pending

    def _forget(self, pending: Pending) -> bool:
        mine = self.pending.get(pending.greenlet, [])
        if pending not in mine:
            return False
        mine.remove(pending)
        if not mine:
            del self.pending[pending.greenlet]
        return True

    # -- filing -------------------------------------------------------------------------------

    def _sample(self, now: float, sent: float, endpoint: str) -> EndpointSample:
        second = max(int(now), self.next_second)
        by_sent = self.seconds.get(second)
        if by_sent is None:
            by_sent = self.seconds[second] = {}
        aggregate = by_sent.get(int(sent))
        if aggregate is None:
            aggregate = by_sent[int(sent)] = Aggregate()
        sample = aggregate.endpoints.get(endpoint)
        if sample is None:
            sample = aggregate.endpoints[endpoint] = EndpointSample(
                ok=Histogram(self.limits),
                failed=Histogram(self.limits),
                omitted=Histogram(self.limits),
                unfinished=Histogram(self.limits),
            )
        return sample

    def _failed(
        self, now: float, sent: float, endpoint: str, micros: int | None, kind: str, text: str
    ) -> None:
        sample = self._sample(now, sent, endpoint)
        if micros is None:
            sample.failed_untimed += 1
        else:
            sample.failed.record_us(micros)
        if kind == "timeout":
            sample.timeouts += 1
        errors = self.seconds[max(int(now), self.next_second)][int(sent)].errors
        key = (kind, text[:200])
        if key in errors or len(errors) < MAX_ERROR_KINDS:
            errors[key] += 1

    def _unfinished(self, now: float, pending: Pending) -> None:
        """Still waiting when last seen: a failure once past the timeout, else a latency at least
        as long as it has lasted so far (and no outcome)."""
        waited = max(0, round((now - pending.sent) * 1e6))  # the wall clock may step back (NTP)
        if waited >= self.timeout * 1e6:
            text = f"{pending.endpoint}: still waiting after {self.timeout:g}s when the load stopped"
            self._failed(now, pending.sent, pending.endpoint, waited, "timeout", text)
            self._log(pending.sent, now, pending.endpoint, False, waited, pending.interval_us, kind="timeout")
        else:
            self._sample(now, pending.sent, pending.endpoint).unfinished.record_us(waited)
            self._log(pending.sent, now, pending.endpoint, None, waited, pending.interval_us)

    def _omitted(self, now: float, sent: float, endpoint: str, micros: int, interval: int) -> None:
        """HdrHistogram's expected-interval correction: a user paced every `interval` that waited
        `micros` did not send the requests due meanwhile; they would have waited micros - k *
        interval (k = 1, 2, ... while that is at least one interval). Each is filed under the second
        it was due in."""
        count = (micros - interval) // interval
        sent_us = round(sent * 1e6)
        k = 1
        while k <= count:
            second = (sent_us + k * interval) // 1_000_000
            last = min(count, ((second + 1) * 1_000_000 - 1 - sent_us) // interval)
            self._sample(now, second, endpoint).omitted.record_descending(
                micros - k * interval, interval, last - k + 1
            )
            k = last + 1

    # -- writing out --------------------------------------------------------------------------

    def flush(self, everything: bool = False) -> None:
        """Write out each second of the run that is over (all of them when the test stops)."""
        now = self.now()
        if everything:
            for mine in list(self.pending.values()):
                for pending in list(mine):
                    self._forget(pending)
                    self._unfinished(now, pending)
        last = int(now) if everything else int(now) - 1
        for second in range(self.next_second, last + 1):
            end = second + 1
            waiting = [p.sent for mine in self.pending.values() for p in mine if p.sent < end]
            for sent, finished in reversed(self.recent):  # in the order they finished: newest first
                if finished < end:
                    break  # and so did every one before it
                if sent < end:
                    waiting.append(sent)
            by_sent = self.seconds.pop(second, {})
            self.emit(
                {
                    "type": "second",
                    "t": second,
                    "waiting": len(waiting),
                    "oldest": min(waiting, default=None),
                    "sent": [[s, aggregate.to_dict()] for s, aggregate in sorted(by_sent.items())],
                }
            )
            self.next_second = second + 1
        while self.recent and self.recent[0][1] < now - RECENT_SECONDS:
            self.recent.popleft()
        if everything and self.log is not None:
            self.log.flush()

    def _log(
        self,
        sent: float,
        ended: float,
        endpoint: str,
        ok: bool | None,
        micros: int | None,
        interval: int | None,
        kind: str | None = None,
    ) -> None:
        if self.log is not None:
            record = {"sent": sent, "end": ended, "endpoint": endpoint, "ok": ok, "us": micros}
            record.update({"interval_us": interval, "kind": kind, "pid": os.getpid()})
            self.log.write(json.dumps(record) + "\n")
