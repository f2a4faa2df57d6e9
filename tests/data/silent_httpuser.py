"""Test locustfile: an HttpUser that sets no timeout, against a server that never answers."""

from locust import HttpUser, constant, task


class HangingUser(HttpUser):
    wait_time = constant(0)

    @task
    def hang(self) -> None:
        self.client.get("/hang")
