"""Workers elsewhere (load.workers): gameday's master here, `gameday worker` processes started on
their own, as on other machines. Everything on 127.0.0.1. A worker on another machine is made as
the master sees one: another kernel boot id (bind-mounted in a mount namespace of its own, as
root) and a clock put off with libfaketime, the way a machine without NTP would be."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    HOST,
    REPO,
    Starter,
    assert_counts_as_logged,
    assert_percentiles_as_logged,
    free_port,
    gameday,
)

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.load.handshake import BOOT_ID
from chaoslib_ext.load.protocol import REQUEST_LOG_VARIABLE
from chaoslib_ext.load.runner import LoadRunner
from chaoslib_ext.spec.model import LoadSpec, WorkersSpec
from chaoslib_ext.state.trust import RunDirectory

LOCUSTFILE = REPO / "tests" / "data" / "mixed_locustfile.py"


@pytest.fixture
def backend(start: Starter) -> str:
    _, port = start("chaoslib_ext.demo.backend", "--work-ms", "1")
    return f"http://{HOST}:{port}"


class Workers:
    """`gameday worker` processes, each with its own request log; all stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[str]] = []

    def start(
        self, port: int, locustfile: Path = LOCUSTFILE, clock: str | None = None
    ) -> subprocess.Popen[str]:
        env = {**os.environ, REQUEST_LOG_VARIABLE: str(self.tmp_path / "requests.jsonl")}
        command = [
            sys.executable,
            "-m",
            "chaoslib_ext",
            "worker",
            "--master",
            f"{HOST}:{port}",
            "-f",
            str(locustfile),
        ]
        if clock is not None:  # another machine's kernel, its clock off by this much (no NTP)
            boot = self.tmp_path / "boot_id"
            boot.write_text(str(uuid.uuid4()) + "\n")
            elsewhere = f'mount --bind {boot} {BOOT_ID} && exec "$@"'
            command = ["unshare", "-m", "sh", "-c", elsewhere, "sh", "faketime", "-f", clock, *command]
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop()


def starting(runner: LoadRunner) -> tuple[threading.Thread, list[BaseException]]:
    """runner.start() on a thread: it returns once the workers joined and the users are spawned."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            runner.start()
        except BaseException as error:  # handed to the test's thread
            errors.append(error)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    return thread, errors


def remote_load(backend: str, tmp_path: Path, expect: int, **workers: float) -> tuple[LoadRunner, int]:
    port = free_port()
    spec = WorkersSpec(expect=expect, bind_port=port, **workers)  # type: ignore[arg-type]
    load = LoadSpec(LOCUSTFILE, backend, users=4, spawn_rate=4, workers=spec)
    return LoadRunner(load, 60, RunDirectory.create(tmp_path, "run"), Timeline()), port


def two_workers_joined(
    backend: str, tmp_path: Path, workers: Workers
) -> tuple[LoadRunner, subprocess.Popen[str], subprocess.Popen[str]]:
    """A master expecting two workers, and two `gameday worker` processes that joined it."""
    runner, port = remote_load(backend, tmp_path, expect=2)
    thread, errors = starting(runner)
    first, second = workers.start(port), workers.start(port)
    thread.join(timeout=90)
    assert not errors and runner.spawned.is_set(), errors
    return runner, first, second


def wait_seconds(runner: LoadRunner, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(runner.samples.sent_seconds()) < count:
        assert time.monotonic() < deadline, "no samples arrived"
        time.sleep(0.1)


@pytest.mark.slow
def test_two_workers_started_on_their_own_are_merged_exactly(backend, tmp_path: Path, workers: Workers):
    """The merged counts are the sum of what each worker sent (its own log, one line per request),
    and the percentiles are the exact ones of those requests within the histogram's bound."""
    runner, first, second = two_workers_joined(backend, tmp_path, workers)
    try:
        wait_seconds(runner, 4)
    finally:
        runner.stop()
    for worker in (first, second):  # the master tells them to quit when the load stops
        assert worker.wait(timeout=30) == 0, worker.stderr.read() if worker.stderr else ""
    logged = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    by_worker = Counter(record["pid"] for record in logged)
    assert len(by_worker) == 2 and all(count > 10 for count in by_worker.values()), by_worker
    total = runner.samples.window(float("-inf"), float("inf"))
    assert_counts_as_logged(total, logged, ("GET /work", "GET /nope"))
    assert_percentiles_as_logged(total.endpoints["GET /work"].ok, logged, "GET /work")
    joined = [e for e in runner.timeline.events() if e.action == "worker joined"]
    assert len(joined) == 2
    for event in joined:  # the master's own kernel: its own clock, no offset to measure
        assert event.detail["clock_offset_s"] == 0 and event.detail["clock_uncertainty_s"] == 0, event.detail
    report = runner.worker_book.report()
    assert [w["state"] for w in report] == ["joined", "joined"]
    assert sum(w["requests"] for w in report) > 0 and sum(w["users"] for w in report) == 4, report
    assert all(w["requests_per_s"] and w["requests_per_s"] > 5 for w in report), report


