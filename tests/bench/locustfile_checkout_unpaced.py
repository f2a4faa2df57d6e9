"""Bench-only locustfile: the checkout load with a wait_time whose pacing gameday cannot know."""

from locust import HttpUser, between, task


class UnpacedCheckoutUser(HttpUser):
    wait_time = between(0.05, 0.15)

    @task
    def checkout(self) -> None:
        self.client.get("/checkout", name="/checkout")
