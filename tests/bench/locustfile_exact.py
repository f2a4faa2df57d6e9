"""Bench-only locustfile for the accuracy check: the plain load plus a dump of every exact latency.

Each request's ``response_time`` (fractional ms, exactly as Locust reports it on the ``events.request``
hook the recorder also listens on) is appended as ``repr(float)``, one per line, to the file named by
the GAMEDAY_BENCH_EXACT_FILE environment variable.
"""

from __future__ import annotations

import os
from typing import Any

from locust import events
from locustfile_plain import WorkUser

EXACT_FILE_VARIABLE = "GAMEDAY_BENCH_EXACT_FILE"

__all__ = ["WorkUser"]  # Locust runs the user classes it finds in this module's namespace.

_dump = open(os.environ[EXACT_FILE_VARIABLE], "w", encoding="ascii", buffering=1 << 16)  # noqa: SIM115


@events.request.add_listener
def _on_request(response_time: float | None, **_: Any) -> None:
    if response_time is not None:  # the recorder keeps no latency for a request without one either
        _dump.write(f"{response_time!r}\n")


@events.test_stop.add_listener
def _on_test_stop(**_: Any) -> None:
    _dump.flush()


@events.quitting.add_listener
def _on_quitting(**_: Any) -> None:
    _dump.flush()
