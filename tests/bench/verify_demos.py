"""Run every demo experiment as shipped, several times, and check that each one's README verdict
comes out every time (`make verify-demos`).

Each run is the real `gameday run` of the file with its own defaults (ports included), one after
the other, as a new user would type it. Prints one line per experiment: the runs that gave the
promised exit code, and the figure the README quotes for it (min - max over the runs). Exits 1 if
any run gave another verdict. The docker demos need a Docker engine and docker-compose, the
root ones root: they are skipped, saying so, where those are missing.

    python tests/bench/verify_demos.py [--runs 10] [--only demo-reset,demo-bandwidth]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
RUN_TIMEOUT_SECONDS = 300


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next((p for p in report.get("phases", ()) if p["name"] == name), {})


def fault_p95(report: dict[str, Any]) -> float | None:
    return phase(report, "fault").get("latency_ms", {}).get("p95")


def baseline_p95(report: dict[str, Any]) -> float | None:
    return phase(report, "baseline").get("latency_ms", {}).get("p95")


def fault_availability(report: dict[str, Any]) -> float | None:
    value = phase(report, "fault").get("availability")
    return None if value is None else 100 * value


def guard_revert(report: dict[str, Any]) -> float | None:
    return (report.get("guard") or {}).get("breach_to_revert_s")


UNITS = {
    fault_p95: "fault p95 {}ms",
    baseline_p95: "baseline p95 {}ms",
    fault_availability: "fault availability {}%",
}
UNITS[guard_revert] = "breach to revert {}s"


@dataclass(frozen=True)
class Demo:
    path: str  # under experiments/
    exit_code: int  # what the README promises
    figure: Callable[[dict[str, Any]], float | None]  # what the README quotes
    needs: str = ""  # "root" or "docker"
    workers: int = 0  # `gameday worker` processes to start with the run (its load.workers.expect)


DEMOS = (
    Demo("demo-pod-kill.yaml", 0, fault_availability),
    Demo("demo-kill-all-backends.yaml", 1, fault_availability),
    Demo("demo-workers.yaml", 1, fault_availability, workers=2),
    Demo("demo-tight-slo.yaml", 4, baseline_p95),
    Demo("demo-latency.yaml", 1, fault_p95),
    Demo("demo-loss.yaml", 1, fault_availability),
    Demo("demo-reset.yaml", 1, fault_availability),
    Demo("demo-bandwidth.yaml", 1, fault_p95),
    Demo("demo-partition.yaml", 0, fault_availability),
    Demo("demo-dns-servfail.yaml", 0, fault_availability),
    Demo("demo-dns-delay.yaml", 1, fault_p95),
    Demo("demo-dns-spoof.yaml", 1, fault_availability),
    Demo("demo-hang.yaml", 1, fault_availability),
    Demo("demo-one-service.yaml", 1, fault_p95),
    Demo("demo-guard.yaml", 3, guard_revert),
    Demo("root-kernel-loss.yaml", 1, fault_p95, needs="root"),
    Demo("root-dns-system-resolver.yaml", 1, fault_availability, needs="root"),
    Demo("docker/stop-one-backend.yaml", 0, fault_availability, needs="docker"),
    Demo("docker/pause-all-backends.yaml", 1, fault_availability, needs="docker"),
    Demo("docker/dns-timeouts-at-the-front.yaml", 1, fault_p95, needs="docker"),
)


def missing(needs: str) -> str | None:
    if needs == "root" and os.geteuid() != 0:
        return "needs root"
    if needs == "docker":
        if os.geteuid() != 0:
            return "needs root"
        if shutil.which("docker-compose") is None:
            return "needs docker-compose"
        if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
            return "needs a running Docker engine"
    return None


def run_once(demo: Demo, report_dir: Path) -> tuple[int, dict[str, Any]]:
    # as its description says, on the master's default address; they wait for the master to listen
    worker = [sys.executable, "-m", "chaoslib_ext", "worker", "--master", "127.0.0.1:5557"]
    worker += ["-f", "loadtests/checkout.py"]
    workers = [subprocess.Popen(worker, cwd=REPO, stderr=subprocess.DEVNULL) for _ in range(demo.workers)]
    try:
        return run_alone(demo, report_dir)
    finally:
        for process in workers:  # the master told them to quit; one left over would load the next run
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_alone(demo: Demo, report_dir: Path) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaoslib_ext",
            "run",
            str(EXPERIMENTS / demo.path),
            "--report-dir",
            str(report_dir),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        cwd=REPO,
        check=False,
    )
    reports = sorted(report_dir.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text()) if reports else {}
    return result.returncode, report


class DockerStack:
    """The docker demos' Compose stack, built and started as `make docker-demo` does, removed after."""

    def __enter__(self) -> DockerStack:
        subprocess.run([sys.executable, "-m", "chaoslib_ext.demo.docker_image"], check=True, cwd=REPO)
        self.compose(["up", "-d", "--build", "--scale", "back=2"])
        return self

    def __exit__(self, *_: object) -> None:
        self.compose(["down", "--rmi", "all"])

    @staticmethod
    def compose(arguments: list[str]) -> None:
        subprocess.run(
            ["docker-compose", "-p", "gameday-demo", *arguments],
            cwd=EXPERIMENTS / "docker",
            check=True,
            capture_output=True,
        )


def verify(demos: list[Demo], runs: int) -> bool:
    all_good = True
    with tempfile.TemporaryDirectory(prefix="gameday-verify-") as scratch:
        for demo in demos:
            reason = missing(demo.needs)
            if reason:
                print(f"{demo.path:<42} skipped: {reason}", flush=True)
                continue
            good, figures, codes, started = 0, [], [], time.monotonic()
            for run in range(runs):
                report_dir = Path(scratch) / f"{demo.path.replace('/', '-')}-{run}"
                code, report = run_once(demo, report_dir)
                codes.append(code)
                good += code == demo.exit_code
                value = demo.figure(report)
                if value is not None:
                    figures.append(value)
            all_good &= good == runs
            span = "-" if not figures else f"{min(figures):.4g} … {max(figures):.4g}"
            span = UNITS[demo.figure].format(span)
            print(
                f"{demo.path:<42} exit {demo.exit_code}: {good}/{runs}  (exit codes {sorted(set(codes))}; "
                f"{span}; {time.monotonic() - started:.0f}s)",
                flush=True,
            )
    return all_good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated experiment names (without .yaml)")
    args = parser.parse_args()
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    demos = [d for d in DEMOS if not wanted or Path(d.path).stem in wanted]
    local = [d for d in demos if d.needs != "docker"]
    docker = [d for d in demos if d.needs == "docker"]
    ok = verify(local, args.runs)
    if docker:
        reason = missing("docker")
        if reason:
            ok &= verify(docker, args.runs)  # prints the skip
        else:
            with DockerStack():
                ok &= verify(docker, args.runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
