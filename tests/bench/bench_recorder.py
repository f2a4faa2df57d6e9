"""Benchmark of the Locust recorder plugin (chaoslib_ext.load.recorder): accuracy and overhead.

(a) Percentile accuracy: one Locust run through chaoslib_ext.load.child against a demo backend on
    127.0.0.1, with locustfile_exact.py dumping every request's exact response_time. The recorder's
    per-second histograms are merged and their p50..p99.9 and max compared with the exact
    nearest-rank values (rank ceil(q * n), 1-based) of the dump rounded to whole microseconds, as the
    histogram does. Target: worst relative error <= 1%.
(b) Overhead: requests/s of locustfile_plain.py (20 users, no wait time) under the recorder child vs
    plain ``python -m locust``, alternating runs, medians compared. Target: ratio >= 0.95.

Run from the repository root: ``python tests/bench/bench_recorder.py [--seconds N] [--rounds N]``.
Only 127.0.0.1 is contacted; every process is bounded by --run-time and a timeout and is stopped
on the way out. Exits 0 when the bench ran (whether or not the targets were met), 1 if it could not.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslib_ext.load.protocol import FD_VARIABLE
from chaoslib_ext.measure.histogram import Histogram

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parents[1]
PLAIN_LOCUSTFILE = BENCH_DIR / "locustfile_plain.py"
EXACT_LOCUSTFILE = BENCH_DIR / "locustfile_exact.py"
EXACT_FILE_VARIABLE = "GAMEDAY_BENCH_EXACT_FILE"  # read by locustfile_exact.py

HOST = "127.0.0.1"
USERS = 20
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
ACCURACY_TARGET = 0.01
OVERHEAD_TARGET = 0.95
START_GRACE_SECONDS = 30.0  # on top of --run-time: interpreter start-up, spawning, shutdown
KILL_GRACE_SECONDS = 10.0


class BenchError(RuntimeError):
    """The bench could not run (a process failed to start or stop); not a missed target."""


@dataclass
class RunResult:
    """What one Locust run left behind."""

    messages: list[dict[str, Any]]
    wall_seconds: float
    cpu_seconds: float
    csv_prefix: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: ours, with the repository root importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def terminate(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def demo_service(module: str, workdir: Path, *args: str) -> Iterator[int]:
    """Run a demo server module on a free port until the block ends; yield the port."""
    port = free_port()
    log_path = workdir / f"{module.rsplit('.', 1)[-1]}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=workdir,
            start_new_session=True,
        )
    try:
        wait_healthy(proc, port, log_path)
        yield port
    finally:
        terminate(proc, grace=5.0)


def demo_backend(workdir: Path) -> contextlib.AbstractContextManager[int]:
    """The demo backend (GET /work, no simulated work)."""
    return demo_service("chaoslib_ext.demo.backend", workdir, "--work-ms", "0")


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float = 15.0) -> None:
    """Poll GET /healthz until it answers 200; fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"demo backend exited with {proc.returncode}:\n{log_tail(log_path)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=0.5)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise BenchError(f"demo backend not healthy on port {port} within {timeout:g}s")


def locust_options(locustfile: Path, port: int, seconds: int, csv_prefix: Path) -> list[str]:
    """Locust options shared by every run (only the program in front of them differs)."""
    return [
        "-f",
        str(locustfile),
        "--headless",
        "--only-summary",
        "--users",
        str(USERS),
        "--spawn-rate",
        str(USERS * 5),
        "--host",
        f"http://{HOST}:{port}",
        "--run-time",
        f"{seconds}s",
        "--csv",
        str(csv_prefix),
        "--exit-code-on-error",
        "0",
    ]


