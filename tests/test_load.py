"""The Locust child and its recorder: counted from outside against Locust's own statistics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import HOST, REPO, Starter, alive, assert_counts_as_logged, assert_percentiles_as_logged

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.load.protocol import REQUEST_LOG_VARIABLE
from chaoslib_ext.load.runner import LoadRunner
from chaoslib_ext.spec.model import LoadSpec
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import process_start_ticks

pytestmark = pytest.mark.slow


@pytest.fixture
def backend(start: Starter) -> str:
    _, port = start("chaoslib_ext.demo.backend", "--work-ms", "1")
    return f"http://{HOST}:{port}"


def test_runner_never_imports_locust_or_gevent():
    code = (
        "import sys, chaoslib_ext.engine, chaoslib_ext.cli, chaoslib_ext.report; "
        "print('gevent' in sys.modules or 'locust' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert output.stdout.strip() == "False"


@pytest.mark.parametrize("processes", [1, 2])
def test_recorder_counts_every_request_that_locust_counts(
    backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: int
):
    """Every request each Locust process sent (its own log, one line per request) is in the store
    exactly once; with 2 processes gameday's master merged two workers' seconds. With one process,
    Locust's own statistics agree too (with several, Locust's master may miss a worker's last
    report when the whole group is stopped at once, so the workers' own logs are the reference)."""
    stats_file = tmp_path / "locust-stats.json"  # Locust appends .json to the name it is given
    request_log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(REQUEST_LOG_VARIABLE, str(request_log))
    load = LoadSpec(
        REPO / "tests" / "data" / "mixed_locustfile.py",
        backend,
        users=4,
        spawn_rate=4,
        options=("--json-file", str(stats_file.with_suffix(""))),
        processes=processes,
    )
    runner = LoadRunner(load, 30, RunDirectory.create(tmp_path, "run"), Timeline())
    runner.start()
    deadline = time.monotonic() + 20
    while len(runner.samples.sent_seconds()) < 3:
        assert time.monotonic() < deadline, "no samples arrived"
        time.sleep(0.1)
    runner.stop()
    total = runner.samples.window(float("-inf"), float("inf"))
    logged = [json.loads(line) for line in request_log.read_text().splitlines()]
    by_process = Counter(record["pid"] for record in logged)
    assert len(by_process) == processes and all(count > 10 for count in by_process.values()), by_process
    assert_counts_as_logged(total, logged, ("GET /work", "GET /nope"))
    if processes == 1:
        locust_stats = {entry["name"]: entry for entry in json.loads(stats_file.read_text())}
        for name in ("/work", "/nope"):
            sample = total.endpoints[f"GET {name}"]
            assert sample.ok.count + sample.failed.count == locust_stats[name]["num_requests"], name
            assert sample.failed.count == locust_stats[name]["num_failures"], name
    assert_percentiles_as_logged(total.endpoints["GET /work"].ok, logged, "GET /work")
    assert total.endpoints["GET /nope"].ok.count == 0
    assert total.endpoints["GET /work"].failed.count == 0
    assert total.requests > 50
    assert any(kind == "HTTP 404" and "404" in message for kind, message in total.errors)
    # latencies are real: /work sleeps 1 ms on the server, so nothing can be faster than that
    assert total.endpoints["GET /work"].ok.min_us >= 1000
    actions = [e.action for e in runner.timeline.events()]
    lifecycle = [action for action in actions if not action.startswith("worker ")]
    assert lifecycle[:2] == ["started", "spawned"] and lifecycle[-1] == "stopped"
    assert actions.count("worker joined") == (processes if processes > 1 else 0)


def two_process_load(backend: str, tmp_path: Path, on_worker_loss: str = "abort") -> LoadRunner:
    """A started load of 4 users over two Locust worker processes."""
    load = LoadSpec(
        REPO / "tests" / "data" / "mixed_locustfile.py",
        backend,
        users=4,
        spawn_rate=4,
        processes=2,
        on_worker_loss=on_worker_loss,  # type: ignore[arg-type]
    )
    runner = LoadRunner(load, 60, RunDirectory.create(tmp_path, "run"), Timeline())
    runner.start()
    return runner


