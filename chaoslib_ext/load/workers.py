"""What the runner knows of Locust's workers, from the master's lines: who joined (from where, with
what clock offset), who was refused and why, who was lost, and what each one is doing."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class WorkerRecord:
    worker: str  # Locust's node id: the worker's host name and a random suffix
    host: str
    state: str  # joined, lost, refused
    clock_offset_s: float | None = None  # the worker's clock minus the master's
    clock_uncertainty_s: float | None = None  # half the round trip the offset was measured over
    reason: str | None = None  # why it was refused
    users: int = 0  # running now
    most_users: int = 0  # the most it ran at once
    requests: int = 0  # it reported, so far
    rate: float = 0.0  # requests per second since its previous status
    seen: float | None = None  # when its previous status came (monotonic)
    first_seen: float | None = None  # when its first status came (monotonic)
    first_requests: int = 0  # what it had reported by then

    def to_report(self) -> dict[str, Any]:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 3)

        return {
            "worker": self.worker,
            "host": self.host,
            "state": self.state,
            "clock_offset_ms": ms(self.clock_offset_s),
            "clock_uncertainty_ms": ms(self.clock_uncertainty_s),
            "reason": self.reason,
            "users": self.most_users,
            "requests": self.requests,
            "requests_per_s": self.mean_rate(),
        }

    def mean_rate(self) -> float | None:
        """Requests per second between its first status and its last (None before two)."""
        if self.seen is None or self.first_seen is None or self.seen <= self.first_seen:
            return None
        return round((self.requests - self.first_requests) / (self.seen - self.first_seen), 1)


class WorkerBook:
    """Thread-safe: the load reader writes, the engine's status line and the report read."""

    def __init__(self) -> None:
        self._records: dict[str, WorkerRecord] = {}
        self._lock = threading.Lock()

    def event(self, message: dict[str, Any]) -> None:
        """A "worker" line: joined, refused, lost or back."""
        worker, event = str(message["worker"]), str(message["event"])
        with self._lock:
            record = self._records.get(worker)
            if event in ("joined", "refused") or record is None:
                record = self._records[worker] = WorkerRecord(worker, str(message.get("host", "?")), event)
            record.state = "joined" if event == "back" else event
            record.clock_offset_s = message.get("clock_offset_s", record.clock_offset_s)
            record.clock_uncertainty_s = message.get("clock_uncertainty_s", record.clock_uncertainty_s)
            record.reason = message.get("reason", record.reason)

    def status(self, message: dict[str, Any]) -> None:
        """A "workers" line: each worker's users and requests so far."""
        now = time.monotonic()
        with self._lock:
            for worker, status in message["workers"].items():
                record = self._records.get(worker)
                if record is None:
                    continue
                requests = int(status["requests"])
                if record.seen is not None and now > record.seen:
                    record.rate = (requests - record.requests) / (now - record.seen)
                if record.first_seen is None:
                    record.first_seen, record.first_requests = now, requests
                record.users, record.requests, record.seen = int(status["users"]), requests, now
                record.most_users = max(record.most_users, record.users)

    def joined(self) -> list[WorkerRecord]:
        with self._lock:
            return [record for record in self._records.values() if record.state == "joined"]

    def refusals(self) -> list[str]:
        with self._lock:
            return [f"{r.worker} ({r.reason})" for r in self._records.values() if r.state == "refused"]

    def live(self) -> list[tuple[int, float]]:
        """(users, requests per second) of each joined worker, for the status line."""
        return [(record.users, record.rate) for record in self.joined()]

    def report(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record.to_report() for record in self._records.values()]
