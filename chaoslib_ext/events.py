"""The run's events: what happened, to what, and when (wall-clock seconds), published once.

The engine, the services' monitor and the load publish here; the progress lines and the report
read from here (the report from what is kept, the progress line also from what is only passed on,
such as the per-second status), and so can any other subscriber.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float  # epoch seconds
    source: str  # "engine", "service", "fault", "load", "probe"
    action: str  # "phase", "started", "exited", "restarted", "ready", "kill", ...
    subject: str = ""  # what it happened to: a replica, a phase, a probe
    detail: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[Event], None]


class Timeline:
    """Thread-safe, append-only list of events, and the subscribers each one is passed to."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def add(self, source: str, action: str, subject: str = "", **detail: Any) -> Event:
        """Keep an event (the report's timeline) and pass it on."""
        event = Event(time.time(), source, action, subject, detail)
        with self._lock:
            self._events.append(event)
        self._notify(event)
        return event

    def publish(self, source: str, action: str, subject: str = "", **detail: Any) -> None:
        """Pass an event on without keeping it (a per-second status, say)."""
        self._notify(Event(time.time(), source, action, subject, detail))

    def _notify(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber(event)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)
