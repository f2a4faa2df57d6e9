"""The Locust child and its recorder: counted from outside against Locust's own statistics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HOST, REPO, Starter

from chaoslib_ext.errors import RunAborted
from chaoslib_ext.load.runner import LoadRunner
from chaoslib_ext.spec.model import LoadSpec
from chaoslib_ext.timeline import Timeline

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


def test_recorder_counts_every_request_that_locust_counts(backend, tmp_path: Path):
    stats_file = tmp_path / "locust-stats.json"  # Locust appends .json to the name it is given
    load = LoadSpec(
        REPO / "tests" / "data" / "mixed_locustfile.py",
        backend,
        users=4,
        spawn_rate=4,
        options=("--json-file", str(stats_file.with_suffix(""))),
    )
    runner = LoadRunner(load, 30, tmp_path / "locust.log", Timeline())
    runner.start()
    deadline = time.monotonic() + 20
    while len(runner.samples.sent_seconds()) < 3:
        assert time.monotonic() < deadline, "no samples arrived"
        time.sleep(0.1)
    runner.stop()
    total = runner.samples.window(float("-inf"), float("inf"))
    locust_stats = {entry["name"]: entry for entry in json.loads(stats_file.read_text())}
    for name in ("/work", "/nope"):
        sample = total.endpoints[f"GET {name}"]
        assert sample.ok.count + sample.failed.count == locust_stats[name]["num_requests"], name
        assert sample.failed.count == locust_stats[name]["num_failures"], name
    assert total.endpoints["GET /nope"].ok.count == 0
    assert total.endpoints["GET /work"].failed.count == 0
    assert total.requests > 50
    assert any(kind == "HTTP 404" and "404" in message for kind, message in total.errors)
    # latencies are real: /work sleeps 1 ms on the server, so nothing can be faster than that
    assert total.endpoints["GET /work"].ok.min_us >= 1000
    actions = [e.action for e in runner.timeline.events()]
    assert actions[:2] == ["started", "spawned"] and actions[-1] == "stopped"


def test_a_broken_locustfile_is_reported_with_locusts_own_words(tmp_path: Path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    runner = LoadRunner(LoadSpec(broken, "http://127.0.0.1:9", 1, 1), 10, tmp_path / "locust.log", Timeline())
    with pytest.raises(RunAborted, match="no_such_module_here"):
        runner.start()
    runner.stop()