@pytest.mark.slow
def test_a_worker_that_quits_mid_run_is_lost_and_aborts_the_run(backend, tmp_path: Path, workers: Workers):
    """Ctrl-C or SIGTERM on a worker elsewhere: it sends its last batch and leaves Locust's list; its
    users' load went with it, so the run (on_worker_loss: abort) must know."""
    runner, first, second = two_workers_joined(backend, tmp_path, workers)
    try:
        wait_seconds(runner, 2)
        second.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while runner.problem is None:
            assert time.monotonic() < deadline, "the worker that quit was never reported"
            time.sleep(0.1)
    finally:
        runner.stop()
    assert "was lost: it quit" in runner.problem, runner.problem
    assert sorted(w["state"] for w in runner.worker_book.report()) == ["joined", "lost"]
    assert first.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_worker_with_another_locustfile_is_refused_naming_both_and_the_run_waits_for_a_right_one(
    backend, tmp_path: Path, workers: Workers
):
    other = tmp_path / "other_locustfile.py"
    other.write_text(LOCUSTFILE.read_text() + "\n# changed\n")
    runner, port = remote_load(backend, tmp_path, expect=1, join_timeout=60)
    thread, errors = starting(runner)
    try:
        wrong = workers.start(port, locustfile=other)
        assert wrong.wait(timeout=60) == 2
        said = wrong.stderr.read() if wrong.stderr else ""
        assert "refused this worker" in said and str(other) in said and str(LOCUSTFILE) in said, said
        assert not runner.spawned.is_set()  # it got no users, and the run still waits
        workers.start(port)
        thread.join(timeout=90)
        assert not errors and runner.spawned.is_set(), errors
        wait_seconds(runner, 2)
    finally:
        runner.stop()
    states = {w["state"]: w for w in runner.worker_book.report()}
    assert set(states) == {"refused", "joined"}
    assert "sha256" in states["refused"]["reason"]


@pytest.mark.slow
def test_workers_that_never_come_abort_the_run_with_how_to_start_them(backend, tmp_path: Path):
    runner, port = remote_load(backend, tmp_path, expect=2, join_timeout=2)
    started = time.monotonic()
    with pytest.raises(RunAborted) as aborted:
        runner.start()
    runner.stop()
    assert time.monotonic() - started < 60
    text = str(aborted.value)
    assert "0 of 2 Locust worker(s) joined within 2s" in text, text
    assert f"gameday worker --master 127.0.0.1:{port} -f {LOCUSTFILE}" in text, text


needs_faketime = pytest.mark.skipif(
    shutil.which("faketime") is None or os.geteuid() != 0,
    reason="needs libfaketime (faketime) and root (a boot id of its own in a mount namespace)",
)


@pytest.mark.slow
@needs_faketime
def test_a_worker_whose_clock_is_off_is_refused_beyond_the_bound(backend, tmp_path: Path, workers: Workers):
    runner, port = remote_load(backend, tmp_path, expect=1, join_timeout=3, max_clock_offset=1.0)
    thread, errors = starting(runner)
    off = workers.start(port, clock="+3s")
    assert off.wait(timeout=60) == 2
    said = off.stderr.read() if off.stderr else ""
    assert "its clock is +3." in said and "max_clock_offset" in said, said
    thread.join(timeout=90)
    runner.stop()
    assert errors and "refused" in str(errors[0]) and "clock" in str(errors[0]), errors


@pytest.mark.slow
@needs_faketime
def test_a_worker_whose_clock_is_off_within_the_bound_files_its_requests_on_the_masters_clock(
    backend, tmp_path: Path, workers: Workers
):
    """30 s off, allowed: its seconds are the master's. Without the correction every request would
    be filed 30 s in the future, outside the run."""
    runner, port = remote_load(backend, tmp_path, expect=1, max_clock_offset=60.0)
    thread, errors = starting(runner)
    workers.start(port, clock="+30s")
    thread.join(timeout=90)
    assert not errors and runner.spawned.is_set(), errors
    began = time.time()
    try:
        wait_seconds(runner, 3)
    finally:
        runner.stop()
    ended = time.time()
    (joined,) = [e for e in runner.timeline.events() if e.action == "worker joined"]
    assert abs(joined.detail["clock_offset_s"] - 30) < 0.5, joined.detail
    seconds = runner.samples.sent_seconds()
    assert seconds and began - 10 <= min(seconds) and max(seconds) <= ended + 1, (began, seconds, ended)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--master", "nowhere", "-f", str(LOCUSTFILE)], "--master nowhere: expected HOST:PORT"),
        (["--master", "127.0.0.1:0", "-f", str(LOCUSTFILE)], "--master 127.0.0.1:0: expected HOST:PORT"),
        (["--master", "127.0.0.1:5557", "-f", "missing.py"], "missing.py: no such locustfile"),
        (["--master", "127.0.0.1:1", "-f", str(LOCUSTFILE), "--processes", "0"], "--processes 0: expected"),
    ],
)
def test_gameday_worker_refuses_bad_input_in_one_line(arguments: list[str], expected: str):
    result = gameday("worker", *arguments, timeout=60)
    assert result.returncode == 2 and result.stdout == "", result
    [line] = result.stderr.splitlines()
    assert line.startswith("gameday: error: ") and expected in line and "(hint: " in line, line
