"""Locustfile for the docker demo stack: GET /cgi-bin/checkout on the front container."""

from locust import HttpUser, constant_throughput, task


class StackUser(HttpUser):
    wait_time = constant_throughput(5)

    @task
    def checkout(self) -> None:
        self.client.get("/cgi-bin/checkout", name="/checkout")
