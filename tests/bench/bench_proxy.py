"""Benchmark: what gameday's userspace fault proxy costs when no fault is active.

Starts a demo backend on 127.0.0.1, then measures request latency (keep-alive HTTP/1.1, one client)
directly and through a FaultProxy with no toxic, alternating in rounds, and prints medians and
p99s of each and their difference. Run: `python tests/bench/bench_proxy.py [--requests N]`.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import subprocess
import sys
import time

from chaoslib_ext.netfault.proxy import FaultHub

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def timings(port: int, count: int) -> list[float]:
    """Milliseconds per request over one keep-alive connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", "/work")
            connection.getresponse().read()
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per side per round (2000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "chaoslib_ext.demo.backend", "--port", str(port), "--work-ms", "0"]
    )
    hub = FaultHub()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                timings(port, 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    print("backend did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
        proxy = hub.proxy("backend", (HOST, port))
        direct: list[float] = []
        proxied: list[float] = []
        for _ in range(args.rounds):
            direct += timings(port, args.requests)
            proxied += timings(proxy.port, args.requests)
        print(f"proxy bench: {len(direct)} requests each way, keep-alive, one client, backend on {HOST}")
        print(f"    direct:        median {statistics.median(direct):.3f} ms   p99 {p99(direct):.3f} ms")
        print(f"    through proxy: median {statistics.median(proxied):.3f} ms   p99 {p99(proxied):.3f} ms")
        added = statistics.median(proxied) - statistics.median(direct)
        print(f"    added by the idle proxy: {added * 1000:.0f} us at the median")
    finally:
        hub.stop()
        backend.terminate()
        backend.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
