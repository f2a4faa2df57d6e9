"""Shared helpers: free ports, experiment files, and running the real `gameday` command."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "loadtests" / "checkout.py"

MINIMAL = f"""\
version: 1
title: minimal
load: {{locustfile: {LOCUSTFILE}, host: "http://127.0.0.1:9", users: 1}}
slo: {{availability: 99%}}
phases: {{baseline: 1s, fault: 1s, recovery: 1s}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_block(count: int) -> int:
    """A base port such that base .. base+count-1 are all free right now."""
    for _ in range(200):
        base = free_port()
        if base + count < 65535 and all(_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free ports found")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gameday(*args: str, timeout: float = 180, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "chaoslib_ext", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def experiment_file(tmp_path: Path):
    def write(text: str, name: str = "experiment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
