"""Test containers from the demo base image, labelled per test so that they can always be removed."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
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


# Runs with the host's Python inside a container's network namespace. For each line "NAME COUNT"
# on stdin: COUNT sequential A queries to the container's resolver from one socket (the same one
# for the life of the process, as a long-running client would), each reply (or its absence)
# tallied as RCODE or RCODE=address, and the slowest reply's time, as a JSON line.
LOOKUPS = """
import json, socket, sys, time
from dnslib import DNSRecord, RCODE
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.0)
for line in sys.stdin:
    name, count = line.split()
    tally, slowest = {}, 0.0
    for _ in range(int(count)):
        question = DNSRecord.question(name)
        started = time.monotonic()
        sock.sendto(question.pack(), ("127.0.0.11", 53))
        try:
            while True:
                reply = DNSRecord.parse(sock.recv(4096))
                if reply.header.id == question.header.id:
                    break
            key = RCODE.get(reply.header.rcode) + "".join("=" + str(rr.rdata) for rr in reply.rr)
        except (TimeoutError, ConnectionRefusedError):
            key = "no answer"
        slowest = max(slowest, time.monotonic() - started)
        tally[key] = tally.get(key, 0) + 1
    print(json.dumps({"tally": tally, "slowest": slowest}), flush=True)
"""


def sandbox(container) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["SandboxKey"]


def lookups(container, name: str, count: int) -> tuple[dict[str, int], float]:
    """`count` lookups from a fresh client (a new socket) in the container's namespace."""
    result = subprocess.run(
        ["nsenter", f"--net={sandbox(container)}", sys.executable, "-c", LOOKUPS],
        input=f"{name} {count}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    return found["tally"], found["slowest"]
