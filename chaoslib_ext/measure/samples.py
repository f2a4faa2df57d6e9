"""Load samples as the runner keeps them, in two views of the same requests:

- by the second each request was *sent*: what was asked of the system during a phase, which is
  what a phase is judged on (a request that hangs belongs to the phase in which it was sent, not
  to the one in which it finally ended);
- by the second of the run in which things *happened*: what finished during it and how many
  requests were still waiting at its end, which is what guards and the live view watch.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from chaoslib_ext.measure.histogram import Histogram

FLUSH_LAG_SECONDS = 0.5  # the recorder flushes a finished second within 0.2 s: earlier ones are complete

ErrorKey = tuple[str, str]  # (kind: "timeout", "connection refused", "HTTP 502", ...; message)


@dataclass
class EndpointSample:
    """The requests to one endpoint ("GET /checkout") sent during some seconds."""

    ok: Histogram = field(default_factory=Histogram)  # latencies of the successful ones
    failed: Histogram = field(default_factory=Histogram)  # latencies of the failed ones
    # Coordinated-omission correction: the requests a paced (closed-loop) user would have sent
    # while one of its successful requests was slow, with the latencies they would have seen, as
    # HdrHistogram's expected-interval recording infers them. Never counted as requests.
    omitted: Histogram = field(default_factory=Histogram)
    unfinished: Histogram = field(default_factory=Histogram)  # still waiting when last seen: for how long
    ok_untimed: int = 0  # successes reported without a response time (never counted as 0 µs)
    failed_untimed: int = 0
    timeouts: int = 0  # failures that were the client giving up (counted in `failed` too)
    paced: int = 0  # requests from users whose pacing is known, so omission could be corrected

    @property
    def successes(self) -> int:
        return self.ok.count + self.ok_untimed

    @property
    def failures(self) -> int:
        return self.failed.count + self.failed_untimed

    @property
    def requests(self) -> int:
        """Requests that finished (succeeded or failed); unfinished ones have no outcome yet."""
        return self.successes + self.failures

    def latency(self) -> Histogram:
        """What latency objectives are judged on: successful requests, the requests their
        slowness kept paced users from sending, and the unfinished ones as long as they lasted."""
        return Histogram.merged((self.ok, self.omitted, self.unfinished))

    def merge(self, other: EndpointSample) -> None:
        for name in HISTOGRAMS:
            getattr(self, name).merge(getattr(other, name))
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def seal(self) -> None:
        for name in HISTOGRAMS:
            getattr(self, name).seal()

    def finished_only(self) -> EndpointSample:
        """The requests that really finished: no inferred ones, no unfinished ones."""
        copy = EndpointSample()
        copy.merge(self)
        copy.omitted, copy.unfinished = Histogram(), Histogram()
        return copy

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {n: getattr(self, n).to_dict() for n in HISTOGRAMS if getattr(self, n).count}
        data.update({n: getattr(self, n) for n in COUNTS if getattr(self, n)})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointSample:
        sample = cls()
        for name in HISTOGRAMS:
            if name in data:
                setattr(sample, name, Histogram.from_dict(data[name]))
        for name in COUNTS:
            setattr(sample, name, int(data.get(name, 0)))
        return sample


HISTOGRAMS = ("ok", "failed", "omitted", "unfinished")
COUNTS = tuple(f.name for f in fields(EndpointSample) if f.name not in HISTOGRAMS)


@dataclass
class Aggregate:
    """Everything recorded during some set of seconds."""

    endpoints: dict[str, EndpointSample] = field(default_factory=dict)
    errors: Counter[ErrorKey] = field(default_factory=Counter)

    def add(self, other: Aggregate) -> None:
        for name, sample in other.endpoints.items():
            self.endpoints.setdefault(name, EndpointSample()).merge(sample)
        self.errors.update(other.errors)

    def total(self) -> EndpointSample:
        """Every endpoint as one."""
        total = EndpointSample()
        for sample in self.endpoints.values():
            total.merge(sample)
        return total

    @property
    def requests(self) -> int:
        return sum(sample.requests for sample in self.endpoints.values())

    @property
    def failures(self) -> int:
        return sum(sample.failures for sample in self.endpoints.values())

    @property
    def timeouts(self) -> int:
        return sum(sample.timeouts for sample in self.endpoints.values())

    def seal(self) -> None:
        """Kept from now on, rarely added to: its histograms compact (Histogram.seal)."""
        for sample in self.endpoints.values():
            sample.seal()

    def finished_only(self) -> Aggregate:
        return Aggregate({k: s.finished_only() for k, s in self.endpoints.items()}, Counter(self.errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoints": {name: sample.to_dict() for name, sample in self.endpoints.items()},
            "errors": [[kind, message, count] for (kind, message), count in self.errors.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        return cls(
            {name: EndpointSample.from_dict(sample) for name, sample in data["endpoints"].items()},
            Counter(
                {(str(kind), str(message)): int(count) for kind, message, count in data.get("errors", ())}
            ),
        )


@dataclass
class LoadSecond:
    """One second of the run as it happened."""

    finished: Aggregate  # requests that finished during it, whenever they were sent
    waiting: int  # requests still in flight at its end
    oldest_waiting_since: float | None  # when the longest-waiting of them was sent

    @property
    def answered(self) -> int:
        """Requests that got an answer (a response or an error) during this second: a timeout
        is the client giving up, not an answer."""
        return self.finished.requests - self.finished.timeouts

    def stalled(self, second: int, grace: float) -> bool:
        """Users were waiting and nothing answered: no answer during the second while some request
        had been waiting for at least `grace` by its end."""
        since = self.oldest_waiting_since
        return self.answered == 0 and since is not None and second + 1 - since >= grace


class SampleStore:
    """Written by the load reader, read by the engine, the guards and the judge."""

    def __init__(self) -> None:
        self._sent: dict[int, dict[int, Aggregate]] = {}  # send second -> finish second -> requests
        self._seconds: dict[int, LoadSecond] = {}
        self._changed = threading.Condition()

    def add_sent(self, second: int, aggregate: Aggregate, finished: int | None = None) -> None:
        """Requests sent during `second` that finished (or were last seen unfinished) during the
        second `finished` (default: the same one)."""
        with self._changed:
            by_end = self._sent.setdefault(second, {})
            end = second if finished is None else finished
            existing = by_end.get(end)
            if existing is None:
                by_end[end] = existing = aggregate
            else:  # another Locust process saw the same seconds
                existing.add(aggregate)
            existing.seal()

    def add_second(self, second: int, happened: LoadSecond) -> None:
        with self._changed:
            existing = self._seconds.get(second)
            if existing is None:
                self._seconds[second] = happened
                happened.finished.seal()
            else:  # another Locust process saw the same second
                existing.finished.add(happened.finished)
                existing.waiting += happened.waiting
                existing.oldest_waiting_since = min(
                    (
                        t
                        for t in (existing.oldest_waiting_since, happened.oldest_waiting_since)
                        if t is not None
                    ),
                    default=None,
                )
                existing.finished.seal()
            self._changed.notify_all()

    def sent_seconds(self) -> list[int]:
        with self._changed:
            return sorted(self._sent)

    def sent(self, second: int) -> Aggregate | None:
        """The requests sent during one second, or None if none was."""
        with self._changed:
            if second not in self._sent:
                return None
        return self.window(second, second + 1)

    def second(self, second: int) -> LoadSecond | None:
        with self._changed:
            return self._seconds.get(second)

    def latest_second(self) -> int | None:
        with self._changed:
            return max(self._seconds, default=None)

    def wait_for_second(self, second: int, timeout: float) -> LoadSecond | None:
        """The second once the recorder has delivered it, or None after `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: second in self._seconds, timeout)
            return self._seconds.get(second)

    def window(
        self,
        start: float,
        end: float,
        finished_before: float | None = None,
        finished_from: float | None = None,
    ) -> Aggregate:
        """The requests sent during the seconds whose midpoint lies in [start, end); only those
        that finished before the second `finished_before`, or from `finished_from` on, if given."""
        total = Aggregate()
        with self._changed:
            for second, by_end in self._sent.items():
                if not start <= second + 0.5 < end:
                    continue
                for finished, aggregate in by_end.items():
                    if finished_before is not None and finished + 0.5 >= finished_before:
                        continue
                    if finished_from is not None and finished + 0.5 < finished_from:
                        continue
                    total.add(aggregate)
        return total

    def finished_window(self, start: float, end: float) -> Aggregate:
        """The requests that finished during the seconds whose midpoint lies in [start, end)."""
        total = Aggregate()
        with self._changed:
            for second, happened in self._seconds.items():
                if start <= second + 0.5 < end:
                    total.add(happened.finished)
        return total

    def answered(self, start: float, end: float) -> int:
        with self._changed:
            return sum(h.answered for s, h in self._seconds.items() if start <= s + 0.5 < end)

    def stalled_seconds(self, start: float, end: float, grace: float) -> list[int]:
        with self._changed:
            return sorted(
                s for s, h in self._seconds.items() if start <= s + 0.5 < end and h.stalled(s, grace)
            )
