"""End-to-end tests of the embedded demo system: real processes on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

Starter = Callable[..., tuple[subprocess.Popen[bytes], int]]


def free_port() -> int:
    """Ask the kernel for a currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))

    def _start(module: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = tmp_path / f"{module.rsplit('.', 1)[-1]}-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "--host", HOST, "--port", str(port), *args],
                cwd=REPO_ROOT,
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
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
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
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(again, port)
        assert json.loads(get(port, "/work")[1])["replica"] == "second"
    finally:
        stop(again)
