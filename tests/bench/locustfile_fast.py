"""Bench-only Locust load with FastHttpUser: every user GETs /work back to back.

It sets the timeouts the recorder child gives a FastHttpUser by default (10 s), so that both sides
of a comparison run the same client.
"""

from locust import FastHttpUser, constant, task


class FastWorkUser(FastHttpUser):
    """Calls GET /work with no wait time between requests."""

    wait_time = constant(0)
    network_timeout = 10.0
    connection_timeout = 10.0

    @task
    def work(self) -> None:
        """GET /work."""
        self.client.get("/work", name="/work")
