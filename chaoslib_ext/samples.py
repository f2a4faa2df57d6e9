"""Per-second load samples as the runner keeps them, and their aggregation over time windows."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .histogram import Histogram

FLUSH_LAG_SECONDS = 0.5  # the recorder flushes a finished second within 0.2 s: earlier ones are complete


@dataclass
class EndpointSample:
    """Latencies of successful and failed requests to one endpoint ("GET /checkout")."""

    ok: Histogram = field(default_factory=Histogram)
    failed: Histogram = field(default_factory=Histogram)

    def merge(self, other: EndpointSample) -> None:
        self.ok.merge(other.ok)
        self.failed.merge(other.failed)


@dataclass
class Aggregate:
    """Everything recorded during some set of seconds."""

    endpoints: dict[str, EndpointSample] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, other: Aggregate) -> None:
        for name, sample in other.endpoints.items():
            self.endpoints.setdefault(name, EndpointSample()).merge(sample)
        self.errors.update(other.errors)

    @property
    def ok(self) -> Histogram:
        return Histogram.merged(sample.ok for sample in self.endpoints.values())

    @property
    def requests(self) -> int:
        return sum(s.ok.count + s.failed.count for s in self.endpoints.values())

    @property
    def failures(self) -> int:
        return sum(s.failed.count for s in self.endpoints.values())

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Aggregate:
        """Decode one "second" message of the recorder plugin."""
        aggregate = cls(errors=Counter(message.get("errors", {})))
        for name, data in message["endpoints"].items():
            aggregate.endpoints[name] = EndpointSample(
                Histogram.from_dict(data["ok"]), Histogram.from_dict(data["failed"])
            )
        return aggregate


class SampleStore:
    """Seconds keyed by their epoch second; written by the load reader, read by everyone."""

    def __init__(self) -> None:
        self._seconds: dict[int, Aggregate] = {}
        self._lock = threading.Lock()

    def add(self, second: int, aggregate: Aggregate) -> None:
        with self._lock:
            existing = self._seconds.get(second)
            if existing is None:
                self._seconds[second] = aggregate
            else:  # the same second from another Locust process (or a late flush)
                existing.add(aggregate)

    def seconds(self) -> list[int]:
        with self._lock:
            return sorted(self._seconds)

    def get(self, second: int) -> Aggregate | None:
        with self._lock:
            return self._seconds.get(second)

    def window(self, start: float, end: float) -> Aggregate:
        """Merge the seconds whose midpoint lies in [start, end)."""
        total = Aggregate()
        with self._lock:
            for second, aggregate in self._seconds.items():
                if start <= second + 0.5 < end:
                    total.add(aggregate)
        return total
