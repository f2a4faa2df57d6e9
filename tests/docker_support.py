"""Test containers from the demo base image, labelled per test so that they can always be removed."""

from __future__ import annotations

import queue
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from conftest import start_run

from chaoslib_ext.demo.docker_image import ensure_base_image


def docker_client_or_reason() -> tuple[object | None, str]:
    """A live Docker client, or why there is none (for a visible skip reason)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client, ""
    except Exception as error:
        return None, f"no Docker engine: {str(error)[:120]}"


def run_web_containers(client, count: int, role: str, label: str, network: str | None = None) -> list:
    """`count` busybox httpd containers serving /www on 8080, labelled for one test."""
    image = ensure_base_image(client)
    return [
        client.containers.run(
            image,
            ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
            detach=True,
            name=f"gdtest-{label}-{role}-{i}",
            labels={"gameday.test": label, "role": role},
            network=network,
        )
        for i in range(count)
    ]


def new_label() -> str:
    return uuid.uuid4().hex[:8]


def labelled(client) -> Iterator[str]:
    """A fresh label for one test; its containers and networks are removed after it, whatever happened."""
    label = new_label()
    yield label
    for container in client.containers.list(all=True, filters={"label": f"gameday.test={label}"}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": f"gameday.test={label}"}):
        network.remove()


def address(container) -> str:
    """The container's address on its (first) network."""
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def answers(ip: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:8080/index.html", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def start_labelled_run(
    path: Path, reports: Path, label: str, front
) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """`gameday run` of a test experiment (variables label and host) against the front container."""
    return start_run(path, reports, "--var", f"label={label}", "--var", f"host=http://{address(front)}:8080")
