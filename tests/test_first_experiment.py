"""README "Your first experiment", followed as it is written: its files, its commands, its verdict.

The only change a test needs: the service's port comes from a free block (`--var port=N`), so
that the run never meets another test's port.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, free_port_block

pytestmark = pytest.mark.slow

SECTION = re.compile(r"^## Your first experiment\n(.*?)^## ", re.S | re.M)
FILE = re.compile(r"^`(my-service/[\w.]+)`: [^\n]*\n\n```\w+\n(.*?)^```", re.S | re.M)
COMMANDS = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
EXPECTED = re.compile(r"exit code (\d+)")


def walkthrough() -> str:
    match = SECTION.search((REPO / "README.md").read_text())
    assert match, "README has no 'Your first experiment' section"
    return match.group(1)


def test_your_first_experiment_does_what_the_readme_says(tmp_path: Path):
    text = walkthrough()
    files = FILE.findall(text)
    assert [name for name, _ in files] == [
        "my-service/app.py",
        "my-service/locustfile.py",
        "my-service/experiment.yaml",
    ]
    for name, content in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    [commands] = COMMANDS.findall(text)
    port = free_port_block(2)
    for line in commands.strip().splitlines():
        command, _, comment = line.partition("#")
        words = command.split()
        assert words[0] == "gameday", line
        if words[1] == "run":
            words += ["--var", f"port={port}", "--report-dir", str(tmp_path / "reports")]
        result = subprocess.run(
            [sys.executable, "-m", "chaoslib_ext", *words[1:]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=180,
        )
        [expected] = EXPECTED.findall(comment)
        assert result.returncode == int(expected), f"{line}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        if words[1] == "run":
            assert "SLO VIOLATED" in result.stdout and "fault phase: availability not held" in result.stdout
            [report] = (tmp_path / "reports").glob("*/report.json")
            fault = next(p for p in json.loads(report.read_text())["phases"] if p["name"] == "fault")
            assert fault["failures"] >= 2, fault  # the README's story: keep-alive users lost a request each
            assert fault["availability"] < 0.999
