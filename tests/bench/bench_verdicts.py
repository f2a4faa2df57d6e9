"""Benchmark: does gameday's verdict agree with an exact judgement of the same requests?

Each run is real: Locust (through gameday's recorder child) against the demo frontend, which
calls two demo backends through gameday's fault proxies; a random fault (added latency, resets,
a blackhole that makes the requests hang, a bandwidth limit, or none) holds the proxies during
the fault phase. The recorder's test-only hook logs every request; then many random SLOs are
judged on the run both by gameday (`judge`, from the recorder's histograms) and by
tests/exact_verdict.py (every latency kept and sorted), objective by objective, phase by phase.
Target: 100 % agreement.

Run from the repository root: ``python tests/bench/bench_verdicts.py [--runs 6] [--slos 300]``.
Only 127.0.0.1 is contacted; every process is bounded by a timeout and stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # tests/exact_verdict.py

from bench_recorder import HOST, demo_service  # noqa: E402
from exact_verdict import ExactSlo, phase_held  # noqa: E402

from chaoslib_ext.events import Timeline  # noqa: E402
from chaoslib_ext.faults.base import TrafficFault  # noqa: E402
from chaoslib_ext.faults.network_bandwidth import NetworkBandwidth  # noqa: E402
from chaoslib_ext.faults.network_latency import NetworkLatency  # noqa: E402
from chaoslib_ext.faults.network_partition import NetworkPartition  # noqa: E402
from chaoslib_ext.faults.network_reset import NetworkReset  # noqa: E402
from chaoslib_ext.load.protocol import REQUEST_LOG_VARIABLE  # noqa: E402
from chaoslib_ext.load.runner import LoadRunner  # noqa: E402
from chaoslib_ext.measure.slo import Window, judge  # noqa: E402
from chaoslib_ext.netfault.proxy import FaultHub  # noqa: E402
from chaoslib_ext.spec.model import LoadSpec, SloSpec  # noqa: E402
from chaoslib_ext.state.trust import RunDirectory  # noqa: E402

REPO = BENCH_DIR.parents[1]
LOCUSTFILES = (REPO / "loadtests" / "checkout.py", BENCH_DIR / "locustfile_checkout_unpaced.py")
LIMITS_MS = (20, 50, 100, 250, 500, 1000, 2000)
PHASES = (("baseline", 0, 8), ("fault", 8, 14), ("recovery", 14, 22))
QUANTILES = ("p50", "p90", "p95", "p99", "p999", "max")


def random_fault(rng: random.Random) -> tuple[str, TrafficFault | None, str]:
    """(description, toxic, frontend timeout)"""
    kind = rng.choice(["latency", "reset", "hang", "bandwidth", "none"])
    if kind == "latency":
        delay = rng.uniform(0.05, 0.6)
        return f"+{delay * 1000:.0f}ms on responses", NetworkLatency(direction="downstream", delay=delay), "2"
    if kind == "reset":
        share = rng.uniform(0.1, 0.4)
        return f"{share:.0%} of connections reset", NetworkReset(direction="both", probability=share), "0.5"
    if kind == "hang":
        return (
            "every backend blackholed (the frontend waits)",
            NetworkPartition(direction="both", mode="blackhole"),
            "60",
        )
    if kind == "bandwidth":
        rate = rng.choice([1000, 3000, 8000])
        return f"{rate} B/s per backend", NetworkBandwidth(direction="downstream", rate=rate), "0.5"
    return "no fault", None, "0.5"


def random_slo(rng: random.Random) -> tuple[SloSpec, ExactSlo]:
    availability = rng.choice([None, "0.95", "0.99", "0.995", "0.999", "1"])
    latency = {q: rng.choice(LIMITS_MS) for q in rng.sample(QUANTILES, rng.randint(0, 3))}
    throughput = rng.choice([None, None, 20, 50, 80, 100])
    if availability is None and not latency and throughput is None:
        availability = "0.99"
    stall = rng.choice([1.0, 2.0, 5.0])
    slo = SloSpec(
        availability=None if availability is None else float(availability),
        latency={q: ms / 1000 for q, ms in latency.items()},
        throughput_min=None if throughput is None else float(throughput),
        max_stall=stall,
    )
    exact = ExactSlo(
        None if availability is None else Fraction(availability),
        {q: ms * 1000 for q, ms in latency.items()},
        None if throughput is None else Fraction(throughput),
        stall,
    )
    return slo, exact


def one_run(rng: random.Random, workdir: Path, slos: int) -> tuple[int, int, str]:
    description, toxic, timeout = random_fault(rng)
    users = rng.randint(4, 12)
    locustfile = rng.choice(LOCUSTFILES)
    log_path = workdir / "requests.jsonl"
    log_path.unlink(missing_ok=True)
    os.environ[REQUEST_LOG_VARIABLE] = str(log_path)
    hub = FaultHub()
    with ExitStack() as stack:
        stack.callback(hub.stop)
        backends = [stack.enter_context(demo_service("chaoslib_ext.demo.backend", workdir)) for _ in range(2)]
        proxies = [hub.proxy(f"backend-{i}", (HOST, port)) for i, port in enumerate(backends)]
        front = stack.enter_context(
            demo_service(
                "chaoslib_ext.demo.frontend",
                workdir,
                "--backends",
                ",".join(p.address for p in proxies),
                "--timeout",
                timeout,
                "--retries",
                "1",
            )
        )
        load = LoadSpec(
            locustfile, f"http://{HOST}:{front}", users=users, spawn_rate=users, request_timeout=10.0
        )
        limits = tuple(ms * 1000 for ms in LIMITS_MS)
        run_dir = RunDirectory.create(workdir, f"run-{time.time_ns()}")
        stack.callback(run_dir.close)
        runner = LoadRunner(load, PHASES[-1][2] + 5, run_dir, Timeline(), limits)
        runner.start()
        stack.callback(runner.stop)
        origin = float(int(time.time()) + 1)
        windows = [Window(name, origin + a, origin + b) for name, a, b in PHASES]
        sleep_until(windows[1].start)
        if toxic is not None:
            for proxy in proxies:
                proxy.add("bench", toxic, seed=rng.randrange(2**31))
        sleep_until(windows[1].end)
        for proxy in proxies:
            proxy.remove("bench")
        sleep_until(windows[2].end)
        runner.wait_drained(windows[2].end, 12.0)
        runner.stop()
    requests = [json.loads(line) for line in log_path.read_text().splitlines()]
    agree = total = 0
    for _ in range(slos):
        slo, exact = random_slo(rng)
        verdict = judge(slo, runner.samples, windows)
        spans = {w.name: (w.start, w.end) for w in windows}
        for phase in verdict.phases:
            ours = {o.name: o.held for o in phase.objectives}
            offline = phase_held(requests, exact, spans, phase.window.name)
            total += len(offline)
            agree += sum(ours.get(name) == held for name, held in offline.items())
    summary = f"{description}, {users} users ({locustfile.stem}), {len(requests)} requests"
    return agree, total, summary


def sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--slos", type=int, default=300, help="random SLOs judged on each run")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    print(f"VERDICT AGREEMENT  gameday's judge vs an exact judgement of every request (seed {seed})")
    agree = total = 0
    with tempfile.TemporaryDirectory(prefix="gameday-bench-verdicts-") as scratch:
        for run in range(args.runs):
            a, t, summary = one_run(rng, Path(scratch), args.slos)
            agree, total = agree + a, total + t
            print(f"    run {run + 1}: {a}/{t} objective verdicts agree  ({summary})", flush=True)
    share = agree / total if total else 0.0
    print(
        f"    agreement: {agree}/{total} = {share:.2%} (target 100%: {'OK' if agree == total else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
