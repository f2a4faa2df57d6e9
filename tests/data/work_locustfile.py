"""Test locustfile: GET /work on a demo backend, 10 times a second per user."""

from locust import HttpUser, constant_throughput, task


class WorkUser(HttpUser):
    wait_time = constant_throughput(10)

    @task
    def work(self) -> None:
        self.client.get("/work")
