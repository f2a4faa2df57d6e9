"""Benchmark of load that scales past one core: plain `locust --processes -1` against gameday's
load with `processes: auto` (the recorder child: Locust's master merging its workers' seconds).

Both run the same locustfile, users and options against nginx on 127.0.0.1 (`return 200`, one
worker process), alternating (ABBA), with HttpUser and with FastHttpUser; the figure is the most
requests/s of each side (Locust's own --csv statistics) and their ratio. Target: >= 0.97.
Then gameday's runner itself under that load for --runner-minutes: its RSS at the start and at the
end (target: flat within 20 MB) and its CPU per request.

Run from the repository root: ``python tests/bench/bench_scaling.py [--seconds N] [--rounds N]``.
Needs nginx (`make bench` installs nginx-light where it is missing and it runs as root). Only
127.0.0.1 is contacted; every process is bounded by --run-time and stopped on the way out.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_recorder import (
    BENCH_DIR,
    HOST,
    PLAIN_LOCUSTFILE,
    BenchError,
    aggregated_stats,
    free_port,
    locust_options,
    log_tail,
    run_locust,
    spread,
    terminate,
)

from chaoslib_ext.events import Timeline
from chaoslib_ext.load.runner import LoadRunner
from chaoslib_ext.spec.model import LoadSpec
from chaoslib_ext.state.trust import RunDirectory

FAST_LOCUSTFILE = BENCH_DIR / "locustfile_fast.py"
USERS = 50
TARGET = 0.97
NGINX_CONFIG = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        keepalive_requests 1000000;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


@contextmanager
def nginx(workdir: Path) -> Iterator[int]:
    """nginx on a free loopback port, answering 200 to everything, until the block ends."""
    program = shutil.which("nginx")
    if program is None:
        raise BenchError("nginx is needed: apt-get install nginx-light (make bench installs it as root)")
    port = free_port()
    config = workdir / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(tmp=workdir, host=HOST, port=port))
    log = workdir / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [program, "-c", str(config), "-p", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"nginx did not start:\n{log_tail(log)}\n{log_tail(workdir / 'error.log')}")
            time.sleep(0.05)
        yield port
    finally:
        terminate(process, grace=5.0)


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=0.5)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def distributed_options(processes: int) -> list[str]:
    """What gameday's runner adds for `processes`, given to both sides: the master on loopback."""
    port = str(free_port())
    return [
        "--processes",
        str(processes),
        "--master-bind-host",
        HOST,
        "--master-bind-port",
        port,
        "--master-port",
        port,
    ]


def bench(locustfile: Path, port: int, workdir: Path, seconds: int, rounds: int) -> float:
    processes = os.cpu_count() or 1
    rates: dict[str, list[float]] = {"plain": [], "gameday": []}
    for round_no in range(1, rounds + 1):
        # ABBA: who goes first alternates, so a drift in the machine's speed favours neither side
        for side in ("plain", "gameday") if round_no % 2 else ("gameday", "plain"):
            name = f"{locustfile.stem}-{side}-{round_no}"
            options = locust_options(locustfile, port, seconds, workdir / name)
            options[options.index("--users") + 1] = str(USERS)
            options[options.index("--spawn-rate") + 1] = str(USERS)
            plain_processes = ["--processes", "-1", *distributed_options(processes)[2:]]
            extra = plain_processes if side == "plain" else distributed_options(processes)
            run = run_locust(name, options + extra, workdir, seconds, recorded=side == "gameday")
            rps, count, failures = aggregated_stats(run.csv_prefix)
            rates[side].append(rps)
            print(f"    round {round_no} {side:>8}: {rps:8.1f} req/s  ({count} requests, {failures} failed)")
    best_plain, best_gameday = max(rates["plain"]), max(rates["gameday"])
    ratio = best_gameday / best_plain
    paired = statistics.median(g / p for g, p in zip(rates["gameday"], rates["plain"], strict=True))
    print(
        f"    most req/s: plain locust --processes -1 {best_plain:.0f}, "
        f"gameday processes: auto {best_gameday:.0f}; each side's runs spread "
        f"{spread(rates['plain']):.0%} (plain), {spread(rates['gameday']):.0%} (gameday)"
    )
    print(
        f"    ratio gameday/plain: {ratio:.3f} "
        f"(target >= {TARGET}: {'OK' if ratio >= TARGET else 'MISSED'}); "
        f"median of the rounds' own ratios {paired:.3f}"
    )
    return ratio


def rss_mb() -> float:
    """This process's resident memory, in MB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS in /proc/self/status")


def bench_runner(port: int, workdir: Path, minutes: float) -> None:
    """The runner (this process: gameday's LoadRunner reading the merged stream into its store)
    under the most load FastHttpUser gives: its RSS at the start and at the end, and its CPU per
    request."""
    load = LoadSpec(FAST_LOCUSTFILE, f"http://{HOST}:{port}", users=USERS, spawn_rate=USERS, processes="auto")
    seconds = minutes * 60
    runner = LoadRunner(load, seconds + 30, RunDirectory.create(workdir, "runner"), Timeline())
    runner.start()
    try:
        time.sleep(2)
        start_rss, start_cpu = rss_mb(), time.process_time()
        time.sleep(seconds)
        end_rss, end_cpu = rss_mb(), time.process_time()
    finally:
        runner.stop()
    requests = runner.samples.window(float("-inf"), float("inf")).requests
    print(
        f"    runner RSS {start_rss:.1f} MB at the start, {end_rss:.1f} MB after {minutes:g} min "
        f"({end_rss - start_rss:+.1f} MB; target: flat within 20 MB); {requests} requests, "
        f"{requests / (seconds + 2):.0f} req/s; runner CPU {end_cpu - start_cpu:.2f} s in all, "
        f"{(end_cpu - start_cpu) / max(requests, 1) * 1e6:.3f} us per request"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15, help="Locust --run-time of each run (15)")
    parser.add_argument("--rounds", type=int, default=5, help="plain/gameday run pairs per user class (5)")
    parser.add_argument(
        "--runner-minutes", type=float, default=10, help="the runner's memory run (10; 0: skip)"
    )
    args = parser.parse_args(argv)
    print(f"scaling bench: {os.cpu_count()} CPUs, {USERS} users, nginx on {HOST}, {args.seconds}s runs")
    try:
        with tempfile.TemporaryDirectory(prefix="gameday-bench-scaling-") as tmp, nginx(Path(tmp)) as port:
            for locustfile, kind in ((PLAIN_LOCUSTFILE, "HttpUser"), (FAST_LOCUSTFILE, "FastHttpUser")):
                print(f"({kind})")
                bench(locustfile, port, Path(tmp), args.seconds, args.rounds)
            if args.runner_minutes > 0:
                print(f"(the runner, FastHttpUser, processes: auto, {args.runner_minutes:g} min)")
                bench_runner(port, Path(tmp), args.runner_minutes)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
