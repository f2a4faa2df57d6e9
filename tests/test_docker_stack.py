"""The docker demo stack (Compose) under the docker driver: one command builds and runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import REPO, free_port_block, gameday
from docker_support import docker_client_or_reason, new_label

from chaoslib_ext.demo.docker_image import ensure_base_image

CLIENT, REASON = docker_client_or_reason()
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(CLIENT is None, reason=REASON),
    pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed"),
]
STACK = REPO / "experiments" / "docker"


@pytest.fixture(scope="module")
def stack():
    ensure_base_image(CLIENT)
    project, port = f"gdstack{new_label()}", free_port_block(1)
    compose = ["docker-compose", "-p", project, "-f", str(STACK / "compose.yaml")]
    env = {"FRONT_PORT": str(port), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    try:
        subprocess.run(
            [*compose, "up", "-d", "--build", "--scale", "back=2"],
            cwd=STACK,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        yield project, port
    finally:
        subprocess.run(
            [*compose, "down", "--rmi", "all"], cwd=STACK, env=env, capture_output=True, timeout=120
        )
    # nothing is left but the cached base image
    label = f"com.docker.compose.project={project}"
    assert CLIENT.containers.list(all=True, filters={"label": label}) == []
    tags = {tag for image in CLIENT.images.list() for tag in image.tags}
    assert not any(tag.startswith("gameday-stack") for tag in tags), tags


EXPECTED = {  # experiment: (exit code, what its fault did)
    "stop-one-backend": (0, ["stop", "start"]),
    "pause-all-backends": (1, ["pause", "pause", "unpause", "unpause"]),
    "dns-timeouts-at-the-front": (1, ["inject", "revert"]),
}


@pytest.mark.parametrize("experiment", list(EXPECTED))
def test_the_stack_holds_a_stopped_backend_but_not_paused_backends_or_dns_timeouts(
    stack, tmp_path, experiment
):
    code, expected_actions = EXPECTED[experiment]
    if experiment == "dns-timeouts-at-the-front" and os.geteuid() != 0:
        pytest.skip("DNS faults in containers need root")
    project, port = stack
    result = gameday(
        "run",
        str(STACK / f"{experiment}.yaml"),
        "--var",
        f"project={project}",
        "--var",
        f"front_port={port}",
        "--var",
        "baseline=3s",
        "--var",
        "recovery=5s",
        "--report-dir",
        str(tmp_path),
        "--quiet",
    )
    assert result.returncode == code, result.stdout + result.stderr
    report = json.loads(next(tmp_path.glob("*/report.json")).read_text())
    assert [a["action"] for a in report["faults"][0]["actions"]] == expected_actions
    running = CLIENT.containers.list(filters={"label": f"com.docker.compose.project={project}"})
    assert sorted(c.status for c in running) == ["running"] * 3
