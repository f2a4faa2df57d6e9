"""Locust load for one demo backend service (chaoslib_ext.demo.backend): GET /work, 10 a second
per user. ``locust -f loadtests/backend.py --host http://127.0.0.1:18101 --headless -u 5 -t 10s``.
"""

from locust import HttpUser, constant_throughput, task


class WorkUser(HttpUser):
    """A client of the backend's /work endpoint."""

    wait_time = constant_throughput(10)

    @task
    def work(self) -> None:
        self.client.get("/work")