@pytest.mark.parametrize("on_worker_loss", ["abort", "continue"])
def test_a_worker_killed_mid_run_is_reported_lost_and_the_others_seconds_go_on(
    backend, tmp_path: Path, on_worker_loss: str
):
    runner = two_process_load(backend, tmp_path, on_worker_loss)
    try:
        assert len(runner.workers) == 2, runner.workers
        os.kill(runner.workers[0][0], signal.SIGKILL)
        killed_at = time.time()
        deadline = time.monotonic() + 30
        while "worker lost" not in [e.action for e in runner.timeline.events()]:
            assert time.monotonic() < deadline, "the lost worker was never reported"
            time.sleep(0.1)
        # seconds after the loss still arrive: the merge does not wait for the dead worker
        later = int(killed_at) + 6
        while runner.samples.wait_for_second(later, timeout=0.2) is None:
            assert time.monotonic() < deadline, "no second after the loss was written"
        assert runner.samples.window(later, later + 1).requests > 0
        if on_worker_loss == "abort":  # the engine aborts on it: less load than planned
            assert runner.problem and "was lost" in runner.problem
        else:  # judged on what was measured; the report's timeline and workers say it
            assert runner.problem is None
            assert [w["state"] for w in runner.worker_book.report()].count("lost") == 1
    finally:
        runner.stop()


def test_workers_of_a_master_that_died_alone_are_stopped_with_the_load(backend, tmp_path: Path):
    runner = two_process_load(backend, tmp_path)
    try:
        assert runner.process is not None and len(runner.workers) == 2, runner.workers
        os.kill(runner.process.pid, signal.SIGKILL)
        runner.process.wait()
    finally:
        runner.stop()
    deadline = time.monotonic() + 10
    while any(alive(pid) and process_start_ticks(pid) == ticks for pid, ticks in runner.workers):
        assert time.monotonic() < deadline, "a worker outlived its master and the load's stop"
        time.sleep(0.05)


def test_a_broken_locustfile_is_reported_with_locusts_own_words(tmp_path: Path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    runner = LoadRunner(
        LoadSpec(broken, "http://127.0.0.1:9", 1, 1), 10, RunDirectory.create(tmp_path, "run"), Timeline()
    )
    with pytest.raises(RunAborted, match="no_such_module_here") as caught:
        runner.start()
    assert "broken.py" in str(caught.value) and "line 1" in str(caught.value)  # where Locust tripped
    runner.stop()


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: what a service behind a blackhole looks like."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.parametrize("locustfile", ["silent_httpuser.py", "silent_fasthttpuser.py"])
def test_requests_the_locustfile_sets_no_timeout_for_time_out_after_the_loads(
    silent_server, tmp_path, locustfile
):
    load = LoadSpec(
        REPO / "tests" / "data" / locustfile, silent_server, users=2, spawn_rate=2, request_timeout=1.0
    )
    runner = LoadRunner(load, 30, RunDirectory.create(tmp_path, "run"), Timeline())
    runner.start()
    deadline = time.monotonic() + 30
    while runner.samples.window(float("-inf"), float("inf")).timeouts < 6:
        assert time.monotonic() < deadline, "no request timed out"
        time.sleep(0.1)
    runner.stop()
    total = runner.samples.window(float("-inf"), float("inf"))
    sample = total.endpoints["GET /hang"]
    assert sample.failures == sample.timeouts >= 6 and sample.successes == 0
    assert sample.failed.min_us >= 1000 and sample.failed.max_us < 3_000_000  # ~1s each, not forever
    assert {kind for kind, _ in total.errors} == {"timeout"}
    waiting = [runner.samples.second(s) for s in range(int(time.time()) - 20, int(time.time()))]
    assert any(h is not None and h.waiting == 2 for h in waiting)  # seen hanging while they hung


def test_an_open_model_load_sends_at_its_arrival_rate_whatever_the_answers_take(backend, tmp_path):
    # 20 task runs a second; the backend answers in 1 ms: 2 users, each every 0.1 s, would do too,
    # but the open model sizes the users for the request timeout (1 s): 20 users, each every 1 s
    load = LoadSpec(
        REPO / "loadtests" / "backend.py",
        backend,
        users=20,
        spawn_rate=20,
        request_timeout=1.0,
        arrival_rate=20.0,
        pacing=1.0,
    )
    runner = LoadRunner(load, 30, RunDirectory.create(tmp_path, "run"), Timeline())
    runner.start()
    started = int(time.time()) + 1
    runner.samples.wait_for_second(started + 6, timeout=20)
    runner.stop()
    sent = runner.samples.window(started, started + 5)
    assert 90 <= sent.requests <= 110, sent.requests  # 20 a second for 5 s
    assert sent.total().paced == sent.requests  # every user's pacing is known: 1 s
