"""Bench-only Locust load: every user GETs /work back to back, so Locust itself is the bottleneck.

Used unchanged by both sides of the overhead comparison (plain Locust and the recorder child). It
sets the request timeout the recorder child gives every request by default (load.request_timeout,
10 s), so that the comparison measures the recorder, not the cost of a socket timeout.
"""

from locust import HttpUser, constant, task


class WorkUser(HttpUser):
    """Calls the demo backend's GET /work with no wait time between requests."""

    wait_time = constant(0)

    @task
    def work(self) -> None:
        """GET /work."""
        self.client.get("/work", name="/work", timeout=10)
