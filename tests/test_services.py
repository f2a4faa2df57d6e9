"""Local services: real processes started, killed, restarted by policy and stopped."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port_block

from chaoslib_ext.errors import Location, RunAborted
from chaoslib_ext.services import ServiceSupervisor
from chaoslib_ext.spec.model import ReadyCheck, RestartPolicy, ServiceSpec
from chaoslib_ext.timeline import Timeline
from chaoslib_ext.trust import RunDirectory


def backend(port: int, replicas: int = 2, policy: str = "always", delay: float = 0.3) -> ServiceSpec:
    return ServiceSpec(
        name="backend",
        command=("{python}", "-m", "chaoslib_ext.demo.backend", "--port", "{port}", "--name", "{name}"),
        replicas=replicas,
        port=port,
        env={},
        ready=ReadyCheck("http://127.0.0.1:{port}/healthz", 10.0),
        restart=RestartPolicy(policy, delay),
        where=Location("test.yaml", 1, 1),
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def supervisor_for(tmp_path: Path):
    created: list[ServiceSupervisor] = []

    def make(*services: ServiceSpec) -> ServiceSupervisor:
        logs = RunDirectory.create(tmp_path, f"run-{len(created)}")
        supervisor = ServiceSupervisor({s.name: s for s in services}, logs, Timeline())
        created.append(supervisor)
        return supervisor

    yield make
    for supervisor in created:
        supervisor.stop()


def test_replicas_listen_on_consecutive_ports_and_stop_cleanly(supervisor_for):
    port = free_port_block(2)
    supervisor = supervisor_for(backend(port))
    supervisor.start()
    assert '"replica": "backend-0"' in get(f"http://127.0.0.1:{port}/work")
    assert '"replica": "backend-1"' in get(f"http://127.0.0.1:{port + 1}/work")
    pids = [r.pid for r in supervisor.all_replicas()]
    supervisor.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    actions = [e.action for e in supervisor.timeline.events()]
    assert actions.count("started") == 2 and actions.count("ready") == 2 and actions[-1] == "stopped"


def test_a_killed_replica_is_restarted_after_the_delay_like_a_replicaset(supervisor_for):
    port = free_port_block(2)
    supervisor = supervisor_for(backend(port, delay=0.5))
    supervisor.start()
    victim = supervisor.replicas["backend"][1]
    old_pid = supervisor.kill(victim, "SIGKILL")
    killed_at = time.time()
    wait_for(lambda: any(e.action == "ready" and e.at > killed_at for e in supervisor.timeline.events()))
    assert victim.pid != old_pid and victim.restarts == 1
    assert '"replica": "backend-1"' in get(f"http://127.0.0.1:{port + 1}/work")
    events = {e.action: e for e in supervisor.timeline.events() if e.at >= killed_at}
    assert events["exited"].detail["signal"] == "SIGKILL"
    assert events["restarted"].at - events["exited"].at >= 0.45


def test_restart_policy_never_leaves_the_replica_down(supervisor_for):
    port = free_port_block(1)
    supervisor = supervisor_for(backend(port, replicas=1, policy="never", delay=0.05))
    supervisor.start()
    supervisor.kill(supervisor.replicas["backend"][0], "SIGTERM")
    wait_for(lambda: any(e.action == "exited" for e in supervisor.timeline.events()))
    time.sleep(1.0)  # twenty times the restart delay: a restart would have happened by now
    assert supervisor.live("backend") == []
    assert not any(e.action == "restarted" for e in supervisor.timeline.events())


def test_children_of_a_dead_leader_do_not_outlive_it(supervisor_for, tmp_path):
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    service = ServiceSpec(
        "wrapper",
        ("{python}", "-c", script),
        1,
        None,
        {},
        ReadyCheck(None, 5.0),
        RestartPolicy("never", 1.0),
        Location("t.yaml", 1, 1),
    )
    supervisor = supervisor_for(service)
    supervisor.start()
    wait_for(lambda: pid_file.exists() and pid_file.read_text())
    child = int(pid_file.read_text())
    os.kill(supervisor.replicas["wrapper"][0].pid, signal.SIGKILL)  # the leader alone dies
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child))


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    except OSError:
        return True


def test_a_port_already_in_use_is_a_clear_error(supervisor_for):
    port = free_port_block(1)
    first = supervisor_for(backend(port, replicas=1))
    first.start()
    with pytest.raises(RunAborted, match=f"port {port} for backend-0 is already in use"):
        supervisor_for(backend(port, replicas=1)).start()


def test_a_service_that_dies_at_start_names_its_last_words(supervisor_for):
    broken = ServiceSpec(
        "broken",
        ("{python}", "-c", "import sys; sys.exit('cannot open config')"),
        1,
        None,
        {},
        ReadyCheck(None, 5.0),
        RestartPolicy("never", 1.0),
        Location("t.yaml", 3, 3),
    )
    with pytest.raises(
        RunAborted, match="broken-0 exited with code 1 before it was ready: cannot open config"
    ):
        supervisor_for(broken).start()
