"""Test locustfile: a FastHttpUser that sets no timeout, against a server that never answers."""

from locust import FastHttpUser, constant, task


class HangingUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def hang(self) -> None:
        self.client.get("/hang")