def run_locust(
    name: str, options: list[str], workdir: Path, seconds: int, recorded: bool, **env: str
) -> RunResult:
    """Run one Locust process to completion, either plain or under the recorder child.

    The recorder side gets a pipe on GAMEDAY_RECORDER_FD, drained by a thread, exactly as
    chaoslib_ext.load.runner does; its JSON lines are returned.
    """
    log_path = workdir / f"{name}.log"
    messages: list[dict[str, Any]] = []
    read_fd = write_fd = -1
    program = ["chaoslib_ext.load.child"] if recorded else ["locust"]
    if recorded:
        read_fd, write_fd = os.pipe()
        env[FD_VARIABLE] = str(write_fd)
    reader: threading.Thread | None = None
    proc: subprocess.Popen[bytes] | None = None
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", *program, *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(**env),
                cwd=workdir,  # keep Locust away from any locust.conf / pyproject.toml in the repo
                pass_fds=(write_fd,) if recorded else (),
                start_new_session=True,
            )
        if recorded:
            os.close(write_fd)
            write_fd = -1
            reader = threading.Thread(target=_drain, args=(read_fd, messages), daemon=True)
            read_fd = -1  # the reader owns it now
            reader.start()
        try:
            proc.wait(timeout=seconds + START_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"{name}: Locust still running after {seconds + START_GRACE_SECONDS:g}s"
            ) from None
    finally:
        if proc is not None:
            terminate(proc)
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    wall = time.monotonic() - started
    assert proc is not None
    if reader is not None:
        reader.join(timeout=KILL_GRACE_SECONDS)
    if proc.returncode != 0:
        raise BenchError(f"{name}: Locust exited with {proc.returncode}:\n{log_tail(log_path)}")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return RunResult(messages, wall, cpu, workdir / name)


def _drain(fd: int, messages: list[dict[str, Any]]) -> None:
    with os.fdopen(fd, "rb") as stream:
        messages.extend(json.loads(line) for line in stream)


def aggregated_stats(csv_prefix: Path) -> tuple[float, int, int]:
    """Requests/s, request count and failure count of the Aggregated row of Locust's --csv stats."""
    with Path(f"{csv_prefix}_stats.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"]), int(row["Request Count"]), int(row["Failure Count"])
    raise BenchError(f"no Aggregated row in {csv_prefix}_stats.csv")


def nearest_rank(sorted_values: Sequence[float], quantile: float) -> float:
    """Value of rank ceil(q * n) (1-based) of an ascending list, as Histogram.percentile_ms ranks."""
    return sorted_values[max(1, math.ceil(quantile * len(sorted_values))) - 1]


def relative_error(measured: float, exact: float) -> float:
    """|measured - exact| / exact (0 when both are 0)."""
    if exact == 0:
        return 0.0 if measured == 0 else math.inf
    return abs(measured - exact) / exact


def bench_accuracy(port: int, workdir: Path, seconds: int) -> float:
    """Figure (a): print recorder vs exact percentiles; return the worst relative error."""
    exact_path = workdir / "exact.txt"
    options = locust_options(EXACT_LOCUSTFILE, port, seconds, workdir / "accuracy")
    run = run_locust("accuracy", options, workdir, seconds, True, **{EXACT_FILE_VARIABLE: str(exact_path)})
    seconds_seen = [m for m in run.messages if m["type"] == "second"]
    merged = Histogram.merged(
        Histogram.from_dict(sample[outcome])
        for message in seconds_seen
        for _, sent in message["sent"]
        for sample in sent["endpoints"].values()
        for outcome in ("ok", "failed")
        if outcome in sample
    )
    exact_ms = [float(line) for line in exact_path.read_text().split()]
    exact_us = sorted(max(0, round(ms * 1000)) for ms in exact_ms)
    raw_sorted = sorted(exact_ms)
    if not exact_us or merged.count == 0:
        raise BenchError("accuracy run recorded no requests")

    print(f"(a) PERCENTILE ACCURACY  recorder histograms vs exact response_time, {seconds}s run")
    print(
        f"    requests: recorder {merged.count}, exact dump {len(exact_us)}, "
        f"{len(seconds_seen)} 'second' lines merged"
    )
    if merged.count != len(exact_us):
        print("    WARNING: the recorder and the exact dump saw different request counts")
    print(f"    {'':>6} {'recorder ms':>12} {'exact ms (us)':>14} {'exact ms (raw)':>15} {'rel err':>9}")
    rows: list[tuple[str, float, float, float]] = []
    for quantile in QUANTILES:
        recorded = merged.percentile_ms(quantile)
        assert recorded is not None
        exact = nearest_rank(exact_us, quantile) / 1000
        rows.append((f"p{quantile * 100:g}", recorded, exact, nearest_rank(raw_sorted, quantile)))
    max_ms = merged.max_ms()
    assert max_ms is not None
    rows.append(("max", max_ms, exact_us[-1] / 1000, raw_sorted[-1]))
    worst = 0.0
    for label, recorded, exact, raw in rows:
        error = relative_error(recorded, exact)
        worst = max(worst, error)
        print(f"    {label:>6} {recorded:>12.3f} {exact:>14.3f} {raw:>15.4f} {error:>9.3%}")
    verdict = "OK" if worst <= ACCURACY_TARGET else "MISSED"
    print(f"    worst relative error: {worst:.3%} (target <= {ACCURACY_TARGET:.0%}: {verdict})")
    return worst


