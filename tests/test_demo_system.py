"""End-to-end tests of the embedded demo system: real processes on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import HOST, REPO, Starter, get, stop, wait_healthy


def start_backends(start: Starter, n: int) -> list[tuple[subprocess.Popen[bytes], int]]:
    """Start n named backend replicas."""
    return [start("chaoslib_ext.demo.backend", "--name", f"r{i}", "--work-ms", "1") for i in range(n)]


def start_frontend(start: Starter, backends: list[tuple[subprocess.Popen[bytes], int]]) -> int:
    """Start a frontend over the given backends; return its port."""
    spec = ",".join(f"{HOST}:{port}" for _, port in backends)
    _, port = start("chaoslib_ext.demo.frontend", "--backends", spec, "--timeout", "0.5", "--retries", "1")
    return port


def test_backend_answers_work_and_healthz(start: Starter) -> None:
    proc, port = start("chaoslib_ext.demo.backend", "--name", "alpha")
    status, body = get(port, "/work")
    assert status == 200
    assert json.loads(body) == {"replica": "alpha", "pid": proc.pid}
    assert get(port, "/healthz") == (200, b"ok")
    assert get(port, "/nope")[0] == 404


def test_backend_keep_alive(start: Starter) -> None:
    _, port = start("chaoslib_ext.demo.backend", "--name", "ka")
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        for _ in range(5):
            conn.request("GET", "/work")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Length") is not None
            assert json.loads(resp.read())["replica"] == "ka"
    finally:
        conn.close()


def test_frontend_spreads_over_backends(start: Starter) -> None:
    backends = start_backends(start, 3)
    fport = start_frontend(start, backends)
    seen: set[str] = set()
    for _ in range(30):
        status, body = get(fport, "/checkout")
        assert status == 200, body
        payload = json.loads(body)
        assert payload["attempts"] == 1
        seen.add(payload["replica"])
    assert seen == {"r0", "r1", "r2"}


def test_retry_covers_one_dead_backend(start: Starter) -> None:
    backends = start_backends(start, 3)
    fport = start_frontend(start, backends)
    victim, _ = backends[1]
    victim.kill()
    victim.wait(timeout=5)
    results = [get(fport, "/checkout") for _ in range(30)]
    assert [status for status, _ in results] == [200] * 30, results
    payloads = [json.loads(body) for _, body in results]
    assert "r1" not in {p["replica"] for p in payloads}
    assert any(p["attempts"] == 2 for p in payloads)


def test_all_backends_dead_gives_prompt_502(start: Starter) -> None:
    backends = start_backends(start, 3)
    fport = start_frontend(start, backends)
    for proc, _ in backends:
        proc.kill()
        proc.wait(timeout=5)
    for _ in range(5):
        t0 = time.monotonic()
        status, body = get(fport, "/checkout")
        elapsed = time.monotonic() - t0
        assert status == 502
        payload = json.loads(body)
        assert payload["attempts"] == 2
        assert payload["error"]
        assert elapsed < 1.5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly(start: Starter, sig: signal.Signals) -> None:
    backend, bport = start("chaoslib_ext.demo.backend")
    frontend, fport = start("chaoslib_ext.demo.frontend", "--backends", f"{HOST}:{bport}")
    # An idle keep-alive connection must not keep the server from exiting.
    idle = http.client.HTTPConnection(HOST, fport, timeout=5)
    try:
        idle.request("GET", "/checkout")
        resp = idle.getresponse()
        resp.read()
        assert resp.status == 200
        for proc in (frontend, backend):
            t0 = time.monotonic()
            proc.send_signal(sig)
            assert proc.wait(timeout=5) == 0
            assert time.monotonic() - t0 < 3
            assert b"Traceback" not in proc.log_path.read_bytes()  # type: ignore[attr-defined]
    finally:
        idle.close()


def test_restarted_backend_rebinds_same_port(start: Starter) -> None:
    proc, port = start("chaoslib_ext.demo.backend", "--name", "first")
    # Leave a connection in TIME_WAIT on the server side.
    assert get(port, "/work")[0] == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    env = dict(os.environ, PYTHONPATH=str(REPO))
    again = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chaoslib_ext.demo.backend",
            "--port",
            str(port),
            "--name",
            "second",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(again, port)
        assert json.loads(get(port, "/work")[1])["replica"] == "second"
    finally:
        stop(again)
