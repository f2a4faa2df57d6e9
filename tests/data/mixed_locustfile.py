"""Test locustfile: one endpoint that succeeds and one that always fails (404)."""

from locust import HttpUser, constant_throughput, task


class MixedUser(HttpUser):
    wait_time = constant_throughput(20)

    @task(3)
    def work(self) -> None:
        self.client.get("/work")

    @task(1)
    def missing(self) -> None:
        self.client.get("/nope")