def bench_overhead(port: int, workdir: Path, seconds: int, rounds: int) -> float:
    """Figure (b): print plain vs recorder requests/s (alternating runs); return the median ratio."""
    print(f"(b) OVERHEAD  requests/s, {USERS} users, no wait, {seconds}s per run, {rounds} rounds")
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu_per_request: dict[bool, list[float]] = {False: [], True: []}
    for round_no in range(1, rounds + 1):
        for recorded in (False, True):
            side = "recorder" if recorded else "plain"
            name = f"overhead-{side}-{round_no}"
            options = locust_options(PLAIN_LOCUSTFILE, port, seconds, workdir / name)
            run = run_locust(name, options, workdir, seconds, recorded)
            rps, count, failures = aggregated_stats(run.csv_prefix)
            rates[recorded].append(rps)
            cpu_per_request[recorded].append(run.cpu_seconds / max(count, 1))
            print(
                f"    round {round_no} {side:>8}: {rps:8.1f} req/s  ({count} requests, {failures} failed, "
                f"Locust cpu {run.cpu_seconds / run.wall_seconds:.0%} of {run.wall_seconds:.1f}s wall)"
            )
    plain = statistics.median(rates[False])
    recorder = statistics.median(rates[True])
    ratio = recorder / plain if plain else math.nan
    verdict = "OK" if ratio >= OVERHEAD_TARGET else "MISSED"
    print(f"    median plain Locust:    {plain:8.1f} req/s  (runs spread {spread(rates[False]):.1%})")
    print(f"    median with recorder:   {recorder:8.1f} req/s  (runs spread {spread(rates[True]):.1%})")
    print(f"    ratio recorder/plain:   {ratio:8.3f} (target >= {OVERHEAD_TARGET}: {verdict})")
    plain_cpu = statistics.median(cpu_per_request[False])
    recorder_cpu = statistics.median(cpu_per_request[True])
    print(
        f"    Locust CPU per request: plain {plain_cpu * 1e6:.0f} us, with recorder "
        f"{recorder_cpu * 1e6:.0f} us (ratio {plain_cpu / recorder_cpu:.3f}; steadier than req/s)"
    )
    cost = recorder_cost_seconds()
    print(
        f"(c) RECORDER COST  {cost * 1e6:.2f} us per request in-process (200k calls), "
        f"{cost / plain_cpu:.2%} of plain Locust's CPU per request: expected ratio {1 - cost / plain_cpu:.3f}"
    )
    return ratio


RECORDER_COST_CODE = """
import time
from chaoslib_ext.load.recorder import Recorder
recorder = Recorder(lambda line: None, limits_us=(250_000, 1_000_000), timeout=10.0)
calls = 200_000
started = time.perf_counter()
for i in range(calls):  # what each request costs: known when sent, filed when Locust reports it
    recorder.sending("GET /work", 1_000_000)  # paced every 1 s, answered within its interval
    recorder.on_request("GET", "/work", 12.5 + (i % 977) * 0.37, exception=None, start_time=time.time())
print((time.perf_counter() - started) / calls)
"""


def recorder_cost_seconds() -> float:
    """Figure (c): the recorder's own cost per request, timed in a child (importing it brings in gevent)."""
    output = subprocess.run(
        [sys.executable, "-c", RECORDER_COST_CODE],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(output.stdout.strip())


def spread(values: list[float]) -> float:
    """(max - min) / median: run-to-run noise, to weigh the ratio against."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else math.nan


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print their figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=positive_int, default=10, help="Locust --run-time of each run (10)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="plain/recorder run pairs for (b) (3)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"recorder bench: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, backend on {HOST}")
    try:
        with tempfile.TemporaryDirectory(prefix="gameday-bench-") as tmp, demo_backend(Path(tmp)) as port:
            bench_accuracy(port, Path(tmp), args.seconds)
            bench_overhead(port, Path(tmp), args.seconds, args.rounds)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print(f"bench took {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
