"""The run's event log: what happened, to what, and when (wall-clock seconds)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float  # epoch seconds
    source: str  # "engine", "service", "fault", "load", "probe"
    action: str  # "phase", "started", "exited", "restarted", "ready", "kill", ...
    subject: str = ""  # what it happened to: a replica, a phase, a probe
    detail: dict[str, Any] = field(default_factory=dict)


class Timeline:
    """Thread-safe, append-only list of events."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, source: str, action: str, subject: str = "", **detail: Any) -> Event:
        event = Event(time.time(), source, action, subject, detail)
        with self._lock:
            self._events.append(event)
        return event

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)
