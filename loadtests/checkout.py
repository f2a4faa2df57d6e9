"""Locust load for the embedded demo frontend (chaoslib_ext.demo.frontend).

Each user calls GET /checkout at a constant 10 requests/s. Point it at the frontend, e.g.
``locust -f loadtests/checkout.py --host http://127.0.0.1:8080 --headless -u 5 -t 10s``.
"""

from locust import HttpUser, constant_throughput, task


class CheckoutUser(HttpUser):
    """A shopper hammering the demo frontend's checkout endpoint."""

    wait_time = constant_throughput(10)

    @task
    def checkout(self) -> None:
        """GET /checkout through the frontend."""
        self.client.get("/checkout", name="/checkout")
