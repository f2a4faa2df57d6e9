"""Local services: real processes started, killed, restarted by policy and stopped."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port_block

from chaoslib_ext.drivers.local.services import ServiceSupervisor
from chaoslib_ext.errors import Location, RunAborted
from chaoslib_ext.events import Timeline
from chaoslib_ext.spec.model import ReadyCheck, RestartPolicy, ServiceSpec
from chaoslib_ext.state.trust import RunDirectory


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


def test_a_port_already_in_use_says_who_holds_it_and_how_to_move(supervisor_for):
    port = free_port_block(1)
    first = supervisor_for(backend(port, replicas=1))
    first.start()
    holder = first.replicas["backend"][0].pid
    with pytest.raises(RunAborted) as caught:
        supervisor_for(backend(port, replicas=1)).start()
    message = str(caught.value)
    assert f"port {port} for backend-0 is already in use by pid {holder} (" in message
    assert "chaoslib_ext.demo.backend" in message and "another services.backend.port" in message
    with pytest.raises(RunAborted, match="choose --var backend_port=<another port>"):
        supervisor_for(replace(backend(port, replicas=1), port_variable="backend_port")).start()


@pytest.mark.parametrize(
    ("ready", "saw"),
    [
        (ReadyCheck("http://127.0.0.1:{port}/nope", 1.0), "HTTP 404 from http://127.0.0.1:{port}/nope"),
        (ReadyCheck(None, 1.0, tcp="1"), "connection refused at 127.0.0.1:1"),
        (ReadyCheck(None, 1.0, command=("sh", "-c", "echo not yet >&2; exit 3")), "sh exited 3: not yet"),
    ],
)
def test_a_replica_that_never_gets_ready_says_what_the_last_check_saw(supervisor_for, ready, saw):
    port = free_port_block(1)
    service = replace(backend(port, replicas=1), ready=ready)
    with pytest.raises(RunAborted) as caught:
        supervisor_for(service).start()
    assert f"service backend not ready after 1s: backend-0: {saw.replace('{port}', str(port))}" in str(
        caught.value
    )


def test_a_replica_is_ready_when_its_tcp_port_or_its_command_says_so(supervisor_for):
    port = free_port_block(1)
    connects = ("{python}", "-c", "import socket; socket.create_connection(('127.0.0.1', {port}), 1)")
    for ready in (ReadyCheck(None, 10.0, tcp="{port}"), ReadyCheck(None, 10.0, command=connects)):
        supervisor = supervisor_for(replace(backend(port, replicas=1), ready=ready))
        supervisor.start()
        assert '"replica": "backend-0"' in get(f"http://127.0.0.1:{port}/work")
        supervisor.stop()


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
