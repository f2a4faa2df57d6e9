"""Shared helpers: free ports, experiment files, and running the real `gameday` command."""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoslib_ext.measure.histogram import MAX_RELATIVE_ERROR, Histogram
from chaoslib_ext.measure.samples import Aggregate

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "loadtests" / "checkout.py"
HOST = "127.0.0.1"

Starter = Callable[..., tuple[subprocess.Popen[bytes], int]]

MINIMAL = f"""\
version: 1
title: minimal
load: {{locustfile: {LOCUSTFILE}, host: "http://127.0.0.1:9", users: 1}}
slo: {{availability: 99%}}
phases: {{baseline: 1s, fault: 1s, recovery: 1s}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_block(count: int) -> int:
    """A base port such that base .. base+count-1 are all free right now."""
    for _ in range(200):
        base = free_port()
        if base + count < 65535 and all(_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free ports found")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gameday(*args: str, timeout: float = 180, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "chaoslib_ext", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test keeps its ledgers apart, so that one test's crash never blocks another's run."""
    directory = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("GAMEDAY_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def experiment_file(tmp_path: Path):
    def write(text: str, name: str = "experiment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET http://127.0.0.1:port/path with a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_healthy(proc: subprocess.Popen[bytes], port: int, deadline_s: float = 10.0) -> None:
    """Poll /healthz until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    for _ in range(10_000):
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            break
        try:
            status, _ = get(port, "/healthz", timeout=0.5)
            if status == 200:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"port {port} not healthy within {deadline_s}s: {last!r}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill, a process we started."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Starter]:
    """Factory that starts a demo module on a free port and waits until it is healthy."""
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    def _start(module: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = tmp_path / f"{module.rsplit('.', 1)[-1]}-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "--host", HOST, "--port", str(port), *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        proc.log_path = log  # type: ignore[attr-defined]
        wait_healthy(proc, port)
        return proc, port

    yield _start
    for proc in procs:
        stop(proc)


def start_run(path: Path, report_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """A `gameday run` in the background, its output lines arriving on a queue."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chaoslib_ext", "run", str(path), "--report-dir", str(report_dir), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def wait_for_line(lines: queue.Queue[str], text: str, timeout: float = 60) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"no line with {text!r} in {timeout}s: {seen}")


def connects(address: str, port: int, count: int, timeout: float, at_once: int = 100) -> dict[str, int]:
    """`count` bounded TCP connects, at most `at_once` in flight (keep it under the server's listen
    backlog): how many succeeded, timed out, were refused."""

    async def one(gate: asyncio.Semaphore) -> str:
        async with gate:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            except TimeoutError:
                return "timeout"
            except ConnectionRefusedError:
                return "refused"
            writer.close()
            return "ok"

    async def all_of_them() -> list[str]:
        gate = asyncio.Semaphore(at_once)
        return await asyncio.gather(*(one(gate) for _ in range(count)))

    results = asyncio.run(all_of_them())
    return {kind: results.count(kind) for kind in ("ok", "timeout", "refused")}


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_percentiles_as_logged(histogram: Histogram, logged: list[dict[str, Any]], endpoint: str) -> None:
    """The histogram's p50/p95/p99 are the exact nearest-rank ones of the successful requests the
    load logged one by one (REQUEST_LOG_VARIABLE), within the histogram's error bound."""
    exact = sorted(record["us"] for record in logged if record["endpoint"] == endpoint and record["ok"])
    assert exact, endpoint
    for quantile in (0.5, 0.95, 0.99):
        measured = histogram.percentile_ms(quantile)
        wanted = exact[max(1, math.ceil(quantile * len(exact))) - 1] / 1000
        assert measured is not None, quantile
        assert abs(measured - wanted) <= MAX_RELATIVE_ERROR * wanted + 0.001, (quantile, measured, wanted)


def assert_counts_as_logged(total: Aggregate, logged: list[dict[str, Any]], endpoints: Iterable[str]) -> None:
    """Every request the load logged one by one is in the store exactly once, by outcome."""
    for endpoint in endpoints:
        sample = total.endpoints[endpoint]
        mine = [record for record in logged if record["endpoint"] == endpoint]
        assert sample.ok.count == sum(record["ok"] is True for record in mine), endpoint
        assert sample.failed.count == sum(record["ok"] is False for record in mine), endpoint
        assert sample.unfinished.count == sum(record["ok"] is None for record in mine), endpoint


def assert_kubernetes_object(document: dict[str, Any], model: str) -> None:
    """The object reads back through the `kubernetes` package's API model unchanged: every field
    known and typed, the required ones present, nothing dropped."""
    from kubernetes import client

    api = client.ApiClient()
    read = api._ApiClient__deserialize(document, model)  # type: ignore[attr-defined]
    assert api.sanitize_for_serialization(read) == document, document["kind"]
