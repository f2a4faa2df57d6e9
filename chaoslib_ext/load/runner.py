"""Run a locustfile in a Locust child process and collect what its recorder plugin streams."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.launch import start_held
from chaoslib_ext.load.protocol import (
    FD_VARIABLE,
    LIMITS_VARIABLE,
    MAX_CLOCK_OFFSET_VARIABLE,
    PACING_VARIABLE,
    REQUEST_LOG_VARIABLE,
    TIMEOUT_VARIABLE,
)
from chaoslib_ext.load.workers import WorkerBook
from chaoslib_ext.measure.samples import Aggregate, LoadSecond, SampleStore
from chaoslib_ext.spec.model import LoadSpec
from chaoslib_ext.state.trust import RunDirectory
from chaoslib_ext.state.undo import KillProcessGroup, process_start_ticks

START_TIMEOUT_SECONDS = 60.0  # on top of the ramp-up (users / spawn rate)
STOP_TIMEOUT_SECONDS = 20.0
RUN_TIME_MARGIN_SECONDS = 60.0
LOG_NAME = "locust.log"


def ramp_seconds(load: LoadSpec) -> float:
    return load.users / load.spawn_rate


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def locust_command(load: LoadSpec, run_time_limit: float) -> list[str]:
    """The Locust command line; --run-time bounds the load even if the runner dies.

    Locust starts counting its run time when spawning starts, so the limit covers the ramp-up,
    the experiment and a margin. With more than one process, Locust forks that many workers and
    the child becomes their master, listening on loopback only; with workers elsewhere, the child
    is a master listening where load.workers.bind says, and waits for them.
    """
    command = [
        sys.executable,
        "-m",
        "chaoslib_ext.load.child",
        "-f",
        str(load.locustfile),
        "--headless",
        "--only-summary",
        "--users",
        str(load.users),
        "--spawn-rate",
        f"{load.spawn_rate:g}",
        "--run-time",
        f"{round(ramp_seconds(load) + run_time_limit + RUN_TIME_MARGIN_SECONDS)}s",
        "--stop-timeout",
        "2",
        "--exit-code-on-error",
        "0",
    ]
    processes = load.process_count()
    if load.workers is not None:  # workers elsewhere join this master
        workers = load.workers
        command += ["--master", "--master-bind-host", workers.bind_host]
        command += ["--master-bind-port", str(workers.bind_port), "--expect-workers", str(workers.expect)]
        command += ["--expect-workers-max-wait", f"{workers.join_timeout:g}"]
    elif processes > 1:
        port = str(free_loopback_port())
        command += ["--processes", str(processes), "--master-bind-host", "127.0.0.1"]
        command += ["--master-bind-port", port, "--master-port", port]
    for tag in load.tags:
        command += ["--tags", tag]
    for tag in load.exclude_tags:
        command += ["--exclude-tags", tag]
    return command + list(load.options) + list(load.user_classes)


def store_second(samples: SampleStore, message: dict[str, Any]) -> None:
    """Keep one "second" line of the recorder in both views of the store."""
    finished = Aggregate()
    for second, data in message["sent"]:
        aggregate = Aggregate.from_dict(data)
        samples.add_sent(int(second), aggregate, finished=int(message["t"]))
        finished.add(aggregate.finished_only())
    oldest = message["oldest"]
    samples.add_second(
        int(message["t"]),
        LoadSecond(finished, int(message["waiting"]), None if oldest is None else float(oldest)),
    )


class LoadRunner:
    """Owns the Locust child: start it, follow its recorder stream, stop it."""

    def __init__(
        self,
        load: LoadSpec,
        run_time: float,
        logs: RunDirectory,
        timeline: Timeline,
        latency_limits_us: tuple[int, ...] = (),
    ) -> None:
        self.load = load
        self.host = load.host  # what Locust is given: the driver may resolve a front for it
        self.latency_limits_us = latency_limits_us  # the recorder counts exactly above each
        self.run_time = run_time
        self.logs = logs
        self.log_path = logs.log_path(LOG_NAME)
        self.timeline = timeline
        self.samples = SampleStore()
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped_at: float | None = None  # when the runner asked Locust to stop
        self.problem: str | None = None  # set when the recorder stream could not be read
        self.workers: list[tuple[int, int]] = []  # Locust's forked workers: (pid, start ticks)
        self.worker_book = WorkerBook()  # every worker, forked or elsewhere, as the master saw it
        self.spawned = threading.Event()
        self.stopped = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, on_spawn: Callable[[KillProcessGroup], None] | None = None) -> None:
        """Start Locust and wait until every user is spawned (or fail with Locust's own words).
        `on_spawn` gets the undo action of the child before Locust runs (for the ledger)."""
        read_fd, write_fd = os.pipe()
        try:
            with self.logs.create_log(LOG_NAME) as log:
                self.process, release = start_held(
                    locust_command(self.load, self.run_time),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # the host through the environment, not argv: `ps` shows argv, and it may hold a secret
                    env=self.child_environment(write_fd),
                    pass_fds=(write_fd,),
                )
        finally:
            os.close(write_fd)
        try:
            if on_spawn is not None:
                on_spawn(self.undo_action())
        except BaseException:  # never let a Locust run that the ledger does not know
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        release()
        self._reader = threading.Thread(target=self._read, args=(read_fd,), name="load-reader", daemon=True)
        self._reader.start()
        self.timeline.add("load", "started", "locust", pid=self.process.pid, users=self.load.users)
        workers = self.load.workers
        if workers is not None:
            self.timeline.publish(
                "load",
                "waiting-workers",
                workers.bind,
                expect=workers.expect,
                timeout=workers.join_timeout,
                command=self.worker_command(),
            )
        limit = START_TIMEOUT_SECONDS + ramp_seconds(self.load) + (workers.join_timeout if workers else 0)
        deadline = time.monotonic() + limit
        while not self.spawned.wait(0.05):
            if self.process.poll() is not None or self.stopped.is_set():
                if workers is not None and len(self.worker_book.joined()) < workers.expect:
                    raise self.workers_missing()
                raise RunAborted(
                    f"the load generator stopped before it started: {self.last_log_line()}",
                    where=str(self.load.locustfile),
                    hint=f"see {self.log_path}",
                )
            if time.monotonic() > deadline:
                raise RunAborted(
                    f"Locust did not spawn its users within {limit:g}s",
                    hint=f"see {self.log_path}",
                )

    def workers_missing(self) -> RunAborted:
        """Locust's master gave up waiting for the workers load.workers expects."""
        assert self.load.workers is not None
        workers = self.load.workers
        refused = self.worker_book.refusals()
        return RunAborted(
            f"{len(self.worker_book.joined())} of {workers.expect} Locust worker(s) joined within "
            f"{workers.join_timeout:g}s" + (f"; refused: {'; '.join(refused)}" if refused else ""),
            where="load.workers",
            hint=f"start each with: {self.worker_command()} (from a host that can reach it), or raise "
            "load.workers.join_timeout",
        )

    def worker_command(self) -> str:
        assert self.load.workers is not None
        return f"gameday worker --master {self.load.workers.master_address} -f {self.load.locustfile}"

    def child_environment(self, write_fd: int) -> dict[str, str]:
        """The host goes through the environment, not argv: `ps` shows argv, and it may hold a secret."""
        env = {
            **os.environ,
            FD_VARIABLE: str(write_fd),
            "LOCUST_HOST": self.host,
            TIMEOUT_VARIABLE: repr(self.load.request_timeout),
            LIMITS_VARIABLE: ",".join(map(str, self.latency_limits_us)),
        }
        if self.load.pacing is not None:
            env[PACING_VARIABLE] = repr(self.load.pacing)
        if self.load.workers is not None:
            env[MAX_CLOCK_OFFSET_VARIABLE] = repr(self.load.workers.max_clock_offset)
        if REQUEST_LOG_VARIABLE in os.environ:  # a test's exact offline judgement of the same requests
            env[REQUEST_LOG_VARIABLE] = os.environ[REQUEST_LOG_VARIABLE]
        return env

    def _read(self, fd: int) -> None:
        """Drain the recorder's pipe to the end; a line that cannot be read is a problem for the
        engine to act on, but reading goes on (a full pipe would freeze Locust)."""
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                try:
                    self._handle(json.loads(line))
                except Exception as error:  # any line it cannot take: the run must know, reading goes on
                    self.problem = (
                        self.problem or f"unreadable recorder line ({type(error).__name__}: {error})"
                    )
        self.stopped.set()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "second":
            store_second(self.samples, message)
        elif kind == "spawned":
            self.timeline.add("load", "spawned", "locust", users=message["users"])
            self.workers = self.worker_processes()
            self.spawned.set()
        elif kind == "worker":
            if message["event"] == "lost" and self.stopped_at is not None:
                return  # stopped with the rest of the load, as the runner asked
            self.worker_book.event(message)
            detail = {key: value for key, value in message.items() if key not in ("type", "event", "worker")}
            self.timeline.add("load", f"worker {message['event']}", message["worker"], **detail)
            if message["event"] == "lost" and self.load.on_worker_loss == "abort":
                why = f": {message['reason']}" if "reason" in message else ""
                self.problem = self.problem or (
                    f"Locust worker {message['worker']} was lost{why} (its users' load stopped with it; "
                    "load.on_worker_loss: continue goes on without it)"
                )
        elif kind == "workers":
            self.worker_book.status(message)
        elif kind == "stopped":
            self.stopped.set()

    def wait_drained(self, sent_before: float, limit: float) -> bool:
        """Wait (at most `limit` seconds) until no request sent before `sent_before` is still
        waiting, so that every request of the judged phases has its outcome. False if some still
        wait (they are then judged as unfinished)."""
        deadline = time.monotonic() + limit
        second = int(sent_before)
        while time.monotonic() < deadline and self.running():
            happened = self.samples.wait_for_second(second, timeout=0.2)
            if happened is None:
                continue
            if happened.oldest_waiting_since is None or happened.oldest_waiting_since >= sent_before:
                return True
            second += 1
        return False

    def worker_processes(self) -> list[tuple[int, int]]:
        """Locust's forked workers (pid, start ticks): the children of the child, when it is a master."""
        assert self.process is not None
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        found = [(int(child), process_start_ticks(int(child))) for child in children]
        return [(child, ticks) for child, ticks in found if ticks is not None]

    def undo_action(self) -> KillProcessGroup:
        """How `gameday recover` stops this Locust child if the runner dies."""
        assert self.process is not None
        ticks = process_start_ticks(self.process.pid)
        assert ticks is not None, "the held child cannot have exited: it waits for us"
        return KillProcessGroup(self.process.pid, ticks)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Ask Locust to stop (SIGTERM flushes the last seconds), kill it if it does not. Idempotent."""
        if self.process is None or self.stopped_at is not None:
            return
        self.stopped_at = time.time()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for pid, ticks in self.workers:  # workers that outlived a master that died alone load on
            if process_start_ticks(pid) == ticks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.timeline.add("load", "stopped", "locust", code=self.process.returncode)

    def last_log_line(self) -> str:
        """Locust's last words: the exception that ended it, with the file and line it names."""
        lines = [line for line in self.logs.read_log(LOG_NAME).splitlines() if line.strip()]
        if not lines:
            return "no output"
        last = lines[-1].strip()[:300]
        places = [line.strip() for line in lines if line.strip().startswith('File "')]
        if places and ("Error" in last or "Exception" in last):
            return f"{last} ({places[-1][:200]})"
        return last
